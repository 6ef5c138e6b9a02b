"""Exceptions raised by cypherstream, shared by the producer and the drainer.

Every message says what happened and what to do about it.
"""

from __future__ import annotations


class CypherstreamError(Exception):
    """Base class of every error cypherstream raises."""


class ConfigurationError(CypherstreamError, ValueError):
    """Settings that cannot work together, or that disagree with what Redis holds."""


class InvalidSessionId(CypherstreamError, ValueError):
    """A session id that is empty, too long, or could reach other keys."""


class UnsupportedParameter(CypherstreamError, TypeError):
    """A query parameter the wire format (and the Neo4j driver) cannot carry."""


class InvalidWrite(CypherstreamError, ValueError):
    """A write rejected at submit: empty query, params not a mapping, entry too large."""


class BackpressureTimeout(CypherstreamError, TimeoutError):
    """`submit` waited for room in a full session stream and nothing drained."""


class FlushTimeout(CypherstreamError, TimeoutError):
    """`flush` was not acknowledged in time, or no drainer is alive to acknowledge it."""


class RedisUnavailable(CypherstreamError, ConnectionError):
    """Redis could not be reached; nothing was queued by the failed call."""


class Neo4jUnavailable(CypherstreamError, ConnectionError):
    """Neo4j could not be reached (yet); the drainer waits for it, a client raises this."""


class ClientClosed(CypherstreamError, RuntimeError):
    """A write was submitted to a client that is closed or was never opened."""


class UnsafeRedisConfig(ConfigurationError):
    """Redis runs with settings that could silently delete queued writes."""


class RejectedEntry(CypherstreamError, ValueError):
    """A stream entry the drainer refuses to execute; dead-lettered with `reason`."""

    reason = "rejected"


class MalformedEntry(RejectedEntry):
    """A stream entry the drainer cannot decode; it is dead-lettered, never executed."""

    reason = "malformed"


class BadSignature(RejectedEntry):
    """An entry unsigned, forged, tampered with, or moved to another session."""

    reason = "signature"


class QueryNotAllowed(RejectedEntry):
    """Raw Cypher sent to a drainer that only runs named queries."""

    reason = "not-allowed"


class UnknownQuery(RejectedEntry):
    """A named query the drainer's query file does not define."""

    reason = "unknown-query"


class RetriesExhausted(CypherstreamError):
    """A write whose own failure (timeout, transaction memory, deadlock) came back on
    every attempt; it is dead-lettered with reason `retries-exhausted`."""

    reason = "retries-exhausted"

    def __init__(self, attempts: int, code: str, message: str) -> None:
        super().__init__(
            f"gave up after {attempts} attempts, each failing on its own; the last: {message}"
        )
        self.attempts = attempts
        self.code = code
        """The Neo4j status code (or exception class) of the last attempt's failure."""


class RedisPermissionDenied(ConfigurationError):
    """Redis refused a command or key to this user (ACL): at open, or at a submit after
    its rights were taken away. The message says whether the call wrote anything."""


class NotReplicated(CypherstreamError):
    """A write reached the Redis primary, but too few replicas confirmed it in time."""


class WriteFailed(CypherstreamError):
    """A write Neo4j refused (`code` is its error code, `reason` why it was given up, as
    in `BufferedWriteError`): raised by a write awaited inline (sync mode,
    `execute_write`), and what neo4j-agent-memory's `BufferedWriteError.error` holds for
    a buffered write a drainer gave up on."""

    def __init__(self, code: str, message: str, *, reason: str, session_id: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.reason = reason
        self.session_id = session_id


class ReadFailed(CypherstreamError):
    """`client.read()` was refused by Neo4j (a syntax error, a missing permission)."""
