"""Listening to one pub/sub channel for as long as it is wanted: subscribed again after
an outage, given up (with one warning) where a Redis ACL refuses the channel.

Both sides are told of work this way instead of asking on a timer: a producer waiting
for room hears the drainer's acknowledgement (`producer/room.py`), a drainer hears a
session becoming ready (`drainer/worker.py`). Announcements are hints: whoever listens
keeps a timer as well, for what was published while it was not subscribed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from redis import exceptions as rx

from cypherstream.shared.connection import RedisClient

log = logging.getLogger(__name__)

#: Seconds between attempts to subscribe again after the connection was lost.
RESUBSCRIBE_SECONDS = 0.05
#: Longest one read waits for a message, so a closed channel's listener ends this soon.
_READ_SECONDS = 1.0


class Channel:
    """Calls `deliver` with each message's text, from a task of its own."""

    def __init__(
        self,
        redis: RedisClient,
        name: str,
        deliver: Callable[[str], None],
        *,
        refused: str,
    ) -> None:
        """`refused` says, in the warning logged when the ACL refuses the channel, what
        happens instead (e.g. "waiting submits poll for room")."""
        self.name = name
        self._redis = redis
        self._deliver = deliver
        self._refused = refused
        self._pubsub: Any = None  # redis-py's PubSub / ClusterPubSub
        self._listener: asyncio.Task[None] | None = None
        self.subscribed = False
        """Whether Redis confirmed the subscription and it still stands."""
        self._closed = False
        self._settled = asyncio.Event()  # subscribed, or known not to be possible

    def start(self) -> None:
        """Begin listening (once; later calls do nothing)."""
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name=f"cypherstream:{self.name}")

    async def settled(self, timeout: float) -> None:
        """Wait up to `timeout` until subscribed or refused."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._settled.wait(), timeout)

    async def _listen(self) -> None:
        while not self._closed:
            try:
                self._pubsub = self._redis.pubsub()
                await self._pubsub.subscribe(self.name)
                # Subscribed once Redis confirms (an ACL refusal arrives instead). Reads
                # end every second to look at `_closed`: redis-py can swallow a
                # cancellation that meets its own read timeout (seen on Python 3.11).
                while not self._closed:
                    self._receive(await self._pubsub.get_message(timeout=_READ_SECONDS))
            except asyncio.CancelledError:
                raise
            except rx.NoPermissionError as exc:
                log.warning(
                    "%s: the Redis user may not subscribe to %s (%s); grant it that channel "
                    "(README, Security)",
                    self._refused,
                    self.name,
                    exc,
                    extra={"channel": self.name},
                )
                self._settled.set()
                return
            except Exception as exc:  # an outage: the listener's timer covers it meanwhile
                log.debug("channel %s lost (%s); subscribing again", self.name, exc)
            finally:
                self.subscribed = False
                await self._close_pubsub()
            await asyncio.sleep(RESUBSCRIBE_SECONDS)

    def _receive(self, message: dict[str, Any] | None) -> None:
        if not message:
            return
        if message.get("type") == "subscribe":
            self.subscribed = True
            self._settled.set()
        elif message.get("type") == "message":
            data = message["data"]
            self._deliver(data.decode() if isinstance(data, bytes) else str(data))

    async def _close_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def close(self) -> None:
        """Stop listening (within about a second, whatever the connection does)."""
        self._closed = True
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            await asyncio.wait([listener], timeout=2 * _READ_SECONDS)
            if listener.done() and not listener.cancelled():
                listener.exception()  # retrieved: it ended the way it was told to
        await self._close_pubsub()
