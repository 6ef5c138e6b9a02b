"""`make bench-scale`: many sessions with a few writes each, on a single Redis and on a
3-master Redis Cluster, drained by 1, 2 and 4 drainers.

For each Redis and drainer count: one client submits SESSIONS x WRITES (a coroutine per
batch of sessions, auto-batched), then the drainers empty the backlog (timed from the
first drainer up). Also measured: Redis memory per queued write, per drained-but-idle
session and per ended session; and the cost of a drainer's discovery poll (the call the
scheduler makes to find ready sessions) with no session and with all of them idle.

Writes JSON to examples/benchmark/results/scale-<time>.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from rich.progress import Progress

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "deploy" / "local"))
sys.path.insert(0, str(HERE))

import services  # noqa: E402
from bench import RESULTS, settings_for, start_drainers  # noqa: E402

from cypherstream import MemoryClient, MemorySettings  # noqa: E402
from cypherstream.drainer.backlog import ready_sessions  # noqa: E402

WRITE = "MERGE (s:BenchSession {run: $run, session: $session}) SET s.writes = $i"
SCHEMA = "CREATE INDEX bench_session IF NOT EXISTS FOR (s:BenchSession) ON (s.run, s.session)"
_WORKERS = 256  # coroutines submitting at once on the one client


async def used_memory(redis: Any) -> int:
    """Bytes Redis uses, summed over the primaries of a cluster."""
    if hasattr(redis, "get_primaries"):
        nodes = redis.get_primaries()
        infos = await redis.info("memory", target_nodes=nodes)
        if len(nodes) == 1:
            infos = {nodes[0].name: infos}
        return sum(int(info["used_memory"]) for info in infos.values())
    return int((await redis.info("memory"))["used_memory"])


async def count_keys(redis: Any, pattern: str) -> int:
    """Keys matching `pattern` (on every primary of a cluster)."""
    return sum([1 async for _ in redis.scan_iter(match=pattern, count=1000)])


async def discovery_ms(redis: Any, settings: MemorySettings, samples: int = 200) -> float:
    """Median time of one discovery poll, as the drainer's scheduler makes it."""
    keys = settings.streams.keyspace()
    times = []
    for _ in range(samples):
        t0 = time.perf_counter()
        await ready_sessions(redis, keys, per_partition=64)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2] * 1000


async def submit_all(client: MemoryClient, run: str, sessions: int, writes: int) -> float:
    """Submit every write; returns submits per second."""
    names = [f"s{n}" for n in range(sessions)]

    async def worker(first: int) -> None:
        for name in names[first::_WORKERS]:
            for i in range(writes):
                params = {"run": run, "session": name, "i": i}
                await client.buffered.submit(WRITE, params, session_id=name)

    started = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(min(_WORKERS, sessions))))
    return sessions * writes / (time.perf_counter() - started)


async def one_run(backend: str, drainers: int, sessions: int, writes: int) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    prefix = f"scale-{run}"
    settings = settings_for("redis", prefix)
    settings.memory.max_pending = 1000
    redis = settings.redis.client()
    if hasattr(redis, "initialize"):
        await redis.initialize()
    row: dict[str, Any] = {"redis": backend, "drainers": drainers, "sessions": sessions,
                           "writes": sessions * writes}  # fmt: skip
    row["discovery_ms_no_sessions"] = await discovery_ms(redis, settings)
    before = await used_memory(redis)
    async with MemoryClient(settings) as client:
        row["submits_per_s"] = await submit_all(client, run, sessions, writes)
        queued = await used_memory(redis)
        row["redis_bytes_per_queued_write"] = (queued - before) / (sessions * writes)
        pool = await start_drainers(drainers, prefix, ready=1)
        started = time.perf_counter()
        await client.flush()
        elapsed = time.perf_counter() - started
        row["drain_writes_per_s"] = sessions * writes / elapsed
        row["drain_sessions_per_s"] = sessions / elapsed
        row["redis_bytes_per_idle_session"] = (await used_memory(redis) - before) / sessions
        row["discovery_ms_all_sessions_idle"] = await discovery_ms(redis, settings)
        names = [f"s{n}" for n in range(sessions)]
        started = time.perf_counter()
        await client.end_session(*names)
        row["end_sessions_per_s"] = sessions / (time.perf_counter() - started)
    row["redis_bytes_per_ended_session"] = (await used_memory(redis) - before) / sessions
    row["keys_left_after_end"] = await count_keys(redis, f"*{prefix}*")
    row["drainer_cpu_s"], row["drainer_peak_rss_mb"] = pool.stop()
    await redis.aclose()
    await cleanup(run)
    return row


