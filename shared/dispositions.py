"""What becomes of a write that raised: retried for ever, retried within a budget, or
given up (`classify`), and how its error is named in reports (`error_code`)."""

from __future__ import annotations

import enum

from neo4j import exceptions as nx

from cypherstream.shared.errors import RetriesExhausted


class Disposition(enum.Enum):
    """What the drainer does with a write that raised."""

    #: Not the write's fault (Neo4j or Redis down, leader switch, auth expiry): retried
    #: with backoff for as long as it takes, so an outage loses nothing.
    RETRY = "retry"
    #: The write's own failure that may pass (it timed out, ran out of transaction
    #: memory, deadlocked): retried up to `--max-attempts` times, then dead-lettered.
    RETRY_BUDGETED = "retry-budgeted"
    #: Retrying cannot fix it (syntax, constraint, bad parameter): dead-lettered at once.
    DEAD_LETTER = "dead-letter"


#: How many times a write whose own failure keeps coming back is tried in all.
DEFAULT_MAX_ATTEMPTS = 5

# Errors about the connection or the cluster's state, not about the write.
_OUTAGE_DRIVER_ERRORS = (nx.ServiceUnavailable, nx.SessionExpired, nx.IncompleteCommit)
# Codes an operator fixes outside the write (credentials, a missing database, a
# cluster electing a leader), or that say someone stopped the transaction.
_OUTAGE_CODES = frozenset(
    {
        "Neo.ClientError.Security.Unauthorized",
        "Neo.ClientError.Security.AuthenticationRateLimit",
        "Neo.ClientError.Security.CredentialsExpired",
        "Neo.ClientError.Security.TokenExpired",
        "Neo.ClientError.Database.DatabaseNotFound",
        "Neo.ClientError.Cluster.NotALeader",
        "Neo.ClientError.General.ForbiddenOnReadOnlyDatabase",
        "Neo.ClientError.Transaction.LockClientStopped",
        "Neo.ClientError.Transaction.Terminated",
        "Neo.TransientError.Transaction.LockClientStopped",
        "Neo.TransientError.Transaction.Terminated",
        "Neo.TransientError.Transaction.MaximumTransactionLimitReached",
        "Neo.TransientError.Request.NoThreadsAvailable",
        "Neo.TransientError.General.DatabaseUnavailable",
        "Neo.TransientError.Database.DatabaseUnavailable",
    }
)
# Whole families that are about the server, the network or the cluster.
_OUTAGE_FAMILIES = (
    "Neo.TransientError.Cluster.",
    "Neo.TransientError.Network.",
    "Neo.TransientError.Security.",
)
# Client errors that are the write's own and may pass on another try (every
# Neo.TransientError not listed above is one too: deadlocks, memory, schema races).
_BUDGETED_CLIENT_CODES = frozenset(
    {
        "Neo.ClientError.Transaction.TransactionTimedOut",
        "Neo.ClientError.Transaction.TransactionTimedOutClientConfiguration",
        "Neo.ClientError.General.TransactionOutOfMemoryError",
    }
)


def classify(exc: BaseException) -> Disposition:
    """Whether retrying the same write later can succeed, and for how long to try."""
    if isinstance(exc, nx.Neo4jError):
        code = exc.code or ""
        if isinstance(exc, nx.AuthError) or code in _OUTAGE_CODES:
            return Disposition.RETRY
        if code.startswith(_OUTAGE_FAMILIES):
            return Disposition.RETRY
        if (
            code in _BUDGETED_CLIENT_CODES
            or code.startswith("Neo.TransientError.")
            or exc.is_retryable()
        ):
            return Disposition.RETRY_BUDGETED
        return Disposition.DEAD_LETTER
    if isinstance(exc, (*_OUTAGE_DRIVER_ERRORS, OSError, TimeoutError)):
        return Disposition.RETRY
    return Disposition.DEAD_LETTER


def error_code(exc: BaseException) -> str:
    """Neo4j's status code where there is one, else the exception's class name; for
    `RetriesExhausted`, the code of the last attempt's error."""
    if isinstance(exc, RetriesExhausted):
        return exc.code
    if isinstance(exc, nx.Neo4jError) and exc.code:
        return exc.code
    return type(exc).__name__


def error_message(exc: BaseException) -> str:
    if isinstance(exc, nx.Neo4jError) and exc.message:
        return exc.message
    return str(exc) or type(exc).__name__


def error_clause(exc: BaseException) -> str:
    """`error_message` as part of a sentence of ours: on one line, with no full stop
    of its own."""
    return " ".join(error_message(exc).split()).rstrip(".")
