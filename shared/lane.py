"""One Redis connection held by one sender, for commands sent in batches one after the
other (a `Coalescer` with one slot): no pool to visit and no per-call retry layer on
the way, only packing, one write and the replies.

A lone call through redis-py's client takes a connection from the pool and gives it
back, wraps the call in its retry object and its observability hooks, packs the
arguments in Python, and runs the socket write in a task of its own to time it out.
Here redis-py makes the connection (server, credentials, TLS, protocol version, as its
pool would) and the lane then reads it itself: the bytes Redis sends go straight into
a hiredis reader (`_Replies`), and the batch's one future is resolved once every reply
is in, without redis-py's stream reader, its per-reply coroutines or its health-check
`PING` (a connection Redis closed is noticed as it closes). Commands are packed by
hiredis, and one deadline covers a whole batch, kept by one timer per lane rather
than one per batch (`asyncio.timeout` schedules and cancels a timer each time, about
6 us, as much as a tenth of a submit's CPU). Errors keep their meaning: a reply
that is an error stays in its place, a batch that ran out of time raises redis-py's
`TimeoutError`, and a connection that broke, or a batch cancelled with replies unread,
is dropped, so the next batch starts on a fresh one.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeAlias, cast

import hiredis
from redis import exceptions as rx
from redis._parsers import BaseParser

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.connection import AbstractConnection

    from cypherstream.shared.scripts import ScriptArg, ScriptReply

Command: TypeAlias = "Sequence[ScriptArg]"
"""One command: its name, then its arguments."""
Reply: TypeAlias = "ScriptReply | rx.ResponseError"
"""A command's reply, or the error Redis answered it with."""

#: What a hiredis reader returns while a reply is incomplete (`False` is a RESP3 reply).
_INCOMPLETE = object()
#: Out-of-band RESP3 messages (client tracking), which answer no command: skipped.
_PUSH = hiredis.PushNotification


def _pack(commands: list[Command]) -> bytes:
    # hiredis packs about 3x faster than redis-py; its stub types the argument as a
    # tuple of one item, and it takes any length.
    return b"".join(hiredis.pack_command(tuple(command)) for command in commands)  # type: ignore[arg-type]


