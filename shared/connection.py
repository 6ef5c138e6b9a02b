"""Opening Redis the same way on both sides, and checking they agree on key names."""

from __future__ import annotations

from typing import Any

from redis import exceptions as rx

from shared.errors import ConfigurationError, RedisPermissionDenied, RedisUnavailable
from shared.keys import Keyspace
from shared.scripts import Scripts
from shared.settings import RedisSettings

REDIS_DOWN = (
    rx.ConnectionError,
    rx.TimeoutError,
    OSError,
    rx.ClusterDownError,  # a cluster master failed and its replica is not promoted yet
    rx.TryAgainError,  # a slot is migrating or failing over
)
"""What redis-py raises when Redis cannot be reached for now (as opposed to a command
error): worth retrying with backoff."""

# Replies of a node that cannot take writes for now: a primary short of the replicas
# `min-replicas-to-write` asks for, or a primary just demoted to replica.
_REFUSING_WRITES = ("NOREPLICAS", "READONLY")


def transient(exc: BaseException) -> bool:
    """Whether `exc` says Redis is unreachable or refusing writes for now: worth a retry."""
    if isinstance(exc, REDIS_DOWN):
        return True
    return isinstance(exc, rx.ResponseError) and str(exc).startswith(_REFUSING_WRITES)


def unreachable(settings: RedisSettings, exc: BaseException) -> RedisUnavailable:
    """The error both sides raise when Redis cannot be reached."""
    return RedisUnavailable(
        f"cannot reach Redis at {_safe_url(settings.url)}: {exc}. Check REDIS_URL and that "
        "Redis is running. The call that failed wrote nothing."
    )


def _safe_url(url: str | None) -> str:
    """The URL without its password, for messages and logs."""
    if not url or "@" not in url:
        return str(url)
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"


async def open_redis(settings: RedisSettings, keyspace: Keyspace, **overrides: Any) -> Any:
    """Connect, check Redis answers, and check the partition count matches what it holds."""
    client = settings.client(**overrides)
    try:
        recorded = await Scripts(client).partitions(
            keys=[keyspace.meta], args=[keyspace.partitions]
        )
    except rx.AuthenticationError as exc:
        await client.aclose()
        raise ConfigurationError(
            f"Redis at {_safe_url(settings.url)} refused the credentials ({exc}). Check "
            "REDIS_USERNAME and REDIS_PASSWORD."
        ) from exc
    except rx.NoPermissionError as exc:
        await client.aclose()
        raise RedisPermissionDenied(
            f"the Redis user {settings.username or 'default'!r} may not use cypherstream's keys "
            f"under {keyspace.prefix!r} ({exc}). Grant it the ACL rules in the README's "
            "Security section."
        ) from exc
    except REDIS_DOWN as exc:
        await client.aclose()
        raise unreachable(settings, exc) from exc
    if int(recorded) != keyspace.partitions:
        await client.aclose()
        raise ConfigurationError(
            f"Redis records {int(recorded)} partitions under prefix {keyspace.prefix!r}, "
            f"but this process is configured with {keyspace.partitions}. Producers and "
            "drainers must agree: set CYPHERSTREAM_PARTITIONS to the recorded value."
        )
    return client
