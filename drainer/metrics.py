"""Prometheus metrics of one drainer (its own registry: no process-wide globals): the
drain path's events (`drainer.events.DrainEvents`) turned into series."""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from cypherstream.drainer.backlog import Status
from cypherstream.drainer.events import RetryTarget
from cypherstream.shared.entry import WriteEntry, id_ms
from cypherstream.shared.memory import MemoryUse

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
_BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


class Metrics:
    """Every series a drainer exports, named ``cypherstream_*``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.writes_applied = Counter(
            "cypherstream_writes_applied", "Writes committed to Neo4j", registry=r
        )
        self.writes_failed = Counter(
            "cypherstream_writes_failed",
            "Writes that failed for good and were dead-lettered, by error code",
            ["code"],
            registry=r,
        )
        self.entries_rejected = Counter(
            "cypherstream_entries_rejected",
            "Entries refused before running (signature, not-allowed, unknown-query, malformed)",
            ["reason"],
            registry=r,
        )
        self.dead_letters = Counter(
            "cypherstream_dead_letters", "Entries written to the dead-letter stream", registry=r
        )
        self.transactions = Counter(
            "cypherstream_transactions",
            "Batch transactions committed (batches of sessions waiting at once share one)",
            registry=r,
        )
        self.statements = Counter(
            "cypherstream_statements",
            "Statements run: unwind (writes sharing one) or single",
            ["kind"],
            registry=r,
        )
        self.unbatched_writes = Counter(
            "cypherstream_unbatched_writes",
            "Writes that ran alone though others were there to share with, by reason "
            "(return-value, limit-parameter, procedure-call, schema, parameters-differ, ...)",
            ["reason"],
            registry=r,
        )
        #: Writes run sharing a statement, and alone, since start (`drainer status`).
        self.batched_writes = 0
        self.single_writes = 0
        self.batch_size = Histogram(
            "cypherstream_batch_size", "Writes per committed transaction",
            buckets=_BATCH_BUCKETS, registry=r,
        )  # fmt: skip
        self.commit_seconds = Histogram(
            "cypherstream_commit_seconds", "Time to run and commit one batch transaction",
            buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.lag_seconds = BatchHistogram(
            "cypherstream_lag_seconds",
            "From submit (the entry id's Redis time) to commit",
            buckets=_LAG_BUCKETS,
        )
        r.register(self.lag_seconds)
        self.retries = Counter(
            "cypherstream_retries", "Retries after a passing failure, by what failed",
            ["target"], registry=r,
        )  # fmt: skip
        self.takeovers = Counter(
            "cypherstream_leases_taken_over",
            "Sessions taken with pending entries of a former owner",
            registry=r,
        )
        self.streams_owned = Gauge(
            "cypherstream_streams_owned", "Session streams this drainer owns now", registry=r
        )
        self.backlog_entries = Gauge(
            "cypherstream_backlog_entries",
            "Entries queued in all ready sessions (every drainer reports the same total)",
            registry=r,
        )
        self.ready_sessions = Gauge(
            "cypherstream_ready_sessions", "Sessions with queued entries", registry=r
        )
        self.redis_used_memory = Gauge(
            "cypherstream_redis_used_memory_bytes",
            "Memory Redis uses (on a cluster, the fullest primary's)",
            registry=r,
        )
        self.redis_maxmemory = Gauge(
            "cypherstream_redis_maxmemory_bytes",
            "Redis's maxmemory (0: no limit); at it, producers wait for room",
            registry=r,
        )
        self.oldest_pending_seconds = Gauge(
            "cypherstream_oldest_pending_age_seconds",
            "How long the longest-waiting ready session has had queued entries",
            registry=r,
        )

    # -- DrainEvents --------------------------------------------------------------------

    def applied(self, writes: list[WriteEntry], now_ms: float) -> None:
        self.writes_applied.inc(len(writes))
        self.lag_seconds.observe_many(
            max(0.0, now_ms - id_ms(write.entry_id)) / 1000 for write in writes
        )

    def committed(self, writes: int, seconds: float) -> None:
        self.transactions.inc()
        self.batch_size.observe(writes)
        self.commit_seconds.observe(seconds)

    def statement(
        self, kind: Literal["unwind", "single"], writes: int, unbatched: str | None
    ) -> None:
        self.statements.labels(kind).inc()
        if kind == "unwind":
            self.batched_writes += writes
        else:
            self.single_writes += writes
        if unbatched is not None:
            self.unbatched_writes.labels(unbatched).inc(writes)

    def rejected(self, reason: str) -> None:
        self.entries_rejected.labels(reason).inc()

    def dead_lettered(self, code: str) -> None:
        self.writes_failed.labels(code).inc()
        self.dead_letters.inc()

    def retried(self, target: RetryTarget) -> None:
        self.retries.labels(target).inc()

    def took_over(self, entries: int) -> None:
        self.takeovers.inc()

    def owning(self, sessions: int) -> None:
        self.streams_owned.set(sessions)

    def backlog(self, status: Status) -> None:
        self.backlog_entries.set(status.entries)
        self.ready_sessions.set(status.ready_sessions)
        self.oldest_pending_seconds.set(status.oldest_pending_age_seconds)

    def redis_memory(self, use: MemoryUse) -> None:
        self.redis_used_memory.set(use.used)
        self.redis_maxmemory.set(use.limit)


class BatchHistogram(Collector):
    """A histogram observed a batch at a time, for a series fed once per write.

    Exported exactly like a `prometheus_client.Histogram` of the same name and buckets;
    observing a batch takes one lock and a bisection per value, where `Histogram` takes a
    lock and a scan of the buckets per value (5% of a drainer's time at 2,000 writes a
    transaction).
    """

    def __init__(self, name: str, documentation: str, buckets: Iterable[float]) -> None:
        self._name = name
        self._documentation = documentation
        self._bounds = sorted(buckets)
        self._counts = [0] * (len(self._bounds) + 1)  # the last: above every bound (+Inf)
        self._sum = 0.0
        self._lock = threading.Lock()  # a scrape may come from another thread

    def observe_many(self, values: Iterable[float]) -> None:
        """Count each value in the first bucket whose bound it does not exceed."""
        counts, bounds, total = self._counts, self._bounds, 0.0
        with self._lock:
            for value in values:
                counts[bisect_left(bounds, value)] += 1
                total += value
            self._sum += total

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            counts, total = list(self._counts), self._sum
        cumulative, buckets = 0, []
        for bound, count in zip([*map(_bound, self._bounds), "+Inf"], counts, strict=True):
            cumulative += count
            buckets.append((bound, float(cumulative)))
        yield HistogramMetricFamily(
            self._name, self._documentation, buckets=buckets, sum_value=total
        )


def _bound(value: float) -> str:
    """A bucket bound as `prometheus_client` writes it ("0.005", "1.0")."""
    return str(float(value))
