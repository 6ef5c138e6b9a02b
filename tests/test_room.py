"""Back-pressure wakes on room: a drainer's acknowledgement announces it to the waiting submit."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cypherstream import MemoryClient
from cypherstream.drainer.session_scripts import FlushAnswer, SessionScripts
from cypherstream.producer.room import RoomSignal
from cypherstream.shared.entry import flush_fields
from cypherstream.shared.keys import Keyspace
from cypherstream.shared.scripts import Scripts, submit_call
from cypherstream.shared.settings import StreamSettings
from tests.helpers import Graph, assert_exactly_once_in_order, audit, wait_until

LIMIT = 5


def keyspace(streams: StreamSettings) -> Keyspace:
    return Keyspace(streams.key_prefix, streams.partitions)


async def watching(signal: RoomSignal, session: str) -> asyncio.Event:
    """`signal.watch(session)`, once the subscription stands: `watch` waits for it 1 s
    at most, and on a loaded machine an announcement made sooner would be missed."""
    room = await signal.watch(session)

    async def subscribed() -> bool:
        return signal.subscribed

    await wait_until(subscribed, timeout=30, what="the room channel's subscription")
    return room


async def announced(signal: RoomSignal, room: asyncio.Event, within: float) -> bool:
    """Whether the session is announced within `within` seconds (each wait is capped)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        if await signal.wait(room, deadline - loop.time()):
            return True
    return False


async def test_a_refused_submit_raises_the_sessions_wants_room_flag(
    redis: Any, streams: StreamSettings
) -> None:
    keys = keyspace(streams)
    scripts = Scripts(redis)
    for seq in range(LIMIT + 1):
        script_keys, args = submit_call(
            keys, "s", [b"q", b"x"], limit=LIMIT, client_id="c", seq=seq + 1
        )
        reply = await scripts.submit(keys=script_keys, args=args)

    assert reply is None  # the sixth is refused: the stream holds LIMIT entries
    assert await redis.exists(keys.wants_room("s")) == 1
    assert 0 < await redis.ttl(keys.wants_room("s")) <= 60


async def test_the_drainers_acknowledgement_announces_room_to_a_waiting_submit(
    redis: Any, streams: StreamSettings, make_settings: Any, start_drainer: Any, graph: Graph
) -> None:
    keys = keyspace(streams)
    signal = RoomSignal(redis, keys.room_channel)
    query = (
        f"MERGE (s:{graph.label} {{session: $session}}) SET s.seqs = coalesce(s.seqs, []) + $seq"
    )
    try:
        async with MemoryClient(make_settings("redis", max_pending=LIMIT)) as client:
            for seq in range(LIMIT):
                await client.buffered.submit(query, {"session": "s", "seq": seq}, session_id="s")
            waiting = asyncio.create_task(
                client.buffered.submit(query, {"session": "s", "seq": LIMIT}, session_id="s")
            )

            async def flag_raised() -> bool:
                return bool(await redis.exists(keys.wants_room("s")))

            await wait_until(flag_raised, timeout=30, what="the refused submit's flag")
            room = await watching(signal, "s")
            await start_drainer()

            assert await announced(signal, room, within=60)
            await asyncio.wait_for(waiting, 30)
            await client.flush()
    finally:
        await signal.close()

    assert_exactly_once_in_order(await audit(graph, {"s": LIMIT + 1}))
    assert await redis.exists(keys.wants_room("s")) == 0


async def test_without_an_announcement_a_wait_ends_at_its_timeout(
    redis: Any, streams: StreamSettings
) -> None:
    signal = RoomSignal(redis, keyspace(streams).room_channel)
    try:
        room = await signal.watch("quiet")
        assert await signal.wait(room, timeout=0.01) is False
    finally:
        await signal.close()


async def test_answering_a_flush_announces_the_room_its_sentinel_held(
    redis: Any, streams: StreamSettings
) -> None:
    keys = keyspace(streams)
    scripts = Scripts(redis)
    for seq in (1, 2):  # a sentinel fills a stream of one; the write after it is refused
        fields = flush_fields("token", "c") if seq == 1 else [b"q", b"x"]
        script_keys, args = submit_call(keys, "f", fields, limit=1, client_id="c", seq=seq)
        await scripts.submit(keys=script_keys, args=args)
    [(sentinel_id, _)] = await redis.xrange(keys.stream("f"), count=1)
    signal = RoomSignal(redis, keys.room_channel)
    drain = SessionScripts(redis, scripts, keys, "d", lease_ms=10_000, idle_ms=0)
    try:
        room = await watching(signal, "f")
        answer = FlushAnswer(sentinel_id.decode(), "token", "c", bookmarks=())
        await drain.settle("f", [], answer)
        assert await announced(signal, room, within=30)
    finally:
        await drain.close()
        await signal.close()
    assert await redis.xlen(keys.stream("f")) == 0


async def refuse_then_acknowledge(redis: Any, keys: Keyspace, session: str) -> None:
    """Fill `session` to a limit of 1, have a submit refused (raising its flag), then
    acknowledge the queued entry as a drainer does."""
    scripts = Scripts(redis)
    for seq in (1, 2):
        script_keys, args = submit_call(
            keys, session, [b"q", b"x"], limit=1, client_id="c", seq=seq
        )
        await scripts.submit(keys=script_keys, args=args)
    [(entry_id, _)] = await redis.xrange(keys.stream(session), count=1)
    drain = SessionScripts(redis, scripts, keys, "d", lease_ms=10_000, idle_ms=0)
    try:
        await drain.settle(session, [entry_id.decode()])
    finally:
        await drain.close()


async def test_on_a_redis_cluster_the_acknowledgement_announces_room_too(
    cluster: Any, streams: StreamSettings
) -> None:
    keys = keyspace(streams)
    signal = RoomSignal(cluster, keys.room_channel)
    try:
        # Sessions on different masters: PUBLISH reaches a subscriber on any node.
        for session in ("a", "b", "c", "d"):
            room = await watching(signal, session)
            await refuse_then_acknowledge(cluster, keys, session)
            assert await announced(signal, room, within=30), session
            signal.done(session)
    finally:
        await signal.close()


async def test_a_user_without_the_room_channel_is_told_once_and_waits_by_polling(
    secure_redis: Any, caplog: pytest.LogCaptureFixture
) -> None:
    admin = secure_redis.settings("drainer").client()
    await admin.acl_setuser(
        "nochannel", enabled=True, passwords=["+nochannel-pass"],
        keys=["{secure:p*", "{secure}:*"], commands=["+@all"], reset_channels=True,
    )  # fmt: skip
    limited = secure_redis.settings("nochannel", password="nochannel-pass").client()
    signal = RoomSignal(limited, Keyspace(secure_redis.prefix, 4).room_channel)
    try:
        room = await signal.watch("s")

        async def told() -> bool:
            return "may not subscribe" in caplog.text

        await wait_until(told, timeout=30, what="the warning about the room channel")
        assert await signal.wait(room, timeout=0.01) is False  # a timed retry, no error
    finally:
        await signal.close()
        await limited.aclose()
        await admin.acl_deluser("nochannel")
        await admin.aclose()
