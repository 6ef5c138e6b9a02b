"""Prometheus metrics of one drainer (its own registry: no process-wide globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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

    def committed(self, writes: int, seconds: float) -> None:
        """Count one batch transaction that applied `writes` in `seconds`."""
        self.transactions.inc()
        self.batch_size.observe(writes)
        self.commit_seconds.observe(seconds)
