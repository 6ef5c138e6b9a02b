"""Buffered mode over Redis Streams: submit is one script call, flush waits on a sentinel."""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import logging
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from typing import TypedDict, TypeVar, cast

from redis import exceptions as rx
from redis.asyncio.cluster import RedisCluster

from cypherstream.producer.backend import Report
from cypherstream.producer.handoff import Handoff
from cypherstream.producer.room import RoomSignal
from cypherstream.producer.settings import MemoryOptions
from cypherstream.shared.codec import encode_params
from cypherstream.shared.connection import RedisClient, refused, transient, unreachable
from cypherstream.shared.entry import VERSION, EntryVersion, end_fields, flush_fields
from cypherstream.shared.errors import (
    BackpressureTimeout,
    CypherstreamError,
    FlushTimeout,
    InvalidWrite,
    NotReplicated,
)
from cypherstream.shared.keys import Keyspace
from cypherstream.shared.memory import memory_use
from cypherstream.shared.pipelines import ScriptPipeline, Wait
from cypherstream.shared.presence import Presence, presence
from cypherstream.shared.retry import Backoff, call_with_retry
from cypherstream.shared.scripts import ScriptArg, Scripts, submit_call
from cypherstream.shared.settings import RedisSettings
from cypherstream.shared.signing import Signer, signed_write_fields
from cypherstream.shared.tracing import current_trace_context
from cypherstream.shared.write_errors import BufferedWriteError, ErrorJson

log = logging.getLogger(__name__)

T = TypeVar("T")

Marker = Callable[[str, str, EntryVersion], list[bytes | str]]
"""Fields of a marker a flush appends to each session: (token, client id, entry
version) -> fields."""

#: How long one blocking wait for flush replies lasts before checking drainers are alive.
_LIVENESS_CHECK_SECONDS = 2.0
#: How often a flush that found no drainer alive looks again, within its grace period.
_PRESENCE_POLL_SECONDS = 0.1
#: First delay and cap of the retries of a broken Redis connection (within redis_retry).
_REDIS_RETRY_FIRST = 0.05
_REDIS_RETRY_CAP = 1.0
# How long Redis remembers a client's highest appended sequence number per session.
_SEEN_TTL_SECONDS = 3600
#: What a submit's error calls the script that appends a write, and what its stopping
#: partway means (Redis keeps what a script wrote before it failed).
_SUBMIT = "cypherstream's submit script"
_PARTWAY = ": the write may be queued even so"
_START_DRAINER = (
    "Start one with `drainer run` (it reads REDIS_URL, NEO4J_URI, NEO4J_USERNAME and "
    "NEO4J_PASSWORD from the environment, or see `drainer run --help`)."
)


class _FlushFields(TypedDict):
    s: str  # session
    e: list[ErrorJson]  # the errors of this client's writes


class _FlushReply(_FlushFields, total=False):
    """A drainer's answer to a flush: its session, the errors of the client's writes,
    and the Neo4j bookmarks of the writes before the sentinel."""

    b: list[str]


