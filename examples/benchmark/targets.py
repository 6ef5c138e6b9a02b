"""The figures issue #19 sets targets for, measured side by side in one run.

- submit latency against the Redis PING round trip measured just before, with a
  drainer running, and end-to-end writes/s against neo4j-agent-memory's own
  in-process `BufferedWriter` on the same Neo4j (one session, `max_pending` 200);
- CPU microseconds per write: the producer's per submit, the drainer's per applied
  write, and Redis' per write (what a fleet's producers and drainers share);
- the back-pressure wake-up: from a drainer's acknowledgement making room to the
  waiting submit returning;
- submit p99 beside a PING's p99 under the same load (`tail_under_load`);
- drain only (a backlog queued while the drainer, started and warm, is paused; timed
  from its resume to `flush()`), for 100 sessions x 20 writes and 1 session x 2,000, at
  several batch sizes, concurrencies and `--transactions`, against the same rows
  written by one UNWIND in one transaction;
- the hottest frames of the producer's submit (pyinstrument) and of the drainer's
  drain (py-spy), so a regression shows where it came from.

All after a warm-up (`warm_up`): a Neo4j just started runs at half speed or less.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import bench
import pinger

import cypherstream.drainer
import cypherstream.producer
import cypherstream.shared
from cypherstream import MemoryClient, MemorySettings
from cypherstream.drainer.session_scripts import SessionScripts
from cypherstream.shared.scripts import Scripts

#: The issue's workload: a keyed MERGE with an index on the key.
MSG_QUERY = "MERGE (m:BenchMsg {id: $id}) SET m.run = $run, m.session = $session, m.i = $i"
#: Writes in the end-to-end comparison, and the bound on queued writes on both sides.
ANCHOR_WRITES = 3000
ANCHOR_MAX_PENDING = 200
#: Runs of the end-to-end comparison (each its anchor, then ours); the run with the
#: median ratio is reported, and every run's ratio kept: one run's ratio moves by a
#: third between runs minutes apart.
ANCHOR_RUNS = 3
#: Batch sizes the drain-only measurement tries.
BATCH_SIZES = (100, 250, 500, 1000)
#: Drainer concurrencies the drain-only measurement tries on the many-sessions shape.
CONCURRENCIES = (16, 32, 64, 128)
#: `--transactions` (commits in flight) the drain-only measurement tries on both shapes,
#: besides the default (2, measured at each batch size): round fourteen could not tell
#: them apart on a server that was cold or sick, nor round fifteen on a warm one (at 1 /
#: 2 / 4, medians of 6 interleaved rounds: 15,864 / 14,066 / 16,249 writes/s for 100 x
#: 20, 26,015 / 25,299 / 25,110 for 1 x 2,000), so every run now says.
TRANSACTIONS = (1, 4)
#: (sessions, writes per session) shapes of the drain-only backlog.
SHAPES = ((100, 20), (1, 2000))
#: Rounds of the drain-only sweep: each round runs every configuration once, and each
#: shape's floor, so a minute of a slow machine costs each configuration a run, not
#: one configuration (or a floor) all of its runs. Best and median are reported, each
#: against the floor's best and median: a floor measured three times in a row at the
#: start (until round ten) came out at 36,843 writes/s for one shape and 75,557 for the
#: other, of the same kind of rows.
SWEEP_ROUNDS = 5


def msg_workload(sessions: int, writes: int) -> bench.Workload:
    return bench.Workload(f"BenchMsg, {sessions} x {writes}", sessions, writes, MSG_QUERY,
                          keyed=True)  # fmt: skip


async def versus_agent_memory(run: str, writes: int = ANCHOR_WRITES) -> dict[str, float]:
    """One session, one sequential producer, `max_pending` 200: neo4j-agent-memory's
    BufferedWriter, then cypherstream with one drainer; PING measured just before."""
    from neo4j_agent_memory.config.settings import Neo4jConfig
    from neo4j_agent_memory.graph.client import Neo4jClient
    from neo4j_agent_memory.memory.buffered import BufferedWriter

    workload = msg_workload(1, writes)
    settings = MemorySettings()
    theirs_client = Neo4jClient(Neo4jConfig(
        uri=settings.neo4j.uri, username=settings.neo4j.username,
        password=settings.neo4j.password.get_secret_value() if settings.neo4j.password else "",
    ))  # fmt: skip
    await theirs_client.connect()
    writer = BufferedWriter(theirs_client, write_mode="buffered", max_pending=ANCHOR_MAX_PENDING)
    started = time.perf_counter()
    for i in range(workload.writes):
        await writer.submit(workload.query, workload.params(run + "-theirs", i))
    await writer.flush()
    theirs = workload.writes / (time.perf_counter() - started)
    await writer.stop()
    await theirs_client.close()

    ping_p50, ping_p99 = await bench.ping_floor()
    ours = await ours_end_to_end(run + "-ours", workload)
    return {
        "writes": workload.writes,
        "ping_p50_ms": ping_p50, "ping_p99_ms": ping_p99,
        "submit_p50_over_ping": ours["submit_p50_ms"] / ping_p50,
        "agent_memory_wps": theirs, "end_to_end_ratio": ours["cypherstream_wps"] / theirs,
        **ours,
    }  # fmt: skip


async def ours_end_to_end(run: str, workload: bench.Workload) -> dict[str, float]:
    """The anchor's cypherstream side: `workload` submitted one write after the other
    with one drainer running and `max_pending` 200, until `flush()` returns."""
    prefix = f"bench-anchor-{run}"
    settings = bench.settings_for("redis", prefix)
    settings.memory.max_pending = ANCHOR_MAX_PENDING
    pool = await bench.start_drainers(1, prefix)
    redis = settings.redis.client()
    async with MemoryClient(settings) as client:
        drainer_cpu, cpu = pool.cpu_seconds(), time.process_time()
        redis_cpu = await bench.redis_cpu_seconds(redis)
        started = time.perf_counter()
        latencies = await bench.timed_submits(client, workload, run, workload.writes)
        submit_cpu = time.process_time() - cpu
        await client.flush()
        elapsed = time.perf_counter() - started
        drainer_cpu = pool.cpu_seconds() - drainer_cpu
        redis_cpu = await bench.redis_cpu_seconds(redis) - redis_cpu
    pool.stop()
    await redis.aclose()
    per_write = 1e6 / workload.writes
    return {
        "cypherstream_wps": workload.writes / elapsed,
        "submit_p50_ms": bench._quantile(latencies, 0.5) * 1000,
        "submit_p99_ms": bench._quantile(latencies, 0.99) * 1000,
        "producer_cpu_us_per_submit": submit_cpu * per_write,
        "drainer_cpu_us_per_write": drainer_cpu * per_write,
        "redis_cpu_us_per_write": redis_cpu * per_write,
    }


#: End-to-end runs with a PING beside them, in `tail_under_load`.
TAIL_RUNS = 3


async def tail_under_load(run: str) -> list[dict[str, float]]:
    """Submit p99 beside the PING's own under the same load: `TAIL_RUNS` runs of the
    end-to-end comparison's cypherstream side, each with `pinger.py` pinging from a
    process of its own meanwhile. The PING measured before (`ping_floor`) meets an idle
    machine; on cores the drainer, Redis and Neo4j share with the producer, the round
    trip's own tail under their load is what a submit's is to be compared with."""
    runs = []
    for index in range(TAIL_RUNS):
        pinging = await asyncio.create_subprocess_exec(
            sys.executable, pinger.__file__, stdout=subprocess.PIPE
        )
        assert pinging.stdout is not None
        await pinging.stdout.readline()  # "ready": connected, pinging from now on
        ours = await ours_end_to_end(f"{run}-tail{index}", msg_workload(1, ANCHOR_WRITES))
        pinging.terminate()
        out, _ = await pinging.communicate()
        pings: list[float] = json.loads(out.decode().strip().splitlines()[-1])
        runs.append({
            "submit_p50_ms": ours["submit_p50_ms"], "submit_p99_ms": ours["submit_p99_ms"],
            "ping_p50_ms": bench._quantile(pings, 0.5) * 1000,
            "ping_p99_ms": bench._quantile(pings, 0.99) * 1000, "ping_samples": len(pings),
        })  # fmt: skip
    return runs


async def wake_delay(run: str, samples: int = 200) -> dict[str, float]:
    """A session holds its one allowed entry; a submit waits for room; the drainer's
    acknowledgement (`settle`, as a drainer runs it) deletes the entry. Timed from
    sending that acknowledgement to the waiting submit returning."""
    prefix = f"bench-wake-{run}"
    settings = bench.settings_for("redis", prefix)
    settings.memory.max_pending = 1
    keys = settings.streams.keyspace()
    redis = settings.redis.client()
    drain = SessionScripts(redis, Scripts(redis), keys, "bench", lease_ms=10_000, idle_ms=0)
    delays: list[float] = []
    async with MemoryClient(settings) as client:
        await client.buffered.submit(MSG_QUERY, {"id": 0}, session_id="w")
        for i in range(1, samples + 1):
            waiting = asyncio.create_task(
                client.buffered.submit(MSG_QUERY, {"id": i}, session_id="w")
            )
            for _ in range(10_000):  # until the submit was refused (its flag is up)
                if await redis.exists(keys.wants_room("w")):
                    break
                await asyncio.sleep(0.001)
            [(entry_id, _)] = await redis.xrange(keys.stream("w"), count=1)
            t0 = time.perf_counter()
            await drain.settle("w", [entry_id.decode()])
            await waiting
            delays.append(time.perf_counter() - t0)
        await redis.delete(keys.stream("w"))  # nothing to apply: the entries are dummies
        pool = await bench.start_drainers(1, prefix)  # to answer the closing flush
    pool.stop()
    await drain.close()
    await redis.aclose()
    return {
        "samples": samples,
        "p50_ms": bench._quantile(delays, 0.5) * 1000,
        "p99_ms": bench._quantile(delays, 0.99) * 1000,
    }


async def drain_sweep(run: str) -> list[dict[str, Any]]:
    """Drain-only throughput against the single-UNWIND floor: each batch size at the
    default concurrency, then each concurrency at the default batch size for the many
    sessions, then each `--transactions` for both shapes; `SWEEP_ROUNDS` rounds of
    every configuration in turn (interleaved)."""
    configs: list[tuple[tuple[int, int], str, int]] = [
        (shape, "batch_size", size) for shape in SHAPES for size in BATCH_SIZES
    ]
    configs += [(SHAPES[0], "concurrency", concurrency) for concurrency in CONCURRENCIES]
    configs += [(shape, "transactions", count) for shape in SHAPES for count in TRANSACTIONS]
    floors: dict[tuple[int, int], list[bench.Floor]] = {shape: [] for shape in SHAPES}
    runs: list[list[bench.Drained]] = [[] for _ in configs]
    for round_ in range(SWEEP_ROUNDS):
        for sessions, per_session in SHAPES:
            workload = msg_workload(sessions, sessions * per_session)
            floor = await bench.unwind_floor(workload, f"{run}-{round_}")
            floors[sessions, per_session].append(floor)
        for n, ((sessions, per_session), setting, value) in enumerate(configs):
            workload = msg_workload(sessions, sessions * per_session)
            flag = "--" + setting.replace("_", "-")
            runs[n].append(await bench.drain_only(workload, run, 1, flag, str(value)))
    rows: list[dict[str, Any]] = []
    for ((sessions, per_session), setting, value), attempts in zip(configs, runs, strict=True):
        shape_floors = floors[sessions, per_session]
        best_floor = max(shape_floors, key=lambda floor: floor.writes_per_s)
        floor = best_floor.writes_per_s
        median_floor = bench._quantile([f.writes_per_s for f in shape_floors], 0.5)
        best = max(attempts, key=lambda drained: drained.writes_per_s)
        median = bench._quantile([drained.writes_per_s for drained in attempts], 0.5)
        rows.append({
            "shape": f"{sessions} x {per_session}",
            **{name: value if name == setting else "default"
               for name in ("batch_size", "concurrency", "transactions")},
            "drain_wps": best.writes_per_s, "median_wps": median, "floor_wps": floor,
            "median_floor_wps": median_floor,
            "floors_wps": [f.writes_per_s for f in shape_floors],
            "share_of_floor": best.writes_per_s / floor, "median_share": median / median_floor,
            "drainer_cpu_us_per_write": best.drainer_cpu_us_per_write,
            "redis_cpu_us_per_write": best.redis_cpu_us_per_write,
            "neo4j_cpu_us_per_write": best.neo4j_cpu_us_per_write,
            "client_cpu_us_per_write": best.client_cpu_us_per_write,
            "floor_neo4j_cpu_us_per_write": best_floor.neo4j_cpu_us_per_write,
            "floor_client_cpu_us_per_write": best_floor.client_cpu_us_per_write,
            **cpu_bound([d.cpu_us_per_write for d in attempts], floor),
        })  # fmt: skip
    return rows


def cpu_bound(cpu_us_per_write: list[float | None], floor_wps: float) -> dict[str, float]:
    """The fastest a drain could go if its parts' CPU (the median over its attempts)
    kept every core of the machine busy, no core ever idle, and that as a share of the
    floor: a share under issue 19's 80% says the target needs less CPU per write, not
    only more overlap. Nothing where Neo4j does not report its CPU."""
    known = [cpu for cpu in cpu_us_per_write if cpu is not None]
    if not known:
        return {}
    cpu = bench._quantile(known, 0.5)
    bound = (os.cpu_count() or 1) * 1e6 / cpu
    return {"cpu_us_per_write": cpu, "cpu_bound_wps": bound, "cpu_bound_share": bound / floor_wps}


#: Passes of each timing in `submit_steps`; the least disturbed one counts.
_PASSES = 3


async def submit_steps(run: str, samples: int = 3000) -> dict[str, float]:
    """CPU microseconds of each step of a submit, one coroutine, no drainer: the steps
    without I/O alone, then the script's round trip, the whole call and a PING. Each is
    the best of `_PASSES` passes (timeit's rule: noise only ever adds), so the steps'
    sum and the whole are compared at their least disturbed."""
    from cypherstream.shared.codec import encode_params
    from cypherstream.shared.keys import validate_session_id
    from cypherstream.shared.pipelines import ScriptPipeline
    from cypherstream.shared.scripts import submit_call
    from cypherstream.shared.signing import signed_write_fields
    from cypherstream.shared.tracing import current_trace_context

    workload = msg_workload(1, samples)
    settings = bench.settings_for("redis", f"bench-steps-{run}")
    settings.memory.max_pending = 1_000_000  # nothing drains here
    keys = settings.streams.keyspace()
    params = workload.params(run, 0)
    packed = encode_params(params)
    fields = signed_write_fields(None, "s0", MSG_QUERY, packed, "c", 1)

    def cpu_us(step: Any) -> float:
        best = float("inf")
        for _ in range(_PASSES):
            started = time.process_time()
            for i in range(samples):
                step(i)
            best = min(best, time.process_time() - started)
        return best / samples * 1e6

    async def cpu_us_async(call: Any) -> float:
        best = float("inf")
        for _ in range(_PASSES):
            started = time.process_time()
            for _ in range(samples):
                await call()
            best = min(best, time.process_time() - started)
        return best / samples * 1e6

    steps = {
        "session id check": cpu_us(lambda i: validate_session_id("s0")),
        "parameters checked and encoded": cpu_us(lambda i: encode_params(params)),
        "trace context": cpu_us(lambda i: current_trace_context()),
        "entry fields": cpu_us(
            lambda i: signed_write_fields(None, "s0", MSG_QUERY, packed, "c", i)
        ),
        "script keys and arguments": cpu_us(
            lambda i: submit_call(keys, "s0", fields, limit=0, client_id="c", seq=i, seen_ttl=60)
        ),
    }  # fmt: skip
    redis = settings.redis.client()
    pipeline = ScriptPipeline(redis, Scripts(redis).submit)
    script_keys, args = submit_call(keys, "s0", fields, limit=0, client_id="c")
    steps["submit.lua, one round trip"] = await cpu_us_async(
        lambda: pipeline.call(script_keys, args)
    )
    steps["redis-py PING, for comparison"] = await cpu_us_async(redis.ping)
    await pipeline.close()
    whole = float("inf")
    async with MemoryClient(settings) as client:
        for attempt in range(_PASSES):
            started = time.process_time()
            await bench.timed_submits(client, workload, f"{run}-steps{attempt}", samples)
            whole = min(whole, (time.process_time() - started) / samples * 1e6)
        await redis.delete(keys.stream("s0"))
        for session_id in client._backend._sessions:  # type: ignore[union-attr]
            await redis.delete(keys.stream(session_id))
        client._backend._unflushed.clear()  # type: ignore[union-attr]
    await redis.aclose()
    parts = sum(v for k, v in steps.items() if "PING" not in k)
    steps["the rest (session lock, coroutine layers, retry wrapper, this loop)"] = whole - parts
    steps["client.buffered.submit, whole"] = whole
    return steps


def _top(counts: dict[str, float], total: float, n: int = 12) -> list[dict[str, float | str]]:
    """The `n` largest, each as its share of `total` (all samples, or the whole time)."""
    total = total or 1.0
    ranked = sorted(counts.items(), key=lambda item: -item[1])[:n]
    return [{"frame": frame, "share": round(value / total, 4)} for frame, value in ranked]


async def producer_profile(run: str, writes: int = 3000) -> dict[str, Any]:
    """pyinstrument over sequential submits with a drainer running: the frames with the
    most time of their own, and our own frames with the most time in all."""
    from pyinstrument import Profiler

    prefix = f"bench-prof-{run}"
    pool = await bench.start_drainers(1, prefix)
    workload = msg_workload(1, writes)
    async with MemoryClient(bench.settings_for("redis", prefix)) as client:
        profiler = Profiler(interval=0.0005, async_mode="disabled")
        profiler.start()
        await bench.timed_submits(client, workload, run + "-prof", writes)
        session = profiler.stop()
    pool.stop()
    own: dict[str, float] = collections.Counter()
    inclusive: dict[str, float] = collections.Counter()

    def walk(frame: Any, ours_above: set[str]) -> None:
        name = f"{frame.function} ({Path(frame.file_path or '?').name}:{frame.line_no})"
        if frame.file_path:  # not pyinstrument's synthetic frames ([self], [await])
            own[name] += frame.total_self_time
        if frame.file_path and _our_file(frame.file_path) and name not in ours_above:
            inclusive[name] += frame.time  # once per path: recursion is not counted twice
            ours_above = ours_above | {name}
        for child in frame.children:
            walk(child, ours_above)

    root = session.root_frame()
    if root is None:
        return {}
    walk(root, set())
    return {"self": _top(own, root.time), "ours_inclusive": _top(inclusive, root.time)}


#: Where cypherstream's code lives (its parts are separate folders in an editable install).
_OUR_ROOTS = {
    Path(part.__file__).parent
    for part in (cypherstream, cypherstream.drainer, cypherstream.producer, cypherstream.shared)
    if part.__file__
}


def _our_file(path: str) -> bool:
    """Whether `path` is a file of cypherstream's own code (installed or editable)."""
    return any(Path(path).is_relative_to(root) for root in _OUR_ROOTS)


def _py_spy() -> str | None:
    found = shutil.which("py-spy") or str(Path(bench.sys.executable).parent / "py-spy")
    return found if Path(found).exists() else None


#: Drains of the 100 x 20 backlog the drainer's profile samples (one is too short for
#: py-spy's samples to mean much).
PROFILED_DRAINS = 5


async def drainer_profile(run: str) -> dict[str, Any]:
    """py-spy over a drainer draining 100 sessions x 20 writes `PROFILED_DRAINS` times:
    leaf frames (own time) and our own frames (inclusive). The drainer is paused while
    each backlog is queued, so the samples are of draining. Empty where py-spy cannot
    attach."""
    spy = _py_spy()
    if spy is None:
        return {}
    workload = msg_workload(100, 2000)
    prefix = f"bench-spy-{run}"
    out = Path(tempfile.mkdtemp(prefix="cypherstream-spy-")) / "drainer.txt"
    async with MemoryClient(bench.settings_for("redis", prefix)) as client:
        pool = await bench.start_drainers(1, prefix, ready=1)
        drainer = pool.procs[0].pid
        recorder = await asyncio.create_subprocess_exec(
            spy, "record", "--pid", str(drainer), "--format", "raw", "--rate", "1000",
            "--nonblocking", "--output", str(out),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for drain in range(PROFILED_DRAINS):
            os.kill(drainer, signal.SIGSTOP)
            await bench.queue_backlog(client, workload, f"{run}-spy{drain}")
            os.kill(drainer, signal.SIGCONT)
            await client.flush()
        recorder.send_signal(signal.SIGINT)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(recorder.wait(), 30)
    pool.stop()
    if not out.exists():
        return {}
    leaves: dict[str, float] = collections.Counter()
    ours: dict[str, float] = collections.Counter()
    samples = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        samples += int(count)
        leaves[frames[-1]] += int(count)
        for frame in {f for f in frames if _is_ours(f)}:
            ours[frame] += int(count)
    return {"self": _top(leaves, samples), "ours_inclusive": _top(ours, samples)}


def _is_ours(frame: str) -> bool:
    """Whether a py-spy frame, "function (path:line)", is in cypherstream's code."""
    path = frame.rpartition(" (")[2]
    return path.startswith(("cypherstream/", "drainer/", "producer/", "shared/"))


async def median_comparison(run: str) -> dict[str, Any]:
    """`versus_agent_memory` `ANCHOR_RUNS` times: the run with the median ratio, and
    every run's ratio (`ratios`)."""
    runs = [await versus_agent_memory(f"{run}-{index}") for index in range(ANCHOR_RUNS)]
    ranked = sorted(runs, key=lambda measured: measured["end_to_end_ratio"])
    return {**ranked[len(ranked) // 2], "ratios": [r["end_to_end_ratio"] for r in runs]}


#: Rounds of work before anything is measured. Neo4j compiles and caches as it works,
#: so its first minutes after a start are slow: right after `make bench` started it,
#: the end-to-end comparison measured 1,538 against 230 writes/s (6.7x), the next run
#: 3,276 against 368 (8.9x), a run on a Neo4j up for a while 4,751 against 493 (9.6x).
WARM_UP_ROUNDS = 4
#: Writes of each warm-up round's end-to-end comparison.
WARM_UP_WRITES = 1000


async def warm_up(run: str) -> list[float]:
    """`WARM_UP_ROUNDS` rounds of the end-to-end comparison and a drain-only backlog,
    their figures dropped but the end-to-end ratios, kept to show the warming."""
    ratios = []
    for round_ in range(WARM_UP_ROUNDS):
        compared = await versus_agent_memory(f"{run}-warm{round_}", WARM_UP_WRITES)
        await bench.drain_only(msg_workload(100, 2000), f"{run}-warm{round_}", 1)
        ratios.append(compared["end_to_end_ratio"])
    return ratios


async def run_targets(run: str) -> dict[str, Any]:
    warm_up_ratios = await warm_up(run)
    return {
        "warm_up_ratios": warm_up_ratios,
        "versus_agent_memory": await median_comparison(run),
        "wake_delay": await wake_delay(run),
        "tail_under_load": await tail_under_load(run),
        "drain_sweep": await drain_sweep(run),
        "submit_steps": await submit_steps(run),
        "producer_profile": await producer_profile(run),
        "drainer_profile": await drainer_profile(run),
    }


def _cpu_split(row: dict[str, Any]) -> str:
    """A sweep row's CPU per write of each part, "-" for a part that did not say."""
    parts = ("drainer", "redis", "neo4j", "client")
    figures = [row.get(f"{part}_cpu_us_per_write") for part in parts]
    return " / ".join("-" if cpu is None else f"{cpu:.1f}" for cpu in figures)


def _tail_lines(runs: list[dict[str, float]]) -> list[str]:
    """`tail_under_load`'s runs as one line; none for a run from before it existed."""
    if not runs:
        return []
    pairs = ", ".join(f"{r['submit_p99_ms']:.2f} / {r['ping_p99_ms']:.2f}" for r in runs)
    return [
        f"- submit p99 / PING p99 under the same load (a PING every {pinger.INTERVAL * 1e3:g} ms "
        f"from a process of its own beside the end-to-end run; {len(runs)} runs): {pairs} ms"
    ]


def markdown(targets: dict[str, Any]) -> str:
    anchor = targets["versus_agent_memory"]
    wake = targets["wake_delay"]
    lines = [
        "",
        f"Targets (issue 19), {anchor['writes']} keyed MERGEs, one session, max_pending "
        f"{ANCHOR_MAX_PENDING}, one drainer running (figures of the run, of "
        f"{len(anchor.get('ratios', [])) or 1}, with the median end-to-end ratio):",
        f"- submit p50 {anchor['submit_p50_ms']:.3f} ms = {anchor['submit_p50_over_ping']:.2f}x "
        f"PING p50 ({anchor['ping_p50_ms']:.3f} ms); submit p99 {anchor['submit_p99_ms']:.3f} ms",
        f"- end to end {anchor['cypherstream_wps']:.0f} writes/s vs neo4j-agent-memory "
        f"BufferedWriter {anchor['agent_memory_wps']:.0f} writes/s = "
        f"{anchor['end_to_end_ratio']:.1f}x, the median of "
        + ", ".join(f"{ratio:.1f}x" for ratio in anchor.get("ratios", [])),
        f"- CPU per write: producer {anchor['producer_cpu_us_per_submit']:.0f} us per submit, "
        f"drainer {anchor['drainer_cpu_us_per_write']:.0f} us per applied write, Redis "
        f"{anchor.get('redis_cpu_us_per_write', float('nan')):.0f} us per write (submit and drain)",
        f"- back-pressure wake-up (acknowledgement sent to waiting submit returned): p50 "
        f"{wake['p50_ms']:.3f} ms, p99 {wake['p99_ms']:.3f} ms",
        *_tail_lines(targets.get("tail_under_load", [])),
        "- end to end in the warm-up rounds before: "
        + ", ".join(f"{ratio:.1f}x" for ratio in targets.get("warm_up_ratios", [])),
        "",
        f"| drain-only backlog ({SWEEP_ROUNDS} interleaved rounds) | batch size | concurrency "
        "| transactions | best writes/s | single-UNWIND floor, best / median | "
        "best share (of the best) | median share (of the median) | "
        "CPU us/write, drainer / Redis / Neo4j / client (best run) | "
        "CPU bound (share of the best floor) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in targets["drain_sweep"]:
        lines.append(
            f"| {row['shape']} | {row['batch_size']} | {row['concurrency']} | "
            f"{row.get('transactions', 'default')} | "
            f"{row['drain_wps']:.0f} | "
            f"{row['floor_wps']:.0f} / {row.get('median_floor_wps', row['floor_wps']):.0f} | "
            f"{row['share_of_floor']:.0%} | "
            f"{row['median_share']:.0%} | {_cpu_split(row)} | "
            + (f"{row['cpu_bound_wps']:.0f} ({row['cpu_bound_share']:.0%})"
               if "cpu_bound_wps" in row else "-")
            + " |"
        )  # fmt: skip
    steps = targets.get("submit_steps", {})
    if steps:
        lines += ["", "| submit step (one coroutine, no drainer) | CPU us per call |", "|---|---:|"]
        lines += [f"| {step} | {us:.1f} |" for step, us in steps.items()]
    for side in ("producer_profile", "drainer_profile"):
        top = targets.get(side, {}).get("self", [])[:5]
        if top:
            frames = "; ".join(f"{f['frame']} {f['share']:.0%}" for f in top)
            lines.append(f"- {side.replace('_', ' ')}, most own time: {frames}")
    return "\n".join(lines)
