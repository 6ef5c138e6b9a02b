"""Prometheus metrics of one drainer (its own registry: no process-wide globals): the
drain path's events (`drainer.events.DrainEvents`) turned into series."""

from __future__ import annotations

from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from cypherstream.drainer.backlog import Status
from cypherstream.drainer.events import RetryTarget
from cypherstream.shared.entry import WriteEntry, id_key
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
        self.lag_seconds = Histogram(
            "cypherstream_lag_seconds",
            "From submit (the entry id's Redis time) to commit",
            buckets=_LAG_BUCKETS,
            registry=r,
        )
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
        for write in writes:
            self.lag_seconds.observe(max(0.0, now_ms - id_key(write.entry_id)[0]) / 1000)

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
