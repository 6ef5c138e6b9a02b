"""Settings both sides share: where Redis and Neo4j are, and how keys are named.

Each group reads its own environment variables (``REDIS_*``, ``NEO4J_*``,
``CYPHERSTREAM_*``); code and command-line flags override them.
"""

from __future__ import annotations

from functools import cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from neo4j import AsyncDriver, AsyncGraphDatabase, TrustCustomCAs
from neo4j import exceptions as nx
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from cypherstream.shared.errors import ConfigurationError
from cypherstream.shared.keys import Keyspace
from cypherstream.shared.signing import Signer

if TYPE_CHECKING:
    from cypherstream.shared.connection import RedisClient


class RedisSettings(BaseSettings):
    """Where the queue lives. No URL means buffered writes stay in process."""

    model_config = SettingsConfigDict(env_prefix="REDIS_", validate_assignment=True)

    url: str | None = Field(
        default=None,
        description="redis:// or rediss:// (TLS) URL, keep the password out of it; on a "
        "cluster, a comma-separated list of seed nodes may be given",
    )
    username: str | None = Field(default=None, description="ACL user (Redis 6+)")
    password: SecretStr | None = Field(default=None, description="the user's password")
    ssl_ca_certs: Path | None = Field(
        default=None, description="CA bundle that signed the server's certificate (rediss://)"
    )
    ssl_certfile: Path | None = Field(default=None, description="client certificate (mutual TLS)")
    ssl_keyfile: Path | None = Field(default=None, description="the client certificate's key")
    socket_timeout: float = Field(default=10.0, gt=0, description="seconds per command")
    connect_timeout: float = Field(default=5.0, gt=0, description="seconds to connect")
    cluster: bool = Field(
        default=False,
        description="REDIS_URL names a node of a Redis Cluster (the client finds the rest)",
    )
    max_connections: int = Field(
        default=64,
        ge=1,
        description="connections per process; callers beyond it wait for one (not an error)",
    )

    @property
    def user(self) -> str:
        """The ACL user this connects as: `username`, else the URL's, else `default`."""
        if self.username:
            return self.username
        url = (self.url or "").split(",")[0].strip()
        try:
            return urlsplit(url).username or "default"
        except ValueError:  # not a URL: the client says so when it connects
            return "default"

    def client(self, **overrides: object) -> RedisClient:
        """A redis.asyncio client for `url` (bytes replies)."""
        from redis import asyncio as aioredis

        if not self.url:
            raise ConfigurationError(
                "REDIS_URL is not set: give the Redis the producers write to, e.g. "
                "REDIS_URL=redis://host:6379/0 (rediss:// for TLS)"
            )
        options: dict[str, object] = {
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": self.connect_timeout,
            "health_check_interval": 30,
            "max_connections": self.max_connections,
            "timeout": self.socket_timeout,  # waiting for a free connection
        }
        driver = _driver_info()
        if driver is not None:
            options["driver_info"] = driver
        if self.username:
            options["username"] = self.username
        if self.password is not None:
            options["password"] = self.password.get_secret_value()
        if self.url.startswith("rediss://"):
            tls = {
                "ssl_ca_certs": self.ssl_ca_certs,
                "ssl_certfile": self.ssl_certfile,
                "ssl_keyfile": self.ssl_keyfile,
            }
            options.update({name: str(path) for name, path in tls.items() if path is not None})
        elif self.ssl_ca_certs or self.ssl_certfile or self.ssl_keyfile:
            raise ConfigurationError(
                "REDIS_SSL_* options are set but REDIS_URL is not rediss://: use a rediss:// "
                "URL to connect over TLS"
            )
        options.update(overrides)
        first, *more = [url.strip() for url in self.url.split(",")]
        if self.cluster:
            from redis.asyncio.cluster import ClusterNode, RedisCluster

            # One pool per node, sized by redis-py; there is no blocking pool to wait on.
            for name in ("max_connections", "timeout", "health_check_interval"):
                options.pop(name, None)
            # Any seed that answers tells the client about every node.
            try:
                seeds = [ClusterNode(*_host_and_port(url)) for url in more]
                return RedisCluster.from_url(first, startup_nodes=seeds or None, **options)
            except ValueError as exc:
                raise _bad_url(first, exc) from exc
        if more:
            raise ConfigurationError(
                "REDIS_URL lists several servers, which only a Redis Cluster takes: set "
                "REDIS_CLUSTER=true, or give one URL"
            )
        # Blocking: many coroutines share a bounded pool instead of failing past its size.
        try:
            pool = aioredis.BlockingConnectionPool.from_url(first, **options)
        except ValueError as exc:
            raise _bad_url(first, exc) from exc
        return aioredis.Redis.from_pool(pool)


