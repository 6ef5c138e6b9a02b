"""Wake a submit waiting for room the moment a drainer makes some.

A submit refused by a full session stream raises the session's wants-room flag
(`submit.lua`); the drainer's next acknowledgement in that session deletes the flag
and publishes the session id on the prefix's room channel (`settle.lua`). One pub/sub
connection per client (`shared/channel.py`), opened at the first wait, wakes the
waiting submit. A timer still bounds each wait, for an announcement missed while the
connection was down or refused by a Redis ACL without the channel.
"""

from __future__ import annotations

import asyncio

from cypherstream.shared.channel import Channel
from cypherstream.shared.connection import RedisClient

#: Longest a waiting submit sleeps without an announcement before it tries again.
FALLBACK_SECONDS = 0.25
#: The fallback while the room channel cannot be subscribed to (ACL, outage).
UNSUBSCRIBED_FALLBACK_SECONDS = 0.05


class RoomSignal:
    """Per-session wake-ups for submits waiting for room."""

    def __init__(self, redis: RedisClient, channel: str) -> None:
        self._waiting: dict[str, asyncio.Event] = {}
        self._channel = Channel(
            redis, channel, self._announced, refused="waiting submits poll for room"
        )

    async def watch(self, session_id: str) -> asyncio.Event:
        """Subscribe (once per client) and return the event the session's next
        announcement sets. Call before retrying, so no announcement falls between."""
        self._channel.start()
        event = self._waiting.setdefault(session_id, asyncio.Event())
        event.clear()
        if not self._channel.subscribed:
            await self._channel.settled(1.0)
        return event

    @property
    def subscribed(self) -> bool:
        """Whether announcements reach this client now (a wait missed none since)."""
        return self._channel.subscribed

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        """Until the session is announced (True) or `timeout`, capped by the fallback,
        passes (False)."""
        cap = FALLBACK_SECONDS if self._channel.subscribed else UNSUBSCRIBED_FALLBACK_SECONDS
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

    def _announced(self, session_id: str) -> None:
        event = self._waiting.get(session_id)
        if event is not None:
            event.set()

    async def close(self) -> None:
        await self._channel.close()
