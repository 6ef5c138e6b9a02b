"""Draining one session stream while holding its lease: in order, batch by batch."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, NamedTuple, TypeVar

from cypherstream.drainer.admission import Admission
from cypherstream.drainer.apply import Applier, BatchResult
from cypherstream.drainer.deadletter import dead_letter
from cypherstream.drainer.events import DrainEvents, RetryTarget
from cypherstream.drainer.progress import ProgressRecords
from cypherstream.drainer.read_budget import ReadBudget
from cypherstream.drainer.session_scripts import (
    Delivery,
    FlushAnswer,
    LeaseLost,
    Release,
    SessionScripts,
)
from cypherstream.drainer.settings import DrainerSettings
from cypherstream.shared.connection import RedisClient, transient
from cypherstream.shared.dispositions import Disposition, classify, error_code, error_message
from cypherstream.shared.entry import (
    EndMarker,
    Entry,
    FlushSentinel,
    WriteEntry,
    as_refused_write,
    id_key,
    parse_flat,
)
from cypherstream.shared.errors import RejectedEntry, RetriesExhausted
from cypherstream.shared.keys import Keyspace
from cypherstream.shared.retry import Backoff, call_with_retry
from cypherstream.shared.scripts import Scripts

log = logging.getLogger(__name__)

T = TypeVar("T")

Admitted = tuple[str, "list[bytes] | None", "Entry | RejectedEntry | None"]
"""An entry read: its id, its fields, and the entry decoded and admitted, or why it was
refused, or None when it was deleted after an earlier delivery applied it."""


class Taken(NamedTuple):
    """A read, with its entries decoded and admitted as soon as it landed: for a read
    ahead, while the batch before it is applied, so the next transaction waits for none
    of that (the gaps between a 1 x 2,000 drain's transactions went from 10.8 to 3.5 ms)."""

    delivery: Delivery
    entries: list[Admitted]


@dataclass
class DrainContext:
    """What every session drain of one worker shares: its connections, settings and
    observers."""

    redis: RedisClient
    scripts: Scripts
    calls: SessionScripts
    keys: Keyspace
    applier: Applier
    progress: ProgressRecords
    settings: DrainerSettings
    stopping: asyncio.Event
    events: DrainEvents
    admission: Admission
    budget: ReadBudget


class SessionDrain:
    """Applies one session's entries until the stream is empty, its turn ends, or shutdown."""

    def __init__(self, context: DrainContext, session_id: str) -> None:
        self.session_id = session_id
        self.lost = False
        self._ctx = context
        self._progress_id = context.keys.progress_id(session_id)
        self._me = context.settings.drainer_id
        self._ended = False  # an end marker removed the session's keys
        # Writes that failed on their own: attempts so far, and the backoff between them.
        self._suspects: dict[str, tuple[int, Backoff]] = {}
        # Bookmarks of the last transaction that applied this session's writes (or, until
        # this drain applies some, those recorded in Redis by the drains before it), and
        # those to record with the next acknowledgement.
        self._bookmarks: tuple[str, ...] = ()
        self._unrecorded: tuple[str, ...] = ()
        # Entries applied (or given up) but not yet acknowledged, and a flush sentinel
        # met after them: `_settle` sends both with the drain's next Redis call.
        self._done: list[str] = []
        self._sentinel: FlushSentinel | None = None
        # The next batch, read while this one is applied; the acknowledgement of the
        # last full batch, on its way while the next one is applied.
        self._prefetched: asyncio.Task[Taken] | None = None
        self._behind: asyncio.Future[None] | None = None
        # The position of the last entry handed to `_process`: those at or before it
        # are handled once `_process` returns.
        self._handled: tuple[int, int] | None = None

    async def run(self, others_waiting: Callable[[], bool]) -> None:
        """Drain; `others_waiting()` says whether to yield the session after a long turn."""
        try:
            await self._run(others_waiting)
        except LeaseLost:
            self.lost = True
            log.warning("lease lost", extra={"session_id": self.session_id})
        finally:
            await self._drop_prefetch()
            with contextlib.suppress(LeaseLost):  # acknowledgements need no lease, but a
                await self._settled()  # retry after the lease went stops early

    async def _run(self, others_waiting: Callable[[], bool]) -> None:
        start: Literal["0", ">"] = "0"
        claim = True  # a former owner's pending entries come first
        batches, unreadable = 0, 0
        while not self._ctx.stopping.is_set() and not self.lost:
            delivery, entries = await self._next(start, claim)
            claim = False
            # Once a read returns new entries, or fewer of its own pending ones than it
            # asked for, nothing of its own is pending beyond what it holds: new ones from
            # now on. A read of new entries that had to be retried returns its own
            # pending ones first (`_read`), and those may go on.
            start = ">" if delivery.new or not delivery.full else "0"
            if not entries:
                if await self._settle("idle") == 0:
                    return
                # Entries remain that '>' did not return: new ones that just arrived, or
                # ones pending under another consumer. Claim them once; if still nothing
                # is readable, yield rather than spin.
                unreadable += 1
                if unreadable > 2:
                    break
                claim, start = True, "0"
                continue
            unreadable = 0
            batches += 1
            last_turn = batches >= self._ctx.settings.turn_batches and others_waiting()
            if start == ">" and delivery.full and not last_turn:
                self._prefetch()  # read the next batch while this one is applied
            await self._process(entries)
            if self._ended:
                return  # nothing left to release: the keys are gone
            if not delivery.full:
                # A short batch was most likely the last: no empty read to learn so.
                left = await self._settle("idle")
                if left == 0:
                    return
                if batches > 1 and left < self._ctx.budget.count():
                    # Writes keep arriving: let more of them share the next transaction.
                    await asyncio.sleep(self._ctx.settings.linger)
            elif self._sentinel is not None:
                await self._settle("")  # its flush waits no longer than its batch
            else:
                self._settle_behind()  # acknowledged while the next batch is applied
            if last_turn:
                break
        await self._drop_prefetch()  # before the lease goes
        await self._settle("yield")

    async def _next(self, start: Literal["0", ">"], claim: bool) -> Taken:
        """The prefetched batch where there is one, else a read."""
        if start == "0":  # own pending entries: those being acknowledged are not
            await self._settled()
        if self._prefetched is not None:
            task, self._prefetched = self._prefetched, None
            return await task
        taken = await self._read(start, claim)
        read = taken.delivery
        if read.recorded and not self._bookmarks:
            self._bookmarks = read.recorded
        if read.claimed:
            self._ctx.events.took_over(read.claimed)
            log.info(
                "took over pending entries",
                extra={"session_id": self.session_id, "entries": read.claimed},
            )
        return taken

    async def _read(self, start: Literal["0", ">"], claim: bool = False) -> Taken:
        """A read of as many entries as the read budget allows, which learns from it,
        its entries decoded and admitted.

        A retry starts from the drain's own pending entries: Redis may have run the
        attempt that failed (its reply lost with the connection, or late past the
        timeout), and its entries are then pending for this drainer, which must apply
        them before any after them. Entries it handled but has not acknowledged yet
        come back too: `_process` only acknowledges them."""
        size = self._ctx.budget.count()
        starts = iter((start,))  # then "0" for every retry
        read = await self._redis(
            lambda: self._ctx.calls.read(self.session_id, size, next(starts, "0"), claim=claim)
        )
        self._ctx.budget.observe(read.entries)
        return Taken(read, [self._admitted(entry_id, fields) for entry_id, fields in read.entries])

    def _admitted(self, entry_id: str, fields: list[bytes] | None) -> Admitted:
        if fields is None:
            return entry_id, None, None
        try:
            entry = parse_flat(entry_id, fields)
            if isinstance(entry, WriteEntry):
                entry = self._ctx.admission.admit(self.session_id, entry)
        except RejectedEntry as exc:
            return entry_id, fields, exc
        return entry_id, fields, entry

    def _prefetch(self) -> None:
        self._prefetched = asyncio.ensure_future(self._read(">"))

    async def _drop_prefetch(self) -> None:
        """Let a read ahead land, unused: its entries stay pending for the session's next
        owner (or this drainer's next turn), which claims them first.

        Waited for, not cancelled: a read cancelled while queued for its round trip
        would still run, perhaps after the lease was given up and taken again, and
        leave entries pending that the new drain reads past.
        """
        task, self._prefetched = self._prefetched, None
        if task is not None:
            await asyncio.wait([task])
            if not task.cancelled():
                task.exception()  # retrieved: a failed read ahead changes nothing

    async def _process(self, entries: list[Admitted]) -> None:
        again = self._handled_already(entries)
        self._done += [entry_id for entry_id, _, _ in entries[:again]]
        entries = entries[again:]
        if entries:
            self._handled = id_key(entries[-1][0])
        run: list[WriteEntry] = []
        for entry_id, fields, entry in entries:
            if self._sentinel is not None:  # answered before anything after it runs
                await self._settle("")
            if entry is None:  # deleted after an earlier delivery applied it
                self._done.append(entry_id)
                continue
            if isinstance(entry, RejectedEntry):
                await self._apply_run(run)
                run = []
                self._ctx.events.rejected(entry.reason)
                await self._fail(as_refused_write(entry_id, fields or []), entry)
                continue
            if isinstance(entry, FlushSentinel):
                await self._apply_run(run)
                run = []
                self._sentinel = entry  # answered with the acknowledgements (`_settle`)
            elif isinstance(entry, EndMarker):
                await self._apply_run(run)
                run = []
                await self._end(entry)
            else:
                run.append(entry)
        await self._apply_run(run)

    def _handled_already(self, entries: list[Admitted]) -> int:
        """How many of `entries`, from the first, this drain applied, dead-lettered or
        answered already: a retried read starts from own pending entries, which may
        include them. They only need acknowledging. One comparison per batch unless so."""
        handled = self._handled
        if handled is None or not entries or id_key(entries[0][0]) > handled:
            return 0
        return next(
            (n for n, (entry_id, _, _) in enumerate(entries) if id_key(entry_id) > handled),
            len(entries),
        )

    async def _apply_run(self, writes: list[WriteEntry]) -> None:
        """Apply writes in order; acknowledge each once applied or dead-lettered.

        A write that failed on its own before (a suspect) runs alone, so its next
        failure is certainly its own and shares no other session's transaction.
        """
        while writes:
            suspect = writes[0].entry_id in self._suspects
            chunk = writes[:1] if suspect else writes
            apply = self._ctx.applier.apply_alone if suspect else self._ctx.applier.apply
            result: BatchResult = await self._with_retry(apply, self._progress_id, chunk)
            if result.applied:
                self._ctx.events.applied(result.applied, time.time() * 1000)
            if result.bookmarks:
                self._bookmarks = self._unrecorded = result.bookmarks
            for write, exc in result.failed:
                await self._fail(write, exc)
            done = len(chunk)
            if result.stalled is not None:
                write, exc = result.stalled
                done = chunk.index(write) + await self._gave_up(write, exc)
            elif suspect:
                del self._suspects[chunk[0].entry_id]
            self._done += [w.entry_id for w in writes[:done]]
            writes = writes[done:]

    async def _gave_up(self, write: WriteEntry, exc: BaseException) -> bool:
        """Count a failure of `write`'s own; dead-letter it once its attempts are spent,
        else wait before its next attempt. Whether it was given up."""
        attempts, backoff = self._suspects.get(write.entry_id, (0, None))
        attempts += 1
        limit = self._ctx.settings.max_attempts
        if attempts >= limit:
            self._suspects.pop(write.entry_id, None)
            await self._fail(write, RetriesExhausted(attempts, error_code(exc), error_message(exc)))
            return True
        if self.lost:
            raise LeaseLost
        backoff = backoff or Backoff(cap=self._ctx.settings.retry_max_delay)
        self._suspects[write.entry_id] = (attempts, backoff)
        await self._settle("")  # what applied before it makes room while it waits
        self._ctx.events.retried("write")
        log.warning(
            "write failed on its own, retrying it alone",
            extra={
                "session_id": self.session_id,
                "entry_id": write.entry_id,
                "error": error_code(exc),
                "attempt": attempts,
                "max_attempts": limit,
                "retry_in": backoff.delay,
            },
        )
        await backoff.wait()
        return False

    async def _fail(self, write: WriteEntry, exc: BaseException) -> None:
        """Report a write that can never apply, then move the progress record past it."""
        self._ctx.events.dead_lettered(error_code(exc))
        settings = self._ctx.settings
        await self._redis(
            lambda: dead_letter(
                self._ctx.scripts, self._ctx.keys, self.session_id, write, exc,
                drainer_id=self._me, error_ttl=settings.error_ttl,
                redact=settings.redact_params,
            )
        )  # fmt: skip
        await self._with_retry(self._ctx.progress.consume, self._progress_id, write)
        self._done.append(write.entry_id)

    async def _with_retry(self, func: Callable[..., Awaitable[T]], *args: object) -> T:
        """Neo4j calls: passing failures are retried with capped backoff, never dropped.
        (`Applier.apply` turns a write's own failures into `BatchResult.stalled`, so only
        outages, and deadlocks of the bookkeeping statements, are retried here.)"""
        return await call_with_retry(
            lambda: func(*args),
            retryable=lambda exc: classify(exc) is not Disposition.DEAD_LETTER,
            backoff=self._backoff,
            on_retry=self._retrying("neo4j"),
        )

    async def _settle(self, release: Release) -> int:
        """Acknowledge what was applied, answer the flush sentinel met after it, and give
        the lease up as `release` says, in one round trip; the entries left."""
        await self._settled()
        done, self._done = self._done, []
        applied, self._unrecorded = self._unrecorded, ()
        sentinel, self._sentinel = self._sentinel, None
        flush = None
        if sentinel is not None:
            flush = FlushAnswer(
                sentinel.entry_id, sentinel.token, sentinel.client_id,
                await self._flushed_bookmarks(),
            )  # fmt: skip
        return await self._redis(
            lambda: self._ctx.calls.settle(self.session_id, done, flush, release, applied=applied)
        )

    def _settle_behind(self) -> None:
        """Acknowledge what was applied so far without waiting for it, after any earlier
        such acknowledgement; `_settle` and the end of the drain wait for it."""
        earlier, done, self._done = self._behind, self._done, []
        applied, self._unrecorded = self._unrecorded, ()

        async def settle() -> None:
            if earlier is not None:
                await earlier
            await self._redis(
                lambda: self._ctx.calls.settle(self.session_id, done, applied=applied)
            )

        self._behind = asyncio.ensure_future(settle())

    async def _settled(self) -> None:
        """Wait for the acknowledgement sent behind a batch, if one is on its way."""
        task, self._behind = self._behind, None
        if task is not None:
            await task

    async def _flushed_bookmarks(self) -> tuple[str, ...]:
        """This drain's last applying transaction's bookmarks; where it applied none (the
        writes were applied before it took the session), those the drains before it
        recorded, else a bookmark of everything committed until now, which covers them."""
        if not self._bookmarks:
            self._bookmarks = await self._with_retry(self._ctx.applier.current_bookmarks)
        return self._bookmarks

    async def _end(self, marker: EndMarker) -> None:
        """Forget the session (progress record, then keys) if nothing followed the marker.

        The progress record goes first: a crash in between leaves the marker to be
        delivered again, and forgetting twice is harmless. Should a write arrive in
        between, it starts a fresh record, which is right: everything before it is done.
        """
        if await self._settle("") <= 1:  # only the marker is left
            await self._with_retry(self._ctx.progress.forget, self._progress_id)
        answer = FlushAnswer(
            marker.entry_id, marker.token, marker.client_id, await self._flushed_bookmarks()
        )
        self._ended = await self._redis(lambda: self._ctx.calls.answer_end(self.session_id, answer))

    async def _redis(self, call: Callable[[], Awaitable[T]]) -> T:
        """Redis calls: retried while Redis is unreachable; a lost lease ends the drain."""
        return await call_with_retry(
            call,
            retryable=transient,
            backoff=self._backoff,
            on_retry=self._retrying("redis"),
        )

    def _backoff(self) -> Backoff:
        return Backoff(cap=self._ctx.settings.retry_max_delay)

    def _retrying(self, target: RetryTarget) -> Callable[[Exception, float], None]:
        """What happens before each retry: stop if the lease is gone, count, log."""
        what = "Neo4j write failed" if target == "neo4j" else "Redis unreachable"

        def note(exc: Exception, delay: float) -> None:
            if self.lost:
                raise LeaseLost from exc
            self._ctx.events.retried(target)
            error = error_code(exc) if target == "neo4j" else str(exc)
            log.warning(
                f"{what}, retrying",
                extra={"session_id": self.session_id, "error": error, "retry_in": delay},
            )

        return note
