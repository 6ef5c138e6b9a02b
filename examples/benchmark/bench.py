"""`make bench`: one workload through every way of writing, on the same servers, in one run.

Modes: sync (each write awaited), embedded (in-process queue), Redis with 1, 2 and 4
drainer processes, and Redis with a drainer committing one write per transaction.
References measured in the same run: the Redis PING round trip from Python (the
floor for a durable hand-off) and the same rows written by one UNWIND in a single
transaction (the floor for Neo4j's cost per write).

Prints a markdown table, writes JSON to examples/benchmark/results/ and a PNG chart.
Uses REDIS_URL / NEO4J_URI when set, else starts the local services.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from rich.progress import Progress

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy" / "local"))

import services  # noqa: E402

from cypherstream import MemoryClient, MemorySettings  # noqa: E402
from cypherstream.drainer.unwind import ROW, Rewrite, rewrite  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Workload:
    name: str
    sessions: int
    writes: int  # in all
    query: str
    embedding: bool = False
    chained: bool = False
    message: bool = False  # neo4j-agent-memory's message parameters
    keyed: bool = False  # an `id` unique to the run (a MERGE key)

    def params(self, run: str, i: int) -> dict[str, Any]:
        session = i % self.sessions
        params: dict[str, Any] = {"run": run, "session": session, "i": i}
        if self.keyed:
            params["id"] = f"{run}:{i}"
        if self.embedding:
            params["vector"] = [((i * 31 + k) % 1000) / 1000.0 for k in range(384)]
        if self.message:
            # Every mode of a run writes its own messages (message ids are unique).
            params |= {"conversation_id": f"{run}-c{session}", "id": uuid.uuid4().hex,
                       "role": "user", "content": f"turn {i}", "embedding": None,
                       "metadata": None}  # fmt: skip
        return params


def agent_memory_message() -> str | None:
    """neo4j-agent-memory's CREATE_MESSAGE (its most frequent write), its conversation
    merged first so a run needs no setup; None without the package (Python < 3.11)."""
    try:
        from neo4j_agent_memory.graph.queries import CREATE_MESSAGE
    except ImportError:
        return None
    return "MERGE (:Conversation {id: $conversation_id}) WITH count(*) AS merged\n" + CREATE_MESSAGE


def workloads(scale: int) -> list[Workload]:
    message = agent_memory_message()
    hot_path = [] if message is None else [
        Workload("neo4j-agent-memory CREATE_MESSAGE, 20 sessions", 20, 500 * scale, message,
                 message=True),
    ]  # fmt: skip
    return [
        Workload(
            "small writes, 100 sessions", 100, 2000 * scale,
            "MERGE (n:BenchItem {run: $run, session: $session, i: $i}) SET n.at = timestamp()",
        ),
        Workload(
            "dependent chain, 1 session", 1, 500 * scale,
            "MERGE (c:BenchChain {run: $run}) SET c.last = $i, c.count = coalesce(c.count, 0) + 1",
            chained=True,
        ),
        Workload(
            "384-float embeddings, 20 sessions", 20, 500 * scale,
            "CREATE (:BenchVector {run: $run, session: $session, i: $i, v: $vector})",
            embedding=True,
        ),
        *hot_path,
    ]  # fmt: skip


@dataclass
class Row:
    workload: str
    mode: str
    writes: int
    submit_p50_ms: float
    submit_p99_ms: float
    throughput_wps: float
    drainer_cpu_s: float | None = None
    drainer_peak_rss_mb: float | None = None
    drain_wps: float | None = None  # a queued backlog, drained: the drainers alone


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def settings_for(mode: str, prefix: str) -> MemorySettings:
    settings = MemorySettings()
    settings.memory.write_mode = "sync" if mode == "sync" else "buffered"
    settings.memory.max_pending = 100_000
    settings.memory.flush_timeout = 600
    settings.streams.key_prefix = prefix
    if mode == "embedded":
        settings.redis.url = None
    return settings


class Drainers:
    """`drainer run` processes for one measurement, with their CPU and peak memory."""

    def __init__(self, count: int, prefix: str, *args: str) -> None:
        env = {**os.environ, "CYPHERSTREAM_KEY_PREFIX": prefix, "DRAINER_LOG_LEVEL": "WARNING"}
        command = [
            sys.executable,
            "-m",
            "cypherstream.drainer",
            "run",
            *args,
        ]
        self.procs = [subprocess.Popen(command, env=env) for _ in range(count)]

    def cpu_seconds(self) -> float:
        """CPU seconds the drainers have used so far, to the nanosecond (the scheduler's
        own count: `cpu_times()` counts in 10 ms ticks, 5 us a write over 2,000)."""
        return sum(process_cpu_seconds(proc.pid) for proc in self.procs)

    def pause(self) -> None:
        """Stop them where they are (SIGSTOP), holding their connections."""
        for proc in self.procs:
            proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGCONT)

    def stop(self) -> tuple[float, float]:
        """Stop them; return total CPU seconds and the largest peak RSS (MB)."""
        cpu, peak = self.cpu_seconds(), 0.0
        for proc in self.procs:
            peak = max(peak, _peak_rss_mb(proc.pid))
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            proc.wait(60)
        return cpu, peak


def process_cpu_seconds(pid: int) -> float:
    """CPU seconds process `pid` has used so far: its threads' time on a CPU as the
    scheduler counts it (`/proc/<pid>/task/*/schedstat`)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):  # a thread that just ended
            continue
    return total / 1e9


