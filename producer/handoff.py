"""Local hand-off (opt-in, `CYPHERSTREAM_HANDOFF=local`): `submit` returns once the
write is in the client's buffer; a task per session appends its writes to Redis in
order, one at a time, auto-batched with every other session's appends.

The price, which is why it is not the default: writes still in the buffer are lost
if the process dies (as in the in-process mode, but only for the milliseconds they
wait), and Redis trouble is reported later: at `submit` once the buffer is full,
and at `flush`. Nothing is dropped meanwhile: a write that fails to append is
tried again (with its sequence number, so never appended twice) until it goes.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from cypherstream.shared.errors import BackpressureTimeout, FlushTimeout
from cypherstream.shared.retry import Backoff, call_with_retry

log = logging.getLogger(__name__)

#: First delay and cap between tries of a write the buffer could not append.
_RETRY_FIRST = 0.05
_RETRY_CAP = 2.0

Fields = list[bytes | str]
Append = Callable[[str, Fields, int], Awaitable[None]]
"""Appends one write of a session (session id, fields, sequence number) to Redis."""


class Handoff:
    """A bounded buffer of writes per session, and the tasks that move them to Redis."""

    def __init__(self, append: Append, capacity: int, backpressure_timeout: float) -> None:
        self._append = append
        self._capacity = capacity
        self._backpressure_timeout = backpressure_timeout
        self._queues: dict[str, deque[tuple[Fields, int]]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._held = 0
        self._line: deque[object] = deque()  # submits waiting for room, first come first
        self._changed = asyncio.Condition()
        self.error: BaseException | None = None
        """What the last failed append met; None once appends go through again."""

    @property
    def held(self) -> int:
        """Writes in the buffer, not yet in Redis."""
        return self._held

    async def put(self, session_id: str, fields: Fields, seq: int) -> None:
        """Buffer a write; waits while the buffer is full (Redis is behind or away)."""
        if not self._line and self._held < self._capacity:
            self._enqueue(session_id, fields, seq)
            return
        # Wait in line: first come, first buffered, so a session's writes keep call order.
        me = object()
        self._line.append(me)
        try:
            await self._wait(
                lambda: self._line[0] is me and self._held < self._capacity,
                self._backpressure_timeout,
            )
            self._enqueue(session_id, fields, seq)
        finally:
            self._line.remove(me)
            await self._notify()  # the next in line may go now

    def _enqueue(self, session_id: str, fields: Fields, seq: int) -> None:
        self._queues.setdefault(session_id, deque()).append((fields, seq))
        self._held += 1
        if session_id not in self._tasks:
            self._tasks[session_id] = asyncio.create_task(
                self._send(session_id), name=f"cypherstream-handoff:{session_id}"
            )

    async def drained(self, timeout: float) -> None:
        """Return once every buffered write is in Redis; `FlushTimeout` if not in time."""
        if self._held:
            await self._wait(lambda: self._held == 0, timeout, flushing=True)

    async def close(self) -> None:
        """Stop the tasks; writes still buffered are lost, and logged as such."""
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        if self._held:
            log.error(
                "writes left in the local hand-off buffer were never appended to Redis",
                extra={"writes": self._held, "error": repr(self.error)},
            )

    async def _send(self, session_id: str) -> None:
        queue = self._queues[session_id]

        def failed(exc: Exception, delay: float) -> None:  # kept, and tried again
            self.error = exc
            log.warning(
                "handing a write to Redis failed, retrying",
                extra={"session_id": session_id, "error": repr(exc), "retry_in": delay},
            )

        try:
            while queue:
                fields, seq = queue[0]
                await call_with_retry(
                    lambda: self._append(session_id, fields, seq),  # noqa: B023 - awaited here
                    retryable=lambda exc: True,  # nothing is dropped
                    backoff=lambda: Backoff(first=_RETRY_FIRST, cap=_RETRY_CAP),
                    on_retry=failed,
                )
                self.error = None
                queue.popleft()
                self._held -= 1
                await self._notify()
        finally:
            del self._tasks[session_id]
            if not queue:
                del self._queues[session_id]

    async def _notify(self) -> None:
        """Wake every waiter to look again."""
        async with self._changed:
            self._changed.notify_all()

    async def _wait(
        self, ready: Callable[[], bool], timeout: float, flushing: bool = False
    ) -> None:
        try:
            async with self._changed:
                await asyncio.wait_for(self._changed.wait_for(ready), timeout)
        except TimeoutError:
            why = f" The last append failed with: {self.error!r}." if self.error else ""
            if flushing:
                raise FlushTimeout(
                    f"{self._held} writes are still in this client's local hand-off buffer "
                    f"after {timeout}s, not yet in Redis.{why} They are kept and retried; "
                    "flush again, or check Redis."
                ) from None
            raise BackpressureTimeout(
                f"the local hand-off buffer has held {self._capacity} writes for "
                f"{timeout}s without room.{why} Redis is unreachable or every session's "
                "stream is full; check Redis and the drainers, or raise "
                "CYPHERSTREAM_HANDOFF_BUFFER."
            ) from None
