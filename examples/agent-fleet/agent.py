"""One agent process of the fleet demo: many conversations at once, each turn recorded.

A turn is what an agent records per exchange: the user's message, the tool call it
made, its answer, and the entity the question mentioned. The agent runs its sessions
in sync mode (each write awaited) or in buffered mode, and reports how long the
recording kept each turn waiting.

Reads REDIS_URL, NEO4J_* and CYPHERSTREAM_KEY_PREFIX from the environment. Writes
one line per progress step to stdout (`progress <turns>`) and a last line
`result <json>`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time

from cypherstream import MemoryClient, MemorySettings

ENTITIES = ("Anthem", "Neo4j", "Redis", "Kubernetes", "Python", "Lisbon", "Ada Lovelace")


async def turn(client: MemoryClient, session: str, n: int) -> float:
    """Record one turn; returns the seconds the agent waited for the recording."""
    entity = ENTITIES[n % len(ENTITIES)]
    started = time.perf_counter()
    buffered = client.buffered
    asked = await buffered.add_message(session, "user", f"Turn {n}: what is new with {entity}?")
    await buffered.record_tool_call(
        session,
        "search",
        {"query": entity, "limit": 3},
        result={"hits": 3},
        duration_ms=12.5,
        message_id=asked.id,
    )
    await buffered.add_message(session, "assistant", f"Three things are new with {entity}.")
    await buffered.link_mention(session, asked.id, entity, "topic")
    return time.perf_counter() - started


async def conversation(client: MemoryClient, session: str, turns: int, think: float) -> list[float]:
    waits = []
    rng = random.Random(session)
    for n in range(turns):
        # The model "thinks" between turns, so conversations interleave as real ones do.
        await asyncio.sleep(think * rng.uniform(0.5, 1.5))
        waits.append(await turn(client, session, n))
        print("progress 1", flush=True)
    return waits


async def run_sessions(
    mode: str, sessions: list[str], turns: int, think: float
) -> tuple[list[float], int]:
    settings = MemorySettings()
    settings.memory.write_mode = mode  # type: ignore[assignment]
    async with MemoryClient(settings) as client:
        per_session = await asyncio.gather(
            *(conversation(client, s, turns, think) for s in sessions)
        )
        await client.flush()
        errors = len(client.write_errors)
    return [wait for waits in per_session for wait in waits], errors


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="prefix of this agent's session ids")
    parser.add_argument("--mode", choices=["sync", "buffered"], default="buffered")
    parser.add_argument("--sessions", type=int, default=25)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--think-ms", type=float, default=500, help="model time per turn")
    args = parser.parse_args()

    sessions = [f"{args.name}-{args.mode}-{i}" for i in range(args.sessions)]
    waits, errors = await run_sessions(args.mode, sessions, args.turns, args.think_ms / 1000)
    print("result " + json.dumps({"waits": waits, "errors": errors}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
