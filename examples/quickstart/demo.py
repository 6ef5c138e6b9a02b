"""`make demo`: one drainer process, a small producer, and the count read back from Neo4j.

Starts local Redis and Neo4j unless REDIS_URL and NEO4J_URI are set, runs the same
agent loop in sync mode and in buffered mode, and shows what the agent waited for.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy" / "local"))

import services  # noqa: E402

from producer import MemoryClient, MemorySettings  # noqa: E402

SESSIONS = 10
TURNS = 50
WRITE = (
    "MERGE (s:DemoSession {id: $session, run: $run}) "
    "CREATE (s)-[:HAS]->(:DemoMessage {run: $run, turn: $turn, content: $content})"
)


def settings(mode: str, run: str) -> MemorySettings:
    config = MemorySettings()
    config.memory.write_mode = mode  # type: ignore[assignment]
    config.streams.key_prefix = f"demo-{run}"
    return config


async def agent_turns(client: MemoryClient, run: str, session: str) -> list[float]:
    """One agent's turns; returns how long each write kept the agent waiting."""
    waits = []
    for turn in range(TURNS):
        started = time.perf_counter()
        await client.buffered.submit(
            WRITE,
            {"session": session, "run": run, "turn": turn, "content": f"message {turn}"},
            session_id=session,
        )
        waits.append(time.perf_counter() - started)
    return waits


async def run_mode(mode: str, run: str) -> tuple[list[float], float]:
    started = time.perf_counter()
    async with MemoryClient(settings(mode, run)) as client:
        sessions = [f"{mode}-{run}-{i}" for i in range(SESSIONS)]
        waits = await asyncio.gather(*(agent_turns(client, run, s) for s in sessions))
        await client.flush()
        assert not client.write_errors, client.write_errors
    return [w for per_agent in waits for w in per_agent], time.perf_counter() - started


async def count_messages(run: str) -> int:
    driver = MemorySettings().neo4j.driver()
    async with driver:
        records, _, _ = await driver.execute_query(
            "MATCH (:DemoSession {run: $run})-[:HAS]->(m:DemoMessage) RETURN count(m) AS c",
            run=run,
        )
    return int(records[0]["c"])


def start_drainer(run: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CYPHERSTREAM_KEY_PREFIX": f"demo-{run}"}
    return subprocess.Popen(
        [sys.executable, "-m", "drainer", "run", "--concurrency", "16"], env=env
    )


def main() -> None:
    state = services.up_and_export()
    run = uuid.uuid4().hex[:8]
    print(f"Redis {os.environ['REDIS_URL']}  Neo4j {os.environ['NEO4J_URI']}  run {run}")

    drainer = start_drainer(run)
    try:
        sync_waits, sync_total = asyncio.run(run_mode("sync", run))
        buffered_waits, buffered_total = asyncio.run(run_mode("buffered", run))
    finally:
        drainer.send_signal(signal.SIGTERM)
        drainer.wait(60)

    writes = SESSIONS * TURNS
    print()
    print(f"{'mode':<10}{'writes':>8}{'agent wait p50':>16}{'agent wait p99':>16}{'total':>10}")
    for mode, waits, total in (
        ("sync", sync_waits, sync_total),
        ("buffered", buffered_waits, buffered_total),
    ):
        p50 = statistics.median(waits) * 1000
        p99 = statistics.quantiles(waits, n=100)[98] * 1000
        print(f"{mode:<10}{writes:>8}{p50:>13.2f} ms{p99:>13.2f} ms{total:>8.2f} s")

    stored = asyncio.run(count_messages(run))
    print()
    print(f"Read back from Neo4j: {stored} messages (expected {2 * writes})")
    print(f"Look at them: MATCH (s:DemoSession {{run: '{run}'}})-[:HAS]->(m) RETURN s, m LIMIT 50")
    if not state.get("external"):
        print(
            "Local Redis and Neo4j keep running for the next demo; `make services-down` stops them."
        )
    if stored != 2 * writes:
        sys.exit(1)


if __name__ == "__main__":
    main()
