"""Applying sessions' writes to Neo4j exactly once in effect, in shared transactions.

Each session has a `CypherstreamProgress` node holding the id of the last entry
applied. Every transaction locks it first, skips entries at or below it, runs the
rest in entry order and moves it forward, all in one commit. So a batch that
committed but was never acknowledged in Redis is skipped when it is delivered
again, and a stalled former owner that wakes up cannot apply anything twice.

Where a transaction's writes make one statement (`unwind.over_rows`, the common case),
the locking goes in front of them in that statement, run as an auto-commit
transaction: one round trip to Neo4j instead of three (BEGIN with the lock, the
writes, COMMIT). Otherwise the lock and each statement run in an explicit transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from neo4j import (
    AsyncDriver,
    AsyncManagedTransaction,
    AsyncSession,
    AsyncTransaction,
    Bookmarks,
    Query,
    unit_of_work,
)

from cypherstream.drainer.events import DrainEvents
from cypherstream.drainer.progress import guarded, lock_and_advance, progress_rows
from cypherstream.drainer.unwind import Statement, group, over_rows
from cypherstream.shared import tracing
from cypherstream.shared.coalescing import Coalescer
from cypherstream.shared.codec import decode_params
from cypherstream.shared.dispositions import Disposition, classify
from cypherstream.shared.entry import WriteEntry, id_key, id_ms
from cypherstream.shared.errors import MalformedEntry
from cypherstream.shared.tracing import Attributes, span

if TYPE_CHECKING:
    from opentelemetry.trace import Span


class MalformedParams(MalformedEntry):
    """An entry whose parameters do not decode; it can never run."""


@dataclass
class BatchResult:
    """What became of each write of a batch."""

    applied: list[WriteEntry] = field(default_factory=list)
    skipped: list[WriteEntry] = field(default_factory=list)  # applied by an earlier delivery
    failed: list[tuple[WriteEntry, BaseException]] = field(default_factory=list)
    stalled: tuple[WriteEntry, BaseException] | None = None
    """A write whose own failure may pass (`Disposition.RETRY_BUDGETED`), met while it
    ran alone; the writes after it were not tried."""
    bookmarks: tuple[str, ...] = ()
    """Neo4j bookmarks of the last transaction that applied these writes: a read given
    them sees the writes, on any member of a cluster."""


Batch = tuple[str, list[WriteEntry]]
"""A session's progress record id and writes."""
Decoded = tuple[WriteEntry, "dict[str, object] | BaseException"]
"""A write and its decoded parameters, or why they do not decode."""
Prepared = tuple[str, list[tuple[WriteEntry, dict[str, object]]]]
"""A session's progress record id and writes with their decoded parameters."""
Item = tuple[int, WriteEntry]
"""A write of a transaction, with the index of its session's batch."""


