"""The seed's buffered-writes example, made real: one agent loop, sync then buffered.

Starts local Redis and Neo4j unless REDIS_URL and NEO4J_URI are set, and one
`drainer run` process. Then the same agent loop runs in sync mode and in buffered
mode, the queue is looked at before and after `flush()`, back-pressure is shown with
`max_pending=4`, one invalid write is caught in `write_errors`, and everything is
counted back from Neo4j.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy" / "local"))

import services  # noqa: E402

from cypherstream import MemoryClient, MemorySettings  # noqa: E402

MESSAGE = "MERGE (m:Message {id: $id}) SET m.content = $content, m.run = $run"
MENTION = """
MATCH (m:Message {id: $message_id})
MERGE (e:Entity {name: $name})
MERGE (m)-[:MENTIONS]->(e)
"""


async def agent_turn(client: MemoryClient, run: str, message_id: str, content: str) -> str:
    """The seed's turn: record the message and what it mentions, then answer at once."""
    await client.buffered.submit(MESSAGE, {"id": message_id, "content": content, "run": run})
    await client.buffered.submit(MENTION, {"message_id": message_id, "name": "Anthem"})
    return f"echo: {content}"


def settings(run: str, mode: str, max_pending: int = 200) -> MemorySettings:
    config = MemorySettings()
    config.memory.write_mode = mode  # type: ignore[assignment]
    config.memory.max_pending = max_pending
    config.memory.session_id = f"example-{run}-{mode}-{max_pending}"
    return config


async def loop(client: MemoryClient, run: str, label: str, turns: int) -> tuple[float, int]:
    """Run the turns; returns the seconds they took and the deepest queue seen."""
    deepest = 0
    started = time.perf_counter()
    for turn in range(turns):
        await agent_turn(client, run, f"{run}-{label}-{turn}", f"turn {turn}")
        if label == "back-pressure":
            deepest = max(deepest, await client.buffered.pending())
    return time.perf_counter() - started, deepest


async def sync_mode(run: str, turns: int) -> None:
    async with MemoryClient(settings(run, "sync")) as client:
        took, _ = await loop(client, run, "sync", turns)
    print(f"sync mode:     {turns} turns in {took * 1000:8.1f} ms (each write awaited)")


async def buffered_mode(run: str, turns: int) -> None:
    async with MemoryClient(settings(run, "buffered")) as client:
        took, _ = await loop(client, run, "buffered", turns)
        print(f"buffered mode: {turns} turns in {took * 1000:8.1f} ms (each write queued)")
        print(f"  queued before flush: {await client.buffered.pending()}")
        await client.flush()
        print(f"  queued after flush:  {await client.buffered.pending()}")


async def back_pressure(run: str, turns: int) -> None:
    async with MemoryClient(settings(run, "buffered", max_pending=4)) as client:
        took, deepest = await loop(client, run, "back-pressure", turns)
        await client.flush()
    print(
        f"back-pressure: {turns} turns with max_pending=4 in {took * 1000:.1f} ms; "
        f"the queue never held more than {deepest} (the limit is 4)"
    )


async def invalid_write(run: str) -> None:
    async with MemoryClient(settings(run, "buffered")) as client:
        await client.buffered.submit("MERGE (m:Message {id: $id}) SET m.content =", {"id": 1})
        await agent_turn(client, run, f"{run}-after-error", "the session goes on")
        await client.flush()
        print(f"invalid write: {len(client.write_errors)} in write_errors", end="")
        for error in client.write_errors:
            print(f" ({error.code}: {error.query[:40]!r})")


async def count(run: str) -> tuple[int, int]:
    driver = MemorySettings().neo4j.driver()
    async with driver:
        records, _, _ = await driver.execute_query(
            "MATCH (m:Message {run: $run}) OPTIONAL MATCH (m)-[x:MENTIONS]->(:Entity) "
            "RETURN count(DISTINCT m) AS messages, count(x) AS mentions",
            run=run,
        )
    return int(records[0]["messages"]), int(records[0]["mentions"])


async def main(turns: int) -> bool:
    run = uuid.uuid4().hex[:8]
    await sync_mode(run, turns)
    await buffered_mode(run, turns)
    await back_pressure(run, turns)
    await invalid_write(run)
    messages, mentions = await count(run)
    expected = 3 * turns + 1
    ok = messages == expected and mentions == expected
    print(f"in Neo4j: {messages} messages, {mentions} mentions (expected {expected} of each)")
    print("verified" if ok else "verification FAILED")
    return ok


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=50)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # failed writes are printed below, not logged
    services.up_and_export()
    os.environ.setdefault("CYPHERSTREAM_KEY_PREFIX", f"example-{uuid.uuid4().hex[:6]}")
    with services.Drainers(1, dict(os.environ), name="example"):
        ok = asyncio.run(main(args.turns))
    sys.exit(0 if ok else 1)