class StreamBackend:
    """Appends writes to per-session Redis streams that `drainer run` workers apply."""

    def __init__(
        self,
        redis: RedisClient,
        redis_settings: RedisSettings,
        keyspace: Keyspace,
        options: MemoryOptions,
        client_id: str,
        report: Report,
        signer: Signer | None = None,
        version: EntryVersion = VERSION,
    ) -> None:
        signed = ", signed" if signer else ""
        self.name = f"buffered, Redis streams (prefix {keyspace.prefix!r}{signed})"
        self._signer = signer
        self._version: EntryVersion = version
        self._redis = redis
        self._redis_settings = redis_settings
        self._scripts = Scripts(redis)
        wait = None
        if options.wait_replicas:
            wait = Wait(options.wait_replicas, int(options.wait_timeout * 1000))
        self._submit = ScriptPipeline(redis, self._scripts.submit, wait)
        self._keys = keyspace
        self._options = options
        self._room = RoomSignal(redis, keyspace.room_channel)
        self._client_id = client_id
        self._report = report
        self._seq = itertools.count(1)
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}  # `_SessionLock`
        self._unflushed: set[str] = set()
        self._sessions: set[str] = set()
        self._handoff: Handoff | None = None
        if options.handoff == "local":
            self._handoff = Handoff(
                self._append_in_order, options.handoff_buffer, options.backpressure_timeout
            )
            self.name += ", local hand-off"

    async def submit(
        self,
        query: str,
        params: Mapping[str, object] | None,
        session_id: str,
        *,
        named: bool = False,
    ) -> None:
        packed = encode_params(params)
        trace = current_trace_context()
        size = len(packed) + len(query.encode()) + (len(trace) if trace else 0)
        if size > self._options.max_entry_bytes:
            raise InvalidWrite(
                f"the write is {size} bytes encoded; the limit is "
                f"{self._options.max_entry_bytes} (memory.max_entry_bytes). Store large "
                "payloads elsewhere and pass a reference, or raise the limit."
            )
        seq = next(self._seq)
        fields = signed_write_fields(
            self._signer, session_id, query, packed, self._client_id, seq, named=named,
            trace=trace, version=self._version,
        )  # fmt: skip
        if self._handoff is not None:
            await self._handoff.put(session_id, fields, seq)
        else:
            await self._append_in_order(session_id, fields, seq)
        self._unflushed.add(session_id)
        self._sessions.add(session_id)

    async def _append_in_order(self, session_id: str, fields: list[bytes | str], seq: int) -> None:
        # One lock per session keeps concurrent submits of a session in call order,
        # also while one of them waits for room.
        async with self._session_lock(session_id):
            await self._append(session_id, fields, self._options.max_pending, seq)

    async def _append(
        self,
        session_id: str,
        fields: list[bytes | str],
        limit: int,
        seq: int = 0,
        deadline: float | None = None,
    ) -> None:
        """Run the submit script until it appends, waiting while there is no room: the
        stream holds `limit` entries, or Redis is out of memory (`maxmemory`).

        Waits until `deadline` (loop time), by default `backpressure_timeout` from now.
        Retrying with the same `seq` is safe: the script appends a client's sequence
        number at most once, so a reply lost with a broken connection costs nothing.
        """
        script_keys, args = submit_call(
            self._keys, session_id, fields, limit=limit, client_id=self._client_id,
            seq=seq, seen_ttl=_SEEN_TTL_SECONDS,
        )  # fmt: skip
        appended, full_redis = await self._offer(script_keys, args)
        if appended:  # the common case: room in the stream
            return
        loop = asyncio.get_running_loop()
        if deadline is None:
            deadline = loop.time() + self._options.backpressure_timeout
        # A full stream is announced as it drains (room.py); a full Redis is polled.
        backoff = Backoff(first=0.001, cap=0.05)
        try:
            while True:
                if full_redis:
                    await backoff.wait()
                else:
                    room = await self._room.watch(session_id)
                    appended, full_redis = await self._offer(script_keys, args)
                    if appended:
                        return
                    await self._room.wait(room, deadline - loop.time())
                appended, full_redis = await self._offer(script_keys, args)
                if appended:
                    return
                if loop.time() >= deadline:
                    raise await self._no_room(session_id, limit, full_redis)
        finally:
            self._room.done(session_id)

    async def _offer(self, keys: list[str], args: list[ScriptArg]) -> tuple[bool, bool]:
        """One try of the submit script: (appended, refused because Redis is full)."""
        try:
            appended = await self._call(
                lambda: self._submit.call(keys, args), _SUBMIT, partway=_PARTWAY
            )
            return appended is not None, False
        except rx.OutOfMemoryError:  # refused whole: nothing was written
            return False, True

    async def _no_room(self, session_id: str, limit: int, full_redis: bool) -> CypherstreamError:
        """The error for a wait for room that ran out of time."""
        waited = self._options.backpressure_timeout
        if full_redis:
            try:
                memory = (await memory_use(self._redis)).describe()
            except Exception as exc:  # the message matters more than the figures
                memory = f"Redis is out of memory (its INFO failed: {exc})"
            what = (
                f"Redis refuses new entries: it is out of memory. {memory}. Queued writes "
                "free memory as drainers apply them: check that a drainer is running, or "
                "raise Redis's maxmemory."
            )
            if limit == 0:  # a flush's marker, which waits only for memory
                return FlushTimeout(f"the flush could not queue its marker in time. {what}")
            return BackpressureTimeout(f"submit waited {waited}s for room. {what}")
        return BackpressureTimeout(
            f"session {session_id!r} has held {limit} queued writes for {waited}s and "
            f"none drained. Is a drainer running and is Neo4j reachable? {_START_DRAINER}"
        )

    async def _call(
        self, attempt: Callable[[], Awaitable[T]], call: str, *, partway: str = ""
    ) -> T:
        """Run `attempt`, retrying for `memory.redis_retry` seconds while Redis is
        unreachable or its replicas lag behind `memory.wait_replicas`. If Redis refuses
        it for good, the error names it `call`, and says `partway` where Redis stopped
        its script partway."""
        try:
            return await call_with_retry(
                attempt,
                retryable=_passing,
                backoff=lambda: Backoff(first=_REDIS_RETRY_FIRST, cap=_REDIS_RETRY_CAP),
                on_retry=_log_retry,
                window=self._options.redis_retry,
            )
        except rx.OutOfMemoryError:
            raise  # refused whole: a submit waits for room
        except (rx.RedisError, OSError) as exc:
            if isinstance(exc, rx.ResponseError) and not transient(exc):
                # for good: a revoked ACL right, a key of another type under the prefix
                raise refused(self._redis_settings, self._keys, exc, call, partway=partway) from exc
            raise unreachable(self._redis_settings, exc) from exc

    def _session_lock(self, session_id: str) -> _SessionLock:
        return _SessionLock(self._locks, session_id)

    async def flush(self, timeout: float, sessions: set[str] | None = None) -> tuple[str, ...]:
        """Sessions this client wrote to since its last flush, or `sessions`, written
        to by anyone: a sentinel follows every write already in their streams."""
        chosen = set(self._unflushed) if sessions is None else set(sessions)
        mine = chosen & self._unflushed
        self._unflushed -= mine
        try:
            return await self._flush(chosen, timeout)
        except BaseException:
            self._unflushed |= mine
            raise

    async def _flush(
        self, sessions: set[str], timeout: float, marker: Marker = flush_fields
    ) -> tuple[str, ...]:
        if not sessions:
            return ()
        deadline = asyncio.get_running_loop().time() + timeout
        if self._handoff is not None:  # what the buffer holds goes first
            await self._handoff.drained(timeout)
        await self._require_live_drainer(deadline)
        token = uuid.uuid4().hex
        by_partition: dict[int, set[str]] = defaultdict(set)

        async def mark(session_id: str) -> None:
            async with self._session_lock(session_id):
                await self._append(
                    session_id, marker(token, self._client_id, self._version), 0, 0, deadline
                )

        await asyncio.gather(*(mark(session_id) for session_id in sessions))  # one pipeline
        for session_id in sessions:
            by_partition[self._keys.partition_of(session_id)].add(session_id)
        lists = {self._keys.ack(part, token): waited for part, waited in by_partition.items()}
        if isinstance(self._redis, RedisCluster):  # a slot per partition: a wait on each
            waits = [self._await_replies([key], waited, deadline) for key, waited in lists.items()]
        else:  # one blocking pop over every list: one connection, not one per partition
            waits = [self._await_replies(list(lists), set(sessions), deadline)]
        bookmarks: set[str] = set()
        for replies in await asyncio.gather(*waits):
            for reply in replies:
                bookmarks.update(reply.get("b", ()))  # an older drainer sends none
                for error in reply["e"]:
                    self._report(BufferedWriteError.from_json(error))
        return tuple(sorted(bookmarks))

    async def _await_replies(
        self, keys: list[str], expected: set[str], deadline: float
    ) -> list[_FlushReply]:
        """Block on the reply lists until every expected session answered (no polling).

        Replies name their session, so a sentinel delivered twice cannot stand in for
        another session's.
        """
        loop = asyncio.get_running_loop()
        waiting = set(expected)
        replies: list[_FlushReply] = []
        while waiting:
            left = deadline - loop.time()
            if left <= 0:
                raise FlushTimeout(
                    f"flush was not acknowledged within the timeout ({len(waiting)} sessions "
                    "still unacknowledged). Drainers are alive but behind, or Neo4j is "
                    "unreachable; try a longer timeout or add drainers."
                )
            wait = min(left, _LIVENESS_CHECK_SECONDS)
            # Every reply already in the first list that holds some, in one round trip.
            pop = functools.partial(
                self._redis.blmpop, wait, len(keys), *keys, direction="LEFT", count=len(waiting)
            )
            popped = await self._call(pop, "the wait for flush replies")
            if popped is None:
                await self._require_live_drainer(deadline)
                continue
            _, values = cast("tuple[bytes, list[bytes]]", popped)
            for raw in values:
                reply = json.loads(raw)
                if reply["s"] in waiting:
                    waiting.discard(reply["s"])
                    replies.append(reply)
        return replies

    async def _require_live_drainer(self, deadline: float) -> None:
        """Return once a drainer is alive. With none alive: fail at once where none ever
        ran under this prefix, else wait up to `memory.no_drainer_grace` (bounded by
        `deadline`, loop time) for one to come back, as it does in a rolling restart."""
        live = await self._presence()
        if live.live:
            return
        if not live.ever:
            raise FlushTimeout(
                f"no drainer is alive, and none has ever run under key prefix "
                f"{self._keys.prefix!r}, so nothing can apply the queued writes or acknowledge "
                f"this flush. {_START_DRAINER} The writes stay queued in Redis."
            )
        loop = asyncio.get_running_loop()
        grace = min(self._options.no_drainer_grace, max(0.0, deadline - loop.time()))
        give_up = loop.time() + grace
        log.info("no drainer is alive; the flush waits for one", extra={"grace_seconds": grace})
        while loop.time() < give_up:
            await asyncio.sleep(min(_PRESENCE_POLL_SECONDS, max(0.0, give_up - loop.time())))
            if (await self._presence()).live:
                return
        raise FlushTimeout(
            f"no drainer is alive, and none came back within {grace:.1f}s "
            "(memory.no_drainer_grace), so nothing can apply the queued writes or acknowledge "
            f"this flush. {_START_DRAINER} The writes stay queued in Redis."
        )

    async def _presence(self) -> Presence:
        return await self._call(
            lambda: presence(self._scripts.live, self._keys), "the check for live drainers"
        )

    async def end(self, session_ids: set[str], timeout: float) -> None:
        # An end marker is a flush sentinel after which drainers drop the session.
        await self._flush(session_ids, timeout, end_fields)
        self._unflushed -= session_ids
        self._sessions -= session_ids

    async def pending(self) -> int:
        held = self._handoff.held if self._handoff is not None else 0
        if not self._sessions:
            return held

        async def lengths() -> list[int]:
            async with self._redis.pipeline(transaction=False) as pipe:
                for session_id in self._sessions:
                    pipe.xlen(self._keys.stream(session_id))
                return cast("list[int]", await pipe.execute())

        return held + sum(await self._call(lengths, "the count of queued writes"))

    async def close(self) -> None:
        if self._handoff is not None:
            await self._handoff.close()
        await self._room.close()
        await self._submit.close()
        await self._redis.aclose()


