"""What a drainer holds stays bounded in bytes: reads of large entries ask for fewer
than --batch-size, and a shared transaction takes batches up to --transaction-bytes."""

from __future__ import annotations

from typing import Any

from cypherstream import MemoryClient
from cypherstream.drainer.read_budget import FIRST_GUESS_BYTES, ReadBudget
from tests.helpers import Graph


def entries(count: int, size: int) -> list[tuple[str, list[bytes] | None]]:
    """`count` entries whose fields take `size` bytes in all."""
    return [(f"1-{n}", [b"p", b"x" * (size - 1)]) for n in range(count)]


def test_reads_ask_for_the_first_guess_until_one_lands() -> None:
    assert ReadBudget(500, 2**19).count() == 2**19 // FIRST_GUESS_BYTES


def test_reads_of_small_entries_ask_for_the_batch_size() -> None:
    budget = ReadBudget(500, 2**20)

    budget.observe(entries(10, 300))

    assert budget.count() == 500


def test_reads_of_large_entries_ask_for_what_fits_the_bytes() -> None:
    budget = ReadBudget(500, 2**20)

    budget.observe(entries(10, 4200))  # a 384-float embedding write

    assert budget.count() == 2**20 // 4200


def test_an_entry_larger_than_the_budget_is_still_read_one_at_a_time() -> None:
    budget = ReadBudget(500, 2**16)

    budget.observe(entries(1, 2**20))

    assert budget.count() == 1


def test_deleted_entries_teach_nothing() -> None:
    budget = ReadBudget(500, 2**19)

    budget.observe([("1-0", None)])

    assert budget.count() == 2**19 // FIRST_GUESS_BYTES


async def test_a_drain_of_large_writes_reads_them_a_budget_at_a_time(
    start_drainer: Any, make_settings: Any, graph: Graph
) -> None:
    async with MemoryClient(make_settings("redis")) as client:
        await queue_large_writes(client, graph, sessions=1)
        # 4 KiB a read: one of these 20 kB writes each (two the first, on a guess of their
        # size), where --batch-size would take them all
        drainer = await start_drainer(read_bytes=2**12)
        await client.flush()

    assert await graph.count() == WRITES
    assert transactions(drainer) >= WRITES - 1  # a session's reads commit one by one


async def test_a_shared_transaction_takes_batches_up_to_its_bytes(
    start_drainer: Any, make_settings: Any, graph: Graph
) -> None:
    async with MemoryClient(make_settings("redis")) as client:
        await queue_large_writes(client, graph, sessions=WRITES)
        # 64 KiB a transaction: 3 of the sessions' batches of one 20 kB write at most.
        drainer = await start_drainer(transaction_bytes=2**16)
        await client.flush()

    assert await graph.count() == WRITES
    assert transactions(drainer) >= WRITES / 3


WRITES = 30


async def queue_large_writes(client: MemoryClient, graph: Graph, sessions: int) -> None:
    """`WRITES` writes of 20 kB of parameters each, over `sessions` sessions."""
    for i in range(WRITES):
        query = f"CREATE (:{graph.label} {{i: $i, blob: $blob}})"
        params = {"i": i, "blob": "x" * 20_000}
        await client.buffered.submit(query, params, session_id=f"s{i % sessions}")


def transactions(drainer: Any) -> float:
    value = drainer.metrics.registry.get_sample_value("cypherstream_transactions_total")
    return float(value)
