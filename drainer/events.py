"""What the drain path reports about itself, as events (dramatiq's middleware model).

The worker and the session drains call these hooks and know nothing of Prometheus;
`drainer.metrics.Metrics` turns them into series. Another observer (tracing, a test
recorder) implements the same protocol.
"""

from __future__ import annotations

from typing import Literal, Protocol

from cypherstream.drainer.backlog import Status
from cypherstream.shared.entry import WriteEntry
from cypherstream.shared.memory import MemoryUse

#: What a retry was about: an outage of Neo4j or Redis, or a write's own failure.
RetryTarget = Literal["neo4j", "redis", "write"]


class DrainEvents(Protocol):
    """Hooks the drain path calls; each must be cheap and must not raise."""

    def applied(self, writes: list[WriteEntry], now_ms: float) -> None:
        """Writes committed to Neo4j (`now_ms`: wall clock, for their lag)."""

    def committed(self, writes: int, seconds: float) -> None:
        """One batch transaction applied `writes` in `seconds`."""

    def statement(
        self, kind: Literal["unwind", "single"], writes: int, unbatched: str | None
    ) -> None:
        """One statement ran `writes` writes; a lone write that could not share one says
        why in `unbatched` (None: it had nothing to share with)."""

    def rejected(self, reason: str) -> None:
        """An entry refused before it ran (signature, not-allowed, ...)."""

    def dead_lettered(self, code: str) -> None:
        """A write given up, with its (last) error code."""

    def retried(self, target: RetryTarget) -> None:
        """A retry after a passing failure."""

    def took_over(self, entries: int) -> None:
        """A session taken with `entries` a former owner left pending."""

    def owning(self, sessions: int) -> None:
        """How many sessions this drainer drains now."""

    def backlog(self, status: Status) -> None:
        """A fresh look at what is queued."""

    def redis_memory(self, use: MemoryUse) -> None:
        """A fresh look at Redis memory against maxmemory."""
