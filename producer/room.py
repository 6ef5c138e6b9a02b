"""Wake a submit waiting for room the moment a drainer makes some.

A submit refused by a full session stream raises the session's wants-room flag
(`submit.lua`); the drainer's next acknowledgement in that session deletes the flag
and publishes the session id on the prefix's room channel (`ack.lua`). One pub/sub
connection per client, opened at the first wait, wakes the waiting submit. A timer
still bounds each wait, for an announcement missed while the connection was down
or refused by a Redis ACL without the channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from redis import exceptions as rx

from cypherstream.shared.connection import RedisClient

log = logging.getLogger(__name__)

#: Longest a waiting submit sleeps without an announcement before it tries again.
FALLBACK_SECONDS = 0.25
#: The fallback while the room channel cannot be subscribed to (ACL, outage).
UNSUBSCRIBED_FALLBACK_SECONDS = 0.05


class RoomSignal:
    """Per-session wake-ups for submits waiting for room."""

    def __init__(self, redis: RedisClient, channel: str) -> None:
        self._redis = redis
        self._channel = channel
        self._waiting: dict[str, asyncio.Event] = {}
        self._pubsub: Any = None  # redis-py's PubSub / ClusterPubSub
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = False
        self._ready = asyncio.Event()  # subscribed, or known not to be possible

    async def watch(self, session_id: str) -> asyncio.Event:
        """Subscribe (once per client) and return the event the session's next
        announcement sets. Call before retrying, so no announcement falls between."""
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="cypherstream-room")
        event = self._waiting.setdefault(session_id, asyncio.Event())
        event.clear()
        if not self._subscribed:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._ready.wait(), 1.0)
        return event

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        """Until the session is announced (True) or `timeout`, capped by the fallback,
        passes (False)."""
        cap = FALLBACK_SECONDS if self._subscribed else UNSUBSCRIBED_FALLBACK_SECONDS
        try:
            await asyncio.wait_for(event.wait(), max(0.0, min(timeout, cap)))
        except asyncio.TimeoutError:
            return False
        finally:
            event.clear()
        return True

    def done(self, session_id: str) -> None:
        """The session's submit no longer waits."""
        self._waiting.pop(session_id, None)

    async def _listen(self) -> None:
        """Deliver announcements until closed; resubscribe after a failure."""
        while True:
            try:
                self._pubsub = self._redis.pubsub()
                await self._pubsub.subscribe(self._channel)
                # Subscribed once Redis confirms (an ACL refusal arrives instead).
                async for message in self._pubsub.listen():
                    if message and message.get("type") == "subscribe":
                        self._subscribed = True
                        self._ready.set()
                    self._deliver(message)
            except asyncio.CancelledError:
                raise
            except rx.NoPermissionError as exc:
                log.warning(
                    "waiting submits poll for room: the Redis user may not subscribe to "
                    "%s (%s); grant it that channel (README, Security)",
                    self._channel,
                    exc,
                    extra={"channel": self._channel},
                )
                self._ready.set()
                return
            except Exception as exc:  # an outage: the timer covers it meanwhile
                log.debug("room channel lost (%s); resubscribing", exc)
            finally:
                self._subscribed = False
                await self._close_pubsub()
            await asyncio.sleep(UNSUBSCRIBED_FALLBACK_SECONDS)

    def _deliver(self, message: dict[str, Any] | None) -> None:
        if not message or message.get("type") != "message":
            return
        data = message["data"]
        session_id = data.decode() if isinstance(data, bytes) else str(data)
        event = self._waiting.get(session_id)
        if event is not None:
            event.set()

    async def _close_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await listener
        await self._close_pubsub()