async def redis_cpu_seconds(redis: Any) -> float:
    """CPU seconds the Redis server has used so far (`INFO cpu`, user + system): what
    every producer and drainer of a fleet share."""
    cpu = await redis.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def start_drainers(count: int, prefix: str, *args: str, ready: int = 0) -> Drainers:
    """Start `count` drainers; return once `ready` of them (default: all) are alive."""
    pool = Drainers(count, prefix, *args)
    settings = settings_for("redis", prefix)
    redis = settings.redis.client()
    deadline = time.monotonic() + 60
    while await redis.zcard(settings.streams.keyspace().drainers) < (ready or count):
        if time.monotonic() > deadline:
            raise TimeoutError("drainers did not start")
        await asyncio.sleep(0.005)
    await redis.aclose()
    return pool


async def timed_submits(
    client: MemoryClient, workload: Workload, tag: str, count: int
) -> list[float]:
    """Submit `count` writes of `workload` one after the other; each call's seconds."""
    latencies = []
    for i in range(count):
        params = workload.params(tag, i)
        t0 = time.perf_counter()
        await client.buffered.submit(workload.query, params, session_id=f"s{params['session']}")
        latencies.append(time.perf_counter() - t0)
    return latencies


async def measure(workload: Workload, mode: str, run: str, drainers: int = 0, *args: str) -> Row:
    """Submit every write in order (the latency an agent sees), then flush (throughput)."""
    prefix = f"bench-{run}-{uuid.uuid4().hex[:6]}"
    pool = None
    if drainers:
        pool = await start_drainers(drainers, prefix, *args)
    async with MemoryClient(settings_for(mode, prefix)) as client:
        started = time.perf_counter()
        latencies = await timed_submits(client, workload, run, workload.writes)
        await client.flush()
        elapsed = time.perf_counter() - started
        assert not client.write_errors, client.write_errors[:3]
    cpu, peak = pool.stop() if pool else (None, None)
    drain = (await drain_only(workload, run, drainers, *args)).writes_per_s if drainers else None
    return Row(
        workload.name,
        mode
        if not drainers
        else f"{mode}, {drainers} drainer(s){' ' + ' '.join(args) if args else ''}",
        workload.writes,
        _quantile(latencies, 0.5) * 1000,
        _quantile(latencies, 0.99) * 1000,
        workload.writes / elapsed,
        cpu,
        peak,
        drain,
    )


@dataclass(frozen=True)
class Drained:
    """A timed drain, and the CPU each part used for it, per write: the drainers, Redis,
    Neo4j (None where it does not say) and this process (the flush's sentinels and its
    waiting)."""

    writes_per_s: float
    drainer_cpu_us_per_write: float
    redis_cpu_us_per_write: float
    neo4j_cpu_us_per_write: float | None = None
    client_cpu_us_per_write: float = 0.0

    @property
    def cpu_us_per_write(self) -> float | None:
        """All parts' CPU per write; None without Neo4j's."""
        if self.neo4j_cpu_us_per_write is None:
            return None
        return (self.drainer_cpu_us_per_write + self.redis_cpu_us_per_write
                + self.neo4j_cpu_us_per_write + self.client_cpu_us_per_write)  # fmt: skip


@dataclass(frozen=True)
class Floor:
    """The single-UNWIND floor's best attempt, and the CPU it took per write: Neo4j's
    (None where it does not say) and this process's (building the rows, the driver)."""

    writes_per_s: float
    neo4j_cpu_us_per_write: float | None = None
    client_cpu_us_per_write: float = 0.0


