"""What operators watch: metrics, health and readiness, and `drainer status`."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from cypherstream import MemoryClient
from cypherstream.drainer.backlog import ready_sessions
from cypherstream.drainer.metrics import BatchHistogram
from cypherstream.shared.keys import Keyspace
from cypherstream.shared.lane import Lane
from cypherstream.shared.settings import Neo4jSettings, RedisSettings
from tests.helpers import DRAINER, FlakyProxy, http_get, run_to_end, wait_until


def metric(text: str, name: str) -> float:
    found = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    assert found, f"{name} not in metrics"
    return float(found.group(1))


async def test_metrics_count_applied_writes_and_transactions(
    start_drainer: Any, client: MemoryClient, graph: Any
) -> None:
    drainer = await start_drainer(metrics_port=0, stats_interval=0.1)
    for i in range(25):
        await client.buffered.submit(f"CREATE (:{graph.label} {{i: $i}})", {"i": i})
    await client.buffered.submit("CREAT broken")
    await client.flush()

    status, text = await http_get(drainer.endpoints.port, "/metrics")

    assert status == 200
    assert metric(text, "cypherstream_writes_applied_total") == 25
    assert metric(text, "cypherstream_transactions_total") >= 1
    assert metric(text, "cypherstream_dead_letters_total") == 1
    assert (
        'cypherstream_writes_failed_total{code="Neo.ClientError.Statement.SyntaxError"} 1.0' in text
    )
    assert metric(text, "cypherstream_lag_seconds_count") == 25
    assert metric(text, "cypherstream_commit_seconds_count") >= 1


def test_a_histogram_observed_by_the_batch_exports_what_prometheus_clients_own_would() -> None:
    values = [0.0, 0.005, 0.0051, 0.02, 1.0, 2.0, 1e9]  # on, just over and past the bounds
    batched, one_by_one = CollectorRegistry(), CollectorRegistry()
    ours = BatchHistogram("lag_seconds", "lag", buckets=(0.005, 0.01, 1, 2.5))
    batched.register(ours)
    theirs = Histogram("lag_seconds", "lag", buckets=(0.005, 0.01, 1, 2.5), registry=one_by_one)

    ours.observe_many(values[:3])
    ours.observe_many(values[3:])
    for value in values:
        theirs.observe(value)

    def series(registry: CollectorRegistry) -> list[str]:
        text = generate_latest(registry).decode()
        return [line for line in text.splitlines() if "_created" not in line]

    assert series(batched) == series(one_by_one)


async def test_backlog_gauges_show_what_waits(
    start_drainer: Any, make_settings: Any, graph: Any, redis: Any, streams: Any
) -> None:
    drainer = await start_drainer(metrics_port=0, stats_interval=0.05)
    lease = streams.keyspace().lease("blocked")
    await redis.set(lease, "another-drainer", px=60_000)  # held elsewhere: nothing drains
    async with MemoryClient(make_settings("redis", session_id="blocked")) as client:
        for _ in range(3):
            await client.buffered.submit(f"CREATE (:{graph.label})")

        async def shows(entries: int) -> bool:
            _, text = await http_get(drainer.endpoints.port, "/metrics")
            return f"cypherstream_backlog_entries {entries}.0" in text

        await wait_until(lambda: shows(3), timeout=10, what="backlog gauge to show 3")
        await redis.delete(lease)
        await client.flush()
        await wait_until(lambda: shows(0), timeout=10, what="backlog gauge to show 0")


async def test_readiness_follows_neo4j_and_liveness_stays_up(
    start_drainer: Any, neo4j_settings: Neo4jSettings
) -> None:
    port = int(neo4j_settings.uri.rsplit(":", 1)[1])
    proxy = await FlakyProxy(port).start()
    through = neo4j_settings.model_copy(update={"uri": f"bolt://127.0.0.1:{proxy.port}"})
    drainer = await start_drainer(metrics_port=0, neo4j=through)
    endpoints = drainer.endpoints

    assert await http_get(endpoints.port, "/readyz") == (200, "ok\n")
    listen_port = proxy.port
    await proxy.stop()

    async def ready_is(code: int) -> bool:
        return (await http_get(endpoints.port, "/readyz"))[0] == code

    await wait_until(lambda: ready_is(503), timeout=30, what="readiness to go false")
    assert (await http_get(endpoints.port, "/healthz"))[0] == 200
    _, body = await http_get(endpoints.port, "/readyz")
    assert "Neo4j unreachable" in body

    await proxy.start(listen_port)
    await wait_until(lambda: ready_is(200), timeout=30, what="readiness to come back")
    await proxy.stop()


async def drainer_status(env: dict[str, str], *args: str) -> tuple[int, str]:
    ended = await run_to_end(*DRAINER, "status", *args, env=env)
    return ended.code, ended.stdout + ended.stderr


async def test_status_fails_when_writes_wait_and_no_drainer_is_alive(
    start_drainer: Any, client: MemoryClient, env: dict[str, str], graph: Any
) -> None:
    for _ in range(4):
        await client.buffered.submit(f"CREATE (:{graph.label})")

    code, out = await drainer_status(env, "--json")

    assert code == 1
    report = json.loads(out[: out.rindex("}") + 1])
    assert report["backlog"]["entries"] == 4
    assert report["backlog"]["ready_sessions"] == 1
    assert report["sessions"][0]["session"] == client.session_id
    assert report["drainers"] == []
    assert "no drainer is alive" in out
    await start_drainer()  # so the client's closing flush has someone to answer it


async def test_status_lists_live_drainers_and_renders_a_table(
    spawn_drainer: Any, env: dict[str, str]
) -> None:
    proc = await spawn_drainer()

    code, out = await drainer_status(env, "--json")
    report = json.loads(out)
    _, table = await drainer_status(env)

    assert code == 0
    assert [d["id"] for d in report["drainers"]] == [proc.drainer_id]
    assert report["drainers"][0]["alive"] is True
    assert report["drainers"][0]["entry_versions"] == [1, 2]
    assert report["dead_letters"] == 0
    assert proc.drainer_id[:10] in table and "Backlog: 0 entries" in table


async def test_metrics_and_status_say_how_many_writes_shared_a_statement(
    start_drainer: Any, client: MemoryClient, graph: Any, env: dict[str, str]
) -> None:
    for i in range(10):  # queued before any drainer: they are read as one batch
        await client.buffered.submit(f"CREATE (:{graph.label} {{i: $i}})", {"i": i})
    for _ in range(3):
        query = f"MATCH (n:{graph.label}) WITH n LIMIT $k SET n.seen = true"
        await client.buffered.submit(query, {"k": 1})
    drainer = await start_drainer(metrics_port=0, lease_ttl=1.5)
    await client.flush()

    _, text = await http_get(drainer.endpoints.port, "/metrics")
    assert metric(text, 'cypherstream_statements_total\\{kind="unwind"\\}') >= 1
    assert metric(text, 'cypherstream_unbatched_writes_total\\{reason="limit-parameter"\\}') == 3

    async def reported() -> bool:  # drainers publish their counts with each heartbeat
        _, out = await drainer_status(env, "--json")
        return json.loads(out)["batched_share"] is not None

    await wait_until(reported, timeout=10, what="status to report the batched share")
    _, out = await drainer_status(env, "--json")
    assert json.loads(out)["batched_share"] == 10 / 13
    _, table = await drainer_status(env)
    assert "Batched: 77%" in table


@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize("over_lane", [False, True], ids=["pool", "lane"])
async def test_ready_sessions_come_oldest_first_in_either_protocol(
    redis_url: str, protocol: int, over_lane: bool
) -> None:
    keys = Keyspace(prefix=f"test-ready-{uuid.uuid4().hex[:8]}")
    redis = RedisSettings(url=redis_url).client(protocol=protocol)
    since = {f"s{n}": 1_700_000_000_000 + (n * 7919) % 1000 for n in range(40)}
    for session, score in since.items():
        await redis.zadd(keys.ready(keys.partition_of(session)), {session: score})
    lane = Lane(redis) if over_lane else None
    try:
        everything = await ready_sessions(redis, keys, lane=lane)
        oldest = await ready_sessions(redis, keys, per_partition=1, lane=lane)
    finally:
        if lane is not None:
            await lane.close()
        await redis.delete(*{keys.ready(keys.partition_of(s)) for s in since})
        await redis.aclose()

    assert everything == sorted(((s, float(t)) for s, t in since.items()), key=lambda p: p[1])
    firsts = {keys.partition_of(s): s for s, _ in reversed(everything)}
    assert sorted(s for s, _ in oldest) == sorted(firsts.values())
    assert [t for _, t in oldest] == sorted(t for _, t in oldest)
