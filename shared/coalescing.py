"""Calls that go alone when idle and together when busy.

A call that finds a free slot goes out at once, so a lone caller waits for its own
call and no longer. Calls that arrive while every slot is busy wait, and go out
together as one batch when a slot frees; under load, batches grow to whatever
arrived meanwhile (the way a Kafka producer batches, without a linger delay).

Both sides use it: the producer for submit scripts (one Redis round trip for many
submits), the drainer for its scripts and for Neo4j commits (one transaction for
many sessions' batches). Callers that need an order among their own calls keep at
most one in flight; a batch never reorders what it was given.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

Send = Callable[[list[T]], Awaitable[list[R | BaseException]]]
"""Runs a batch of calls; one result or error per call, in order."""


class Coalescer(Generic[T, R]):
    """Runs `send` for one call when a slot is free, for all waiting calls when one frees.

    `slots` bounds the batches in flight at once. With `weight`, a batch takes waiting
    calls, oldest first, while their weights add up to `limit` at most (always one),
    and the rest wait for the next free slot: what one batch holds stays bounded.

    With `gather`, a call that finds a free slot goes out at the end of the event loop's
    current round instead of at once: the calls of other tasks woken in the same round
    (a burst of sessions whose reads landed together) join its batch instead of
    queueing behind it. A lone call waits one loop iteration longer.
    """

    def __init__(
        self,
        send: Send[T, R],
        *,
        slots: int = 1,
        name: str = "coalescer",
        weight: Callable[[T], int] | None = None,
        limit: int = 0,
        gather: bool = False,
    ) -> None:
        self._send = send
        self._slots = slots
        self._name = name
        self._weight = weight
        self._limit = limit
        self._gather = gather
        self._gathering = False  # a start is scheduled at the end of this loop round
        self._busy = 0
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0
        """Batches sent so far: one per lone call, one per batch of waiting calls."""

    async def call(self, item: T) -> R:
        """Run `item` and return its result, or raise the error it met."""
        if self._busy < self._slots and not self._queue and not self._gather:
            self._busy += 1
            self.batches += 1
            try:
                (result,) = await self._send([item])
            finally:
                self._busy -= 1
                self._start_queued()
            if isinstance(result, BaseException):
                raise result
            return result
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._queue.append((item, future))
        if not self._gather:
            self._start_queued()
        elif not self._gathering:
            self._gathering = True
            loop.call_soon(self._gathered)
        return await future

    def _gathered(self) -> None:
        self._gathering = False
        self._start_queued()

    def _start_queued(self) -> None:
        while self._busy < self._slots and self._queue:
            self._busy += 1
            taken = self._taken()
            batch, self._queue = self._queue[:taken], self._queue[taken:]
            task = asyncio.create_task(self._run(batch), name=self._name)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _taken(self) -> int:
        """How many of the waiting calls the next batch takes."""
        if self._weight is None:
            return len(self._queue)
        total = 0
        for taken, (item, _) in enumerate(self._queue):
            total += self._weight(item)
            if total > self._limit and taken > 0:
                return taken
        return len(self._queue)

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            self.batches += 1
            results = await self._send([item for item, _ in batch])
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():  # its caller was cancelled
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
        except BaseException as exc:  # each caller sees why its call failed
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            self._busy -= 1
            self._start_queued()