async def queue_backlog(client: MemoryClient, workload: Workload, tag: str) -> None:
    """Submit the whole workload (with no drainer running: a backlog)."""
    for i in range(workload.writes):
        params = workload.params(tag, i)
        await client.buffered.submit(workload.query, params, session_id=f"s{params['session']}")


#: Writes each drainer of a drain-only run applies before it is paused: its code paths
#: run once, and its reads learn the size of the workload's entries.
WARM_WRITES = 100


async def drain_only(workload: Workload, run: str, drainers: int, *args: str) -> Drained:
    """Issue 19's drain only: queue the whole workload while the drainers, started and
    warm, are paused (SIGSTOP), then time them from their resume to `flush()`."""
    prefix = f"bench-{run}-{uuid.uuid4().hex[:6]}"
    settings = settings_for("redis", prefix)
    redis = settings.redis.client()
    tag = f"{run}-drain-{prefix}"  # rows of their own, so keyed MERGEs create
    driver = settings.neo4j.driver()
    neo4j_seconds = await neo4j_cpu_reader(driver)
    async with MemoryClient(settings) as client:
        pool = await start_drainers(drainers, prefix, *args)
        warm = replace(workload, name="warm", sessions=drainers, writes=WARM_WRITES * drainers)
        await queue_backlog(client, warm, f"{tag}-warm")
        await client.flush()
        pool.pause()
        await queue_backlog(client, workload, tag)
        neo4j_cpu, redis_cpu = await neo4j_seconds(), await redis_cpu_seconds(redis)
        pool.resume()
        cpu, client_cpu = pool.cpu_seconds(), process_cpu_seconds(os.getpid())
        started = time.perf_counter()
        await client.flush()
        elapsed = time.perf_counter() - started
        cpu, client_cpu = pool.cpu_seconds() - cpu, process_cpu_seconds(os.getpid()) - client_cpu
        redis_cpu = await redis_cpu_seconds(redis) - redis_cpu
        neo4j_after = await neo4j_seconds()
    pool.stop()
    await redis.aclose()
    await driver.close()
    per_write = 1e6 / workload.writes
    return Drained(
        workload.writes / elapsed, cpu * per_write, redis_cpu * per_write,
        _used(neo4j_cpu, neo4j_after, per_write), client_cpu * per_write,
    )  # fmt: skip


def _used(before: float | None, after: float | None, per_write: float) -> float | None:
    """CPU microseconds per write between two readings; None if either is missing."""
    return None if before is None or after is None else (after - before) * per_write


CpuReader = Callable[[], Awaitable[float | None]]


async def neo4j_cpu_reader(driver: Any) -> CpuReader:
    """A reader of the CPU seconds the Neo4j server has used so far: its process's own
    count where it runs on this machine (`process_cpu_seconds`, to the nanosecond), else
    its JVM's `ProcessCpuTime` (10 ms ticks: 5 us a write over 2,000), both through
    `dbms.queryJmx`; the reader answers None where the server says neither."""
    pid = _local_pid(await _jmx(driver, "java.lang:type=Runtime", "Name"))
    if pid is not None:
        local: int = pid

        async def scheduled() -> float | None:
            return process_cpu_seconds(local)

        return scheduled

    async def jvm() -> float | None:
        ns = await _jmx(driver, "java.lang:type=OperatingSystem", "ProcessCpuTime")
        return ns / 1e9 if isinstance(ns, int) else None

    return jvm


def _local_pid(runtime: object) -> int | None:
    """The process id in a JVM's runtime name ("pid@host") if it runs on this machine."""
    pid, _, host = str(runtime).partition("@")
    if host == socket.gethostname() and pid.isdigit() and Path(f"/proc/{pid}").exists():
        return int(pid)
    return None


async def _jmx(driver: Any, bean: str, attribute: str) -> object:
    """One attribute of one of the server's JMX beans; None where it refuses."""
    from neo4j.exceptions import Neo4jError

    try:
        records, _, _ = await driver.execute_query(
            "CALL dbms.queryJmx($bean) YIELD attributes RETURN attributes[$name].value AS v",
            bean=bean, name=attribute,
        )  # fmt: skip
    except Neo4jError:
        return None
    return records[0]["v"] if records else None


