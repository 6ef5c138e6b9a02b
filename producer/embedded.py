"""Buffered mode without Redis: the seed's single-process queue and drainer task.

Fast, but queued writes die with the process. Used when no Redis URL is set.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
from collections.abc import Mapping

from neo4j import AsyncDriver

from cypherstream.producer.backend import Report
from cypherstream.producer.inline import run_write
from cypherstream.shared.codec import check_params
from cypherstream.shared.dispositions import (
    DEFAULT_MAX_ATTEMPTS,
    Disposition,
    classify,
    error_code,
    error_message,
)
from cypherstream.shared.errors import FlushTimeout, RetriesExhausted
from cypherstream.shared.queries import QueryBook
from cypherstream.shared.retry import Backoff, call_with_retry
from cypherstream.shared.write_errors import BufferedWriteError

log = logging.getLogger(__name__)

_Item = tuple[str, dict[str, object], str, str]


class EmbeddedBackend:
    """A bounded asyncio queue drained in order by one task."""

    name = "buffered, in process (no REDIS_URL: queued writes are lost if the process dies)"

    def __init__(
        self,
        driver: AsyncDriver,
        database: str | None,
        max_pending: int,
        report: Report,
        queries: QueryBook,
    ) -> None:
        self._queries = queries
        self._driver = driver
        self._database = database
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=max_pending)
        self._report = report
        self._ids = itertools.count(1)
        self._task: asyncio.Task[None] | None = None
        self._unapplied = 0
        self._bookmarks: tuple[str, ...] = ()  # after the last write applied

    async def submit(
        self,
        query: str,
        params: Mapping[str, object] | None,
        session_id: str,
        *,
        named: bool = False,
    ) -> None:
        checked = check_params(params)
        text = self._queries.cypher(query) if named else query
        if self._task is None:
            self._task = asyncio.create_task(self._drain(), name="cypherstream-embedded-drainer")
        await self._queue.put((text, checked, session_id, f"local-{next(self._ids)}"))
        self._unapplied += 1

    async def flush(self, timeout: float, sessions: set[str] | None = None) -> tuple[str, ...]:
        """Every queued write, of any session: there is one queue."""
        try:
            await asyncio.wait_for(self._queue.join(), timeout)
        except TimeoutError as exc:
            raise FlushTimeout(
                f"{self._queue.qsize()} in-process writes were not applied within {timeout}s; "
                "Neo4j may be unreachable (writes are retried until it answers)."
            ) from exc
        return self._bookmarks

    async def end(self, session_ids: set[str], timeout: float) -> None:
        await self.flush(timeout)  # one queue for every session: nothing else to let go

    async def pending(self) -> int:
        return self._unapplied

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _drain(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                await self._apply(*item)
            finally:
                self._unapplied -= 1
                self._queue.task_done()

    async def _apply(
        self, query: str, params: dict[str, object], session: str, item_id: str
    ) -> None:
        """Run one write; outages are retried for ever, a write's own passing failure
        `DEFAULT_MAX_ATTEMPTS` times, and a write that cannot succeed is reported."""
        attempts = 0

        def retryable(exc: Exception) -> bool:
            nonlocal attempts
            kind = classify(exc)
            if kind is Disposition.RETRY_BUDGETED:
                attempts += 1
                return attempts < DEFAULT_MAX_ATTEMPTS
            return kind is Disposition.RETRY

        try:
            self._bookmarks = await call_with_retry(
                lambda: run_write(self._driver, self._database, query, params),
                retryable=retryable,
                backoff=Backoff,
                on_retry=_log_retry,
            )
        except Exception as exc:
            failure: BaseException = exc
            if classify(exc) is Disposition.RETRY_BUDGETED:
                failure = RetriesExhausted(attempts, error_code(exc), error_message(exc))
            self._report(_failure(query, params, session, item_id, failure))


def _log_retry(exc: Exception, delay: float) -> None:
    log.warning(
        "in-process write failed, retrying", extra={"error": error_code(exc), "retry_in": delay}
    )


def _failure(
    query: str, params: dict[str, object], session: str, item_id: str, exc: BaseException
) -> BufferedWriteError:
    return BufferedWriteError(
        query=query,
        parameters=params,
        code=error_code(exc),
        message=error_message(exc),
        session_id=session,
        entry_id=item_id,
        when=dt.datetime.now(dt.timezone.utc),
        drainer_id="in-process",
        reason=exc.reason if isinstance(exc, RetriesExhausted) else "failed",
    )
