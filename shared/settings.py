"""Settings both sides share: where Redis and Neo4j are, and how keys are named.

Each group reads its own environment variables (``REDIS_*``, ``NEO4J_*``,
``CYPHERSTREAM_*``); code and command-line flags override them.
"""

from __future__ import annotations

from typing import Any

from neo4j import AsyncDriver, AsyncGraphDatabase
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.keys import Keyspace


class RedisSettings(BaseSettings):
    """Where the queue lives. No URL means buffered writes stay in process."""

    model_config = SettingsConfigDict(env_prefix="REDIS_", validate_assignment=True)

    url: str | None = Field(default=None, description="redis:// or rediss:// URL")
    socket_timeout: float = Field(default=10.0, gt=0, description="seconds per command")
    connect_timeout: float = Field(default=5.0, gt=0)
    max_connections: int = Field(
        default=64,
        ge=1,
        description="connections per process; callers beyond it wait for one (not an error)",
    )

    def client(self, **overrides: Any) -> Any:
        """A redis.asyncio client for `url` (bytes replies)."""
        from redis import asyncio as aioredis

        if not self.url:
            raise ValueError("no Redis URL configured (set REDIS_URL)")
        options: dict[str, Any] = {
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": self.connect_timeout,
            "health_check_interval": 30,
            "max_connections": self.max_connections,
            "timeout": self.socket_timeout,  # waiting for a free connection
        }
        options.update(overrides)
        # Blocking: many coroutines share a bounded pool instead of failing past its size.
        pool = aioredis.BlockingConnectionPool.from_url(self.url, **options)
        return aioredis.Redis.from_pool(pool)


class Neo4jSettings(BaseSettings):
    """Where the graph lives."""

    model_config = SettingsConfigDict(env_prefix="NEO4J_", validate_assignment=True)

    uri: str = "bolt://localhost:7687"
    username: str = "neo4j"
    password: SecretStr = SecretStr("")
    database: str | None = Field(default=None, description="None: the server's default")

    def driver(self, **options: Any) -> AsyncDriver:
        """An async driver; server notifications about user queries are not logged."""
        auth = (self.username, self.password.get_secret_value()) if self.username else None
        options.setdefault("notifications_min_severity", "OFF")
        return AsyncGraphDatabase.driver(self.uri, auth=auth, **options)


class StreamSettings(BaseSettings):
    """How keys are named. Producers and drainers of one deployment must agree."""

    model_config = SettingsConfigDict(env_prefix="CYPHERSTREAM_", validate_assignment=True)

    key_prefix: str = Field(default="cs", pattern=r"^[A-Za-z0-9._-]{1,64}$")
    partitions: int = Field(default=16, ge=1, le=16384, description="fixed once data exists")

    def keyspace(self) -> Keyspace:
        return Keyspace(self.key_prefix, self.partitions)
