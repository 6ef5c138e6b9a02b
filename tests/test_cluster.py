"""The same pipeline on a 3-master Redis Cluster: every script in one slot, order kept."""

from __future__ import annotations

from typing import Any

import pytest
import services  # deploy/local/services.py, on the path through conftest

from cypherstream import ConfigurationError, MemoryClient
from cypherstream.shared.settings import RedisSettings
from tests.helpers import Graph, audit, submit_killing_drainers, submit_sequenced


async def test_writes_apply_in_order_with_sessions_spread_over_every_master(
    cluster: Any, start_drainer: Any, make_settings: Any, graph: Graph, streams: Any
) -> None:
    await start_drainer(redis=cluster.settings)
    settings = make_settings("redis")
    settings.redis = cluster.settings

    async with MemoryClient(settings) as client:
        submitted = await submit_sequenced(client, graph.label, sessions=30, writes=40)
        keys = streams.keyspace()
        nodes = {cluster.get_node_from_key(keys.stream(s)).name for s in submitted}
        await client.flush()
        assert client.write_errors == []

    result = await audit(graph, submitted)
    assert (result.applied, result.duplicated, result.out_of_order, result.lost) == (1200, 0, 0, 0)
    assert len(nodes) == 3


async def test_scripts_a_cluster_lost_are_loaded_again_and_nothing_runs_twice(
    cluster: Any, start_drainer: Any, make_settings: Any, graph: Graph
) -> None:
    await start_drainer(redis=cluster.settings)
    settings = make_settings("redis")
    settings.redis = cluster.settings

    async with MemoryClient(settings) as client:
        await submit_sequenced(client, graph.label, sessions=10, writes=5)
        await client.flush()
        await cluster.execute_command("SCRIPT FLUSH", target_nodes=cluster.ALL_NODES)  # a restart
        submitted = await submit_sequenced(client, graph.label, sessions=10, writes=5, first=5)
        await client.flush()
        assert client.write_errors == []

    result = await audit(graph, submitted)
    assert (result.applied, result.duplicated, result.out_of_order, result.lost) == (100, 0, 0, 0)


async def test_drainer_processes_killed_mid_drain_on_a_cluster_lose_nothing(
    cluster: Any, spawn_drainer: Any, make_settings: Any, graph: Graph
) -> None:
    env = {"REDIS_URL": cluster.settings.url, "REDIS_CLUSTER": "true"}
    args = ("--lease-ttl", "2", "--tx-timeout", "5", "--concurrency", "8", "--batch-size", "20")

    async def spawn() -> Any:
        return await spawn_drainer(*args, redis_client=cluster, **env)

    drainers = [await spawn() for _ in range(2)]
    settings = make_settings("redis", flush_timeout=180)
    settings.redis = cluster.settings
    async with MemoryClient(settings) as client:
        submitted = await submit_killing_drainers(
            client, graph.label, drainers, spawn, rounds=3, sessions=30, writes=50
        )
        await client.flush()

    result = await audit(graph, submitted)
    assert (result.duplicated, result.out_of_order, result.lost) == (0, 0, 0)
    assert result.applied == result.submitted == 30 * 150


@pytest.mark.parametrize("dead_first", [True, False])
async def test_a_list_of_seed_nodes_reaches_the_cluster_while_one_seed_is_down(
    redis_cluster: Any, dead_first: bool
) -> None:
    dead = f"redis://127.0.0.1:{services.free_port()}/0"
    seeds = [dead, redis_cluster.url] if dead_first else [redis_cluster.url, dead]
    client = RedisSettings(url=",".join(seeds), cluster=True).client()
    try:
        await client.initialize()
        assert len(client.get_primaries()) == 3
    finally:
        await client.aclose()


async def test_a_cluster_node_given_without_redis_cluster_is_named(
    cluster: Any, make_settings: Any, streams: Any
) -> None:
    meta = cluster.get_node_from_key(streams.keyspace().meta)
    other = next(node for node in cluster.get_primaries() if node.name != meta.name)
    settings = make_settings("redis", redis_retry=0)
    settings.redis = RedisSettings(url=f"redis://{other.host}:{other.port}/0")

    with pytest.raises(ConfigurationError, match=r"MOVED .*set REDIS_CLUSTER=true"):
        await MemoryClient(settings).open()


def test_a_list_of_urls_without_redis_cluster_is_refused() -> None:
    settings = RedisSettings(url="redis://a:6379,redis://b:6379")

    with pytest.raises(ConfigurationError, match="REDIS_CLUSTER=true"):
        settings.client()
