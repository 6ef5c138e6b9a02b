"""Fault injection with real processes and real servers: nothing lost, nothing twice, in order.

Each scenario prints submitted / applied / duplicated / out-of-order / lost, read
back from Neo4j, and asserts the last four. Run alone with `pytest -m faults`.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from asyncio.subprocess import PIPE
from pathlib import Path
from typing import Any

import pytest
import services
from neo4j import AsyncGraphDatabase
from redis import asyncio as aioredis

from cypherstream import MemoryClient
from tests.helpers import (
    Graph,
    assert_exactly_once_in_order,
    audit,
    submit_killing_drainers,
    submit_sequenced,
    wait_until,
)

pytestmark = pytest.mark.faults

ROOT = Path(__file__).resolve().parents[1]
FAST_TAKEOVER = ("--lease-ttl", "2", "--tx-timeout", "5")


async def off_loop(func: Any, *args: Any) -> Any:
    """Start or stop a server without blocking the loop the producers and drainers run on."""
    return await asyncio.to_thread(func, *args)


async def test_drainers_killed_mid_drain_and_restarted_lose_and_repeat_nothing(
    spawn_drainer: Any, make_settings: Any, graph: Graph
) -> None:
    args = (*FAST_TAKEOVER, "--concurrency", "8", "--batch-size", "20")
    drainers = [await spawn_drainer(*args) for _ in range(3)]

    async with MemoryClient(make_settings("redis", flush_timeout=180)) as client:
        submitted = await submit_killing_drainers(
            client, graph.label, drainers, lambda: spawn_drainer(*args),
            rounds=5, sessions=50, writes=40,
        )  # fmt: skip
        await client.flush()

    result = await audit(graph, submitted)
    print("drainers SIGKILLed mid-drain and restarted: 5")
    assert_exactly_once_in_order(result)


async def test_neo4j_stopped_for_ten_seconds_mid_run(
    spawn_drainer: Any, make_settings: Any, tmp_path: Path, tag: str
) -> None:
    neo4j = services.Neo4jServer(tmp_path / "neo4j")
    await off_loop(neo4j.start)
    driver = AsyncGraphDatabase.driver(
        neo4j.uri, auth=("neo4j", neo4j.password), notifications_min_severity="OFF"
    )
    graph = Graph(driver, tag)
    try:
        drainer = await spawn_drainer(
            "--tx-timeout", "5",
            NEO4J_URI=neo4j.uri, NEO4J_USERNAME="neo4j", NEO4J_PASSWORD=neo4j.password,
        )  # fmt: skip
        settings = make_settings("redis", flush_timeout=180)
        async with MemoryClient(settings) as client:
            writer = asyncio.create_task(submit_sequenced(client, tag, sessions=20, writes=100))
            await wait_until(lambda: _some_applied(graph), timeout=60, what="first writes")
            await off_loop(neo4j.stop)
            await wait_until(
                lambda: _logged(drainer, "Neo4j write failed, retrying"),
                timeout=60,
                what="the drainer to meet the outage",
            )
            down_since = asyncio.get_running_loop().time()
            await wait_until(
                lambda: _elapsed(down_since, 10.0), timeout=30, what="ten seconds of outage"
            )
            await off_loop(neo4j.start)
            submitted = await writer
            await client.flush()
        result = await audit(graph, submitted)
        assert_exactly_once_in_order(result)
    finally:
        await driver.close()
        await off_loop(neo4j.stop)


async def test_a_producer_killed_right_after_submit_returned_loses_nothing(
    drainer: Any, env: dict[str, str], graph: Graph
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fault_producer", graph.label, "victim",
        env=env, stdout=PIPE, cwd=ROOT,
    )  # fmt: skip
    assert proc.stdout is not None
    acknowledged = -1
    while acknowledged < 300:
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        assert line, "the producer exited early"
        acknowledged = int(line.split()[1])
    proc.send_signal(signal.SIGKILL)
    await proc.wait()

    async def landed() -> bool:
        rows = await graph.query("MATCH (s:$$) RETURN size(s.seqs) AS n")
        return bool(rows) and rows[0]["n"] > acknowledged

    await wait_until(landed, timeout=60, what="every acknowledged write to land")
    result = await audit(graph, {"victim": acknowledged + 1})
    assert_exactly_once_in_order(result)


async def test_redis_killed_and_restarted_with_aof_keeps_every_acknowledged_submit(
    spawn_drainer: Any, make_settings: Any, graph: Graph, tmp_path: Path, streams: Any
) -> None:
    redis_server = services.RedisServer(tmp_path / "redis", extra_args=["--appendfsync", "always"])
    await off_loop(redis_server.start)
    client_of_this_redis = aioredis.from_url(redis_server.url)
    try:
        await spawn_drainer(
            *FAST_TAKEOVER, REDIS_URL=redis_server.url, redis_client=client_of_this_redis
        )
        settings = make_settings("redis", flush_timeout=180, redis_retry=30)
        settings.redis.url = redis_server.url
        async with MemoryClient(settings) as client:
            first = await submit_sequenced(client, graph.label, sessions=10, writes=100)
            await off_loop(redis_server.stop, signal.SIGKILL)
            await off_loop(redis_server.start)
            second = await submit_sequenced(client, graph.label, sessions=10, writes=50, prefix="t")
            await client.flush()
        result = await audit(graph, {**first, **second})
        assert_exactly_once_in_order(result)
    finally:
        await client_of_this_redis.aclose()
        await off_loop(redis_server.stop)


async def test_a_drainer_stopped_past_its_lease_and_resumed_applies_nothing_twice(
    spawn_drainer: Any, make_settings: Any, graph: Graph, redis: Any, streams: Any
) -> None:
    keys = streams.keyspace()
    stalled = await spawn_drainer(*FAST_TAKEOVER, "--batch-size", "10")
    async with MemoryClient(make_settings("redis", flush_timeout=180)) as client:
        writer = asyncio.create_task(submit_sequenced(client, graph.label, sessions=10, writes=300))
        await wait_until(lambda: _some_applied(graph), timeout=60, what="first writes")
        stalled.proc.send_signal(signal.SIGSTOP)
        successor = await spawn_drainer(*FAST_TAKEOVER, "--batch-size", "10")
        await wait_until(
            lambda: _holds_a_lease(redis, keys, successor.drainer_id, 10),
            timeout=60,
            what="the second drainer to take over",
        )
        stalled.proc.send_signal(signal.SIGCONT)
        submitted = await writer
        await client.flush()

    result = await audit(graph, submitted)
    assert_exactly_once_in_order(result)


async def _some_applied(graph: Graph) -> bool:
    return await graph.count() > 0


async def _logged(drainer: Any, text: str) -> bool:
    return text in drainer.output()


async def _elapsed(since: float, seconds: float) -> bool:
    return asyncio.get_running_loop().time() - since >= seconds


async def _holds_a_lease(redis: Any, keys: Any, drainer_id: str, sessions: int) -> bool:
    owners = await redis.mget([keys.lease(f"s{i}") for i in range(sessions)])
    return drainer_id.encode() in owners
