"""Retrying: capped exponential backoff with jitter, and `call_with_retry`, the one
loop every caller that retries a passing failure goes through (redis-py's model)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

#: First delay of a retry after a passing failure (seconds).
FIRST_DELAY = 0.1
#: Longest delay between retries (seconds); the drainer's `retry_max_delay` by default.
MAX_DELAY = 10.0


class Backoff:
    """Delays that double from `first` up to `cap`; each sleep is jittered to 50-100%
    so many clients that failed together do not retry together."""

    def __init__(self, first: float = FIRST_DELAY, cap: float = MAX_DELAY) -> None:
        self.delay = first
        self._cap = cap

    def next_delay(self) -> float:
        """The next jittered delay, for a caller that waits on something else meanwhile."""
        delay = self.delay * random.uniform(0.5, 1.0)
        self.delay = min(self.delay * 2, self._cap)
        return delay

    async def wait(self) -> None:
        await asyncio.sleep(self.next_delay())


async def call_with_retry(
    attempt: Callable[[], Awaitable[T]],
    *,
    retryable: Callable[[Exception], bool],
    backoff: Callable[[], Backoff],
    on_retry: Callable[[Exception, float], None],
    window: float | None = None,
) -> T:
    """`attempt()`'s result, trying again after each failure that `retryable` accepts.

    `backoff()` makes the delays at the first failure, so a call that succeeds at once
    (every submit, nearly every drain call) costs nothing more than `attempt()`.
    `on_retry(error, delay)` runs before each wait (it logs and counts, and may raise
    to stop early). With `window`, the last failure is raised once a wait would end
    more than `window` seconds after the first failure; without, it retries for ever.
    """
    give_up: float | None = None
    delays: Backoff | None = None
    while True:
        try:
            return await attempt()
        except Exception as exc:
            if not retryable(exc):
                raise
            delays = delays or backoff()
            delay = delays.next_delay()
            now = time.monotonic()
            if window is not None:
                give_up = give_up if give_up is not None else now + window
                if now + delay > give_up:
                    raise
            on_retry(exc, delay)
            await asyncio.sleep(delay)
