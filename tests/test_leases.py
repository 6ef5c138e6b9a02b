"""One owner per session stream: takeover of a dead owner, and a slow owner keeps its lease."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

from neo4j import AsyncDriver

from cypherstream import MemoryClient
from tests.helpers import SEQUENCED_WRITE, audit, wait_until


async def _lease_owner(redis: Any, keys: Any, session: str) -> str | None:
    owner = await redis.get(keys.lease(session))
    return owner.decode() if owner else None


async def test_a_killed_owner_is_taken_over_within_its_lease_and_its_pending_entries_reapplied(
    spawn_drainer: Any, make_settings: Any, graph: Any, redis: Any, streams: Any
) -> None:
    keys = streams.keyspace()
    query = SEQUENCED_WRITE.format(label=graph.label)
    async with MemoryClient(
        make_settings("redis", session_id="owned", flush_timeout=120, max_pending=5000)
    ) as client:
        for seq in range(2000):
            await client.buffered.submit(query, {"session": "owned", "seq": seq})
        first = await spawn_drainer("--lease-ttl", "3", "--batch-size", "5")
        await wait_until(lambda: _owner_is(redis, keys, first.drainer_id), what="first owner")
        first.proc.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        second = await spawn_drainer("--lease-ttl", "3")

        await wait_until(
            lambda: _owner_is(redis, keys, second.drainer_id), timeout=30, what="takeover"
        )
        took = time.monotonic() - killed_at
        await client.flush()

    print(f"\ntakeover {took:.1f}s after SIGKILL with a 3s lease")
    assert took < 3 + 10
    result = await audit(graph, {"owned": 2000})
    assert (result.duplicated, result.out_of_order, result.lost) == (0, 0, 0)


async def _owner_is(redis: Any, keys: Any, drainer_id: str) -> bool:
    return await _lease_owner(redis, keys, "owned") == drainer_id


async def test_a_slow_but_alive_owner_keeps_its_session_through_a_long_batch(
    spawn_drainer: Any, make_settings: Any, graph: Any, redis: Any, streams: Any, neo4j: AsyncDriver
) -> None:
    keys = streams.keyspace()
    await graph.query("CREATE (:$$ {id: 'busy'})")
    owner = await spawn_drainer("--lease-ttl", "2")
    rival = await spawn_drainer("--lease-ttl", "2")
    async with MemoryClient(make_settings("redis", session_id="slow")) as client:
        # Hold the node's lock so the drainer's write waits, for several lease periods.
        async with neo4j.session() as session:
            tx = await session.begin_transaction()
            await tx.run(f"MATCH (n:{graph.label} {{id: 'busy'}}) SET n.held = true")
            await client.buffered.submit(
                f"MATCH (n:{graph.label} {{id: 'busy'}}) SET n.count = coalesce(n.count, 0) + 1"
            )
            await wait_until(lambda: _owned(redis, keys), what="a drainer to take the session")
            holder = await _lease_owner(redis, keys, "slow")
            owners = set()
            deadline = time.monotonic() + 3 * 2.0
            while time.monotonic() < deadline:  # sample the lease across three lease periods
                owners.add(await _lease_owner(redis, keys, "slow"))
                await asyncio.sleep(0.1)
            await tx.commit()
        await client.flush()

    assert owners == {holder}
    assert holder in (owner.drainer_id, rival.drainer_id)
    assert await graph.query("MATCH (n:$$ {id: 'busy'}) RETURN n.count AS c") == [{"c": 1}]


async def _owned(redis: Any, keys: Any) -> bool:
    return await _lease_owner(redis, keys, "slow") is not None


async def test_drainers_starting_together_on_a_fresh_database_all_start(
    start_drainer: Any, neo4j: Any
) -> None:
    # Creating the same constraint at once makes Neo4j report a deadlock to one of them.
    await neo4j.execute_query("DROP CONSTRAINT cypherstream_progress IF EXISTS")

    started = await asyncio.gather(*(start_drainer() for _ in range(4)))

    assert all(drainer.ready.is_set() for drainer in started)
