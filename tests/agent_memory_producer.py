"""A neo4j-agent-memory application with cypherstream attached: it records a
conversation of N messages through `client.buffered.submit`, prints `submitted`, and
dies at once, without flush or close (`os._exit`)."""

from __future__ import annotations

import asyncio
import os
import sys

from neo4j_agent_memory import MemoryClient
from neo4j_agent_memory.graph import queries

from cypherstream.agent_memory import attach
from tests.agent_memory_app import agent_memory_settings, fake_embedder


async def main(conversation: str, messages: int) -> None:
    client = MemoryClient(agent_memory_settings("buffered"), embedder=fake_embedder())
    await client.connect()
    await attach(client)  # cypherstream's settings from the environment
    await client.buffered.submit(
        queries.CREATE_CONVERSATION, {"id": conversation, "session_id": conversation, "title": "t"}
    )
    for n in range(messages):
        params = {"conversation_id": conversation, "id": f"{conversation}-{n}", "role": "user",
                  "content": f"turn {n}", "embedding": None, "metadata": None}  # fmt: skip
        await client.buffered.submit(queries.CREATE_MESSAGE, params)
    print("submitted", flush=True)
    os._exit(9)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
