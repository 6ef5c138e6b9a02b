"""The Lua scripts both sides run; each touches the keys of one hash slot only."""

from __future__ import annotations

from importlib import resources
from typing import Any

from shared.keys import GROUP, Keyspace

_NAMES = (
    "submit", "read", "takeover", "ack", "flush_ack", "release", "renew", "heartbeat",
    "live", "sweep",
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


def is_cluster(redis: Any) -> bool:
    """Whether `redis` is a Redis Cluster client."""
    from redis.asyncio.cluster import RedisCluster

    return isinstance(redis, RedisCluster)


class Scripts:
    """Scripts registered on one Redis client (EVALSHA, loaded again on NOSCRIPT)."""

    def __init__(self, redis: Any) -> None:
        folder = resources.files("shared") / "lua"
        for name in _NAMES:
            source = (folder / f"{name}.lua").read_text()
            setattr(self, name, redis.register_script(source))

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
