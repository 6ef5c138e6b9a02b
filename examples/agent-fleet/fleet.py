"""`make demo`: a fleet of agent processes recording their turns through two drainers.

Starts local Redis and Neo4j unless REDIS_URL and NEO4J_URI are set, creates the
schema of the typed records, starts `drainer run` processes and agent processes
(agent.py), shows their progress live, then compares what a turn cost the agent in
sync mode and in buffered mode, and checks every record in Neo4j.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "deploy" / "local"))

import services  # noqa: E402

from cypherstream import CypherstreamError, MemoryClient, MemorySettings  # noqa: E402
from cypherstream.drainer.backlog import snapshot  # noqa: E402
from cypherstream.shared.settings import StreamSettings  # noqa: E402

WRITES_PER_TURN = 4
MODES = ("sync", "buffered")
_APPLIED = re.compile(r"^cypherstream_writes_applied_total (\S+)$", re.M)
_TRANSACTIONS = re.compile(r"^cypherstream_transactions_total (\S+)$", re.M)


@dataclass
class Phase:
    """One mode's run of every agent: turns done, waits reported, time taken."""

    mode: str
    turns_done: int = 0
    waits: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0
    traced_turn: tuple[str, str] | None = None  # (session, trace id) of one turn


@dataclass
class Fleet:
    """What the demo started and what it heard back."""

    run: str
    args: argparse.Namespace
    metrics_ports: list[int] = field(default_factory=list)
    phases: dict[str, Phase] = field(default_factory=lambda: {m: Phase(m) for m in MODES})
    transactions: int = 0

    @property
    def prefix(self) -> str:
        return f"fleet-{self.run}"

    @property
    def turns(self) -> int:
        """Turns of one phase, across all agents."""
        return self.args.agents * self.args.sessions * self.args.turns

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "CYPHERSTREAM_KEY_PREFIX": self.prefix}


def _scrape(port: int, series: re.Pattern[str]) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as reply:
            found = series.search(reply.read().decode())
    except OSError:
        return 0
    return int(float(found.group(1))) if found else 0


async def drainer_total(fleet: Fleet, series: re.Pattern[str] = _APPLIED) -> int:
    """A counter summed over the drainers' /metrics (writes applied by default)."""
    counts = await asyncio.gather(
        *(asyncio.to_thread(_scrape, port, series) for port in fleet.metrics_ports)
    )
    return sum(counts)


async def run_agent(fleet: Fleet, phase: Phase, n: int) -> None:
    args = fleet.args
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(HERE / "agent.py"), "--name", f"{fleet.prefix}-a{n}",
        "--mode", phase.mode, "--sessions", str(args.sessions), "--turns", str(args.turns),
        "--think-ms", str(args.think_ms), env=fleet.env, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    async for raw in proc.stdout:
        kind, _, payload = raw.decode().strip().partition(" ")
        if kind == "progress":
            phase.turns_done += int(payload)
        elif kind == "result":
            result = json.loads(payload)
            phase.waits += result["waits"]
            phase.errors += result["errors"]
            if result.get("trace") and phase.traced_turn is None:
                phase.traced_turn = (result["session"], result["trace"])
    if await proc.wait() != 0:
        raise RuntimeError(f"agent {n} exited with {proc.returncode}; its error is above")