class Applier:
    """Runs sessions' writes in transactions, with their progress records."""

    def __init__(
        self,
        driver: AsyncDriver,
        database: str | None,
        tx_timeout: float = 60.0,
        transactions: int = 2,
        events: DrainEvents | None = None,
        transaction_bytes: int = 4 * 2**20,
    ) -> None:
        self._driver = driver
        self._database = database
        # A server-side limit: a transaction of a stalled drainer (SIGSTOP, partition)
        # is ended by Neo4j, releasing the progress lock for the new owner.
        self._tx_timeout = tx_timeout
        self._unit = unit_of_work(timeout=tx_timeout)
        self._events = events  # told of each statement and each commit
        self._slots = transactions
        self._commits: Coalescer[Batch, BatchResult] = Coalescer(
            self._apply_many, slots=transactions, name="cypherstream-commit",
            weight=_params_bytes, limit=transaction_bytes, gather=True,
        )  # fmt: skip

    @property
    def transactions(self) -> int:
        """Batch transactions committed or tried so far (several sessions may share one)."""
        return self._commits.batches

    async def apply(self, stream: str, writes: list[WriteEntry]) -> BatchResult:
        """Apply `writes` (in entry order). Raises on a passing failure, for the caller
        to retry the same list; permanent failures are returned in `failed`.

        Batches of other sessions that arrive while `transactions` commits are in
        flight share the next transaction, up to `transaction_bytes` of parameters.
        """
        return await self._commits.call((stream, writes))

    async def _apply_many(self, batches: list[Batch]) -> list[BatchResult | BaseException]:
        """One transaction for every session's batch; should it fail for good, each
        session alone, so only the failing write is reported."""
        decoded = [(stream, _decoded(writes)) for stream, writes in batches]
        whole = True  # whether each session's batch is worth one transaction of its own
        if not any(_has_malformed(rows) for _, rows in decoded):
            try:
                return list(await self._transaction(decoded))  # type: ignore[arg-type]
            except Exception as exc:
                kind = classify(exc)
                if kind is Disposition.RETRY:
                    return [exc] * len(batches)
                if len(batches) == 1 and len(batches[0][1]) == 1:
                    return [_alone_failed(batches[0][1][0], exc, kind)]
                whole = len(batches) > 1
        alone = (self._alone(stream, rows, whole) for stream, rows in decoded)
        return list(await asyncio.gather(*alone, return_exceptions=True))

    async def _alone(self, stream: str, decoded: list[Decoded], whole: bool) -> BatchResult:
        if whole and len(decoded) > 1 and not _has_malformed(decoded):
            try:
                (result,) = await self._transaction([(stream, decoded)])  # type: ignore[list-item]
                return result
            except Exception as exc:
                if classify(exc) is Disposition.RETRY:
                    raise
        return await self._one_by_one(stream, decoded)

    async def apply_alone(self, stream: str, writes: list[WriteEntry]) -> BatchResult:
        """Apply `writes` one transaction each, sharing none: for a write that failed on
        its own before, so its next failure is certainly its own and delays nobody."""
        return await self._one_by_one(stream, _decoded(writes))

    async def _one_by_one(self, stream: str, decoded: list[Decoded]) -> BatchResult:
        result = BatchResult()
        for write, params in decoded:
            if isinstance(params, BaseException):
                result.failed.append((write, params))
                continue
            try:
                (one,) = await self._transaction([(stream, [(write, params)])])
            except Exception as exc:
                kind = classify(exc)
                if kind is Disposition.RETRY:
                    raise
                if kind is Disposition.RETRY_BUDGETED:
                    result.stalled = (write, exc)
                    return result
                result.failed.append((write, exc))
                continue
            result.applied += one.applied
            result.skipped += one.skipped
            result.bookmarks = one.bookmarks
        return result

    async def open_connections(self) -> None:
        """Open a connection per transaction slot, at start-up: opening one while a
        transaction runs waited for that transaction here (70-90 ms at the first
        concurrent commit of every drainer start)."""
        async with contextlib.AsyncExitStack() as stack:
            sessions = [
                await stack.enter_async_context(self._driver.session(database=self._database))
                for _ in range(self._slots)
            ]
            transactions = [
                await stack.enter_async_context(await session.begin_transaction())
                for session in sessions
            ]
            for tx in transactions:
                await _nothing(tx)

    async def current_bookmarks(self) -> tuple[str, ...]:
        """Bookmarks of everything committed so far (a transaction that writes nothing):
        for a flush answered by a drainer that applied none of its session's writes."""
        async with self._driver.session(database=self._database) as session:
            await session.execute_write(_nothing)
            return _bookmark_values(await session.last_bookmarks())

    async def _transaction(self, batches: list[Prepared]) -> list[BatchResult]:
        """Lock every session's progress record and move it to its batch's last entry,
        run the writes not applied yet, session after session and each in entry order;
        one commit, so the records move only with the writes."""
        writes = [
            ((n, write), write.query, params)
            for n, (_, decoded) in enumerate(batches)
            for write, params in decoded
        ]
        one = over_rows(writes)
        progress = progress_rows(_spans(batches))
        started = time.perf_counter()
        with _transaction_span(batches) as traced:
            async with self._driver.session(database=self._database) as session:
                if one is not None:
                    before = await self._run_guarded(session, progress, one)
                else:
                    run = self._unit(self._run_each)
                    before = await session.execute_write(run, batches, progress)
                bookmarks = _bookmark_values(await session.last_bookmarks())
            results = _results(batches, before, bookmarks)
            applied = sum(len(result.applied) for result in results)
            if traced is not None:
                traced.set_attribute("cypherstream.applied", applied)
        if applied and self._events is not None:
            self._events.committed(applied, time.perf_counter() - started)
        return results

    async def _run_guarded(
        self, session: AsyncSession, progress: list[dict[str, object]], statement: Statement[Item]
    ) -> dict[str, str]:
        """The common case, all writes in one statement: the progress records' locking
        in front of it, in one auto-commit transaction (one round trip)."""
        assert statement.per_row is not None
        query = Query(guarded(statement.per_row), timeout=self._tx_timeout)
        params = {**statement.params, "cs_progress": progress}
        record = await (await session.run(query, params)).single(strict=True)
        self._statement_ran(statement)
        return {stream: last for stream, last in record["cs_before"] if last is not None}

    async def _run_each(
        self,
        tx: AsyncManagedTransaction,
        batches: list[Prepared],
        progress: list[dict[str, object]],
    ) -> dict[str, str]:
        """Writes that need several statements: the records locked first, then runs of
        one query text as one UNWIND statement where that is the same."""
        before = await lock_and_advance(tx, progress)
        todo = [
            ((n, write), write.query, params)
            for n, (stream, decoded) in enumerate(batches)
            for write, params in decoded
            if not _applied_before(write, before.get(stream))
        ]
        for statement in group(todo):
            await (await tx.run(statement.text, statement.params)).consume()
            self._statement_ran(statement)
        return before

    def _statement_ran(self, statement: Statement[Item]) -> None:
        if self._events is not None:
            self._events.statement(statement.kind, len(statement.items), statement.unbatched)


