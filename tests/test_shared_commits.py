"""Batches of several sessions share one Neo4j transaction, and nothing else changes:
each session's writes run in entry order, are applied once, and a write that fails
for good is reported alone."""

from __future__ import annotations

import asyncio
from typing import Any

from cypherstream.drainer.apply import Applier, BatchResult
from cypherstream.drainer.progress import lock_and_advance, progress_rows
from cypherstream.shared.codec import encode_params
from cypherstream.shared.entry import WriteEntry
from tests.helpers import wait_until


def writes(label: str, session: str, count: int, first_ms: int = 1) -> list[WriteEntry]:
    """`count` writes that append their number to the session's node, in order."""
    query = (
        f"MERGE (n:{label} {{session: $session}}) "
        "SET n.seen = coalesce(n.seen, []) + $i"
    )  # fmt: skip
    return [
        WriteEntry(f"{first_ms + i}-0", query, encode_params({"session": session, "i": i}), "c", i)
        for i in range(count)
    ]


async def apply_all(applier: Applier, batches: dict[str, list[WriteEntry]]) -> list[BatchResult]:
    """Apply every session's batch at once, as a drainer draining them together does."""
    return list(await asyncio.gather(*(applier.apply(s, w) for s, w in batches.items())))


async def test_batches_arriving_together_share_transactions_and_keep_each_sessions_order(
    neo4j: Any, graph: Any
) -> None:
    applier = Applier(neo4j, None, transactions=1)
    batches = {f"{graph.label}:s{n}": writes(graph.label, f"s{n}", 5) for n in range(20)}

    results = await apply_all(applier, batches)

    assert applier.transactions < 20  # one for the first, one for all that waited meanwhile
    assert [len(r.applied) for r in results] == [5] * 20
    rows = await graph.query("MATCH (n:$$) RETURN n.session AS s, n.seen AS seen")
    assert {r["s"]: r["seen"] for r in rows} == {f"s{n}": [0, 1, 2, 3, 4] for n in range(20)}


async def test_a_shared_transaction_delivered_again_applies_nothing_twice(
    neo4j: Any, graph: Any
) -> None:
    applier = Applier(neo4j, None, transactions=1)
    batches = {f"{graph.label}:s{n}": writes(graph.label, f"s{n}", 3) for n in range(10)}
    await apply_all(applier, batches)

    again = await apply_all(applier, batches)

    assert all(not r.applied and len(r.skipped) == 3 for r in again)
    rows = await graph.query("MATCH (n:$$) RETURN n.seen AS seen")
    assert [r["seen"] for r in rows] == [[0, 1, 2]] * 10


async def test_a_failing_write_in_a_shared_transaction_is_reported_alone(
    neo4j: Any, graph: Any
) -> None:
    applier = Applier(neo4j, None, transactions=1)
    batches = {f"{graph.label}:s{n}": writes(graph.label, f"s{n}", 3) for n in range(8)}
    bad = f"{graph.label}:s3"
    broken = WriteEntry("2-5", "RETURN 1 / $zero", encode_params({"zero": 0}), "c", 9)
    batches[bad].insert(2, broken)  # between the session's second and third write

    results = dict(zip(batches, await apply_all(applier, batches), strict=True))

    assert [write for write, _ in results[bad].failed] == [broken]
    assert len(results[bad].applied) == 3
    assert all(len(r.applied) == 3 and not r.failed for s, r in results.items() if s != bad)
    rows = await graph.query("MATCH (n:$$) RETURN n.seen AS seen")
    assert [r["seen"] for r in rows] == [[0, 1, 2]] * 8


async def test_a_batch_delivered_again_after_part_of_it_was_applied_runs_only_the_rest(
    neo4j: Any, graph: Any
) -> None:
    applier = Applier(neo4j, None, transactions=1)
    stream = f"{graph.label}:s"
    batch = writes(graph.label, "s", 12, first_ms=5)  # ids 5-0 .. 16-0: 9 < 10 as numbers
    await applier.apply(stream, batch[:6])

    again = await applier.apply(stream, batch)

    assert (again.skipped, again.applied) == (batch[:6], batch[6:])
    rows = await graph.query("MATCH (n:$$) RETURN n.seen AS seen")
    assert [r["seen"] for r in rows] == [list(range(12))]


