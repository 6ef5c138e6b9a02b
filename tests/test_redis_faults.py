"""Redis failing under the producer and the drainer: clear errors, nothing
half-written, nothing lost, nothing twice."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
import services

from cypherstream import MemoryClient, RedisUnavailable
from cypherstream.shared.entry import WriteEntry, parse
from cypherstream.shared.settings import RedisSettings
from tests.conftest import OwnRedis
from tests.helpers import (
    SEQUENCED_WRITE,
    FlakyProxy,
    assert_exactly_once_in_order,
    audit,
    through,
    wait_until,
)


async def test_a_submit_whose_reply_was_lost_is_retried_without_queuing_twice(
    make_settings: Any, proxy: FlakyProxy, redis: Any, streams: Any, graph: Any, start_drainer: Any
) -> None:
    async with MemoryClient(through(make_settings("redis"), proxy)) as client:
        stream = streams.keyspace().stream(client.session_id)
        await client.buffered.submit(f"CREATE (:{graph.label} {{i: 1}})")

        proxy.drop_next_reply = True
        await client.buffered.submit(f"CREATE (:{graph.label} {{i: 2}})")

        assert proxy.dropped == 1
        assert await redis.xlen(stream) == 2
        entries = [parse(entry_id, fields) for entry_id, fields in await redis.xrange(stream)]
        queries = [entry.query for entry in entries if isinstance(entry, WriteEntry)]
        assert queries == [f"CREATE (:{graph.label} {{i: {i}}})" for i in (1, 2)]
        await start_drainer()
        await client.flush()

    assert await graph.count() == 2


async def test_a_drainer_read_whose_reply_was_lost_applies_every_write_once_in_order(
    make_settings: Any, proxy: FlakyProxy, graph: Any, start_drainer: Any
) -> None:
    # Redis ran the read (its entries are now pending for the drainer) but the reply
    # never came: the read after it must return those entries, not the ones after them.
    query = SEQUENCED_WRITE.format(label=graph.label)
    async with MemoryClient(make_settings("redis")) as client:
        for seq in range(30):
            params = {"session": "s0", "seq": seq, "mark": f"mark-{seq:03d}"}
            await client.buffered.submit(query, params, session_id="s0")
        proxy.drop_reply_with = b"mark-015"  # the second read of 10: a read ahead
        drainer = await start_drainer(
            redis=RedisSettings(url=f"redis://127.0.0.1:{proxy.port}/0"), batch_size=10
        )
        await client.flush()

    assert proxy.dropped == 1
    assert_exactly_once_in_order(await audit(graph, {"s0": 30}))
    # The retry returned the batch being applied too: not run again, only acknowledged.
    assert drainer.metrics.batched_writes + drainer.metrics.single_writes == 30


async def test_submit_raises_a_clear_error_and_queues_nothing_when_redis_is_gone(
    make_settings: Any, proxy: FlakyProxy, redis: Any, streams: Any, graph: Any
) -> None:
    settings = through(make_settings("redis", redis_retry=0.5), proxy)
    client = MemoryClient(settings)
    await client.open()
    stream = streams.keyspace().stream(client.session_id)
    await client.buffered.submit(f"CREATE (:{graph.label} {{i: 1}})")
    await proxy.stop()
    started = time.monotonic()

    with pytest.raises(RedisUnavailable, match=r"cannot reach Redis.*wrote nothing"):
        await client.buffered.submit(f"CREATE (:{graph.label} {{i: 2}})")

    assert time.monotonic() - started < 10
    assert await redis.xlen(stream) == 1
    with pytest.raises(RedisUnavailable):
        await client.flush()
    await redis.delete(stream)


async def test_opening_a_client_against_a_dead_redis_says_what_to_check(
    make_settings: Any, proxy: FlakyProxy
) -> None:
    settings = through(make_settings("redis"), proxy)
    await proxy.stop()

    with pytest.raises(RedisUnavailable, match="REDIS_URL"):
        await MemoryClient(settings).open()


async def test_flush_waits_through_a_broken_connection_shorter_than_redis_retry(
    make_settings: Any, proxy: FlakyProxy, redis: Any, streams: Any, graph: Any, start_drainer: Any
) -> None:
    keys = streams.keyspace()
    # A drainer that looks alive but does nothing keeps the flush waiting on its reply.
    await redis.zadd(keys.drainers, {"stand-in": (time.time() + 600) * 1000})
    async with MemoryClient(through(make_settings("redis", redis_retry=30), proxy)) as client:
        stream = keys.stream(client.session_id)
        await client.buffered.submit(f"CREATE (:{graph.label})")
        flushing = asyncio.create_task(client.flush())
        await wait_until(lambda: _length_is(redis, stream, 2), what="the flush sentinel")

        await proxy.stop()  # cuts the connection waiting for the drainer's reply
        await proxy.start(port=proxy.port)
        await start_drainer()
        await flushing

    await redis.zrem(keys.drainers, "stand-in")
    assert await graph.count() == 1


async def _length_is(redis: Any, stream: str, length: int) -> bool:
    return bool(await redis.xlen(stream) == length)


#: A script that keeps Redis busy for ARGV[1] microseconds: past `busy-reply-threshold`,
#: Redis answers every other command with BUSY until it ends (as while someone else's
#: slow script runs; cypherstream's own are short).
_BUSY_SCRIPT = """
local t = redis.call('TIME'); local start = t[1] * 1000000 + t[2]
repeat local n = redis.call('TIME') until (n[1] * 1000000 + n[2]) - start > tonumber(ARGV[1])
return 1
"""


@pytest.fixture
def busy_redis(own_redis: OwnRedis) -> services.RedisServer:
    """A redis-server of its own that answers BUSY 100 ms into a long script."""
    return own_redis("busy-redis", "--busy-reply-threshold", "100")


@pytest_asyncio.fixture
async def keep_busy(busy_redis: services.RedisServer) -> AsyncIterator[Any]:
    """`await keep_busy(seconds)`: run the busy script that long, once Redis answers BUSY."""
    runner, probe = aioredis.from_url(busy_redis.url), aioredis.from_url(busy_redis.url)
    scripts: list[asyncio.Task[Any]] = []

    async def start(seconds: float) -> asyncio.Task[Any]:
        script = asyncio.create_task(runner.eval(_BUSY_SCRIPT, 0, int(seconds * 1e6)))
        scripts.append(script)

        async def busy() -> bool:
            try:
                await probe.ping()
            except Exception as exc:
                return str(exc).startswith("BUSY")
            return False

        await wait_until(busy, what="Redis answering BUSY")
        return script

    yield start
    await asyncio.gather(*scripts, return_exceptions=True)
    await runner.aclose()
    await probe.aclose()


def _on(settings: Any, server: services.RedisServer) -> Any:
    settings.redis = RedisSettings(url=server.url)
    return settings


async def test_a_submit_waits_while_redis_is_busy_running_a_script_then_queues(
    make_settings: Any,
    busy_redis: services.RedisServer,
    keep_busy: Any,
    streams: Any,
    graph: Any,
    start_drainer: Any,
) -> None:
    async with MemoryClient(_on(make_settings("redis", redis_retry=30), busy_redis)) as client:
        script = await keep_busy(1.0)

        await client.buffered.submit(f"CREATE (:{graph.label})")

        await script
        probe = aioredis.from_url(busy_redis.url)
        assert await probe.xlen(streams.keyspace().stream(client.session_id)) == 1
        await probe.aclose()
        await start_drainer(redis=RedisSettings(url=busy_redis.url))
    assert await graph.count() == 1


async def test_opening_a_client_while_redis_is_busy_running_a_script_says_so(
    make_settings: Any, busy_redis: services.RedisServer, keep_busy: Any
) -> None:
    await keep_busy(1.0)

    with pytest.raises(RedisUnavailable, match="busy running a script"):
        await MemoryClient(_on(make_settings("redis", redis_retry=0), busy_redis)).open()


async def test_a_drainer_waits_out_a_busy_redis_and_drains_what_came_during_it(
    make_settings: Any,
    busy_redis: services.RedisServer,
    keep_busy: Any,
    start_drainer: Any,
    graph: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await start_drainer(redis=RedisSettings(url=busy_redis.url), poll_interval=0.01)
    async with MemoryClient(_on(make_settings("redis", redis_retry=30), busy_redis)) as client:
        await client.buffered.submit(f"CREATE (:{graph.label} {{i: 1}})")
        await client.flush()
        caplog.set_level(logging.WARNING)
        script = await keep_busy(1.0)

        await client.buffered.submit(f"CREATE (:{graph.label} {{i: 2}})")
        await client.flush()

        await script
    assert await graph.count() == 2
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not failures, [r.getMessage() for r in failures]
