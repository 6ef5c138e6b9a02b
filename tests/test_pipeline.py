"""The Redis pipeline: ordered per-session streams, back-pressure, flush by sentinel, errors."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from cypherstream import BackpressureTimeout, FlushTimeout, MemoryClient
from cypherstream.drainer.apply import Applier
from cypherstream.shared.entry import parse
from cypherstream.shared.keys import GROUP
from tests.helpers import wait_until


async def test_a_chain_of_1000_dependent_writes_ends_as_sequential_execution(
    drainer: Any, client: MemoryClient, graph: Any
) -> None:
    label = graph.label
    await client.buffered.submit(f"CREATE (:{label} {{seq: 0, counter: 0}})")
    for seq in range(1, 1000):
        await client.buffered.submit(
            f"MATCH (prev:{label} {{seq: $prev}}) "
            f"CREATE (prev)-[:NEXT]->(:{label} {{seq: $seq}}) "
            f"WITH 1 AS one MATCH (first:{label} {{seq: 0}}) "
            "WHERE first.counter = $prev SET first.counter = $seq",
            {"prev": seq - 1, "seq": seq},
        )
    await client.flush()

    chain = await graph.query(
        "MATCH p = (:$$ {seq: 0})-[:NEXT*]->(last:$$) WHERE NOT (last)-[:NEXT]->() "
        "RETURN length(p) AS hops, last.seq AS last"
    )
    counter = await graph.query("MATCH (n:$$ {seq: 0}) RETURN n.counter AS c")
    assert chain == [{"hops": 999, "last": 999}]
    assert counter == [{"c": 999}]
    assert await graph.count() == 1000


async def test_submit_returns_before_the_write_is_applied(
    client: MemoryClient, graph: Any, start_drainer: Any
) -> None:
    await client.buffered.submit(f"CREATE (:{graph.label})")

    assert await client.buffered.pending() == 1
    assert await graph.count() == 0

    await start_drainer()
    await client.flush()
    assert await graph.count() == 1
    assert await client.buffered.pending() == 0


async def test_flush_without_a_live_drainer_raises_promptly(make_settings: Any, graph: Any) -> None:
    client = MemoryClient(make_settings("redis", flush_timeout=60))
    await client.open()
    await client.buffered.submit(f"CREATE (:{graph.label})")
    started = time.monotonic()

    with pytest.raises(FlushTimeout, match=r"no drainer is alive.*drainer run"):
        await client.flush()

    assert time.monotonic() - started < 5
    with pytest.raises(FlushTimeout):
        await client.close()  # close flushes too, and says so rather than hanging


async def test_back_pressure_holds_submit_and_bounds_the_stream(
    make_settings: Any, graph: Any, redis: Any, start_drainer: Any, streams: Any
) -> None:
    async with MemoryClient(make_settings("redis", max_pending=4)) as client:
        stream = streams.keyspace().stream(client.session_id)

        async def submit_all() -> None:
            for i in range(12):
                await client.buffered.submit(f"CREATE (:{graph.label} {{i: $i}})", {"i": i})

        producer = asyncio.create_task(submit_all())
        await wait_until(lambda: _xlen_is(redis, stream, 4), what="stream to fill up")
        await asyncio.sleep(0.2)  # give submit the chance to overfill, which it must not take

        assert not producer.done()
        assert await redis.xlen(stream) == 4

        await start_drainer()
        await asyncio.wait_for(producer, 60)
        await client.flush()

    assert sorted(r["i"] for r in await graph.query("MATCH (n:$$) RETURN n.i AS i")) == list(
        range(12)
    )


async def test_more_concurrent_submits_than_connections_wait_for_a_connection(
    drainer: Any, make_settings: Any, graph: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings("redis")
    settings.redis.max_connections = 2
    async with MemoryClient(settings) as client:
        await asyncio.gather(
            *(
                client.buffered.submit(f"CREATE (:{graph.label})", session_id=f"s{n}")
                for n in range(60)
            )
        )
        await client.flush()

    assert await graph.count() == 60
    assert "retrying" not in caplog.text  # a busy pool is not a broken Redis


async def _xlen_is(redis: Any, stream: str, length: int) -> bool:
    return int(await redis.xlen(stream)) == length


async def test_back_pressure_gives_up_with_a_clear_error_when_nothing_drains(
    make_settings: Any, graph: Any
) -> None:
    settings = make_settings("redis", max_pending=2, backpressure_timeout=0.3)
    client = MemoryClient(settings)
    await client.open()
    await client.buffered.submit(f"CREATE (:{graph.label})")
    await client.buffered.submit(f"CREATE (:{graph.label})")

    with pytest.raises(BackpressureTimeout, match="drainer"):
        await client.buffered.submit(f"CREATE (:{graph.label})")

    assert await client.buffered.pending() == 2


async def test_failed_writes_reach_write_errors_and_the_dead_letters_and_the_stream_goes_on(
    drainer: Any, make_settings: Any, graph: Any, redis: Any, streams: Any
) -> None:
    label = graph.label
    await graph.query(f"CREATE CONSTRAINT {label}_k FOR (n:{label}) REQUIRE n.k IS UNIQUE")
    seen: list[Any] = []
    async with MemoryClient(make_settings("redis"), on_error=seen.append) as client:
        await client.buffered.submit(f"CREATE (:{label} {{k: 1}})")
        await client.buffered.submit("CREAT (oops", {"why": "syntax"})
        await client.buffered.submit(f"CREATE (:{label} {{k: 1}})", {"why": "constraint"})
        await client.buffered.submit(f"CREATE (:{label} {{k: 2}})")
        await client.flush()

        errors = client.write_errors

    assert [e.code for e in errors] == [
        "Neo.ClientError.Statement.SyntaxError",
        "Neo.ClientError.Schema.ConstraintValidationFailed",
    ]
    assert errors[0].query == "CREAT (oops"
    assert errors[0].parameters == {"why": "syntax"}
    assert errors[1].session_id == client.session_id
    assert seen == errors
    assert await graph.count() == 2
    dead = await redis.xrange(streams.keyspace().dead_letters)
    assert [fields[b"code"].decode() for _, fields in dead] == [e.code for e in errors]


async def test_errors_go_to_the_client_that_submitted_the_failing_write(
    drainer: Any, make_settings: Any, graph: Any
) -> None:
    settings = make_settings("redis", session_id="shared-session")
    async with MemoryClient(settings) as failing, MemoryClient(settings) as other:
        await failing.buffered.submit("RETURN nonsense(")
        await other.buffered.submit(f"CREATE (:{graph.label})")
        await other.flush()
        await failing.flush()

        assert other.write_errors == []
        assert len(failing.write_errors) == 1


async def test_a_malformed_entry_is_dead_lettered_and_the_stream_continues(
    drainer: Any, client: MemoryClient, graph: Any, redis: Any, streams: Any
) -> None:
    keys = streams.keyspace()
    await client.buffered.submit(f"CREATE (:{graph.label} {{i: 1}})")
    await redis.xadd(keys.stream(client.session_id), {"v": "1", "k": "w", "q": "garbage"})
    await redis.xadd(keys.stream(client.session_id), {"junk": b"\xff\x00"})
    await client.buffered.submit(f"CREATE (:{graph.label} {{i: 2}})")
    await client.flush()

    assert await graph.count() == 2
    dead = await redis.xrange(keys.dead_letters)
    assert [fields[b"code"] for _, fields in dead] == [b"MalformedEntry", b"MalformedEntry"]


async def test_an_entry_committed_but_never_acknowledged_is_not_applied_again(
    make_settings: Any, graph: Any, redis: Any, streams: Any, neo4j: Any, start_drainer: Any
) -> None:
    keys = streams.keyspace()
    async with MemoryClient(make_settings("redis")) as client:
        for i in range(5):
            await client.buffered.submit(f"CREATE (:{graph.label} {{i: $i}})", {"i": i})
        # A drainer that committed the first three and died before XACK.
        stream = keys.stream(client.session_id)
        delivered = await redis.xreadgroup(GROUP, "dead-drainer", {stream: ">"}, count=3)
        writes = [parse(eid.decode(), fields) for eid, fields in delivered[0][1]]
        await Applier(neo4j, None).apply(keys.progress_id(client.session_id), writes)  # type: ignore[arg-type]

        await start_drainer()
        await client.flush()

    assert sorted(r["i"] for r in await graph.query("MATCH (n:$$) RETURN n.i AS i")) == [
        0,
        1,
        2,
        3,
        4,
    ]


async def test_applied_entries_are_removed_so_xlen_is_what_remains(
    drainer: Any, client: MemoryClient, graph: Any, redis: Any, streams: Any
) -> None:
    for _ in range(30):
        await client.buffered.submit(f"CREATE (:{graph.label})")
    await client.flush()

    stream = streams.keyspace().stream(client.session_id)
    assert await redis.xlen(stream) == 0
    assert (await redis.xpending(stream, GROUP))["pending"] == 0


async def test_concurrent_submits_share_round_trips_and_keep_each_sessions_order(
    drainer: Any, client: MemoryClient, graph: Any
) -> None:
    sessions = [f"s{n}" for n in range(40)]

    async def chain(session: str) -> None:
        await client.buffered.submit(
            f"CREATE (:{graph.label} {{id: $s, v: -1}})", {"s": session}, session_id=session
        )
        for i in range(25):
            await client.buffered.submit(
                f"MATCH (c:{graph.label} {{id: $s}}) WHERE c.v = $i - 1 SET c.v = $i",
                {"s": session, "i": i},
                session_id=session,
            )

    await asyncio.gather(*(chain(s) for s in sessions))
    round_trips = client._backend._submit.round_trips  # type: ignore[union-attr]
    await client.flush()

    assert round_trips < 40 * 26 / 4  # pipelined: many writes per round trip
    rows = await graph.query("MATCH (c:$$) RETURN c.id AS id, c.v AS v ORDER BY id")
    assert rows == [{"id": s, "v": 24} for s in sorted(sessions)]


async def test_a_flush_over_every_partition_waits_on_one_connection_until_each_answered(
    drainer: Any, client: MemoryClient, graph: Any, neo4j: Any, redis: Any, streams: Any
) -> None:
    keys = streams.keyspace()
    sessions = {keys.partition_of(f"s{i}"): f"s{i}" for i in range(100)}
    assert len(sessions) == keys.partitions
    await graph.query("CREATE (:$$ {gate: true, n: 0})")
    async with neo4j.session() as holder:
        gate = await holder.begin_transaction()
        await (await gate.run(f"MATCH (g:{graph.label}) SET g.held = true")).consume()
        for session in sessions.values():  # each write waits for the gate's lock
            await client.buffered.submit(
                f"MATCH (g:{graph.label} {{gate: true}}) SET g.n = g.n + 1", session_id=session
            )
        flushing = asyncio.create_task(client.flush())

        async def waiting() -> bool:  # every sentinel queued, and the flush blocked
            lengths = [await redis.xlen(keys.stream(s)) for s in sessions.values()]
            return lengths == [2] * len(sessions) and await _blocked_on_replies(redis) > 0

        await wait_until(waiting, what="the flush to wait")
        await gate.rollback()
    await flushing

    assert await graph.query("MATCH (g:$$) RETURN g.n AS n") == [{"n": keys.partitions}]
    assert await _blocked_on_replies(redis) == 0
    assert await _blocked_on_replies(redis, ever=True) == 1  # one connection waited


async def _blocked_on_replies(redis: Any, *, ever: bool = False) -> int:
    """Connections waiting in a blocking pop (a flush's wait for answers), or, `ever`,
    those whose last command was one."""
    clients = await redis.client_list()
    return sum(c["cmd"] == "blmpop" and (ever or "b" in c["flags"]) for c in clients)
