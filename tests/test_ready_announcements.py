"""Drainers are told of work: a submit that makes a session ready announces it, so an
idle drainer looks at once instead of at its next poll."""

from __future__ import annotations

from typing import Any

from cypherstream import MemoryClient
from cypherstream.shared.keys import Keyspace
from cypherstream.shared.scripts import Scripts, submit_call
from cypherstream.shared.settings import StreamSettings
from tests.helpers import SEQUENCED_WRITE, Graph, assert_exactly_once_in_order, audit, wait_until

#: The drainer's poll, and the flush's timeout, shorter: the flush returns in time only
#: if the drainer looked before its next poll.
POLL, FLUSH_TIMEOUT = 10.0, 8.0


async def test_a_submit_that_makes_a_session_ready_announces_it_once(
    redis: Any, streams: StreamSettings
) -> None:
    keys = Keyspace(streams.key_prefix, streams.partitions)
    pubsub = redis.pubsub()
    await pubsub.subscribe(keys.ready_channel)
    try:
        await pubsub.get_message(timeout=5)  # the subscription's confirmation
        for _ in range(2):  # the second finds the session ready already
            script_keys, args = submit_call(keys, "new", [b"q", b"x"], limit=0, client_id="c")
            await Scripts(redis).submit(keys=script_keys, args=args)
        first = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
        second = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
    finally:
        await pubsub.aclose()
    assert first is not None and first["data"] == b"new"
    assert second is None


async def test_an_idle_drainer_takes_a_session_the_moment_it_becomes_ready(
    redis: Any, streams: StreamSettings, make_settings: Any, start_drainer: Any, graph: Graph
) -> None:
    keys = Keyspace(streams.key_prefix, streams.partitions)
    await start_drainer(poll_interval=POLL)
    await wait_until(lambda: listening(redis, keys), timeout=30, what="the drainer's subscription")
    query = SEQUENCED_WRITE.format(label=graph.label)
    async with MemoryClient(make_settings("redis")) as client:
        for seq in range(3):
            await client.buffered.submit(query, {"session": "idle", "seq": seq}, session_id="idle")
        await client.flush(timeout=FLUSH_TIMEOUT)

    assert_exactly_once_in_order(await audit(graph, {"idle": 3}))


async def test_a_drainer_with_a_free_slot_takes_an_announced_session_without_a_look(
    redis: Any, streams: StreamSettings, make_settings: Any, start_drainer: Any, graph: Graph
) -> None:
    keys = Keyspace(streams.key_prefix, streams.partitions)
    async with MemoryClient(make_settings("redis")) as client:
        write = SEQUENCED_WRITE.format(label=graph.label)
        await client.buffered.submit(
            write, {"session": "unlisted", "seq": 0}, session_id="unlisted"
        )
        # Out of its ready set, where no look finds it (nor a sweep, this test long).
        await redis.zrem(keys.ready(keys.partition_of("unlisted")), "unlisted")
        await start_drainer(poll_interval=POLL, sweep_interval=3600)
        await wait_until(lambda: listening(redis, keys), timeout=30, what="the subscription")

        await redis.publish(keys.ready_channel, "unlisted")  # as `submit.lua` announces

        await wait_until(
            lambda: drained(redis, keys.stream("unlisted")), timeout=FLUSH_TIMEOUT,
            what="the announced session to be drained",
        )  # fmt: skip
    assert_exactly_once_in_order(await audit(graph, {"unlisted": 1}))


async def listening(redis: Any, keys: Keyspace) -> bool:
    """Whether a drainer listens for announcements."""
    [(_, subscribers)] = await redis.pubsub_numsub(keys.ready_channel)
    return int(subscribers) >= 1


async def drained(redis: Any, stream: str) -> bool:
    return int(await redis.xlen(stream)) == 0


async def test_a_producer_without_the_ready_channel_still_submits(secure_redis: Any) -> None:
    # The test ACL grants its producer the room channel only.
    producer = secure_redis.settings("producer").client()
    keys = Keyspace(secure_redis.prefix, 4)
    try:
        script_keys, args = submit_call(keys, "quiet", [b"q", b"x"], limit=0, client_id="c")
        assert await Scripts(producer).submit(keys=script_keys, args=args) is not None
        assert await producer.xlen(keys.stream("quiet")) == 1
    finally:
        await producer.delete(keys.stream("quiet"))
        await producer.aclose()
