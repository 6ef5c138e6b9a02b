"""Drainers are told of work: a submit that makes a session ready announces it, so an
idle drainer looks at once instead of at its next poll."""

from __future__ import annotations

from typing import Any

from cypherstream import MemoryClient
from cypherstream.shared.keys import Keyspace
from cypherstream.shared.scripts import Scripts, submit_call
from cypherstream.shared.settings import StreamSettings
from tests.helpers import Graph, assert_exactly_once_in_order, audit, wait_until

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

    async def listening() -> bool:
        [(_, subscribers)] = await redis.pubsub_numsub(keys.ready_channel)
        return int(subscribers) >= 1

    await wait_until(listening, timeout=30, what="the drainer's subscription")
    query = (
        f"MERGE (s:{graph.label} {{session: $session}}) SET s.seqs = coalesce(s.seqs, []) + $seq"
    )
    async with MemoryClient(make_settings("redis")) as client:
        for seq in range(3):
            await client.buffered.submit(query, {"session": "idle", "seq": seq}, session_id="idle")
        await client.flush(timeout=FLUSH_TIMEOUT)

    assert_exactly_once_in_order(await audit(graph, {"idle": 3}))


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
