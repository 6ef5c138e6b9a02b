"""The seed's 50-turn comparison, run with neo4j-agent-memory's own client: its
`write_mode="sync"` against the same client with cypherstream attached.

Starts local Redis unless REDIS_URL is set, a Neo4j of its own unless NEO4J_URI is
(neo4j-agent-memory's schema set-up would change the shared local one), and one
`drainer run` process. Each turn records a message with the library's own
CREATE_MESSAGE and links it to an entity with LINK_MESSAGE_TO_ENTITY, through
`client.buffered.submit`, the call its users already make. The only new line is
`await attach(client)`. Both conversations are then read back from Neo4j: every
message, in order, each with its mention.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy" / "local"))

import services  # noqa: E402
from neo4j_agent_memory import MemoryClient, MemorySettings  # noqa: E402
from neo4j_agent_memory.graph import queries  # noqa: E402

from cypherstream.agent_memory import attach  # noqa: E402

DIMENSIONS = 4


class Embedder:
    """Stands in for a real model: the example measures writes, not embeddings."""

    dimensions = DIMENSIONS

    async def embed(self, text: str) -> list[float]:
        return [0.5] * DIMENSIONS

    async def embed_batch(self, texts: list[str]) -> list[list[float]]:
        return [[0.5] * DIMENSIONS for _ in texts]


def settings(write_mode: str) -> MemorySettings:
    return MemorySettings(
        neo4j={"uri": os.environ["NEO4J_URI"], "username": os.environ["NEO4J_USERNAME"],
               "password": os.environ["NEO4J_PASSWORD"]},
        memory={"write_mode": write_mode},
        extraction={"extractor_type": "none"},
    )  # fmt: skip


async def turn(client: Any, conversation: str, entity: str, n: int) -> str:
    """One agent turn: record the message and what it mentions, then answer at once."""
    message = f"{conversation}-m{n}"
    await client.buffered.submit(queries.CREATE_MESSAGE, {
        "conversation_id": conversation, "id": message, "role": "user",
        "content": f"turn {n}: how is Anthem doing?", "embedding": None, "metadata": None,
    })  # fmt: skip
    await client.buffered.submit(queries.LINK_MESSAGE_TO_ENTITY, {
        "message_id": message, "entity_id": entity, "confidence": 0.9,
        "start_pos": 12, "end_pos": 18,
    })  # fmt: skip
    return f"echo: turn {n}"


async def run(write_mode: str, run_id: str, turns: int) -> float:
    """The loop with one client; the seconds the turns took (the agent's wait)."""
    conversation, entity = f"{run_id}-{write_mode}", f"{run_id}-anthem"
    async with MemoryClient(settings(write_mode), embedder=Embedder()) as client:
        await attach(client)
        await client.buffered.submit(queries.CREATE_CONVERSATION,
                                     {"id": conversation, "session_id": conversation,
                                      "title": write_mode})  # fmt: skip
        started = time.perf_counter()
        for n in range(turns):
            await turn(client, conversation, entity, n)
        took = time.perf_counter() - started
        queued = client.buffered.pending
        await client.flush()
        errors = len(client.write_errors)
    print(f"{write_mode:8} {turns} turns in {took * 1000:8.1f} ms; "
          f"{queued} writes queued at the end of the loop, {errors} failed")  # fmt: skip
    return took


async def verify(run_id: str, turns: int) -> bool:
    """Each conversation holds its messages in order, each mentioning the entity."""
    from neo4j import AsyncGraphDatabase

    auth = (os.environ["NEO4J_USERNAME"], os.environ["NEO4J_PASSWORD"])
    ok = True
    async with AsyncGraphDatabase.driver(os.environ["NEO4J_URI"], auth=auth) as driver:
        for mode in ("sync", "buffered"):
            records, _, _ = await driver.execute_query(
                "MATCH (:Conversation {id: $c})-[:FIRST_MESSAGE]->(first) "
                "MATCH path = (first)-[:NEXT_MESSAGE*0..]->(last) "
                "WHERE NOT (last)-[:NEXT_MESSAGE]->() "
                "RETURN [m IN nodes(path) | m.id] AS ids, "
                "size([m IN nodes(path) WHERE (m)-[:MENTIONS]->(:Entity {id: $e})]) AS mentions",
                c=f"{run_id}-{mode}", e=f"{run_id}-anthem",
            )  # fmt: skip
            ids = records[0]["ids"] if records else []
            mentions = records[0]["mentions"] if records else 0
            in_order = ids == [f"{run_id}-{mode}-m{n}" for n in range(turns)]
            print(f"in Neo4j ({mode}): {len(ids)} messages in order: {in_order}, "
                  f"{mentions} mentions (expected {turns} of each)")  # fmt: skip
            ok = ok and in_order and mentions == turns
    return ok


async def create_entity(run_id: str) -> None:
    async with MemoryClient(settings("sync"), embedder=Embedder()) as client:
        await client.buffered.submit(queries.CREATE_ENTITY, {
            "id": f"{run_id}-anthem", "name": f"Anthem {run_id}", "type": "ORGANIZATION",
            "subtype": None, "canonical_name": None, "description": None, "embedding": None,
            "confidence": 1.0, "metadata": None,
        })  # fmt: skip


async def main(turns: int) -> bool:
    run_id = uuid.uuid4().hex[:8]
    await create_entity(run_id)
    sync = await run("sync", run_id, turns)
    buffered = await run("buffered", run_id, turns)
    print(f"the agent waited {sync / buffered:.1f}x less with cypherstream attached")
    ok = await verify(run_id, turns)
    print("verified" if ok else "verification FAILED")
    return ok


@contextlib.contextmanager
def own_neo4j() -> Iterator[None]:
    """Without NEO4J_URI, a local Neo4j of the example's own: neo4j-agent-memory sets up
    its schema on connect (an index on Entity.name, among others), which would stand
    in the way of the typed records' schema in the shared local Neo4j."""
    if os.environ.get("NEO4J_URI"):
        yield
        return
    server = services.Neo4jServer(services.STATE_DIR / "neo4j-agent-memory").start()
    os.environ |= {"NEO4J_URI": server.uri, "NEO4J_USERNAME": "neo4j",
                   "NEO4J_PASSWORD": server.password}  # fmt: skip
    try:
        yield
    finally:
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=50)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    with own_neo4j():
        services.up_and_export()  # Redis (and Neo4j only where none is set)
        os.environ.setdefault("CYPHERSTREAM_KEY_PREFIX", f"example-{uuid.uuid4().hex[:6]}")
        with services.Drainers(1, dict(os.environ), name="example"):
            ok = asyncio.run(main(args.turns))
    sys.exit(0 if ok else 1)
