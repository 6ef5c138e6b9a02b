"""The drainer's settings: one object, from ``DRAINER_*`` variables and `drainer run` flags."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from cypherstream.shared.dispositions import DEFAULT_MAX_ATTEMPTS
from cypherstream.shared.settings import Neo4jSettings, RedisSettings, StreamSettings


def _default_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class DrainerSettings(BaseSettings):
    """How one `drainer run` process works."""

    model_config = SettingsConfigDict(env_prefix="DRAINER_", validate_assignment=True)

    drainer_id: str = Field(
        default_factory=_default_id,
        pattern=r"^[A-Za-z0-9._:@-]{1,128}$",
        description="unique id of this worker (default host-pid-random)",
    )
    #: 128 from interleaved drains (medians of 8): 100 sessions x 20 writes 13,235
    #: writes/s at 64, 14,644 at 128, 14,693 at 256; 1,000 x 2 3,206 / 3,685 / 4,599;
    #: one session of 2,000 the same. Not 256: twice the connections (up to 2 Redis
    #: connections a session) for no gain at 100 sessions.
    concurrency: int = Field(default=128, ge=1, le=4096, description="sessions drained at once")
    #: 500: 1,000 measured within the noise of it for one session's 2,000 writes (16
    #: interleaved pairs: 24,696 writes/s at 500, 23,253 at 1,000, after four shorter
    #: series that favoured 1,000 by 11-20%), and a smaller batch keeps each read script,
    #: which Redis runs while every submit waits, shorter (5-9.5 ms for 500 entries here).
    batch_size: int = Field(default=500, ge=1, le=10000, description="entries per transaction")
    #: A drainer holds up to two reads per session it drains (one applied, one read
    #: ahead), so reads are bounded in bytes as well as in entries. Draining a backlog
    #: of 384-float embedding writes (4.2 kB each; 128 sessions x 600) at concurrency
    #: 128, peak RSS: 749 MB at 1 MiB, 500 MB at 256 KiB, 471 MB with 512 KiB and
    #: --transaction-bytes 4 MiB (1,045 MB at concurrency 64 before either bound).
    #: 512 KiB keeps --batch-size 500 for entries up to 1 kB.
    read_bytes: int = Field(
        default=2**19,
        ge=2**12,
        description="bytes of entries one read takes at most: fewer than --batch-size "
        "entries where entries are large (from the sizes read so far)",
    )
    #: What a commit holds decoded and encoded is many times its parameters' bytes (a
    #: 384-float embedding: 3.5 kB packed, 12 kB as Python floats, then Packstream and
    #: the driver's buffers): in the run above, 2 MiB instead of 8 cut the peak by 180
    #: MB. 4 MiB is 60,000 small writes: no drain of small writes reaches it.
    transaction_bytes: int = Field(
        default=4 * 2**20,
        ge=2**16,
        description="parameter bytes one shared transaction takes at most; the batches "
        "beyond wait for the next (a session's batch always goes whole)",
    )
    transactions: int = Field(
        default=2,
        ge=1,
        le=256,
        description="Neo4j transactions in flight at once; the batches of sessions that "
        "wait meanwhile share the next one",
    )
    lease_ttl: float = Field(
        default=10.0, ge=1.0, le=300.0, description="seconds a dead drainer keeps its sessions"
    )
    poll_interval: float = Field(
        default=0.05, gt=0, le=10, description="seconds between looks for ready sessions when idle"
    )
    sweep_interval: float = Field(
        default=30.0, gt=0, description="seconds between scans for streams missing from ready sets"
    )
    shutdown_grace: float = Field(
        default=30.0, gt=0, description="seconds to finish in-flight batches on SIGTERM"
    )
    #: From `make bench`'s one-session end-to-end run (3,000 sequential submits with a
    #: drainer applying them): see the README's performance section.
    linger: float = Field(
        default=0.005,
        ge=0,
        le=1.0,
        description="seconds a drain that keeps receiving writes waits after a short batch, "
        "so the next transaction holds more of them (0: read again at once)",
    )
    turn_batches: int = Field(
        default=20, ge=1, description="batches a session drains before yielding to waiting ones"
    )
    tx_timeout: float = Field(
        default=60.0, gt=0, description="seconds Neo4j lets one batch transaction run"
    )
    retry_max_delay: float = Field(default=10.0, gt=0, description="cap of the retry backoff (s)")
    max_attempts: int = Field(
        default=DEFAULT_MAX_ATTEMPTS,
        ge=1,
        le=1000,
        description="tries of a write whose own failure keeps coming back (timeout, "
        "transaction memory, deadlock) before it is dead-lettered as retries-exhausted; "
        "outages never count",
    )
    error_ttl: int = Field(
        default=86400, ge=60, description="seconds a client's unflushed error reports are kept"
    )
    allow_eviction: bool = Field(
        default=False, description="run even if Redis may evict keys (queued writes)"
    )
    queries: Path | None = Field(
        default=None, description="YAML file of named queries (name: Cypher) this drainer runs"
    )
    allow_raw_cypher: bool = Field(
        default=True, description="run Cypher text from entries; false: named queries only"
    )
    idle_session_ttl: float = Field(
        default=86400.0,
        ge=1,
        description="seconds an emptied session stream is kept before it expires; writing "
        "again starts the session afresh (end_session removes it at once)",
    )
    redact_params: bool = Field(
        default=False,
        description="keep parameters (and values quoted in errors) out of dead letters, "
        "error reports and logs",
    )

    metrics_port: int | None = Field(
        default=None, ge=0, le=65535, description="serve /metrics, /healthz, /readyz here"
    )
    metrics_host: str = Field(default="0.0.0.0", description="address the metrics port binds")
    stats_interval: float = Field(
        default=5.0, gt=0, description="seconds between backlog gauge updates"
    )

    redis: RedisSettings = Field(default_factory=RedisSettings)
    neo4j: Neo4jSettings = Field(default_factory=Neo4jSettings)
    streams: StreamSettings = Field(default_factory=StreamSettings)
