"""What a failed write is, how to tell a passing failure from a permanent one,
and the report both sides exchange about it."""

from __future__ import annotations

import base64
import datetime as dt
import enum
import json
from dataclasses import dataclass
from typing import Any

from neo4j import exceptions as nx

from shared.codec import decode_params


class Disposition(enum.Enum):
    """What the drainer does with a write that raised."""

    RETRY = "retry"  # passing: Neo4j down, leader switch, deadlock; retried, never dropped
    DEAD_LETTER = "dead-letter"  # permanent: retrying cannot fix it


# Errors about the connection or the cluster's state, not about the write.
_PASSING_DRIVER_ERRORS = (nx.ServiceUnavailable, nx.SessionExpired, nx.IncompleteCommit)
# Client errors that an operator fixes outside the write (credentials, a missing database).
_PASSING_CLIENT_CODES = (
    "Neo.ClientError.Security.Unauthorized",
    "Neo.ClientError.Security.AuthenticationRateLimit",
    "Neo.ClientError.Security.CredentialsExpired",
    "Neo.ClientError.Security.TokenExpired",
    "Neo.ClientError.Database.DatabaseNotFound",
    "Neo.ClientError.Cluster.NotALeader",
    "Neo.ClientError.General.ForbiddenOnReadOnlyDatabase",
    # The transaction ran out of time (a slow batch, or a lock held by a stalled drainer).
    "Neo.ClientError.Transaction.TransactionTimedOut",
    "Neo.ClientError.Transaction.TransactionTimedOutClientConfiguration",
    "Neo.ClientError.Transaction.LockClientStopped",
    "Neo.ClientError.Transaction.Terminated",
)


def classify(exc: BaseException) -> Disposition:
    """Whether retrying the same write later can succeed."""
    if isinstance(exc, nx.Neo4jError):
        code = exc.code or ""
        if (
            exc.is_retryable()
            or code.startswith("Neo.TransientError.")
            or code in (_PASSING_CLIENT_CODES)
        ):
            return Disposition.RETRY
        return Disposition.DEAD_LETTER
    if isinstance(exc, (*_PASSING_DRIVER_ERRORS, OSError, TimeoutError)):
        return Disposition.RETRY
    return Disposition.DEAD_LETTER


def error_code(exc: BaseException) -> str:
    """Neo4j's status code where there is one, else the exception's class name."""
    if isinstance(exc, nx.Neo4jError) and exc.code:
        return exc.code
    return type(exc).__name__


def error_message(exc: BaseException) -> str:
    if isinstance(exc, nx.Neo4jError) and exc.message:
        return exc.message
    return str(exc) or type(exc).__name__


@dataclass(frozen=True)
class BufferedWriteError:
    """A buffered write that failed permanently and was dead-lettered.

    `error` is ``"<code>: <message>"``; `parameters` is None when the entry was too
    malformed to decode them.
    """

    query: str
    parameters: dict[str, Any] | None
    code: str
    message: str
    session_id: str
    entry_id: str
    when: dt.datetime
    drainer_id: str = ""

    @property
    def error(self) -> str:
        return f"{self.code}: {self.message}"

    def to_json(self, raw_params: bytes | None) -> str:
        """The wire form; parameters travel as their encoded bytes, to decode exactly."""
        return json.dumps(
            {
                "q": self.query,
                "p": base64.b64encode(raw_params).decode() if raw_params is not None else None,
                "code": self.code,
                "msg": self.message,
                "s": self.session_id,
                "id": self.entry_id,
                "when": self.when.isoformat(),
                "d": self.drainer_id,
            }
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BufferedWriteError:
        params: dict[str, Any] | None = None
        if data.get("p"):
            try:
                params = decode_params(base64.b64decode(data["p"]))
            except ValueError:
                params = None
        return cls(
            query=data["q"],
            parameters=params,
            code=data["code"],
            message=data["msg"],
            session_id=data["s"],
            entry_id=data["id"],
            when=dt.datetime.fromisoformat(data["when"]),
            drainer_id=data.get("d", ""),
        )
