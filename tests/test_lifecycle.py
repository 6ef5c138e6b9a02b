"""Finished sessions leave nothing behind: `end_session` frees their keys and records."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from cypherstream import MemoryClient
from tests.helpers import wait_until


async def _keys_left(redis: Any, prefix: str) -> list[bytes]:
    """Keys of this prefix other than the deployment's own (meta, drainers)."""
    keys = [key async for key in redis.scan_iter(match=f"{{{prefix}*", count=1000)]
    return [k for k in keys if not k.startswith(f"{{{prefix}}}:".encode())]


async def _progress_records(neo4j: Any, prefix: str) -> int:
    records, _, _ = await neo4j.execute_query(
        "MATCH (p:CypherstreamProgress) WHERE p.stream STARTS WITH $p RETURN count(p) AS c",
        p=f"{prefix}:",
    )
    return int(records[0]["c"])


async def test_ten_thousand_finished_sessions_leave_no_keys_and_no_records(
    start_drainer: Any, make_settings: Any, graph: Any, redis: Any, streams: Any, neo4j: Any
) -> None:
    await start_drainer(concurrency=64)
    sessions = [f"done-{n}" for n in range(10_000)]
    started = time.monotonic()
    async with MemoryClient(make_settings("redis")) as client:
        for chunk in range(0, len(sessions), 2_000):
            await _submit_each(client, graph.label, sessions[chunk : chunk + 2_000])
            await client.end_session(*sessions[chunk : chunk + 2_000], timeout=300)
        assert client.write_errors == []

    async def all_gone() -> bool:
        return not await _keys_left(redis, streams.key_prefix)

    await wait_until(all_gone, timeout=120, what="finished sessions' keys to go")
    print(f"10,000 sessions written and ended in {time.monotonic() - started:.1f} s")
    assert await graph.count() == 10_000
    assert await _progress_records(neo4j, streams.key_prefix) == 0


async def _submit_each(client: MemoryClient, label: str, sessions: list[str]) -> None:
    await asyncio.gather(
        *(
            client.buffered.submit(f"CREATE (:{label} {{s: $s}})", {"s": s}, session_id=s)
            for s in sessions
        )
    )


async def test_a_session_written_again_after_its_end_starts_afresh(
    drainer: Any, client: MemoryClient, graph: Any, redis: Any, streams: Any
) -> None:
    await client.buffered.submit(f"CREATE (:{graph.label} {{i: 1}})", session_id="again")
    await client.end_session("again")
    await wait_until(
        lambda: _gone(redis, streams.keyspace().stream("again")), what="the stream to go"
    )

    await client.buffered.submit(f"CREATE (:{graph.label} {{i: 2}})", session_id="again")
    await client.flush()

    assert sorted(r["i"] for r in await graph.query("MATCH (n:$$) RETURN n.i AS i")) == [1, 2]


async def _gone(redis: Any, key: str) -> bool:
    return not await redis.exists(key)


async def test_end_session_reports_failed_writes_as_flush_does(
    drainer: Any, client: MemoryClient
) -> None:
    await client.buffered.submit("THIS IS NOT CYPHER", session_id="failing")

    await client.end_session("failing")

    assert [e.session_id for e in client.write_errors] == ["failing"]


async def test_an_emptied_session_expires_after_the_idle_ttl_and_can_start_again(
    start_drainer: Any, client: MemoryClient, graph: Any, redis: Any, streams: Any
) -> None:
    drainer = await start_drainer(idle_session_ttl=1)
    stream = streams.keyspace().stream("idle")
    await client.buffered.submit(f"CREATE (:{graph.label} {{i: 1}})", session_id="idle")
    await client.flush()

    await wait_until(lambda: _gone(redis, stream), what="the idle stream to expire")
    await client.buffered.submit(f"CREATE (:{graph.label} {{i: 2}})", session_id="idle")
    await client.flush()

    assert sorted(r["i"] for r in await graph.query("MATCH (n:$$) RETURN n.i AS i")) == [1, 2]
    assert drainer.ready.is_set()


async def test_a_write_to_an_expiring_session_keeps_its_stream(
    start_drainer: Any, make_settings: Any, graph: Any, redis: Any, streams: Any
) -> None:
    stream = streams.keyspace().stream("kept")
    first = await start_drainer(idle_session_ttl=60)
    async with MemoryClient(make_settings("redis")) as client:
        await client.buffered.submit(f"CREATE (:{graph.label} {{i: 1}})", session_id="kept")
        await client.flush()
        await wait_until(lambda: _expiring(redis, stream), what="the emptied stream to expire")
        first.stop()
        await wait_until(lambda: _no_live_drainer(redis, streams), what="the drainer to stop")

        await client.buffered.submit(f"CREATE (:{graph.label} {{i: 2}})", session_id="kept")

        assert await redis.pttl(stream) == -1  # the write took the expiry away
        await start_drainer(idle_session_ttl=60)
        await client.flush()

    assert await graph.count() == 2


async def _expiring(redis: Any, key: str) -> bool:
    return int(await redis.pttl(key)) > 0


async def _no_live_drainer(redis: Any, streams: Any) -> bool:
    return not await redis.zcard(streams.keyspace().drainers)


async def test_a_sweep_prunes_the_progress_records_of_sessions_redis_expired(
    start_drainer: Any, make_settings: Any, graph: Any, redis: Any, streams: Any, neo4j: Any
) -> None:
    await start_drainer(sweep_interval=0.2, idle_session_ttl=3600)
    async with MemoryClient(make_settings("redis")) as client:
        for session in ("expired", "idle", "recent"):
            await client.buffered.submit(f"CREATE (:{graph.label})", session_id=session)
        await client.flush()
    keys = streams.keyspace()
    await redis.delete(keys.stream("expired"))  # what the idle TTL does after an hour
    await neo4j.execute_query(  # two sessions last written two hours ago
        "MATCH (p:CypherstreamProgress) WHERE p.stream IN $old "
        "SET p.updated_at = datetime() - duration({hours: 2})",
        old=[keys.progress_id("expired"), keys.progress_id("idle")],
    )

    async def only_live_sessions_kept() -> bool:
        records, _, _ = await neo4j.execute_query(
            "MATCH (p:CypherstreamProgress) WHERE p.stream STARTS WITH $p RETURN p.stream AS s",
            p=f"{streams.key_prefix}:",
        )
        return sorted(r["s"] for r in records) == [keys.progress_id(s) for s in ("idle", "recent")]

    await wait_until(only_live_sessions_kept, what="the expired session's record to go")