@cache
def _driver_info() -> object | None:
    """What each connection tells Redis it is (`CLIENT SETINFO`, shown by CLIENT LIST),
    built once: redis-py 8 otherwise reads its own package metadata for every new
    connection, 1-2 ms of CPU each (a drainer opens 20-40 as it starts). None with a
    redis-py that predates `driver_info` (it reads it once)."""
    try:
        from redis.driver_info import DriverInfo
    except ImportError:
        return None
    try:
        version = metadata.version("cypherstream")
    except metadata.PackageNotFoundError:
        return DriverInfo()
    return DriverInfo().add_upstream_driver("cypherstream", version)


def masked_url(url: str | None) -> str:
    """The URL without its password, for messages and logs."""
    if not url or "@" not in url:
        return str(url)
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"


def _bad_url(url: str, exc: BaseException) -> ConfigurationError:
    return ConfigurationError(
        f"REDIS_URL {masked_url(url)!r} is not a Redis URL ({exc}): use "
        "redis://host:6379/0, or rediss:// for TLS"
    )


def _host_and_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "localhost", parts.port or 6379


_NEO4J_SCHEMES = ("neo4j", "neo4j+s", "neo4j+ssc", "bolt", "bolt+s", "bolt+ssc")


class Neo4jSettings(BaseSettings):
    """Where the graph lives."""

    model_config = SettingsConfigDict(env_prefix="NEO4J_", validate_assignment=True)

    uri: str = Field(
        default="bolt://localhost:7687",
        description="neo4j:// (a cluster or a single server) or bolt://; +s or +ssc for TLS",
    )
    username: str = Field(default="neo4j", description="the user writes run as")
    password: SecretStr = SecretStr("")
    database: str | None = Field(default=None, description="None: the server's default")
    trusted_ca: Path | None = Field(
        default=None,
        description="CA file to trust for TLS (with a neo4j:// or bolt:// URI); "
        "neo4j+s:// and bolt+s:// use the system's CAs",
    )

    def driver_options(self) -> dict[str, Any]:
        """Driver configuration beyond URI and auth: TLS with a custom CA, notifications off."""
        options: dict[str, Any] = {"notifications_min_severity": "OFF"}
        if self.trusted_ca is not None:
            scheme = self.uri.partition("://")[0]
            if scheme not in ("neo4j", "bolt"):
                raise ConfigurationError(
                    f"NEO4J_TRUSTED_CA needs a neo4j:// or bolt:// URI, not {scheme}://: the "
                    "+s and +ssc schemes choose their certificates themselves"
                )
            options["encrypted"] = True
            options["trusted_certificates"] = TrustCustomCAs(str(self.trusted_ca))
        return options

    def driver(self, **options: Any) -> AsyncDriver:
        """An async driver; server notifications about user queries are not logged."""
        scheme = self.uri.partition("://")[0] if "://" in self.uri else ""
        if scheme not in _NEO4J_SCHEMES:
            raise ConfigurationError(
                f"NEO4J_URI {self.uri!r} is not a Neo4j URI: use neo4j://host:7687 (a "
                "cluster or a single server), bolt://host:7687, or their +s / +ssc forms "
                "for TLS"
            )
        auth = (self.username, self.password.get_secret_value()) if self.username else None
        try:
            return AsyncGraphDatabase.driver(
                self.uri, auth=auth, **{**self.driver_options(), **options}
            )
        except (ValueError, nx.ConfigurationError) as exc:
            raise ConfigurationError(f"NEO4J_URI {self.uri!r} cannot be used: {exc}") from exc


class StreamSettings(BaseSettings):
    """How keys are named. Producers and drainers of one deployment must agree."""

    model_config = SettingsConfigDict(env_prefix="CYPHERSTREAM_", validate_assignment=True)

    key_prefix: str = Field(
        default="cs",
        pattern=r"^[A-Za-z0-9._-]{1,64}$",
        description="prefix of every Redis key (one deployment per prefix)",
    )
    partitions: int = Field(default=16, ge=1, le=16384, description="fixed once data exists")
    signing_keys: SecretStr | None = Field(
        default=None,
        description="comma-separated HMAC keys: producers sign with the first, drainers "
        "accept any; unset: entries are not signed",
    )

    def keyspace(self) -> Keyspace:
        return Keyspace(self.key_prefix, self.partitions)

    def signer(self) -> Signer | None:
        """The signer for `signing_keys`, or None when signing is off."""
        keys = self.signing_keys.get_secret_value() if self.signing_keys else None
        return Signer.parse(keys)