async def cleanup(run: str) -> None:
    driver = MemorySettings().neo4j.driver()
    async with driver, driver.session() as session:
        result = await session.run(
            "MATCH (s:BenchSession {run: $run}) "
            "CALL (s) { DELETE s } IN TRANSACTIONS OF 10000 ROWS",
            run=run,
        )
        await result.consume()
        # No drainer of this run's key prefix runs again to forget its progress records.
        result = await session.run(
            "MATCH (p:CypherstreamProgress) WHERE p.stream STARTS WITH $prefix "
            "CALL (p) { DELETE p } IN TRANSACTIONS OF 10000 ROWS",
            prefix=f"scale-{run}:",
        )
        await result.consume()


def use_redis(url: str, cluster: bool) -> None:
    """Point this process and the drainers it starts at one Redis (settings read the env)."""
    os.environ["REDIS_URL"] = url
    os.environ["REDIS_CLUSTER"] = "true" if cluster else "false"


async def run_all(
    args: argparse.Namespace, cluster_url: str | None, path: Path
) -> list[dict[str, Any]]:
    driver = MemorySettings().neo4j.driver()
    async with driver:
        await driver.execute_query(SCHEMA)
        await driver.execute_query("CALL db.awaitIndexes(60)")
    single_url = os.environ["REDIS_URL"]
    backends = [("single Redis", single_url, False)] if "single" in args.redis else []
    if cluster_url:
        backends.append(("3-master cluster", cluster_url, True))
    rows = []
    with Progress() as progress:
        task = progress.add_task("scale", total=len(backends) * len(args.drainers))
        for name, url, cluster in backends:
            use_redis(url, cluster)
            for count in args.drainers:
                progress.update(task, description=f"{name}, {count} drainer(s)")
                rows.append(await one_run(name, count, args.sessions, args.writes))
                save(path, rows)  # row by row: a long run stopped early keeps what it measured
                progress.advance(task)
    use_redis(single_url, False)
    return rows


def save(path: Path, rows: list[dict[str, Any]]) -> None:
    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "rows": rows,
    }  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    path.write_text(json.dumps(result, indent=2))


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| Redis | drainers | sessions | writes | submits/s | drain writes/s | drain sessions/s "
        "| end_session sessions/s | bytes/queued write | bytes/idle session "
        "| bytes/ended session | keys left | discovery ms (0 / all idle) | drainer CPU s "
        "| peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['redis']} | {r['drainers']} | {r['sessions']} | {r['writes']} "
            f"| {r['submits_per_s']:.0f} | {r['drain_writes_per_s']:.0f} "
            f"| {r['drain_sessions_per_s']:.0f} | {r['end_sessions_per_s']:.0f} "
            f"| {r['redis_bytes_per_queued_write']:.0f} | {r['redis_bytes_per_idle_session']:.0f} "
            f"| {r['redis_bytes_per_ended_session']:.1f} | {r['keys_left_after_end']} "
            f"| {r['discovery_ms_no_sessions']:.2f} / {r['discovery_ms_all_sessions_idle']:.2f} "
            f"| {r['drainer_cpu_s']:.0f} | {r['drainer_peak_rss_mb']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--writes", type=int, default=3, help="writes per session")
    parser.add_argument(
        "--drainers", type=lambda s: [int(n) for n in s.split(",")], default=[1, 2, 4]
    )
    parser.add_argument(
        "--redis", type=lambda s: s.split(","), default=["single", "cluster"],
        help="which Redis to measure: single, cluster, or both (the default)",
    )  # fmt: skip
    args = parser.parse_args()
    services.up_and_export()
    cluster = None
    if "cluster" in args.redis:
        folder = Path(tempfile.mkdtemp(prefix="cypherstream-bench-cluster-"))
        cluster = services.RedisClusterServers(folder, masters=3).start()
    path = RESULTS / f"scale-{time.strftime('%Y-%m-%dT%H%M%SZ', time.gmtime())}.json"
    try:
        rows = asyncio.run(run_all(args, cluster.url if cluster else None, path))
    finally:
        if cluster:
            cluster.stop()
    print(markdown(rows))
    print(f"\nJSON: {path}")


if __name__ == "__main__":
    main()