class Lane:
    """A connection made like those of `redis`'s pool (same server, credentials, TLS),
    held until `close()`; one batch at a time."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._connection: AbstractConnection | None = None
        self._replies: _Replies | None = None
        self._timeout: float | None = None
        self._watch = _Watch()

    @property
    def connected(self) -> bool:
        """Whether the lane holds a connection Redis has not closed (it notices a close
        as it happens, also while idle, and the next batch goes on a new connection)."""
        return self._replies is not None and not self._replies.lost

    async def run(self, commands: list[Command], *, watching: bool = False) -> list[Reply]:
        """Send `commands` in one write; their replies in order, errors in place.

        Raises what the connection raised when it broke (redis-py's `ConnectionError`
        or `TimeoutError`): it is then dropped, and no reply of this batch is known.
        With `watching`, the commands count on a `WATCH` an earlier batch sent: they go
        on the same connection or not at all (`ConnectionError`), never on one made
        again meanwhile, which watches nothing.
        """
        if watching and not self.connected:
            raise rx.ConnectionError("the connection that watched the keys was lost")
        connection = self._connect()
        self._watch.start(self._timeout)
        try:
            replies = self._replies
            if replies is None or replies.lost:
                replies = await self._open(connection)
            return await replies.exchange(_pack(commands), len(commands))
        except BaseException as exc:
            # Replies may be left unread: the connection is out of step for good.
            await self._drop()
            if isinstance(exc, asyncio.CancelledError) and self._watch.expired():
                raise rx.TimeoutError(
                    f"Redis did not answer within {self._timeout}s (REDIS_SOCKET_TIMEOUT)"
                ) from None
            raise
        finally:
            self._watch.stop()

    def _connect(self) -> AbstractConnection:
        if self._connection is None:
            pool = self._redis.connection_pool
            connection = pool.connection_class(**pool.connection_kwargs)
            # One deadline per batch instead (`run`).
            self._timeout, connection.socket_timeout = connection.socket_timeout, None
            self._connection = connection
        return self._connection

    async def _open(self, connection: AbstractConnection) -> _Replies:
        """Connect (redis-py's handshake, as its pool does), then read the replies here."""
        if connection.is_connected:  # closed by Redis, which redis-py has not seen
            await connection.disconnect(nowait=True)
        await connection.connect()  # type: ignore[no-untyped-call]
        # The one private part of redis-py the lane touches: the transport under the
        # connection's stream writer, whose bytes the lane now reads instead.
        transport = connection._writer.transport  # type: ignore[union-attr]
        self._replies = _Replies(transport, connection)
        return self._replies

    async def _drop(self) -> None:
        self._replies = None
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.disconnect(nowait=True)

    async def close(self) -> None:
        """Close the connection."""
        connection, self._connection, self._replies = self._connection, None, None
        if connection is not None:
            await connection.disconnect()


class _Replies(asyncio.Protocol):
    """Reads a connection's replies into a hiredis reader, in place of redis-py's
    stream reader (whose protocol it keeps, to tell it when the connection closes)."""

    def __init__(self, transport: asyncio.WriteTransport, connection: AbstractConnection) -> None:
        self._transport = transport
        self._redis_py_protocol = transport.get_protocol()
        self._where = _where(connection)
        encoder = connection.encoder
        self._reader = hiredis.Reader(
            protocolError=rx.InvalidResponse,
            replyError=BaseParser.parse_error,
            notEnoughData=_INCOMPLETE,
            **(
                {"encoding": encoder.encoding, "errors": encoder.encoding_errors}
                if encoder.decode_responses
                else {}
            ),
        )
        self._wanted = 0
        self._replies: list[Reply] = []
        self._done: asyncio.Future[list[Reply]] | None = None
        self.lost = False
        """Whether the connection closed (then a batch goes on a new one)."""
        transport.set_protocol(self)

    def exchange(self, packed: bytes, count: int) -> asyncio.Future[list[Reply]]:
        """Write `packed`; a future of its `count` replies."""
        self._replies, self._wanted = [], count
        self._done = asyncio.get_running_loop().create_future()
        self._transport.write(packed)
        return self._done

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        try:
            while self._wanted:
                reply = self._reader.gets()
                if reply is _INCOMPLETE:
                    return
                if isinstance(reply, _PUSH):
                    continue
                if isinstance(reply, rx.ConnectionError) or (
                    isinstance(reply, list) and reply and isinstance(reply[0], rx.ConnectionError)
                ):  # as redis-py: the server ends the connection (too many clients, ...)
                    raise reply if isinstance(reply, rx.ConnectionError) else reply[0]
                self._replies.append(cast("Reply", reply))
                self._wanted -= 1
        except Exception as exc:  # a protocol error: nothing after it can be trusted
            self._fail(exc)
            self._transport.close()
            return
        if self._done is not None and not self._done.done():
            self._done.set_result(self._replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._fail(rx.ConnectionError(f"Error while reading from {self._where}: connection closed"))
        self._redis_py_protocol.connection_lost(exc)  # redis-py's writer waits for it

    def eof_received(self) -> bool | None:
        return False  # close: Redis sends nothing after it ends its side

    def _fail(self, exc: Exception) -> None:
        self._wanted = 0
        if self._done is not None and not self._done.done():
            self._done.set_exception(exc)


def _where(connection: AbstractConnection) -> str:
    """The server a connection talks to, for error messages."""
    path = getattr(connection, "path", None)
    if path:
        return str(path)
    return f"{getattr(connection, 'host', '?')}:{getattr(connection, 'port', '?')}"


class _Watch:
    """The deadline of the batch in flight: one timer, armed while batches run and
    moved on to the current batch's deadline when it fires early, cancels the batch's
    task once its deadline has passed (as `asyncio.timeout` would, and telling its own
    cancellation apart from one from outside the same way)."""

    def __init__(self) -> None:
        self._task: asyncio.Task[object] | None = None
        self._due = 0.0
        self._cancelling = 0
        self._fired = False
        self._timer: asyncio.TimerHandle | None = None

    def start(self, timeout: float | None) -> None:
        if timeout is None:
            return
        loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._cancelling = _cancelling(self._task)
        self._due = loop.time() + timeout
        if self._timer is None:
            self._timer = loop.call_at(self._due, self._check)

    def stop(self) -> None:
        self._task, self._fired = None, False

    def expired(self) -> bool:
        """Whether the batch was cancelled for its deadline alone (then uncancelled)."""
        if not self._fired or self._task is None:
            return False
        return _uncancel(self._task) <= self._cancelling

    def _check(self) -> None:
        self._timer = None
        if self._task is None:  # idle: the next batch arms it again
            return
        loop = asyncio.get_running_loop()
        if loop.time() >= self._due:
            self._fired = True
            self._task.cancel()
        else:
            self._timer = loop.call_at(self._due, self._check)


if sys.version_info >= (3, 11):

    def _cancelling(task: asyncio.Task[object] | None) -> int:
        return task.cancelling() if task is not None else 0

    def _uncancel(task: asyncio.Task[object]) -> int:
        return task.uncancel()

else:  # no count of cancellation requests: any cancellation at expiry is the deadline's

    def _cancelling(task: asyncio.Task[object] | None) -> int:
        return 0

    def _uncancel(task: asyncio.Task[object]) -> int:
        return 0