async def ping_floor(samples: int = 2000) -> tuple[float, float]:
    redis = MemorySettings().redis.client()
    times = []
    for _ in range(samples):
        t0 = time.perf_counter()
        await redis.ping()
        times.append(time.perf_counter() - t0)
    await redis.aclose()
    return _quantile(times, 0.5) * 1000, _quantile(times, 0.99) * 1000


async def concurrent_submits(workload: Workload, run: str) -> dict[str, float]:
    """One coroutine per session submitting at once on one client (auto-batched).

    Returns submits/s and per-call p50/p99, and the round trips the client made.
    """
    prefix = f"bench-conc-{run}"
    latencies: list[float] = []
    async with MemoryClient(settings_for("redis", prefix)) as client:

        async def agent(session: int) -> None:
            for i in range(session, workload.writes, workload.sessions):
                params = workload.params(run + "-conc", i)
                t0 = time.perf_counter()
                await client.buffered.submit(workload.query, params, session_id=f"s{session}")
                latencies.append(time.perf_counter() - t0)

        started = time.perf_counter()
        await asyncio.gather(*(agent(s) for s in range(workload.sessions)))
        elapsed = time.perf_counter() - started
        round_trips = client._backend._submit.round_trips  # type: ignore[union-attr]
        # Drain what was queued, so the client's flush returns.
        drainer = await start_drainers(1, prefix)
    drainer.stop()
    return {
        "submits_per_s": workload.writes / elapsed,
        "p50_ms": _quantile(latencies, 0.5) * 1000,
        "p99_ms": _quantile(latencies, 0.99) * 1000,
        "writes_per_round_trip": workload.writes / round_trips,
    }


async def memory_vs_backlog(workload: Workload, run: str) -> dict[str, float]:
    """Drainer peak RSS draining a backlog of N and of 10 N writes; producer heap growth.

    Bounded memory means the 10 N figures match the N ones: a drainer holds one batch
    per session it drains, a producer nothing per write submitted.
    """
    import tracemalloc

    figures: dict[str, float] = {}
    for factor in (1, 10):
        prefix = f"bench-mem-{run}-{factor}"
        writes = workload.writes * factor
        tracemalloc.start()
        async with MemoryClient(settings_for("redis", prefix)) as client:
            baseline = tracemalloc.get_traced_memory()[0]
            for i in range(writes):
                params = workload.params(run + "-mem", i)
                await client.buffered.submit(
                    workload.query, params, session_id=f"s{params['session']}"
                )
            figures[f"producer_heap_growth_kb_{factor}x"] = (
                tracemalloc.get_traced_memory()[0] - baseline
            ) / 1024
            tracemalloc.stop()
            pool = await start_drainers(1, prefix)
            await client.flush()
        _, peak = pool.stop()
        figures[f"drainer_peak_rss_mb_{factor}x"] = peak
    figures["writes_1x"] = workload.writes
    return figures


async def wait_cost(workload: Workload, run: str, samples: int = 2000) -> dict[str, float]:
    """Submit latency on a Redis with one replica, without and with WAIT for it
    (CYPHERSTREAM_WAIT_REPLICAS=1): what confirmed replication costs an agent."""
    import tempfile

    from redis import asyncio as aioredis

    folder = Path(tempfile.mkdtemp(prefix="cypherstream-bench-replica-"))
    primary = services.RedisServer(folder / "primary").start()
    replica = services.RedisServer(
        folder / "replica", extra_args=["--replicaof", "127.0.0.1", str(primary.port)]
    ).start()
    shared_url, os.environ["REDIS_URL"] = os.environ["REDIS_URL"], primary.url
    figures: dict[str, float] = {}
    try:
        watcher = aioredis.from_url(replica.url)
        for _ in range(600):  # up to 30 s
            if (await watcher.info("replication")).get("master_link_status") == "up":
                break
            await asyncio.sleep(0.05)
        else:
            raise TimeoutError("the benchmark's replica did not sync with its primary")
        await watcher.aclose()
        for replicas in (0, 1):
            prefix = f"bench-wait-{run}-{replicas}"
            settings = settings_for("redis", prefix)
            settings.memory.wait_replicas = replicas
            pool = await start_drainers(1, prefix)
            async with MemoryClient(settings) as client:
                latencies = await timed_submits(client, workload, run + "-wait", samples)
            pool.stop()
            figures[f"p50_ms_wait_{replicas}"] = _quantile(latencies, 0.5) * 1000
            figures[f"p99_ms_wait_{replicas}"] = _quantile(latencies, 0.99) * 1000
    finally:
        os.environ["REDIS_URL"] = shared_url
        replica.stop()
        primary.stop()
    return figures