def _params_bytes(batch: Batch) -> int:
    """A batch's weight in a shared transaction: its parameters' packed bytes."""
    return sum(len(write.params) for write in batch[1])


def _spans(batches: list[Prepared]) -> list[tuple[str, int, list[str]]]:
    """Each session's (stream, number of its first row, entry ids), rows counted across
    the transaction's writes in order."""
    spans, first = [], 0
    for stream, decoded in batches:
        if decoded:
            spans.append((stream, first, [write.entry_id for write, _ in decoded]))
            first += len(decoded)
    return spans


def _applied_before(write: WriteEntry, last: str | None) -> bool:
    """Whether a session whose progress record held `last` has applied `write`."""
    return last is not None and id_key(write.entry_id) <= id_key(last)


def _results(
    batches: list[Prepared], before: dict[str, str], bookmarks: tuple[str, ...]
) -> list[BatchResult]:
    """What became of each batch, from the last entry id each record held before."""
    results = []
    for stream, decoded in batches:
        result = BatchResult(bookmarks=bookmarks)
        writes = [write for write, _ in decoded]
        last = before.get(stream)
        if writes and not _applied_before(writes[0], last):  # a first delivery
            result.applied = writes
        else:
            for write in writes:
                (result.skipped if _applied_before(write, last) else result.applied).append(write)
        results.append(result)
    return results


def _transaction_span(batches: list[Prepared]) -> contextlib.AbstractContextManager[Span | None]:
    """The transaction's span, linked to the span each write was submitted in, with
    its stream, entry id and lag (from submit to now) on the link."""
    if not tracing.recording():
        return contextlib.nullcontext()  # no links to build, per transaction
    writes = [(stream, write) for stream, decoded in batches for write, _ in decoded]
    now_ms = time.time() * 1000
    links: list[tuple[str, Attributes]] = [
        (write.trace, {"cypherstream.stream": stream, "cypherstream.entry_id": write.entry_id,
                       "cypherstream.lag_ms": max(0.0, now_ms - id_ms(write.entry_id))})
        for stream, write in writes
        if write.trace is not None
    ]  # fmt: skip
    attributes = {"cypherstream.writes": len(writes),
                  "cypherstream.sessions": len({stream for stream, _ in writes})}  # fmt: skip
    return span("cypherstream.transaction", attributes, links)


async def _nothing(tx: AsyncManagedTransaction | AsyncTransaction) -> None:
    await (await tx.run("RETURN 1")).consume()


def _bookmark_values(bookmarks: Bookmarks) -> tuple[str, ...]:
    return tuple(sorted(bookmarks.raw_values))


def _alone_failed(write: WriteEntry, exc: BaseException, kind: Disposition) -> BatchResult:
    """What a write that failed alone in its own transaction became."""
    if kind is Disposition.RETRY_BUDGETED:
        return BatchResult(stalled=(write, exc))
    return BatchResult(failed=[(write, exc)])


def _decoded(writes: list[WriteEntry]) -> list[Decoded]:
    decoded: list[Decoded] = []
    for write in writes:
        try:
            decoded.append((write, decode_params(write.params)))
        except ValueError as exc:
            decoded.append((write, MalformedParams(str(exc))))
    return decoded


def _has_malformed(decoded: list[Decoded]) -> bool:
    return any(isinstance(params, BaseException) for _, params in decoded)
