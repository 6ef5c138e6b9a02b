"""Redis key names.

All keys of one session share the hash tag of the session's partition, so every
script touches one slot and Redis Cluster works unchanged. A partition also holds
the ready set that drainers poll, which lets `submit` mark a session ready in the
same script as the XADD.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

from cypherstream.shared.errors import InvalidSessionId

MAX_SESSION_ID_LENGTH = 256
_SESSION_ID = re.compile(r"[A-Za-z0-9._:@/+=-]+")

# The consumer group every session stream is read through.
GROUP = "drainers"


def validate_session_id(session_id: object) -> str:
    """Return `session_id` if it is safe to embed in key names, else raise."""
    if not isinstance(session_id, str) or not session_id:
        raise InvalidSessionId(f"session id must be a non-empty str, got {session_id!r}")
    if len(session_id) > MAX_SESSION_ID_LENGTH:
        raise InvalidSessionId(
            f"session id is {len(session_id)} characters long; the limit is "
            f"{MAX_SESSION_ID_LENGTH}. Use a shorter id, e.g. a UUID or a hash."
        )
    if not _SESSION_ID.fullmatch(session_id):
        raise InvalidSessionId(
            f"session id {session_id!r} contains characters outside "
            "[A-Za-z0-9._:@/+=-]; such characters could reach other keys. "
            "Use letters, digits and . _ : @ / + = - only."
        )
    return session_id


@dataclass(frozen=True)
class Keyspace:
    """Key names under one prefix, with a fixed number of partitions."""

    prefix: str = "cs"
    partitions: int = 16

    def partition_of(self, session_id: str) -> int:
        """The partition a session belongs to (stable across processes and languages)."""
        return zlib.crc32(session_id.encode()) % self.partitions

    def _tag(self, partition: int) -> str:
        return f"{{{self.prefix}:p{partition}}}"

    def _session(self, session_id: str) -> str:
        return f"{self._tag(self.partition_of(session_id))}:s:{session_id}"

    def stream(self, session_id: str) -> str:
        return f"{self._session(session_id)}:stream"

    def lease(self, session_id: str) -> str:
        return f"{self._session(session_id)}:lease"

    def seen(self, session_id: str) -> str:
        """Hash of client id to the highest sequence number appended (idempotent retries)."""
        return f"{self._session(session_id)}:seen"

    def applied(self, session_id: str) -> str:
        """Neo4j bookmarks (a JSON list) of the last transactions that applied the
        session's writes: a later drain that applies none of them answers a flush with
        these, without a transaction of its own."""
        return f"{self._session(session_id)}:applied"

    def wants_room(self, session_id: str) -> str:
        """Set while a submit waits for room in the session; the drainer's next
        acknowledgement of it then publishes the session id on `room_channel`."""
        return f"{self._session(session_id)}:wants-room"

    @property
    def room_channel(self) -> str:
        """Pub/sub channel on which drainers announce room in a session (its id)."""
        return self._shared("room")

    @property
    def ready_channel(self) -> str:
        """Pub/sub channel on which submits announce a session that became ready (its
        id), so idle drainers look for work at once instead of at their next poll."""
        return self._shared("ready")

    def errors(self, session_id: str, client_id: str) -> str:
        """Failures of one client's writes in a session, handed over at its next flush."""
        return f"{self._session(session_id)}:errors:{client_id}"

    def ready(self, partition: int) -> str:
        """Sorted set of sessions with queued entries, scored by when they became ready."""
        return f"{self._tag(partition)}:ready"

    def ack(self, partition: int, token: str) -> str:
        """List a flush waits on; drainers push one reply per acknowledged sentinel."""
        return f"{self._tag(partition)}:ack:{token}"

    @property
    def stream_pattern(self) -> str:
        """SCAN pattern matching the session streams of every partition."""
        return f"{{{self.prefix}:p*}}:s:*:stream"

    def session_of_stream(self, stream_key: str) -> str:
        return stream_key.split(":s:", 1)[1].rsplit(":stream", 1)[0]

    # The keys that belong to no session share one hash tag, `{prefix}`, so a script
    # may touch several of them on Redis Cluster too.

    def _shared(self, name: str) -> str:
        return f"{{{self.prefix}}}:{name}"

    @property
    def drainers(self) -> str:
        """Sorted set of live drainer ids scored by their last heartbeat (ms)."""
        return self._shared("drainers")

    def drainer_info(self, drainer_id: str) -> str:
        """Hash of what `drainer status` shows about one drainer (host, pid, streams)."""
        return self._shared(f"drainer:{drainer_id}")

    @property
    def dead_letters(self) -> str:
        return self._shared("dead")

    @property
    def meta(self) -> str:
        """Hash recording the partition count and signing keys both sides must agree on."""
        return self._shared("meta")

    @property
    def sweep_turn(self) -> str:
        """Held by the one drainer sweeping now, so a fleet sweeps once per interval."""
        return self._shared("sweep")

    def progress_id(self, session_id: str) -> str:
        """Name of a session's applied-position record in Neo4j."""
        return f"{self.prefix}:{session_id}"