async def handoff_cost(workload: Workload, run: str, samples: int = 2000) -> dict[str, float]:
    """Submit latency with the local hand-off (CYPHERSTREAM_HANDOFF=local), beside the
    seed's hand-off: an `asyncio.Queue.put` of the same write."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    puts = []
    for i in range(samples):
        params = workload.params(run + "-queue", i)
        t0 = time.perf_counter()
        await queue.put((workload.query, params))
        puts.append(time.perf_counter() - t0)
    prefix = f"bench-handoff-{run}"
    settings = settings_for("redis", prefix)
    settings.memory.handoff = "local"
    pool = await start_drainers(1, prefix)
    async with MemoryClient(settings) as client:
        latencies = await timed_submits(client, workload, run + "-handoff", samples)
    pool.stop()
    return {
        "queue_put_p50_ms": _quantile(puts, 0.5) * 1000,
        "queue_put_p99_ms": _quantile(puts, 0.99) * 1000,
        "p50_ms": _quantile(latencies, 0.5) * 1000,
        "p99_ms": _quantile(latencies, 0.99) * 1000,
    }


async def tracing_cost(workload: Workload, run: str, samples: int = 2000) -> dict[str, float]:
    """Submit latency with OpenTelemetry installed but no span active (nothing carried),
    and inside an active span of the SDK (its trace context carried and signed)."""
    try:
        from opentelemetry.sdk.trace import TracerProvider
    except ImportError:
        return {}
    prefix = f"bench-otel-{run}"
    pool = await start_drainers(1, prefix)
    async with MemoryClient(settings_for("redis", prefix)) as client:
        plain = await timed_submits(client, workload, run + "-plain", samples)
        with TracerProvider().get_tracer("bench").start_as_current_span("turn"):
            traced = await timed_submits(client, workload, run + "-traced", samples)
    pool.stop()
    return {
        "p50_ms_no_span": _quantile(plain, 0.5) * 1000,
        "p50_ms_in_span": _quantile(traced, 0.5) * 1000,
    }


async def unwind_floor(workload: Workload, run: str, repeats: int = 1) -> Floor:
    """Writes per second when all rows go in one UNWIND, one transaction (the best of
    `repeats`, each with rows of its own): the usual idiom, a list of row maps,
    `UNWIND $rows AS row CALL { WITH row <the query reading row.p> }`; with the CPU
    Neo4j and the driver used for it."""
    form = rewrite(workload.query)
    assert isinstance(form, Rewrite), form
    text = f"UNWIND $rows AS {ROW} CALL {{ WITH {ROW} {form.inner}\n}}"
    warm = [workload.params(run + "-warm", i) for i in range(min(20, workload.writes))]
    best = Floor(0.0)
    per_write = 1e6 / workload.writes
    driver = MemorySettings().neo4j.driver()
    async with driver:
        # Planned once first, as the drainers' statements are by the time they are timed.
        await driver.execute_query(text, parameters_={"rows": warm})
        neo4j_seconds = await neo4j_cpu_reader(driver)
        for attempt in range(repeats):
            rows = [workload.params(f"{run}-unwind{attempt}", i) for i in range(workload.writes)]
            neo4j_cpu = await neo4j_seconds()
            client_cpu = process_cpu_seconds(os.getpid())
            t0 = time.perf_counter()
            await driver.execute_query(text, parameters_={"rows": rows})
            elapsed = time.perf_counter() - t0
            client_cpu = process_cpu_seconds(os.getpid()) - client_cpu
            neo4j_after = await neo4j_seconds()
            if workload.writes / elapsed > best.writes_per_s:
                best = Floor(
                    workload.writes / elapsed,
                    _used(neo4j_cpu, neo4j_after, per_write),
                    client_cpu * per_write,
                )
    return best


async def redis_bytes_per_write(workload: Workload, run: str, count: int = 1000) -> float:
    """Redis memory grown per queued (not yet drained) write."""
    prefix = f"bench-mem-{run}"
    settings = settings_for("redis", prefix)
    redis = settings.redis.client()
    before = (await redis.info("memory"))["used_memory"]
    async with MemoryClient(settings) as client:
        for i in range(count):
            params = workload.params(run, i)
            await client.buffered.submit(workload.query, params, session_id=f"s{params['session']}")
        after = (await redis.info("memory"))["used_memory"]
        # Drain what was queued, so the client's flush returns.
        drainer = await start_drainers(1, prefix)
    drainer.stop()
    await redis.aclose()
    return (after - before) / count


async def cleanup(run: str) -> None:
    """Delete this run's nodes, in batches (CALL IN TRANSACTIONS needs an auto-commit run),
    and its sessions' progress records: no drainer of its key prefixes runs again to
    forget them, and 128,000 of them had piled up in a local store over many runs.
    Then its Redis keys (drained streams, idempotency marks, bookmarks), which would
    otherwise expire together a day later: 484,845 of them (190 MB) were waiting in the
    local Redis, whose expiry work would land in some later run's measurements."""
    await _delete_redis_keys(f"{{bench-*{run}*")  # every key prefix is `bench-...{run}...`
    driver = MemorySettings().neo4j.driver()
    async with driver, driver.session() as session:
        matches = [f"MATCH (n:{label}) WHERE n.run STARTS WITH $run"
                   for label in ("BenchItem", "BenchChain", "BenchVector", "BenchMsg")]  # fmt: skip
        matches += [  # the messages of this run's conversations, then the conversations
            "MATCH (c:Conversation)-[:HAS_MESSAGE]->(n) WHERE c.id STARTS WITH $run",
            "MATCH (n:Conversation) WHERE n.id STARTS WITH $run",
            # every key prefix of a run is `bench-...{run}...`
            "MATCH (n:CypherstreamProgress) WHERE n.stream STARTS WITH 'bench-' "
            "AND n.stream CONTAINS $run",
        ]
        for match in matches:
            result = await session.run(
                f"{match} CALL (n) {{ DETACH DELETE n }} IN TRANSACTIONS OF 5000 ROWS", run=run
            )
            await result.consume()


