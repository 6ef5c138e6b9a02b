"""Entry versions in a fleet that upgrades one process at a time: drainers read both,
and producers write the older one while a live drainer reads nothing newer."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from cypherstream import MemoryClient
from cypherstream.drainer.dlq import list_dead_letters, replay
from cypherstream.shared.codec import encode_params
from cypherstream.shared.entry import VERSION, WriteEntry, flush_fields, parse, write_fields
from cypherstream.shared.errors import CypherstreamError
from cypherstream.shared.presence import presence
from cypherstream.shared.scripts import Scripts, submit_call
from cypherstream.shared.settings import StreamSettings
from cypherstream.shared.signing import Signer, signed_write_fields
from tests.helpers import (
    SEQUENCED_WRITE,
    as_read,
    assert_exactly_once_in_order,
    audit,
    count_is,
    wait_until,
)

OLD_DRAINER = "drainer-of-an-older-release"
KEY = "a-signing-key-of-32-bytes-at-least"


async def _queue_version_1(
    redis: Any, streams: StreamSettings, label: str, session: str, seqs: range
) -> None:
    """Append writes and a flush sentinel as a producer of an older release does."""
    keys = streams.keyspace()
    query = SEQUENCED_WRITE.format(label=label)
    for seq in seqs:
        params = encode_params({"session": session, "seq": seq})
        fields = write_fields(query, params, "old-producer", seq, version=1)
        script_keys, args = submit_call(keys, session, fields, limit=0, client_id="old-producer")
        await Scripts(redis).submit(keys=script_keys, args=args)
    sentinel = flush_fields("old-token", "old-producer", version=1)
    script_keys, args = submit_call(keys, session, sentinel, limit=0, client_id="old-producer")
    await Scripts(redis).submit(keys=script_keys, args=args)


async def _older_drainer_alive(redis: Any, streams: StreamSettings) -> None:
    """The heartbeat a drainer of an older release sends: it says nothing of versions."""
    keys = streams.keyspace()
    await Scripts(redis).heartbeat(
        keys=[keys.drainers, keys.drainer_info(OLD_DRAINER), keys.meta],
        args=[OLD_DRAINER, 60_000, "host", "elsewhere", "signing", "off"],
    )


async def _versions_queued(redis: Any, streams: StreamSettings, session: str) -> list[int]:
    entries = await redis.xrange(streams.keyspace().stream(session))
    return [2 if set(fields) == {b"p"} else int(fields[b"v"]) for _, fields in entries]


async def test_writes_and_a_flush_an_older_producer_queued_are_applied_and_answered(
    drainer: Any, make_settings: Any, redis: Any, streams: StreamSettings, graph: Any
) -> None:
    keys = streams.keyspace()
    async with MemoryClient(make_settings("redis")) as client:
        session = client.session_id
        await _queue_version_1(redis, streams, graph.label, session, range(50))
        query = SEQUENCED_WRITE.format(label=graph.label)
        for seq in range(50, 100):
            await client.buffered.submit(query, {"session": session, "seq": seq})
        await client.flush()
        reply = await redis.blpop([keys.ack(keys.partition_of(session), "old-token")], timeout=30)

    assert reply is not None and json.loads(reply[1])["s"] == session
    assert_exactly_once_in_order(await audit(graph, {session: 100}))


async def test_live_drainers_of_this_release_let_producers_write_the_newest_version(
    drainer: Any, redis: Any, streams: StreamSettings
) -> None:
    live = await presence(Scripts(redis).live, streams.keyspace())

    assert live.live == 1 and live.behind == []
    assert live.writable == VERSION == 2


async def test_a_producer_writes_the_newest_version_when_no_drainer_is_alive(
    make_settings: Any, redis: Any, streams: StreamSettings, start_drainer: Any
) -> None:
    async with MemoryClient(make_settings("redis")) as client:
        await client.buffered.submit("CREATE ()")
        versions = await _versions_queued(redis, streams, client.session_id)
        await start_drainer()  # for the flush on leaving

    assert versions == [VERSION]


async def test_a_producer_writes_version_1_while_a_live_drainer_reads_nothing_newer(
    make_settings: Any,
    redis: Any,
    streams: StreamSettings,
    start_drainer: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await _older_drainer_alive(redis, streams)
    with caplog.at_level(logging.WARNING, logger="cypherstream"):
        async with MemoryClient(make_settings("redis")) as client:
            await client.buffered.submit("CREATE ()")
            versions = await _versions_queued(redis, streams, client.session_id)
            await redis.zrem(streams.keyspace().drainers, OLD_DRAINER)  # the upgrade ends
            await start_drainer()  # which reads the version 1 write, for the flush on leaving

    assert versions == [1]
    assert any(OLD_DRAINER in record.getMessage() for record in caplog.records)


async def _dead_lettered_by_an_older_drainer(
    redis: Any, streams: StreamSettings, session: str, fields: list[bytes | str]
) -> None:
    """The record a drainer of an older release makes of a version 2 entry: refused as
    malformed, its one field kept as the parameters, nothing else of it known."""
    [name, value] = as_read(fields)
    assert name == b"p"
    await redis.xadd(
        streams.keyspace().dead_letters,
        {
            "session": session, "entry_id": "1-0", "client": "unknown", "seq": "0",
            "query": "", "params": value, "reason": "malformed", "code": "",
            "message": "unknown format version None; expected b'1'",
            "when": "2026-12-01T00:00:00+00:00", "drainer": OLD_DRAINER,
        },
    )  # fmt: skip


async def test_a_write_an_older_drainer_dead_lettered_as_malformed_is_replayed_whole(
    drainer: Any, redis: Any, streams: StreamSettings, graph: Any
) -> None:
    query = f"CREATE (:{graph.label} {{i: $i}})"
    fields = write_fields(query, encode_params({"i": 7}), "producer", 3)
    await _dead_lettered_by_an_older_drainer(redis, streams, "s-replayed", fields)
    keys = streams.keyspace()

    assert await replay(redis, keys, await list_dead_letters(redis, keys)) == 1

    await wait_until(lambda: count_is(graph, 1), what="the replayed write applied")
    assert await graph.query("MATCH (n:$$) RETURN n.i AS i") == [{"i": 7}]
    assert await list_dead_letters(redis, keys) == []


async def test_a_flush_marker_an_older_drainer_dead_lettered_is_dropped_on_replay(
    redis: Any, streams: StreamSettings
) -> None:
    await _dead_lettered_by_an_older_drainer(
        redis, streams, "s-flushed", flush_fields("token", "producer")
    )
    keys = streams.keyspace()

    assert await replay(redis, keys, await list_dead_letters(redis, keys)) == 1

    assert await list_dead_letters(redis, keys) == []
    assert await redis.exists(keys.stream("s-flushed")) == 0


@pytest.mark.parametrize("signed_with", [KEY, "another-key-of-32-bytes-and-more!"])
async def test_a_dead_lettered_newer_write_is_replayed_only_where_its_signature_holds(
    signed_with: str, redis: Any, streams: StreamSettings
) -> None:
    signer = Signer([KEY.encode()])
    packed = encode_params({"i": 1})
    fields = signed_write_fields(Signer([signed_with.encode()]), "s", "CREATE ()", packed, "c", 1)
    await _dead_lettered_by_an_older_drainer(redis, streams, "s", fields)
    keys = streams.keyspace()
    letters = await list_dead_letters(redis, keys)

    if signed_with != KEY:
        with pytest.raises(CypherstreamError, match="nobody trusted signed it"):
            await replay(redis, keys, letters, signer)
        return
    assert await replay(redis, keys, letters, signer) == 1
    [(entry_id, queued)] = await redis.xrange(keys.stream("s"))
    entry = parse(entry_id.decode(), queued)
    assert isinstance(entry, WriteEntry) and signer.verify("s", entry)
    assert (entry.query, entry.params, entry.client_id) == ("CREATE ()", packed, "c")