async def run_phases(fleet: Fleet, console: Console) -> None:
    """Every agent in sync mode, then in buffered mode, with a live view of the queue."""
    from redis import asyncio as aioredis

    redis = aioredis.from_url(os.environ["REDIS_URL"])
    keys = StreamSettings(key_prefix=fleet.prefix).keyspace()
    progress = Progress(
        TextColumn("{task.description:<18}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=console,
    )  # fmt: skip
    bars = {m: progress.add_task(f"turns ({m})", total=fleet.turns, start=False) for m in MODES}
    applied = progress.add_task("writes applied", total=fleet.turns * WRITES_PER_TURN)
    queue = Text()
    try:
        with Live(Group(progress, queue), console=console, refresh_per_second=8):
            for phase in fleet.phases.values():
                progress.start_task(bars[phase.mode])
                started = time.perf_counter()
                agents = asyncio.gather(
                    *(run_agent(fleet, phase, n) for n in range(fleet.args.agents))
                )
                try:
                    while not agents.done():
                        status = await snapshot(redis, keys, top=0)
                        progress.update(bars[phase.mode], completed=phase.turns_done)
                        progress.update(applied, completed=await drainer_total(fleet))
                        queue.plain = (
                            f"queue: {status.entries} writes waiting in "
                            f"{status.ready_sessions} sessions, {status.live_drainers} drainers"
                        )
                        await asyncio.wait([agents], timeout=0.25)
                    await agents  # raises what went wrong in an agent
                finally:
                    agents.cancel()
                phase.seconds = time.perf_counter() - started
                progress.update(bars[phase.mode], completed=phase.turns_done)
                progress.stop_task(bars[phase.mode])
            progress.update(applied, completed=await drainer_total(fleet))
            fleet.transactions = await drainer_total(fleet, _TRANSACTIONS)
    finally:
        await redis.aclose()


async def create_schema() -> None:
    async with MemoryClient(MemorySettings()) as client:
        await client.ensure_schema()


_COUNTS = """
MATCH (s:Session) WHERE s.id STARTS WITH $prefix
OPTIONAL MATCH (s)-[:HAS_MESSAGE]->(m:Message)
OPTIONAL MATCH (m)-[:CALLED]->(t:ToolCall)
OPTIONAL MATCH (m)-[x:MENTIONS]->(:Entity)
RETURN count(DISTINCT s) AS sessions, count(DISTINCT m) AS messages,
       count(DISTINCT t) AS tool_calls, count(DISTINCT x) AS mentions
"""

_LAG = """
MATCH (s:Session)-[:HAS_MESSAGE]->(m:Message)
WHERE s.id STARTS WITH $prefix AND s.id CONTAINS '-buffered-'
WITH duration.inSeconds(m.created_at, m.stored_at) AS lag
WITH lag.seconds + lag.nanosecondsOfSecond / 1e9 AS lag
RETURN percentileCont(lag, 0.5) AS p50, percentileCont(lag, 0.99) AS p99
"""


async def verify(fleet: Fleet) -> tuple[dict[str, Any], dict[str, Any]]:
    """Counts for the whole run and lag of the buffered writes, read back from Neo4j."""
    driver = MemorySettings().neo4j.driver()
    async with driver:
        counts, _, _ = await driver.execute_query(_COUNTS, prefix=f"{fleet.prefix}-")
        lag, _, _ = await driver.execute_query(_LAG, prefix=f"{fleet.prefix}-")
    return dict(counts[0]), dict(lag[0])


def _ms(values: list[float], q: int) -> str:
    if len(values) < 2:
        return "-"
    return f"{statistics.quantiles(values, n=100)[q - 1] * 1000:.2f} ms"


def report(fleet: Fleet, found: dict[str, Any], lag: dict[str, Any], console: Console) -> bool:
    args = fleet.args
    table = Table(title=f"What recording a turn ({WRITES_PER_TURN} writes) cost the agent")
    for column in ("mode", "turns", "p50", "p99", "mean", "phase took", "errors"):
        table.add_column(column, justify="left" if column == "mode" else "right")
    for phase in fleet.phases.values():
        mean = f"{statistics.fmean(phase.waits) * 1000:.2f} ms" if phase.waits else "-"
        table.add_row(
            phase.mode, str(len(phase.waits)), _ms(phase.waits, 50), _ms(phase.waits, 99),
            mean, f"{phase.seconds:.1f} s", str(phase.errors),
        )  # fmt: skip
    console.print(table)

    sync, buffered = fleet.phases["sync"], fleet.phases["buffered"]
    if sync.waits and buffered.waits:
        speedup = statistics.median(sync.waits) / statistics.median(buffered.waits)
        console.print(f"buffered: the agent waited {speedup:.0f}x less per turn (p50)")
    if lag.get("p50") is not None:
        console.print(
            f"buffered writes, submit to commit: lag p50 {lag['p50'] * 1000:.0f} ms, "
            f"p99 {lag['p99'] * 1000:.0f} ms, through {args.drainers} drainers in "
            f"{fleet.transactions} transactions"
        )
    turns = fleet.turns * len(MODES)
    expected = {
        "sessions": args.agents * args.sessions * len(MODES),
        "messages": 2 * turns,
        "tool_calls": turns,
        "mentions": turns,
    }
    for name, count in expected.items():
        console.print(f"  {name:<11} in Neo4j: {found.get(name)} (expected {count})")
    errors = sum(phase.errors for phase in fleet.phases.values())
    ok = errors == 0 and all(found.get(name) == count for name, count in expected.items())
    console.print("verified: all records are in Neo4j" if ok else "verification FAILED")
    traced = fleet.phases["buffered"].traced_turn
    if traced is not None:
        console.print(
            f"trace of the first turn of {traced[0]}: {traced[1]} (search your tracing "
            "backend for it: the drainer's transaction span links to the turn)"
        )
    return ok


def pointers(fleet: Fleet, console: Console) -> None:
    console.print()
    console.print(
        f"The queue:  CYPHERSTREAM_KEY_PREFIX={fleet.prefix} .venv/bin/drainer status",
        soft_wrap=True,
    )
    console.print(
        "The graph:  MATCH p = (s:Session)-[:HAS_MESSAGE]->(:Message)-[:MENTIONS]->() "
        f"WHERE s.id STARTS WITH '{fleet.prefix}-a0-buffered-' RETURN p LIMIT 50",
        soft_wrap=True,
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=4, help="agent processes")
    parser.add_argument("--sessions", type=int, default=25, help="sessions per agent")
    parser.add_argument("--turns", type=int, default=20, help="turns per session")
    parser.add_argument("--drainers", type=int, default=2, help="drainer processes")
    parser.add_argument(
        "--think-ms", type=float, default=500, help="simulated model time between turns"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console()
    state = services.up_and_export()
    fleet = Fleet(run=uuid.uuid4().hex[:8], args=args)
    console.print(
        f"Redis {os.environ['REDIS_URL']}  Neo4j {os.environ['NEO4J_URI']}  run {fleet.run}: "
        f"{args.agents} agents x {args.sessions} sessions x {args.turns} turns, "
        f"{args.drainers} drainers",
        soft_wrap=True,
    )
    try:
        asyncio.run(create_schema())
    except CypherstreamError as exc:
        console.print(f"the fleet cannot start: {exc}")
        return 2
    try:
        with services.Drainers(args.drainers, fleet.env, name=fleet.prefix) as drainers:
            fleet.metrics_ports = drainers.ports
            asyncio.run(run_phases(fleet, console))
        console.print()
    except RuntimeError as exc:
        console.print(f"the fleet failed: {exc}")
        return 1
    found, lag = asyncio.run(verify(fleet))
    ok = report(fleet, found, lag, console)
    pointers(fleet, console)
    if not state.get("external"):
        console.print("Redis and Neo4j keep running; `make services-down` stops them.")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
