"""One Redis connection held by one sender, for commands sent in batches one after the
other (a `Coalescer` with one slot): no pool to visit and no per-call retry layer on
the way, only packing, one write and the replies.

A lone call through redis-py's client takes a connection from the pool and gives it
back, wraps the call in its retry object and its observability hooks, packs the
arguments in Python, and runs the socket write in a task of its own to time it out.
Here the connection is made once, commands are packed by hiredis where it is
installed, and one deadline covers a whole batch. Errors keep their meaning: a reply
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

if sys.version_info >= (3, 11):
    from asyncio import timeout as _deadline
else:  # redis-py depends on it where asyncio has no timeout
    from async_timeout import timeout as _deadline  # type: ignore[import-not-found]

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

    async def run(self, commands: list[Command]) -> list[Reply]:
        """Send `commands` in one write; their replies in order, errors in place.

        Raises what the connection raised when it broke (redis-py's `ConnectionError`
        or `TimeoutError`): it is then dropped, and no reply of this batch is known.
        """
        connection = self._connect()
        try:
            async with _deadline(self._timeout):
                await connection.send_packed_command(_pack(connection, commands))
                return [await _reply(connection) for _ in commands]
        except BaseException as exc:
            # Replies may be left unread: the connection is out of step for good.
            with contextlib.suppress(Exception):
                await connection.disconnect(nowait=True)
            if isinstance(exc, asyncio.TimeoutError):
                raise rx.TimeoutError(
                    f"Redis did not answer within {self._timeout}s (REDIS_SOCKET_TIMEOUT)"
                ) from exc
            raise

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


async def _reply(connection: AbstractConnection) -> Reply:
    try:
        reply: ScriptReply = await connection.read_response()
    except rx.ResponseError as exc:  # the command's own error: the connection is in step
        return exc
    return reply
