"""The Lua scripts both sides run; each touches the keys of one hash slot only.

Each declares its flags (Redis 7): those on the drain path, and start-up's, carry
`allow-oom`, so a Redis that refuses writes for memory can still be drained; `submit`
does not, so a full Redis refuses it whole and the producer waits for room.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import TYPE_CHECKING, TypeAlias, TypeGuard

from redis.commands.core import AsyncScript

from cypherstream.shared.keys import GROUP, Keyspace

if TYPE_CHECKING:
    from redis.asyncio.cluster import RedisCluster

    from cypherstream.shared.connection import RedisClient

ScriptArg: TypeAlias = "bytes | str | int | float"
"""One ARGV item of a script call."""

ScriptReply: TypeAlias = "bytes | int | list[ScriptReply] | None"
"""What a script returns (Lua tables become lists, nil None; bytes unless decoded)."""

_NAMES = (
    "submit", "read", "claim", "settle", "renew", "heartbeat",
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
) -> tuple[list[str], list[ScriptArg]]:
    """KEYS and ARGV of `submit.lua` for one entry: the script's calling convention.

    `limit` 0 appends even to a full stream; `seq` 0 skips the idempotency check.
    """
    script_keys, channel = _submit_keys(keys, session_id)
    args: list[ScriptArg] = [limit, session_id, GROUP, client_id, seq, seen_ttl, channel]
    return list(script_keys), args + fields


@functools.lru_cache(maxsize=4096)
def _submit_keys(keys: Keyspace, session_id: str) -> tuple[tuple[str, ...], str]:
    """`submit.lua`'s keys for a session, and the ready channel: the same for every
    submit to it (2 us to build each time, 0.3 us to look up)."""
    partition = keys.partition_of(session_id)
    script_keys = (
        keys.stream(session_id), keys.ready(partition), keys.seen(session_id),
        keys.wants_room(session_id),
    )  # fmt: skip
    return script_keys, keys.ready_channel


@functools.cache
def _source(name: str) -> str:
    """The text of script `name` (read once per process)."""
    return (resources.files("cypherstream.shared") / "lua" / f"{name}.lua").read_text()


def reply_text(value: bytes | str) -> str:
    """A script's reply item as text (replies are bytes unless the client decodes)."""
    return value.decode() if isinstance(value, bytes) else value


def reply_int(value: ScriptReply) -> int:
    """A script's integer reply (a status may arrive as its digits)."""
    if isinstance(value, (int, bytes)):
        return int(value)
    raise TypeError(f"expected an integer script reply, got {value!r}")


def is_cluster(redis: RedisClient) -> TypeGuard[RedisCluster]:
    """Whether `redis` is a Redis Cluster client."""
    from redis.asyncio.cluster import RedisCluster

    return isinstance(redis, RedisCluster)


class Scripts:
    """Scripts registered on one Redis client (EVALSHA, loaded again on NOSCRIPT)."""

    def __init__(self, redis: RedisClient) -> None:
        for name in _NAMES:
            setattr(self, name, redis.register_script(_source(name)))

    submit: AsyncScript
    read: AsyncScript
    claim: AsyncScript
    settle: AsyncScript
    renew: AsyncScript
    heartbeat: AsyncScript
    live: AsyncScript
    sweep: AsyncScript
    acquire: AsyncScript
    partitions: AsyncScript
    record_failure: AsyncScript
    dead_letter: AsyncScript
