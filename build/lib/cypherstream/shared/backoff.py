"""Capped exponential backoff with jitter: how every retry loop here waits."""

from __future__ import annotations

import asyncio
import random
import time

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


class RetryWindow:
    """Tries again with backoff for `seconds` counted from the first failure, then stops."""

    def __init__(self, seconds: float, first: float = 0.05, cap: float = 1.0) -> None:
        self._seconds = seconds
        self._backoff = Backoff(first=first, cap=cap)
        self._deadline: float | None = None

    def failed(self) -> bool:
        """Note a failure; whether there is time left to wait and try again."""
        now = time.monotonic()
        if self._deadline is None:
            self._deadline = now + self._seconds
        return now + self._backoff.delay <= self._deadline

    async def wait(self) -> None:
        await self._backoff.wait()
