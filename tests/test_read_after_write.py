"""Reading what was written: a flush of any session from any process, and Neo4j
bookmarks that make a read see every flushed write."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest
from neo4j import AsyncDriver, Bookmarks
from neo4j import exceptions as nx

from cypherstream import MemoryClient, ReadFailed, SyncMemoryClient
from cypherstream.shared.settings import Neo4jSettings, StreamSettings
from tests.helpers import FlakyProxy, run_to_end, wait_until

PRODUCER = Path(__file__).with_name("unflushed_producer.py")


async def test_a_process_flushes_a_session_another_process_wrote_and_left(
    drainer: Any, client: MemoryClient, env: dict[str, str], graph: Any, tag: str
) -> None:
    session = f"{tag}-worker"
    ended = await run_to_end(
        sys.executable, str(PRODUCER), graph.label, session, "40",
        env={**env, "PYTHONPATH": str(Path.cwd())},
    )  # fmt: skip
    assert "submitted" in ended.stdout, ended.stderr[-2000:]

    result = await client.flush(session_ids=[session])

    rows = await client.read(f"MATCH (n:{graph.label}) RETURN n.i AS i ORDER BY i", after=result)
    assert [row["i"] for row in rows] == list(range(40))
    assert result.applied == 0  # none of them were this client's


async def test_flush_returns_the_bookmarks_of_the_applying_transactions(
    drainer: Any, client: MemoryClient, graph: Any, neo4j: AsyncDriver
) -> None:
    for i in range(20):
        await client.buffered.submit(f"CREATE (:{graph.label} {{i: $i}})", {"i": i})

    result = await client.flush()

    assert (result.applied, result.failed) == (20, 0)
    assert result.bookmarks and all(b.startswith("FB:") for b in result.bookmarks)
    rows = await client.read(f"MATCH (n:{graph.label}) RETURN count(n) AS c", after=result)
    assert rows == [{"c": 20}]
    async with neo4j.session(bookmarks=result.neo4j_bookmarks()) as session:  # your own driver
        assert (
            await (await session.run(f"MATCH (n:{graph.label}) RETURN count(n)")).single(
                strict=True
            )
        )[0] == 20
    with pytest.raises(nx.ClientError, match="InvalidBookmark"):  # the server checks them
        async with neo4j.session(bookmarks=Bookmarks.from_raw_values(["FB:forged"])) as session:
            await (await session.run("RETURN 1")).consume()


async def test_a_flush_of_writes_applied_earlier_is_answered_while_neo4j_is_unreachable(
    start_drainer: Any, client: MemoryClient, neo4j_settings: Neo4jSettings, redis: Any,
    streams: StreamSettings, graph: Any, tag: str,
) -> None:  # fmt: skip
    port = int(neo4j_settings.uri.rsplit(":", 1)[1])
    proxy = await FlakyProxy(port).start()
    through = neo4j_settings.model_copy(update={"uri": f"bolt://127.0.0.1:{proxy.port}"})
    await start_drainer(neo4j=through)
    session, lease = f"{tag}-s", streams.keyspace().lease(f"{tag}-s")
    for i in range(5):
        query = f"CREATE (:{graph.label} {{i: $i}})"
        await client.buffered.submit(query, {"i": i}, session_id=session)
    applied = await client.flush()
    await wait_until(lambda: _gone(redis, lease), timeout=30, what="the drain to end")
    await proxy.stop()  # the drainer cannot reach Neo4j from here on

    again = await client.flush(30, session_ids=[session])  # answered by a new drain

    assert applied.bookmarks
    assert again.bookmarks == applied.bookmarks  # those the first drain recorded


async def _gone(redis: Any, key: str) -> bool:
    return not await redis.exists(key)


async def test_a_flush_counts_what_failed_apart_from_what_was_applied(
    drainer: Any, client: MemoryClient, graph: Any
) -> None:
    for i in range(3):
        await client.buffered.submit(f"CREATE (:{graph.label} {{i: $i}})", {"i": i})
    await client.buffered.submit("CREAT broken")

    result = await client.flush()

    assert (result.applied, result.failed) == (3, 1)
    assert (await client.flush()).applied == 0  # counted once


@pytest.mark.parametrize("mode", ["sync", "embedded"])
async def test_every_mode_returns_bookmarks_a_read_can_wait_for(
    make_settings: Any, graph: Any, mode: str
) -> None:
    async with MemoryClient(make_settings(mode)) as client:
        await client.buffered.submit(f"CREATE (:{graph.label} {{i: 1}})")
        result = await client.flush()

        assert result.bookmarks and result.applied == 1
        assert await client.read(f"MATCH (n:{graph.label}) RETURN n.i AS i", after=result) == [
            {"i": 1}
        ]


async def test_a_read_neo4j_refuses_raises_read_failed_in_one_line(client: MemoryClient) -> None:
    with pytest.raises(ReadFailed, match=r"SyntaxError.*Fix the query"):
        await client.read("MATC (n) RETURN n")


async def test_the_blocking_client_flushes_other_sessions_and_reads_after(
    drainer: Any, make_settings: Any, graph: Any, tag: str
) -> None:
    def body() -> list[dict[str, object]]:  # in a thread: the drainer runs on this loop
        with (
            SyncMemoryClient(make_settings("redis")) as writer,
            SyncMemoryClient(make_settings("redis")) as reader,
        ):
            writer.buffered.submit(f"CREATE (:{graph.label})", session_id=f"{tag}-a")
            result = reader.flush(session_ids=[f"{tag}-a"])
            return reader.read(f"MATCH (n:{graph.label}) RETURN count(n) AS c", after=result)

    assert await asyncio.to_thread(body) == [{"c": 1}]