async def _delete_redis_keys(pattern: str) -> None:
    redis = MemorySettings().redis.client()
    try:
        batch: list[bytes] = []
        async for key in redis.scan_iter(match=pattern, count=10_000):
            batch.append(key)
            if len(batch) == 1000:
                await redis.unlink(*batch)
                batch.clear()
        if batch:
            await redis.unlink(*batch)
    finally:
        await redis.aclose()


SCHEMA = (
    "CREATE INDEX bench_item IF NOT EXISTS FOR (n:BenchItem) ON (n.run, n.session, n.i)",
    "CREATE INDEX bench_chain IF NOT EXISTS FOR (n:BenchChain) ON (n.run)",
    "CREATE INDEX bench_msg IF NOT EXISTS FOR (m:BenchMsg) ON (m.id)",
    "CREATE INDEX bench_msg_run IF NOT EXISTS FOR (m:BenchMsg) ON (m.run)",
    # neo4j-agent-memory's own constraint (its name too), which it creates on connect.
    "CREATE CONSTRAINT conversation_id IF NOT EXISTS FOR (c:Conversation) REQUIRE c.id IS UNIQUE",
)


#: Nodes kept between runs, created once and never cleaned up, per (label, key
#: property): Neo4j plans a statement again when the counts it planned with drift (at
#: most every 10 s). On a store with few of them, each run's own rows and progress
#: records move the counts many-fold (the progress records from 2 to 102 in a 100 x 20
#: drain, and back at cleanup), and a replan of 120-250 ms landed inside a timed drain
#: of about 100 ms now and then. Any real store is larger; with these, a run moves the
#: counts by a few percent.
BALLAST = {("BenchMsg", "id"): 50_000, ("CypherstreamProgress", "stream"): 10_000}


async def ensure_schema() -> None:
    """Index the MERGE keys, so the benchmark measures the pipeline, not label scans;
    and keep the `BALLAST`."""
    driver = MemorySettings().neo4j.driver()
    async with driver:
        for statement in SCHEMA:
            await driver.execute_query(statement)
        await driver.execute_query("CALL db.awaitIndexes(60)")
        for (label, key), count in BALLAST.items():
            found = f"MATCH (n:{label}) WHERE n.{key} STARTS WITH 'ballast:' RETURN count(n)"
            have = (await driver.execute_query(found)).records[0][0]
            await driver.execute_query(
                f"UNWIND range($have, $count - 1) AS i CREATE (:{label} {{{key}: 'ballast:' + i}})",
                have=have, count=count,
            )  # fmt: skip


