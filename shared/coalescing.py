"""Calls that go alone when idle and together when busy.

A call that finds a free slot goes out at once, so a lone caller waits for its own
call and no longer. Calls that arrive while every slot is busy wait, and go out
together as one batch when a slot frees; under load, batches grow to whatever
arrived meanwhile (the way a Kafka producer batches, without a linger delay).

Both sides use it: the producer for submit scripts (one Redis round trip for many
submits), the drainer for its scripts and for Neo4j commits (one transaction for
many sessions' batches). Callers that need an order among their own calls keep at
most one in flight; a batch never reorders what it was given.

Two options serve the drainer, whose sessions wake together:

* `gather`: a call that finds a free slot waits for the end of the event loop's
  current turn, and takes along every call made in that turn (as a DataLoader
  batches one tick's loads). Sessions whose reads came back in one pipeline then
  share one transaction, instead of the first going alone and the rest waiting for
  it. It costs a lone caller one loop turn, so the producer's submits do without.
* `max_batch`: at most that many calls go in one batch; the rest go in the next.
  The first sessions' reads then reach Neo4j while the later ones are still read.
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

    `slots` bounds the batches in flight at once; `gather` and `max_batch` are
    described in the module's docstring.
    """

    def __init__(
        self,
        send: Send[T, R],
        *,
        slots: int = 1,
        name: str = "coalescer",
        gather: bool = False,
        max_batch: int | None = None,
    ) -> None:
        self._send = send
        self._slots = slots
        self._name = name
        self._gather = gather
        self._gathering = False  # a start is due at the end of this loop turn
        self._max_batch = max_batch
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
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if not self._gather:
            self._start_queued()
        elif not self._gathering:
            self._gathering = True
            asyncio.get_running_loop().call_soon(self._gathered)
        return await future

    def _gathered(self) -> None:
        self._gathering = False
        self._start_queued()

    def _start_queued(self) -> None:
        while self._busy < self._slots and self._queue:
            self._busy += 1
            cut = self._max_batch or len(self._queue)
            batch, self._queue = self._queue[:cut], self._queue[cut:]
            self._launch(batch)

    def _launch(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        task = asyncio.create_task(self._run(batch), name=self._name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
