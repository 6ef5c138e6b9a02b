"""The Redis side of draining one session: one typed method per Lua script a drain
runs, which builds the script's KEYS and ARGV and reads its reply (streaq's model).

Each script is auto-batched across the sessions a worker drains at once (a drain has
one call in flight, so its own calls keep their order). Scripts that need the
session's lease refuse with a `LEASELOST` error reply when the caller no longer holds
it, and every method turns that into `LeaseLost`: one signal, one way.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Literal, cast

from redis import exceptions as rx

from cypherstream.shared.keys import GROUP, Keyspace
from cypherstream.shared.pipelines import ScriptPipeline
from cypherstream.shared.scripts import ScriptArg, ScriptReply, Scripts, reply_int, reply_text

if TYPE_CHECKING:
    from cypherstream.shared.connection import RedisClient

Fields = dict[bytes, bytes]
Read = list[tuple[str, Fields | None]]
"""Entries read: (entry id, fields), fields None for an entry deleted since delivery."""

#: Seconds a flush's reply list is kept for a flush that stopped waiting.
FLUSH_REPLY_TTL_SECONDS = 3600


class LeaseLost(Exception):
    """Another drainer owns the session now; stop without touching it further."""


class SessionScripts:
    """The drain's scripts for one worker (`owner`), with its lease and idle TTLs."""

    def __init__(
        self,
        redis: RedisClient,
        scripts: Scripts,
        keys: Keyspace,
        owner: str,
        lease_ms: int,
        idle_ms: int,
    ) -> None:
        self._keys = keys
        self._owner = owner
        self._lease_ms = lease_ms
        self._idle_ms = idle_ms
        self._takeover = ScriptPipeline(redis, scripts.takeover)
        self._read = ScriptPipeline(redis, scripts.read)
        self._ack = ScriptPipeline(redis, scripts.ack)
        self._flush_ack = ScriptPipeline(redis, scripts.flush_ack)
        self._release = ScriptPipeline(redis, scripts.release)

    async def close(self) -> None:
        """Give the scripts' connections back to the pool."""
        for pipeline in (self._takeover, self._read, self._ack, self._flush_ack, self._release):
            await pipeline.close()

    async def take_over(self, session_id: str) -> int:
        """Claim every entry a former owner left pending; how many were claimed."""
        keys = [self._keys.lease(session_id), self._keys.stream(session_id)]
        return reply_int(await _leased(self._takeover, keys, [self._owner, GROUP, self._owner]))

    async def read(self, session_id: str, count: int, start: Literal["0", ">"]) -> Read:
        """Up to `count` entries: own pending ones first (`start` "0"), else new ones."""
        keys = [self._keys.lease(session_id), self._keys.stream(session_id)]
        args: list[ScriptArg] = [self._owner, GROUP, self._owner, count, start, self._lease_ms]
        try:
            reply = await _leased(self._read, keys, args)
        except rx.ResponseError as exc:
            if "NOGROUP" in str(exc):  # the stream was deleted by hand
                return []
            raise
        if not reply:
            return []
        # XREADGROUP's reply: [[stream, [[id, [field, value, ...] or nil], ...]]]
        streams = cast("list[tuple[bytes, list[tuple[bytes, list[bytes] | None]]]]", reply)
        entries = streams[0][1]
        return [
            (
                reply_text(entry_id),
                dict(zip(fields[::2], fields[1::2], strict=True)) if fields else None,
            )
            for entry_id, fields in entries
        ]

    async def ack(self, session_id: str, entry_ids: list[str]) -> None:
        """Acknowledge applied entries and delete them, so XLEN is what remains."""
        keys = self._keys
        await self._ack.call(
            [keys.stream(session_id), keys.wants_room(session_id)],
            [GROUP, keys.room_channel, session_id, *entry_ids],
        )

    async def answer_flush(
        self,
        session_id: str,
        entry_id: str,
        token: str,
        client_id: str,
        bookmarks: tuple[str, ...],
        *,
        ending: bool = False,
    ) -> bool:
        """Hand the client's errors, and the Neo4j `bookmarks` of the writes before the
        sentinel, to its flush and delete the sentinel. With `ending` (an end marker),
        also drop the session's keys unless writes followed; whether they were dropped."""
        keys = self._keys
        partition = keys.partition_of(session_id)
        script_keys = [
            keys.stream(session_id),
            keys.errors(session_id, client_id),
            keys.ack(partition, token),
        ]
        args: list[ScriptArg] = [
            GROUP, entry_id, FLUSH_REPLY_TTL_SECONDS, session_id, json.dumps(list(bookmarks))
        ]  # fmt: skip
        if ending:
            script_keys += [keys.seen(session_id), keys.lease(session_id), keys.ready(partition)]
            args.append(self._owner)
        return bool(await _leased(self._flush_ack, script_keys, args)) and ending

    async def release(self, session_id: str, mode: Literal["idle", "yield"]) -> int:
        """Give the lease up (`idle`: only if the stream is empty; `yield`: always, to
        the back of the queue); the entries left."""
        partition = self._keys.partition_of(session_id)
        keys = [
            self._keys.lease(session_id),
            self._keys.stream(session_id),
            self._keys.ready(partition),
        ]
        return reply_int(
            await _leased(self._release, keys, [self._owner, session_id, mode, self._idle_ms])
        )


async def _leased(pipeline: ScriptPipeline, keys: list[str], args: list[ScriptArg]) -> ScriptReply:
    """Run a script that needs the lease; `LeaseLost` when the caller lost it."""
    try:
        return await pipeline.call(keys, args)
    except rx.ResponseError as exc:
        if str(exc).startswith("LEASELOST"):
            raise LeaseLost(str(exc)) from exc
        raise
