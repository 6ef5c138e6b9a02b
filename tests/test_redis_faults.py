"""Redis failing under the producer and the drainer: clear errors, nothing
half-written, nothing lost, nothing twice."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from cypherstream import MemoryClient, RedisUnavailable
from cypherstream.shared.entry import WriteEntry, parse
from cypherstream.shared.settings import RedisSettings
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