async def run_all(scale: int, only: str | None = None, part: str = "all") -> dict[str, Any]:
    import targets

    run = uuid.uuid4().hex[:8]
    await ensure_schema()
    measured = {"targets": await targets.run_targets(run)}
    if part == "targets":
        await cleanup(run)
        return {**_header(run, scale), "references": {}, "rows": [], **measured}
    rows: list[Row] = []
    plan = [
        ("sync", 0, ()),
        ("embedded", 0, ()),
        ("redis", 1, ("--batch-size", "1", "--transactions", "32")),  # no shared commits
        ("redis", 1, ()),
        ("redis", 2, ()),
        ("redis", 4, ()),
    ]
    loads = [w for w in workloads(scale) if only is None or only.lower() in w.name.lower()]
    refs: dict[str, Any] = {}
    with Progress() as progress:
        task = progress.add_task("benchmark", total=len(loads) * (len(plan) + 2) + 1)
        refs["ping_p50_ms"], refs["ping_p99_ms"] = await ping_floor()
        refs["concurrent_submit"] = await concurrent_submits(loads[0], run)
        refs["memory_vs_backlog"] = await memory_vs_backlog(loads[0], run)
        refs["wait_cost"] = await wait_cost(loads[0], run)
        refs["handoff_cost"] = await handoff_cost(loads[0], run)
        refs["tracing_cost"] = await tracing_cost(loads[0], run)
        progress.advance(task)
        for workload in loads:
            for mode, drainers, args in plan:
                if workload.chained and drainers > 1:
                    progress.advance(task)
                    continue  # one session drains on one drainer whatever the count
                progress.update(task, description=f"{workload.name}: {mode} {drainers or ''}")
                rows.append(await measure(workload, mode, run, drainers, *args))
                progress.advance(task)
            refs[f"unwind_wps:{workload.name}"] = (await unwind_floor(workload, run)).writes_per_s
            progress.advance(task)
            refs[f"redis_bytes_per_write:{workload.name}"] = await redis_bytes_per_write(
                workload, run
            )
            progress.advance(task)
    await cleanup(run)
    return {
        **_header(run, scale),
        "references": refs,
        "rows": [asdict(r) for r in rows],
        **measured,
    }


def _header(run: str, scale: int) -> dict[str, Any]:
    return {
        "run": run,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        # Compiled parsers and encoders change every figure, the floors' too.
        "extensions": {name: importlib.util.find_spec(module) is not None
                       for name, module in (("hiredis", "hiredis"),
                                            ("neo4j-rust-ext", "neo4j._rust"))},
        "scale": scale,
    }  # fmt: skip


