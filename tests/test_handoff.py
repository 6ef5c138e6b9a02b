"""Local hand-off (`handoff="local"`): submit returns once the client's buffer holds
the write; everything still reaches Neo4j once and in order, and Redis trouble
surfaces at flush, or at submit once the buffer is full."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cypherstream import BackpressureTimeout, FlushTimeout, MemoryClient
from tests.helpers import (
    SEQUENCED_WRITE,
    FlakyProxy,
    audit,
    submit_sequenced,
    through,
    wait_until,
)


async def test_local_handoff_applies_every_write_once_and_in_order(
    make_settings: Any, drainer: Any, graph: Any
) -> None:
    settings = make_settings("redis", handoff="local")
    async with MemoryClient(settings) as client:
        submitted = await submit_sequenced(client, graph.label, sessions=20, writes=50)
        await client.flush()

    result = await audit(graph, submitted)
    assert (result.applied, result.lost, result.duplicated, result.out_of_order) == (
        1000, 0, 0, 0
    )  # fmt: skip


async def test_submit_returns_while_redis_is_away_and_flush_says_what_the_buffer_holds(
    make_settings: Any, proxy: FlakyProxy, drainer: Any, graph: Any
) -> None:
    settings = through(make_settings("redis", handoff="local", redis_retry=0.2), proxy)
    async with MemoryClient(settings) as client:
        await proxy.stop()
        submitted = await submit_sequenced(client, graph.label, sessions=3, writes=10)

        with pytest.raises(FlushTimeout, match="30 writes are still in this client's local"):
            await client.flush(timeout=1)

        await proxy.start(port=proxy.port)
        await client.flush()

    result = await audit(graph, submitted)
    assert (result.applied, result.lost, result.duplicated, result.out_of_order) == (30, 0, 0, 0)


async def test_a_full_local_buffer_makes_submit_wait_then_raise(
    make_settings: Any, proxy: FlakyProxy, drainer: Any, graph: Any
) -> None:
    settings = make_settings(
        "redis", handoff="local", handoff_buffer=5, backpressure_timeout=0.5, redis_retry=0.2
    )
    async with MemoryClient(through(settings, proxy)) as client:
        await proxy.stop()
        await submit_sequenced(client, graph.label, sessions=1, writes=5)

        with pytest.raises(BackpressureTimeout, match="local hand-off buffer has held 5"):
            await submit_sequenced(client, graph.label, sessions=1, writes=1, first=5)

        await proxy.start(port=proxy.port)
        await client.flush()

    assert await graph.count() == 1
    assert (await graph.query("MATCH (s:$$) RETURN s.seqs AS seqs"))[0]["seqs"] == [0, 1, 2, 3, 4]


async def test_submits_waiting_for_room_keep_their_call_order(
    make_settings: Any, proxy: FlakyProxy, drainer: Any, graph: Any
) -> None:
    settings = make_settings("redis", handoff="local", handoff_buffer=3, redis_retry=0.2)
    query = SEQUENCED_WRITE.format(label=graph.label)
    async with MemoryClient(through(settings, proxy)) as client:
        await proxy.stop()
        submits = [
            asyncio.create_task(client.buffered.submit(query, {"session": "s0", "seq": seq}))
            for seq in range(12)
        ]

        async def three_buffered() -> bool:
            return sum(task.done() for task in submits) == 3

        await wait_until(three_buffered, timeout=10, what="three submits buffered")
        assert not any(task.done() for task in submits[3:])  # the rest wait in line

        await proxy.start(port=proxy.port)
        await asyncio.gather(*submits)
        await client.flush()

    assert (await graph.query("MATCH (s:$$) RETURN s.seqs AS seqs"))[0]["seqs"] == list(range(12))
