"""The Lua scripts both sides run; each touches the keys of one hash slot only.

Each declares its flags (Redis 7): those on the drain path, and start-up's, carry
`allow-oom`, so a Redis that refuses writes for memory can still be drained; `submit`
does not, so a full Redis refuses it whole and the producer waits for room.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

from cypherstream.shared.keys import GROUP, Keyspace

_NAMES = (
    "submit", "read", "takeover", "ack", "flush_ack", "release", "renew", "heartbeat",
    "live", "sweep", "acquire", "partitions", "record_failure", "dead_letter",
)  # fmt: skip


def submit_call(
    keys: Keyspace,
    session_id: str,
    fields: list[bytes | str],
    *,
    limit: int,
    client_id: str,
    seq: int = 0,
    seen_ttl: int = 0,
) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of `submit.lua` for one entry: the script's calling convention.

    `limit` 0 appends even to a full stream; `seq` 0 skips the idempotency check.
    """
    partition = keys.partition_of(session_id)
    script_keys = [keys.stream(session_id), keys.ready(partition), keys.seen(session_id)]
    return script_keys, [limit, session_id, GROUP, client_id, seq, seen_ttl, *fields]


@functools.cache
def _source(name: str) -> str:
    """The text of script `name` (read once per process)."""
    return (resources.files("cypherstream.shared") / "lua" / f"{name}.lua").read_text()


def reply_text(value: bytes | str) -> str:
    """A script's reply item as text (replies are bytes unless the client decodes)."""
    return value.decode() if isinstance(value, bytes) else value


def is_cluster(redis: Any) -> bool:
    """Whether `redis` is a Redis Cluster client."""
    from redis.asyncio.cluster import RedisCluster

    return isinstance(redis, RedisCluster)


class Scripts:
    """Scripts registered on one Redis client (EVALSHA, loaded again on NOSCRIPT)."""

    def __init__(self, redis: Any) -> None:
        for name in _NAMES:
            setattr(self, name, redis.register_script(_source(name)))

    submit: Any
    read: Any
    takeover: Any
    ack: Any
    flush_ack: Any
    release: Any
    renew: Any
    heartbeat: Any
    live: Any
    sweep: Any
    acquire: Any
    partitions: Any
    record_failure: Any
    dead_letter: Any
