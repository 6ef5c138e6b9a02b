"""A script pipeline's own connection (`shared/lane.py`): replies in step, errors in
place, and a connection out of step never reused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from redis import exceptions as rx
from redis.asyncio import Redis

from cypherstream.shared.entry import flush_fields
from cypherstream.shared.keys import Keyspace
from cypherstream.shared.lane import Lane
from cypherstream.shared.pipelines import ScriptPipeline
from cypherstream.shared.scripts import Scripts, submit_call
from cypherstream.shared.settings import StreamSettings
from tests.helpers import wait_until


async def test_replies_come_in_order_with_error_replies_in_their_place(redis: Any) -> None:
    lane = Lane(redis)
    try:
        replies = await lane.run([("ECHO", "a"), ("NOSUCHCOMMAND",), ("ECHO", "b")])
    finally:
        await lane.close()
    assert replies[0] == b"a" and replies[2] == b"b"
    assert isinstance(replies[1], rx.ResponseError)


async def test_a_batch_cancelled_before_its_replies_leaves_the_next_batch_in_step(
    redis: Any,
) -> None:
    lane = Lane(redis)
    try:
        # BLPOP on a key nobody fills: the reply is still unread when the batch is cancelled.
        blocked = asyncio.ensure_future(lane.run([("BLPOP", "cypherstream-test-nothing", 5)]))
        await asyncio.sleep(0.1)
        blocked.cancel()
        with pytest.raises(asyncio.CancelledError):
            await blocked
        assert await lane.run([("ECHO", "after")]) == [b"after"]
    finally:
        await lane.close()


@pytest_asyncio.fixture
async def timing_out(redis_url: str) -> AsyncIterator[Callable[[float], Lane]]:
    """`timing_out(seconds)`: a lane whose batches time out after `seconds`."""
    opened: list[tuple[Redis, Lane]] = []

    def lane(seconds: float) -> Lane:
        client = Redis.from_url(redis_url, socket_timeout=seconds)
        opened.append((client, Lane(client)))
        return opened[-1][1]

    yield lane
    for client, one in opened:
        await one.close()
        await client.aclose()


async def test_a_redis_that_does_not_answer_in_time_raises_redis_timeout(
    timing_out: Callable[[float], Lane],
) -> None:
    lane = timing_out(0.2)

    with pytest.raises(rx.TimeoutError, match=r"did not answer within 0\.2s"):
        await lane.run([("BLPOP", "cypherstream-test-nothing", 2)])
    assert await lane.run([("ECHO", "again")]) == [b"again"]


async def test_a_batch_counting_on_a_watch_never_goes_on_a_connection_made_again(
    timing_out: Callable[[float], Lane],
) -> None:
    lane = timing_out(0.2)
    await lane.run([("WATCH", "cypherstream-test-watched")])
    with pytest.raises(rx.TimeoutError):  # the connection, and its watch, are dropped
        await lane.run([("BLPOP", "cypherstream-test-nothing", 2)])

    with pytest.raises(rx.ConnectionError, match="watched the keys was lost"):
        await lane.run([("MULTI",), ("ECHO", "unguarded"), ("EXEC",)], watching=True)
    assert await lane.run([("ECHO", "again")]) == [b"again"]  # a fresh start may


async def test_each_batch_has_the_whole_deadline_however_late_it_starts(
    timing_out: Callable[[float], Lane],
) -> None:
    # One timer serves the lane: armed for the first batch's deadline, it must move on
    # to the second's, not cancel a batch that started 0.6 s into the first's second.
    lane = timing_out(1.0)
    assert await lane.run([("ECHO", "first")]) == [b"first"]
    await asyncio.sleep(0.6)
    assert await lane.run([("BLPOP", "cypherstream-test-nothing", 0.8)]) == [None]


async def test_a_deadline_passed_while_idle_still_times_the_next_batch_out(
    timing_out: Callable[[float], Lane],
) -> None:
    lane = timing_out(0.3)
    assert await lane.run([("ECHO", "first")]) == [b"first"]
    await asyncio.sleep(0.5)  # the first batch's deadline passes with nothing running
    with pytest.raises(rx.TimeoutError, match=r"did not answer within 0\.3s"):
        await lane.run([("BLPOP", "cypherstream-test-nothing", 5)])


async def test_a_script_redis_lost_is_loaded_again_and_runs_once(
    redis: Any, streams: StreamSettings
) -> None:
    keys = Keyspace(streams.key_prefix, streams.partitions)
    pipeline = ScriptPipeline(redis, Scripts(redis).submit)
    try:
        for _ in range(2):
            await redis.script_flush()
            script_keys, args = submit_call(
                keys, "lost", flush_fields("t", "c"), limit=0, client_id="c"
            )
            assert await pipeline.call(script_keys, args) is not None
    finally:
        await pipeline.close()
    assert await redis.xlen(keys.stream("lost")) == 2


async def test_a_connection_redis_closed_while_idle_is_replaced_before_the_next_batch(
    redis: Any,
) -> None:
    lane = Lane(redis)

    async def closed() -> bool:
        return not lane.connected

    try:
        (own_id,) = await lane.run([("CLIENT", "ID")])
        assert await redis.client_kill_filter(_id=own_id) == 1
        await wait_until(closed, timeout=5, what="the lane to see its connection closed")
        assert await lane.run([("ECHO", "after")]) == [b"after"]
    finally:
        await lane.close()