async def test_entries_of_one_millisecond_are_ordered_by_their_sequence_number(
    neo4j: Any, graph: Any
) -> None:
    applier = Applier(neo4j, None, transactions=1)
    stream = f"{graph.label}:s"
    # ids 7-0 .. 7-11: 7-9 comes before 7-10, though not as text
    batch = [w._replace(entry_id=f"7-{i}") for i, w in enumerate(writes(graph.label, "s", 12))]
    await applier.apply(stream, batch[:10])

    again = await applier.apply(stream, batch)

    assert (again.skipped, again.applied) == (batch[:10], batch[10:])
    rows = await graph.query("MATCH (n:$$) RETURN n.seen AS seen")
    assert [r["seen"] for r in rows] == [list(range(12))]


async def test_sessions_delivered_again_in_part_share_a_transaction_with_new_ones(
    neo4j: Any, graph: Any
) -> None:
    applier = Applier(neo4j, None, transactions=1)
    batches = {f"{graph.label}:s{n}": writes(graph.label, f"s{n}", 4) for n in range(6)}
    await apply_all(applier, {s: w[: n % 3] for n, (s, w) in enumerate(batches.items()) if n % 3})

    results = await apply_all(applier, batches)

    assert [len(r.skipped) for r in results] == [n % 3 for n in range(6)]
    assert [len(r.applied) for r in results] == [4 - n % 3 for n in range(6)]
    rows = await graph.query("MATCH (n:$$) RETURN n.seen AS seen")
    assert [r["seen"] for r in rows] == [[0, 1, 2, 3]] * 6


async def test_an_applier_opens_a_connection_per_transaction_slot_up_front(
    neo4j: Any, neo4j_settings: Any, tag: str
) -> None:
    """So its first concurrent transactions do not wait for a connection to open."""
    agent = f"cypherstream-test/{tag}"
    driver = neo4j_settings.driver(user_agent=agent)
    listed = "CALL dbms.listConnections() YIELD userAgent WHERE userAgent = $agent RETURN count(*)"
    async with driver:
        await Applier(driver, None, transactions=3).open_connections()

        records, _, _ = await neo4j.execute_query(listed, agent=agent)

    assert records[0][0] == 3


async def test_a_progress_record_locked_by_another_transaction_is_read_once_it_commits(
    neo4j: Any, graph: Any
) -> None:
    """Two drainers applying the same batch at once (one resumed after its lease was
    taken over): the second must see what the first committed, not what was there when
    it started waiting for the record's lock, or it applies the batch again."""
    stream = f"{graph.label}:s"
    rows = progress_rows([(stream, 0, ["2-0", "3-0"])])
    async with neo4j.session() as setup:
        await setup.execute_write(lock_and_advance, progress_rows([(stream, 0, ["1-0"])]))
    async with neo4j.session() as first_session, neo4j.session() as second_session:
        first = await first_session.begin_transaction()
        assert await lock_and_advance(first, rows) == {stream: "1-0"}
        second = await second_session.begin_transaction()
        waiting = asyncio.ensure_future(lock_and_advance(second, rows))
        await wait_until(lambda: _blocked(neo4j), timeout=30, what="the second to wait")
        await first.commit()

        assert await waiting == {stream: "3-0"}  # applied by the first: nothing to do
        await second.rollback()


async def test_a_batch_whose_record_another_transaction_advances_meanwhile_is_skipped(
    neo4j: Any, graph: Any
) -> None:
    """The same race through the one-statement path (locking and writes in one
    auto-commit statement): the batch waits for the lock, then skips what the holder
    committed."""
    stream = f"{graph.label}:s"
    batch = writes(graph.label, "s", 3, first_ms=2)
    async with neo4j.session() as setup:
        await setup.execute_write(lock_and_advance, progress_rows([(stream, 0, ["1-0"])]))
    async with neo4j.session() as holder_session:
        holder = await holder_session.begin_transaction()
        ids = [write.entry_id for write in batch]
        await lock_and_advance(holder, progress_rows([(stream, 0, ids)]))
        waiting = asyncio.ensure_future(Applier(neo4j, None).apply(stream, batch))
        await wait_until(lambda: _blocked(neo4j), timeout=30, what="the batch to wait")
        await holder.commit()

        result = await waiting

    assert (len(result.applied), len(result.skipped)) == (0, 3)
    assert await graph.count() == 0


async def _blocked(neo4j: Any) -> bool:
    """Whether a transaction waits for a lock another holds."""
    records, _, _ = await neo4j.execute_query("SHOW TRANSACTIONS YIELD status RETURN status")
    return any(record["status"].startswith("Blocked") for record in records)
