"""`wait_replicas`: submit returns once Redis replicas hold the write, so a failover
loses no write that submit acknowledged."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import services  # deploy/local/services.py, on the path through conftest
from redis import asyncio as aioredis

from cypherstream import MemoryClient, NotReplicated
from cypherstream.shared.settings import RedisSettings
from tests.helpers import Graph, audit, submit_sequenced, wait_until


@pytest.fixture
def primary_and_replica(tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    """A single Redis (not a cluster) with one replica."""
    primary = services.RedisServer(tmp_path / "primary").start()
    replica = services.RedisServer(
        tmp_path / "replica", extra_args=["--replicaof", "127.0.0.1", str(primary.port)]
    ).start()
    try:
        yield primary, replica
    finally:
        replica.stop()
        primary.stop()


@pytest_asyncio.fixture
async def replica_client(primary_and_replica: tuple[Any, Any]) -> AsyncIterator[Any]:
    """A client of the replica, once it is in sync with the primary."""
    client = aioredis.from_url(primary_and_replica[1].url)

    async def in_sync() -> bool:
        info = await client.info("replication")
        return bool(info.get("master_link_status") == "up")

    await wait_until(in_sync, what="the replica to sync")
    yield client
    await client.aclose()


async def settings_on(make_settings: Any, start_drainer: Any, url: str, **memory: Any) -> Any:
    """Producer settings for the Redis at `url`, with a drainer running there."""
    await start_drainer(redis=RedisSettings(url=url))
    settings = make_settings("redis", **memory)
    settings.redis = RedisSettings(url=url)
    return settings


async def replicated_mark(replica: Any, streams: Any, session_id: str, client: Any) -> int:
    """The client's highest sequence number the replica holds for the session."""
    mark = await replica.hget(streams.keyspace().seen(session_id), client.client_id)
    return int(mark or 0)


async def test_a_submit_that_returned_is_already_on_the_replica(
    make_settings: Any,
    start_drainer: Any,
    primary_and_replica: tuple[Any, Any],
    replica_client: Any,
    streams: Any,
) -> None:
    primary, _ = primary_and_replica
    settings = await settings_on(make_settings, start_drainer, primary.url, wait_replicas=1)
    sessions = [f"s{i}" for i in range(50)]
    async with MemoryClient(settings) as client:
        await client.buffered.submit("RETURN 1", {}, session_id="alone")  # a lone call
        await asyncio.gather(  # many at once: one pipeline, one WAIT behind it
            *(client.buffered.submit("RETURN 1", {}, session_id=s) for s in sessions)
        )
        # Read at once: had submit returned before replication, some would be missing.
        marks = [await replicated_mark(replica_client, streams, s, client) for s in sessions]
        alone = await replicated_mark(replica_client, streams, "alone", client)

    assert alone == 1
    assert sorted(marks) == list(range(2, 52))


async def test_submit_raises_not_replicated_while_the_replica_cannot_confirm(
    make_settings: Any,
    start_drainer: Any,
    primary_and_replica: tuple[Any, Any],
    replica_client: Any,
    streams: Any,
    graph: Graph,
) -> None:
    primary, replica = primary_and_replica
    settings = await settings_on(
        make_settings, start_drainer, primary.url, wait_replicas=1, wait_timeout=0.05,
        redis_retry=0.3,
    )  # fmt: skip
    write = f"CREATE (:{graph.label} {{n: $n}})"
    async with MemoryClient(settings) as client:
        assert replica.proc is not None
        replica.proc.send_signal(signal.SIGSTOP)
        try:
            with pytest.raises(NotReplicated, match="0 of 1 replicas confirmed it within 50 ms"):
                await client.buffered.submit(write, {"n": 1}, session_id="s")
        finally:
            replica.proc.send_signal(signal.SIGCONT)
        await client.buffered.submit(write, {"n": 2}, session_id="s")
        mark = await replicated_mark(replica_client, streams, "s", client)
        await client.flush()

    assert mark == 2
    # The unconfirmed write was on the primary all along, and its retries added nothing.
    assert sorted(row["n"] for row in await graph.query("MATCH (x:$$) RETURN x.n AS n")) == [1, 2]


async def test_no_acknowledged_write_is_lost_when_a_cluster_master_fails_over(
    failover_cluster: Any, start_drainer: Any, make_settings: Any, graph: Graph, streams: Any
) -> None:
    redis_settings = RedisSettings(url=failover_cluster.url, cluster=True)
    await start_drainer(redis=redis_settings)
    settings = make_settings(
        "redis", wait_replicas=1, redis_retry=60, backpressure_timeout=120, flush_timeout=180
    )
    settings.redis = redis_settings
    stream = streams.keyspace().stream("s0")
    router = redis_settings.client()
    async with MemoryClient(settings) as client:
        first = await submit_sequenced(client, graph.label, sessions=30, writes=20)
        await router.xlen(stream)
        victim = router.get_node_from_key(stream).port

        acked = [0]
        more = asyncio.create_task(
            submit_sequenced(client, graph.label, sessions=30, writes=40, first=20, acked=acked)
        )
        await wait_until(lambda: _at_least(acked, 200), what="writes acknowledged")
        # The master dies with writes in flight to it and being drained from it; its
        # replica takes over, and the dead node comes back as the new master's replica
        # (as an orchestrator would restart it), so there is a replica to confirm again.
        dead = failover_cluster.node_at(victim)
        await asyncio.to_thread(dead.stop, signal.SIGKILL)
        await wait_until(lambda: _moved(router, stream, victim), what="a replica promoted")
        await asyncio.to_thread(dead.start)
        submitted = await more
        # The drainers' heartbeats live on one shard too; if it was this one, they lapsed
        # while it refused writes, and flush would report no live drainer until the
        # next heartbeat (at most lease_ttl / 3 away).
        await wait_until(lambda: _drainer_alive(router, streams), what="a drainer heartbeat")
        await client.flush()
    await router.aclose()

    result = await audit(graph, submitted)
    assert set(first) == set(submitted)
    assert (result.lost, result.duplicated, result.out_of_order) == (0, 0, 0)
    assert result.applied == 30 * 60


async def _drainer_alive(router: Any, streams: Any) -> bool:
    try:
        now_ms = time.time() * 1000
        return bool(await router.zcount(streams.keyspace().drainers, now_ms, "+inf"))
    except Exception:  # the cluster is still failing over
        return False


async def _moved(router: Any, key: str, old_port: int) -> bool:
    """Whether `key` is served by a node other than `old_port` now."""
    try:
        await router.xlen(key)
    except Exception:  # the cluster is failing over
        return False
    return bool(router.get_node_from_key(key).port != old_port)


async def _at_least(counter: list[int], value: int) -> bool:
    return counter[0] >= value