def markdown(result: dict[str, Any]) -> str:
    import targets

    refs = result["references"]
    extensions = ", ".join(
        f"{name} {'yes' if there else 'no'}" for name, there in result["extensions"].items()
    )
    if not result["rows"]:
        return f"Compiled extensions: {extensions}\n" + targets.markdown(result["targets"])
    lines = [
        f"Compiled extensions: {extensions}",
        f"Redis PING round trip: p50 {refs['ping_p50_ms']:.3f} ms, "
        f"p99 {refs['ping_p99_ms']:.3f} ms",
        "",
        "| workload | mode | writes | submit p50 ms | submit p99 ms | end-to-end writes/s "
        "| drain-only writes/s | drainer CPU s | drainer peak RSS MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        cpu = f"{row['drainer_cpu_s']:.1f}" if row["drainer_cpu_s"] is not None else "-"
        rss = f"{row['drainer_peak_rss_mb']:.0f}" if row["drainer_peak_rss_mb"] is not None else "-"
        drain = f"{row['drain_wps']:.0f}" if row["drain_wps"] is not None else "-"
        lines.append(
            f"| {row['workload']} | {row['mode']} | {row['writes']} | {row['submit_p50_ms']:.3f} "
            f"| {row['submit_p99_ms']:.3f} | {row['throughput_wps']:.0f} | {drain} "
            f"| {cpu} | {rss} |"
        )
    lines.append("")
    concurrent = refs.get("concurrent_submit")
    if concurrent:
        lines.append(
            f"- {loads_name(result)} from one coroutine per session at once, one client: "
            f"{concurrent['submits_per_s']:.0f} submits/s, p50 {concurrent['p50_ms']:.3f} ms, "
            f"p99 {concurrent['p99_ms']:.3f} ms, {concurrent['writes_per_round_trip']:.1f} "
            "writes per round trip (auto-batching)"
        )
    memory = refs.get("memory_vs_backlog")
    if memory:
        lines.append(
            f"- backlog of {memory['writes_1x']:.0f} vs {10 * memory['writes_1x']:.0f} writes: "
            f"drainer peak RSS {memory['drainer_peak_rss_mb_1x']:.0f} vs "
            f"{memory['drainer_peak_rss_mb_10x']:.0f} MB; producer heap growth "
            f"{memory['producer_heap_growth_kb_1x']:.0f} vs "
            f"{memory['producer_heap_growth_kb_10x']:.0f} kB"
        )
    wait = refs.get("wait_cost")
    if wait:
        lines.append(
            f"- submit on a Redis with one replica: p50 {wait['p50_ms_wait_0']:.3f} ms, "
            f"p99 {wait['p99_ms_wait_0']:.3f} ms; waiting for the replica "
            f"(CYPHERSTREAM_WAIT_REPLICAS=1): p50 {wait['p50_ms_wait_1']:.3f} ms, "
            f"p99 {wait['p99_ms_wait_1']:.3f} ms"
        )
    handoff = refs.get("handoff_cost")
    if handoff:
        lines.append(
            f"- local hand-off (CYPHERSTREAM_HANDOFF=local): submit p50 {handoff['p50_ms']:.4f} "
            f"ms, p99 {handoff['p99_ms']:.4f} ms; asyncio.Queue.put p50 "
            f"{handoff['queue_put_p50_ms']:.4f} ms, p99 {handoff['queue_put_p99_ms']:.4f} ms"
        )
    tracing = refs.get("tracing_cost")
    if tracing:
        lines.append(
            f"- tracing: submit p50 {tracing['p50_ms_no_span']:.3f} ms with no span active "
            f"(nothing carried), {tracing['p50_ms_in_span']:.3f} ms inside an OpenTelemetry "
            "span (trace context carried)"
        )
    for key, value in refs.items():
        if key.startswith("unwind_wps:"):
            lines.append(f"- single-UNWIND floor, {key.split(':', 1)[1]}: {value:.0f} writes/s")
        if key.startswith("redis_bytes_per_write:"):
            lines.append(
                f"- Redis memory per queued write, {key.split(':', 1)[1]}: {value:.0f} bytes"
            )
    return "\n".join(lines) + "\n" + targets.markdown(result["targets"])


def loads_name(result: dict[str, Any]) -> str:
    return str(result["rows"][0]["workload"]) if result["rows"] else "the first workload"


def chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"] if r["workload"] == result["rows"][0]["workload"]]
    labels = [r["mode"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    left.barh(labels, [r["submit_p99_ms"] for r in rows], color="#f4b183", label="p99")
    left.barh(labels, [r["submit_p50_ms"] for r in rows], color="#2e75b6", label="p50")
    left.axvline(result["references"]["ping_p50_ms"], color="k", ls="--", label="PING p50")
    left.set_xscale("log")
    left.set_xlabel("agent-visible submit latency (ms, log)")
    left.legend()
    right.barh(labels, [r["throughput_wps"] for r in rows], label="end to end")
    right.barh(
        labels, [r["drain_wps"] or 0 for r in rows], height=0.4, label="drain only (backlog)"
    )
    floor = result["references"].get(f"unwind_wps:{rows[0]['workload']}")
    if floor:
        right.axvline(floor, color="k", ls="--", label="single UNWIND")
    right.legend()
    right.set_xlabel("writes committed per second until flush returns")
    fig.suptitle(rows[0]["workload"])
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=1, help="multiply every workload's size")
    parser.add_argument("--workload", help="run only workloads whose name contains this")
    parser.add_argument(
        "--part", choices=["all", "targets"], default="all",
        help="targets: only the figures issue 19 sets targets for (targets.py)",
    )  # fmt: skip
    args = parser.parse_args()
    services.up_and_export()
    result = asyncio.run(run_all(args.scale, args.workload, args.part))
    RESULTS.mkdir(exist_ok=True)
    stamp = result["when"].replace(":", "")
    (RESULTS / f"{stamp}.json").write_text(json.dumps(result, indent=2))
    (RESULTS / "latest.json").write_text(json.dumps(result, indent=2))
    if result["rows"]:
        chart(result, RESULTS / "latest.png")
    print(markdown(result))
    print(f"\nJSON: {RESULTS / 'latest.json'}  chart: {RESULTS / 'latest.png'}")


if __name__ == "__main__":
    main()
