"""Capped exponential backoff with jitter: how every retry loop here waits."""

from __future__ import annotations

import asyncio
import random


class Backoff:
    """Delays that double from `first` up to `cap`; each sleep is jittered to 50-100%
    so many clients that failed together do not retry together."""

    def __init__(self, first: float = 0.1, cap: float = 10.0) -> None:
        self.delay = first
        self._cap = cap

    async def wait(self) -> None:
        await asyncio.sleep(self.delay * random.uniform(0.5, 1.0))
        self.delay = min(self.delay * 2, self._cap)
