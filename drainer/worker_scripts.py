"""The Redis side of the worker itself: one typed method per Lua script it runs for
its own upkeep (heartbeat, taking and renewing leases, the sweep), which builds the
script's KEYS and ARGV and reads its reply, and the scheduler's look at the ready sets.
Calls for many sessions go in one round trip per Redis node
(`shared.pipelines.run_many`); any error in one of them is raised.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript

from cypherstream.drainer.backlog import ready_sessions
from cypherstream.shared.keys import Keyspace
from cypherstream.shared.lane import Lane
from cypherstream.shared.pipelines import Calls, run_many
from cypherstream.shared.scripts import ScriptReply, Scripts

if TYPE_CHECKING:
    from cypherstream.shared.connection import RedisClient


class WorkerScripts:
    """The scripts of one worker (`owner`), whose leases last `lease_ms`."""

    def __init__(
        self, redis: RedisClient, scripts: Scripts, keys: Keyspace, owner: str, lease_ms: int
    ) -> None:
        self._redis = redis
        self._scripts = scripts
        self._keys = keys
        self._owner = owner
        self._lease_ms = lease_ms
        # The scheduler's own connection on a single Redis, for its looks and the leases
        # it takes (one at a time: it runs them in turn): packed by hiredis, replies raw,
        # without a pool and pipeline object per call.
        self._scheduling = None if isinstance(redis, RedisCluster) else Lane(redis)

    async def close(self) -> None:
        """Close the scheduler's connection."""
        if self._scheduling is not None:
            await self._scheduling.close()

    async def ready(self, limit: int) -> list[str]:
        """The `limit` oldest ready sessions (the scheduler's look: the oldest `limit` of
        each partition, merged)."""
        ready = await ready_sessions(
            self._redis, self._keys, per_partition=limit, lane=self._scheduling
        )
        return [session for session, _ in ready[:limit]]

    async def heartbeat(self, info: Sequence[str | int]) -> None:
        """Say this worker is alive for one lease TTL, with what `drainer status` and
        producers read about it (`info`: field, value, field, value, ...)."""
        keys = self._keys
        await self._scripts.heartbeat(
            keys=[keys.drainers, keys.drainer_info(self._owner), keys.meta],
            args=[self._owner, self._lease_ms, *info],
        )

    async def acquire(self, session_ids: list[str]) -> list[str]:
        """Take the leases of those of `session_ids` nobody holds; the ones taken."""
        calls: Calls = [([self._keys.lease(s)], [self._owner, self._lease_ms]) for s in session_ids]
        taken = await self._all(self._scripts.acquire, calls, lane=self._scheduling)
        return [session_id for session_id, ok in zip(session_ids, taken, strict=True) if ok]

    async def renew(self, session_ids: list[str]) -> list[str]:
        """Extend the leases this worker holds; the sessions whose lease it lost."""
        calls: Calls = [([self._keys.lease(s)], [self._owner, self._lease_ms]) for s in session_ids]
        renewed = await self._all(self._scripts.renew, calls)
        return [session_id for session_id, ok in zip(session_ids, renewed, strict=True) if not ok]

    async def take_sweep_turn(self, turn_ms: int) -> bool:
        """Whether this worker sweeps now (one worker of the fleet per `turn_ms`)."""
        return bool(
            await self._scripts.acquire(keys=[self._keys.sweep_turn], args=[self._owner, turn_ms])
        )

    async def sweep(self, streams: list[str]) -> list[str]:
        """Put the sessions of `streams` that have entries but are missing from their
        ready set back in it; the sessions put back."""
        keys = self._keys
        sessions = [keys.session_of_stream(stream) for stream in streams]
        calls: Calls = [
            ([stream, keys.ready(keys.partition_of(session))], [session])
            for stream, session in zip(streams, sessions, strict=True)
        ]
        readied = await self._all(self._scripts.sweep, calls)
        return [session for session, again in zip(sessions, readied, strict=True) if again]

    async def _all(
        self, script: AsyncScript, calls: Calls, lane: Lane | None = None
    ) -> list[ScriptReply]:
        replies: list[ScriptReply] = []
        for reply in await run_many(self._redis, script, calls, lane=lane):
            if isinstance(reply, BaseException):
                raise reply
            replies.append(reply)
        return replies
