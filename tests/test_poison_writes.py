"""A write whose own failure keeps coming back is given up; nothing else is."""

from __future__ import annotations

import asyncio
from typing import Any

from cypherstream import MemoryClient
from tests.helpers import SEQUENCED_WRITE

# Runs for many seconds of CPU on the server: always past a 1 s transaction timeout.
SLOW_WRITE = "UNWIND range(1, 300000000) AS i WITH sum(i % 7) AS s CREATE (:{label} {{s: s}})"
TIMED_OUT = "Neo.ClientError.Transaction.TransactionTimedOutClientConfiguration"


async def test_a_write_that_always_times_out_is_dead_lettered_and_its_session_goes_on(
    start_drainer: Any, make_settings: Any, graph: Any, redis: Any, streams: Any
) -> None:
    await start_drainer(tx_timeout=1.0, max_attempts=3, retry_max_delay=0.2)
    query = SEQUENCED_WRITE.format(label=graph.label)
    async with MemoryClient(make_settings("redis")) as client:
        await client.buffered.submit(query, {"session": "s", "seq": 0})
        await client.buffered.submit(SLOW_WRITE.format(label=graph.label))
        for seq in (1, 2):
            await client.buffered.submit(query, {"session": "s", "seq": seq})
        await client.flush()

    (error,) = client.write_errors
    assert (error.reason, error.code) == ("retries-exhausted", TIMED_OUT)
    assert "gave up after 3 attempts" in error.message
    assert await graph.query("MATCH (s:$$ {session: 's'}) RETURN s.seqs AS seqs") == [
        {"seqs": [0, 1, 2]}
    ]
    (dead,) = await redis.xrange(streams.keyspace().dead_letters)
    assert dead[1][b"reason"] == b"retries-exhausted"
    assert dead[1][b"code"] == TIMED_OUT.encode()


async def test_other_sessions_drain_while_a_poison_write_is_retried(
    start_drainer: Any, make_settings: Any, graph: Any, redis: Any, streams: Any
) -> None:
    await start_drainer(tx_timeout=1.0, max_attempts=4, retry_max_delay=0.5)
    query = SEQUENCED_WRITE.format(label=graph.label)
    async with (
        MemoryClient(make_settings("redis", session_id="poisoned")) as poisoned,
        MemoryClient(make_settings("redis", session_id="healthy")) as healthy,
    ):
        await poisoned.buffered.submit(SLOW_WRITE.format(label=graph.label))
        stuck = asyncio.create_task(poisoned.flush())
        for seq in range(20):
            await healthy.buffered.submit(query, {"session": "healthy", "seq": seq})
        await healthy.flush()

        # The healthy session is done while the poison write still has attempts left.
        assert await redis.xlen(streams.keyspace().dead_letters) == 0
        assert not stuck.done()
        await stuck

    assert [e.reason for e in poisoned.write_errors] == ["retries-exhausted"]
    assert healthy.write_errors == []
    rows = await graph.query("MATCH (s:$$ {session: 'healthy'}) RETURN s.seqs AS seqs")
    assert rows == [{"seqs": list(range(20))}]


async def test_a_write_that_fails_for_good_uses_no_attempts(
    start_drainer: Any, client: MemoryClient, graph: Any
) -> None:
    await start_drainer(max_attempts=50, retry_max_delay=5.0)
    await client.buffered.submit("CREAT broken")
    await client.buffered.submit(f"CREATE (:{graph.label})")
    await asyncio.wait_for(client.flush(), 20)  # 50 attempts with backoff would take minutes

    assert [(e.reason, e.code) for e in client.write_errors] == [
        ("failed", "Neo.ClientError.Statement.SyntaxError")
    ]
    assert await graph.count() == 1
