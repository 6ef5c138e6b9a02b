"""The Redis side of draining one session: one typed method per Lua script a drain
runs, which builds the script's KEYS and ARGV and reads its reply (streaq's model);
reads keep their entries out of Lua where they can (`drainer/leased_reads.py`).

Each call is auto-batched across the sessions a worker drains at once. A drain has
at most one read and one settle in flight (a read ahead and a settle behind may
overlap; neither depends on the other), so its calls of each kind keep their order.
Scripts that need the session's lease refuse with a `LEASELOST` error reply when the
caller no longer holds it, and every method turns that into `LeaseLost`: one signal,
one way.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, NamedTuple, cast

from redis import exceptions as rx

from cypherstream.drainer.leased_reads import LeasedReads, ReadCall
from cypherstream.shared.keys import GROUP, Keyspace
from cypherstream.shared.pipelines import ScriptPipeline
from cypherstream.shared.scripts import ScriptArg, ScriptReply, Scripts, reply_int, reply_text

if TYPE_CHECKING:
    from cypherstream.shared.connection import RedisClient

Fields = list[bytes]
Read = list[tuple[str, Fields | None]]
"""Entries read: (entry id, [field, value, ...] as the stream holds them), fields None
for an entry deleted since delivery (`shared.entry.parse_flat` reads them)."""


class Delivery(NamedTuple):
    """What one read returned."""

    claimed: int
    """Entries taken over from a former owner first (on a read with `claim`)."""
    entries: Read
    new: bool
    """Whether these entries are new ones: none was pending for this drainer before,
    so the reads after this one can ask for new entries only (and read ahead)."""
    recorded: tuple[str, ...] = ()
    """On a read with `claim`: the bookmarks `settle` recorded for the transactions
    that applied the session's writes so far (none where nothing was recorded)."""
    asked: int = 0
    """The entries the read asked for."""

    @property
    def full(self) -> bool:
        """Whether it returned all it asked for: more entries are likely queued."""
        return len(self.entries) >= self.asked


#: Seconds a flush's reply list is kept for a flush that stopped waiting.
FLUSH_REPLY_TTL_SECONDS = 3600


class LeaseLost(Exception):
    """Another drainer owns the session now; stop without touching it further."""


@dataclass(frozen=True)
class FlushAnswer:
    """A flush sentinel to answer: its entry, its flush's token and client, and the Neo4j
    bookmarks of the writes before it."""

    entry_id: str
    token: str
    client_id: str
    bookmarks: tuple[str, ...]


Release = Literal["", "idle", "yield"]
"""Whether `settle` gives the lease up: "" keeps it; "idle" only if the stream is
empty; "yield" always, sending the session to the back of the queue."""


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
        self._read = LeasedReads(redis, scripts.read, scripts.claim)
        self._settle = ScriptPipeline(redis, scripts.settle)

    @property
    def scripted_reads(self) -> int:
        """Reads that went through `read.lua` so far, not a watched transaction (see
        `drainer/leased_reads.py` for when)."""
        return self._read.scripted

    async def close(self) -> None:
        """Close the scripts' connections."""
        for pipeline in (self._read, self._settle):
            await pipeline.close()

    async def read(
        self, session_id: str, count: int, start: Literal["0", ">"], *, claim: bool = False
    ) -> Delivery:
        """Up to `count` entries: own pending ones first (`start` "0"), else new ones.

        With `claim` (on taking the lease), every entry a former owner left pending is
        first moved to this drainer, to be read first, and the read also returns the
        session's recorded bookmarks.
        """
        keys = self._keys
        call = ReadCall(
            keys.lease(session_id), keys.stream(session_id), keys.applied(session_id),
            self._owner, count, "0" if claim else start, self._lease_ms, claim,
        )  # fmt: skip
        try:
            reply = await _leased(self._read.call(call))
        except rx.ResponseError as exc:
            if "NOGROUP" in str(exc):  # the stream was deleted by hand
                return Delivery(0, [], new=False, asked=count)
            raise
        claimed, streams, new, kept = cast("tuple[int, ScriptReply, int, bytes | None]", reply)
        recorded = tuple(json.loads(kept)) if kept else ()
        if not streams:
            return Delivery(claimed, [], new=False, recorded=recorded, asked=count)
        # XREADGROUP's reply: [[stream, [[id, [field, value, ...] or nil], ...]]]
        read = cast("list[tuple[bytes, list[tuple[bytes, list[bytes] | None]]]]", streams)
        entries = [(reply_text(entry_id), fields or None) for entry_id, fields in read[0][1]]
        return Delivery(claimed, entries, new=bool(new), recorded=recorded, asked=count)

    async def settle(
        self,
        session_id: str,
        entry_ids: list[str],
        flush: FlushAnswer | None = None,
        release: Release = "",
        *,
        applied: tuple[str, ...] = (),
    ) -> int:
        """After applying, in one round trip: acknowledge and delete `entry_ids`, answer
        `flush`, record `applied` (the bookmarks of the transactions that applied them)
        for the session's later drains, announce room to a waiting submit, and give the
        lease up as `release` says. Returns the entries left.

        `entry_ids` are in stream order, `flush` after them, and every entry before
        them is done: the stream is trimmed up to the last one, not deleted id by id.
        """
        return await self._settle_call(session_id, entry_ids, flush, release, applied)

    async def answer_end(self, session_id: str, marker: FlushAnswer) -> bool:
        """Answer an end marker like a flush sentinel, then drop the session's keys
        unless writes followed it; whether they were dropped."""
        return await self._settle_call(session_id, [], marker, "end", ()) == 0

    async def _settle_call(
        self,
        session_id: str,
        entry_ids: list[str],
        flush: FlushAnswer | None,
        release: Release | Literal["end"],
        applied: tuple[str, ...],
    ) -> int:
        keys = self._keys
        partition = keys.partition_of(session_id)
        stream = keys.stream(session_id)
        answer: list[str] = [stream, stream]  # no sentinel: keys the script leaves alone
        sentinel: list[ScriptArg] = ["", 0, "[]"]
        if flush is not None:
            answer = [keys.errors(session_id, flush.client_id), keys.ack(partition, flush.token)]
            sentinel = [flush.entry_id, FLUSH_REPLY_TTL_SECONDS, json.dumps(list(flush.bookmarks))]
        script_keys = [
            stream, keys.wants_room(session_id), keys.lease(session_id), keys.ready(partition),
            *answer, keys.seen(session_id) if release == "end" else stream,
            keys.applied(session_id),
        ]  # fmt: skip
        args: list[ScriptArg] = [
            GROUP, keys.room_channel, session_id, self._owner, release, self._idle_ms,
            *sentinel, json.dumps(list(applied)) if applied else "", *entry_ids,
        ]  # fmt: skip
        return reply_int(await _leased(self._settle.call(script_keys, args)))


async def _leased(call: Awaitable[ScriptReply]) -> ScriptReply:
    """The reply of a call that needs the lease; `LeaseLost` when the caller lost it."""
    try:
        return await call
    except rx.ResponseError as exc:
        if str(exc).startswith("LEASELOST"):
            raise LeaseLost(str(exc)) from exc
        raise