def _passing(exc: Exception) -> bool:
    """Redis unreachable or refusing writes for now, or replicas behind: worth a retry."""
    return transient(exc) or isinstance(exc, NotReplicated)


def _log_retry(exc: Exception, delay: float) -> None:
    log.warning("Redis write failed, retrying", extra={"error": str(exc), "retry_in": delay})


class _SessionLock:
    """`async with`: holds the session's lock; the lock lives while calls use it.

    Counted, not `lock.locked()`: between a release and the next waiter's wake-up the
    lock looks free, and a fresh lock then would let two calls overtake. A class, not
    `contextlib.asynccontextmanager`, which costs a submit 2 us more."""

    __slots__ = ("_lock", "_locks", "_session_id")

    def __init__(self, locks: dict[str, tuple[asyncio.Lock, int]], session_id: str) -> None:
        self._locks = locks
        self._session_id = session_id
        held = locks.get(session_id)
        self._lock, users = held if held is not None else (asyncio.Lock(), 0)
        locks[session_id] = (self._lock, users + 1)

    async def __aenter__(self) -> None:
        try:
            await self._lock.acquire()
        except BaseException:
            self._leave()
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._lock.release()
        self._leave()

    def _leave(self) -> None:
        lock, users = self._locks[self._session_id]
        if users > 1:
            self._locks[self._session_id] = (lock, users - 1)
        else:
            del self._locks[self._session_id]
