"""One Redis connection held by one sender, for commands sent in batches one after the
other (a `Coalescer` with one slot): no pool to visit and no per-call retry layer on
the way, only packing, one write and the replies.

A lone call through redis-py's client takes a connection from the pool and gives it
back, wraps the call in its retry object and its observability hooks, packs the
arguments in Python, and runs the socket write in a task of its own to time it out.
Here the connection is made once, commands are packed by hiredis where it is
installed, and one deadline covers a whole batch, kept by one timer per lane rather
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
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeAlias

from redis import exceptions as rx

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.connection import AbstractConnection

    from cypherstream.shared.scripts import ScriptArg, ScriptReply

Command: TypeAlias = "Sequence[ScriptArg]"
"""One command: its name, then its arguments."""
Reply: TypeAlias = "ScriptReply | rx.ResponseError"
"""A command's reply, or the error Redis answered it with."""


def _packer() -> Callable[[AbstractConnection, list[Command]], list[bytes]]:
    """hiredis' packer where installed (about 3x faster than redis-py's own)."""
    try:
        import hiredis
    except ImportError:
        return lambda connection, commands: connection.pack_commands(commands)
    # hiredis' stub types the argument as a tuple of one item; it takes any length.
    return lambda _, commands: [
        hiredis.pack_command(tuple(command))  # type: ignore[arg-type]
        for command in commands
    ]


_pack = _packer()


class Lane:
    """A connection made like those of `redis`'s pool (same server, credentials, TLS),
    held until `close()`; one batch at a time."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._connection: AbstractConnection | None = None
        self._timeout: float | None = None
        self._watch = _Watch()

    async def run(self, commands: list[Command], *, watching: bool = False) -> list[Reply]:
        """Send `commands` in one write; their replies in order, errors in place.

        Raises what the connection raised when it broke (redis-py's `ConnectionError`
        or `TimeoutError`): it is then dropped, and no reply of this batch is known.
        With `watching`, the commands count on a `WATCH` an earlier batch sent: they go
        on the same connection or not at all (`ConnectionError`), never on one made
        again meanwhile (as a failed health check would), which watches nothing.
        """
        connection = self._connect()
        if watching and not connection.is_connected:
            raise rx.ConnectionError("the connection that watched the keys was lost")
        self._watch.start(self._timeout)
        try:
            await connection.send_packed_command(
                _pack(connection, commands), check_health=not watching
            )
            return [await _reply(connection) for _ in commands]
        except BaseException as exc:
            # Replies may be left unread: the connection is out of step for good.
            with contextlib.suppress(Exception):
                await connection.disconnect(nowait=True)
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
            # One deadline per batch instead (`run`): redis-py times each socket write
            # out in a task of its own, which costs a loop iteration per call.
            self._timeout, connection.socket_timeout = connection.socket_timeout, None
            self._connection = connection
        return self._connection

    async def close(self) -> None:
        """Close the connection."""
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.disconnect()


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


async def _reply(connection: AbstractConnection) -> Reply:
    try:
        reply: ScriptReply = await connection.read_response()
    except rx.ResponseError as exc:  # the command's own error: the connection is in step
        return exc
    return reply
