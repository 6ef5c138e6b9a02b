"""The producer's settings: one object, from the environment and code."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from cypherstream.shared.settings import Neo4jSettings, RedisSettings, StreamSettings


class MemoryOptions(BaseSettings):
    """How writes are made (``CYPHERSTREAM_*`` variables)."""

    model_config = SettingsConfigDict(env_prefix="CYPHERSTREAM_", validate_assignment=True)

    write_mode: Literal["sync", "buffered"] = Field(
        default="sync",
        description="sync: each write awaits Neo4j; buffered: writes are queued and drained",
    )
    max_pending: int = Field(
        default=200, ge=1, description="queued writes per session before submit waits"
    )
    session_id: str | None = Field(
        default=None, description="session for writes that name none; None: one per client"
    )
    flush_timeout: float = Field(default=60.0, gt=0, description="seconds flush() may wait")
    no_drainer_grace: float = Field(
        default=15.0,
        ge=0,
        description="seconds flush() waits for a drainer to come back when none is alive "
        "(a restart, a rolling update); where none ever ran under the prefix it fails at once",
    )
    backpressure_timeout: float = Field(
        default=60.0, gt=0, description="seconds submit() may wait for room before failing"
    )
    redis_retry: float = Field(
        default=5.0,
        ge=0,
        description="seconds submit/flush retry a broken Redis connection before raising",
    )
    wait_replicas: int = Field(
        default=0,
        ge=0,
        description="Redis replicas that must hold each write before submit returns (WAIT); "
        "0: submit returns once the primary has it",
    )
    wait_timeout: float = Field(
        default=1.0,
        gt=0,
        description="seconds one WAIT may block; submit then retries for redis_retry "
        "seconds before raising NotReplicated",
    )
    handoff: Literal["redis", "local"] = Field(
        default="redis",
        description="redis: submit returns once Redis holds the write; local: once the "
        "client's buffer does, and a background task appends it (faster; buffered writes "
        "are lost if the process dies)",
    )
    handoff_buffer: int = Field(
        default=10_000,
        ge=1,
        description="writes the local hand-off buffer holds before submit waits",
    )
    max_entry_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="largest encoded write submit accepts"
    )
    queries: Path | None = Field(
        default=None,
        description="YAML file of named queries: runs them in sync and in-process mode, "
        "and checks names at submit",
    )


class MemorySettings(BaseSettings):
    """Everything a `MemoryClient` needs. Without a Redis URL, buffered mode stays in process."""

    model_config = SettingsConfigDict(validate_assignment=True)

    neo4j: Neo4jSettings = Field(default_factory=Neo4jSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    streams: StreamSettings = Field(default_factory=StreamSettings)
    memory: MemoryOptions = Field(default_factory=MemoryOptions)
