"""Opening Redis the same way on both sides, checking they agree on key names, and
telling a server that is not up yet from one configured wrongly."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TypeAlias

from neo4j import READ_ACCESS, AsyncDriver
from neo4j import exceptions as nx
from redis import exceptions as rx
from redis.asyncio import Redis, RedisCluster

from cypherstream.shared.dispositions import Disposition, classify, error_clause, error_message
from cypherstream.shared.errors import (
    ConfigurationError,
    CypherstreamError,
    Neo4jUnavailable,
    RedisPermissionDenied,
    RedisUnavailable,
)
from cypherstream.shared.keys import Keyspace
from cypherstream.shared.scripts import Scripts
from cypherstream.shared.settings import Neo4jSettings, RedisSettings, masked_url

RedisClient: TypeAlias = "Redis | RedisCluster"
"""A client of one Redis or of a Redis Cluster: every part takes either."""

REDIS_DOWN = (
    rx.ConnectionError,
    rx.TimeoutError,
    OSError,
    rx.ClusterDownError,  # a cluster master failed and its replica is not promoted yet
    rx.TryAgainError,  # a slot is migrating or failing over
)
"""What redis-py raises when Redis cannot be reached for now (as opposed to a command
error): worth retrying with backoff."""

# Replies of a node that cannot take a command for now, given before it runs any of
# it: a primary short of the replicas `min-replicas-to-write` asks for (NOREPLICAS), or
# a node busy running a script past `busy-reply-threshold`, someone else's since
# cypherstream's are short (BUSY; with its space, as BUSYGROUP is another matter), both
# a plain `ResponseError` to redis-py; and a primary just demoted to replica by a
# failover (READONLY), its `ReadOnlyError`.
_FOR_NOW = ("NOREPLICAS", "BUSY ")


def transient(exc: BaseException) -> bool:
    """Whether `exc` says Redis is unreachable, or refusing commands for now: worth a
    retry."""
    if isinstance(exc, (*REDIS_DOWN, rx.ReadOnlyError)):
        return True
    return isinstance(exc, rx.ResponseError) and str(exc).startswith(_FOR_NOW)


def unreachable(settings: RedisSettings, exc: BaseException) -> RedisUnavailable:
    """The error both sides raise when Redis cannot be reached, or refuses commands for
    now (`transient`)."""
    if isinstance(exc, rx.ResponseError) and not isinstance(exc, REDIS_DOWN):
        return RedisUnavailable(f"{_not_now(settings, exc)} The call that failed wrote nothing.")
    if "max number of clients" in str(exc):
        return RedisUnavailable(
            f"Redis at {masked_url(settings.url)} refuses new connections: it serves as many "
            f"clients as its maxclients allows ({exc}). Raise maxclients, or open fewer: "
            "REDIS_MAX_CONNECTIONS per client process (64), two per --concurrency slot per "
            "drainer. The call that failed wrote nothing."
        )
    return RedisUnavailable(
        f"cannot reach Redis at {masked_url(settings.url)}: {error_clause(exc)}. Check "
        "REDIS_URL and that Redis is running. The call that failed wrote nothing."
    )


async def open_redis(
    settings: RedisSettings, keyspace: Keyspace, **overrides: object
) -> RedisClient:
    """Connect, check Redis answers, and check the partition count matches what it holds."""
    client = settings.client(**overrides)
    try:
        recorded = await Scripts(client).partitions(
            keys=[keyspace.meta], args=[keyspace.partitions]
        )
    except rx.AuthenticationError as exc:
        await client.aclose()
        raise ConfigurationError(
            f"Redis at {masked_url(settings.url)} refused the credentials ({exc}). Check "
            "REDIS_USERNAME and REDIS_PASSWORD."
        ) from exc
    except REDIS_DOWN as exc:
        await client.aclose()
        raise unreachable(settings, exc) from exc
    except rx.ResponseError as exc:
        await client.aclose()
        if transient(exc):
            raise unreachable(settings, exc) from exc
        raise refused(settings, keyspace, exc, "cypherstream's start-up script") from exc
    if int(recorded) != keyspace.partitions:
        await client.aclose()
        raise ConfigurationError(
            f"Redis records {int(recorded)} partitions under prefix {keyspace.prefix!r}, "
            f"but this process is configured with {keyspace.partitions}. Producers and "
            "drainers must agree: set CYPHERSTREAM_PARTITIONS to the recorded value."
        )
    return client


def _not_now(settings: RedisSettings, exc: rx.ResponseError) -> str:
    """What a Redis that refuses commands for now says, and why it may."""
    url = masked_url(settings.url)
    if str(exc).startswith("BUSY "):
        return (
            f"Redis at {url} is busy running a script ({str(exc).rstrip('.')}) and answers "
            "nothing else until it ends or SCRIPT KILL stops it; not one of cypherstream's, "
            "which are short."
        )
    return (
        f"Redis at {url} refuses writes for now: {str(exc).rstrip('.')}. A primary short of "
        "the replicas `min-replicas-to-write` asks for, or one just demoted to replica, "
        "answers so until its replicas are back or a failover ends: check INFO replication."
    )


def refused(
    settings: RedisSettings,
    keyspace: Keyspace,
    exc: rx.ResponseError,
    call: str,
    *,
    partway: str = "",
) -> ConfigurationError:
    """What a Redis that answers, but refuses `call` for good, says: its reply, what to
    change, and whether the call wrote anything (`partway`: what that means to the
    caller where a script stopped partway)."""
    reply = error_clause(exc)
    if isinstance(exc, rx.NoPermissionError) or "can't run this command" in reply:
        return RedisPermissionDenied(
            f"the Redis user {settings.user!r} may not use cypherstream's keys under "
            f"{keyspace.prefix!r}, or a command its scripts run ({reply}). Grant it the ACL "
            f"rules in the README's Security section.{_written(reply, partway)}"
        )
    if isinstance(exc, rx.AskError):  # redis-py strips MOVED or ASK from the reply
        reply = f"{'MOVED' if isinstance(exc, rx.MovedError) else 'ASK'} {reply}"
        hint = (
            "It is a node of a Redis Cluster, which sends the key to another node: set "
            "REDIS_CLUSTER=true."
        )
    elif reply.startswith("WRONGTYPE"):
        hint = (
            f"A key under the prefix {keyspace.prefix!r} holds another kind of value: "
            "something else uses the prefix. Give cypherstream a prefix of its own "
            "(CYPHERSTREAM_KEY_PREFIX)."
        )
    elif reply.lower().startswith("unknown command"):
        hint = (
            "cypherstream runs Lua scripts (EVALSHA, SCRIPT LOAD): use a Redis, or a proxy, "
            "that allows them."
        )
    elif "compiling script" in reply or "shebang" in reply:
        hint = "cypherstream's scripts need Redis 7.0 or newer."
    else:
        hint = "See the README's 'What Redis must run with'."
    written = _written(reply, partway)
    return ConfigurationError(
        f"Redis at {masked_url(settings.url)} refused {call}: {reply}. {hint}{written}"
    )


def _written(reply: str, partway: str) -> str:
    """Whether a refused call wrote anything: Redis refuses a command whole, but stops a
    script where it fails and keeps what the script wrote before (its reply then names
    the script's line)."""
    if "@user_script" not in reply:
        return " Nothing was written."
    return f" Redis stopped the script there and keeps what it wrote before{partway}."


async def check_neo4j(settings: Neo4jSettings, driver: AsyncDriver) -> None:
    """One read on the configured database: `ConfigurationError` for what only the
    operator can fix (credentials, database name), `Neo4jUnavailable` while Neo4j
    cannot be reached. Auto-commit, so the driver does not retry it for half a minute."""
    try:
        async with driver.session(
            database=settings.database, default_access_mode=READ_ACCESS
        ) as session:
            await (await session.run("RETURN 1")).consume()
    except (nx.Neo4jError, nx.DriverError, OSError) as exc:
        raise neo4j_failure(settings, exc, "a read", partial(_start_up_refusal, settings)) from exc


#: Neo4j's code for a user whose password must be changed before any other query: a
#: user created without `CHANGE NOT REQUIRED`, or a fresh server's `neo4j` user.
_CREDENTIALS_EXPIRED = "Neo.ClientError.Security.CredentialsExpired"


def _neo4j_refused(
    settings: Neo4jSettings, exc: nx.Neo4jError, work: str
) -> ConfigurationError | None:
    """What only the operator can fix, named: credentials refused or to be changed, a
    database that does not exist, a permission missing for `work` ("a read", "the
    write"); None for any other error."""
    who = f"Neo4j at {settings.uri} "
    database = settings.database or "(default)"
    if exc.code == "Neo.ClientError.Database.DatabaseNotFound":
        return ConfigurationError(
            f"{who}has no database {settings.database!r}. Check NEO4J_DATABASE (unset: the "
            "server's default database)."
        )
    if exc.code == _CREDENTIALS_EXPIRED:
        return ConfigurationError(
            f"{who}accepted the password of user {settings.username!r}, but requires it to "
            "be changed before any other query (a new user, or a fresh server's `neo4j`). "
            "Change it (`ALTER CURRENT USER SET PASSWORD FROM ... TO ...` on the system "
            "database, or `neo4j-admin dbms set-initial-password` before the first start), "
            "then set NEO4J_PASSWORD."
        )
    if isinstance(exc, nx.AuthError):
        return ConfigurationError(
            f"{who}refused the credentials of user {settings.username!r} "
            f"({exc.message or exc}). Check NEO4J_USERNAME and NEO4J_PASSWORD."
        )
    if (exc.code or "").startswith("Neo.ClientError.Security."):
        return ConfigurationError(
            f"{who}refused user {settings.username!r} {work} on database {database!r}: "
            f"{error_message(exc)} ({exc.code}). Grant the user access to the database "
            "(README, Security)."
        )
    return None


def _start_up_refusal(settings: Neo4jSettings, exc: nx.Neo4jError) -> CypherstreamError:
    """The start-up read refused otherwise: for good, `ConfigurationError`; for now (a
    leader election, a database starting), `Neo4jUnavailable`, to wait out."""
    if classify(exc) is not Disposition.DEAD_LETTER:
        return neo4j_unreachable(settings, exc)
    return ConfigurationError(
        f"Neo4j at {settings.uri} refused the start-up read (RETURN 1) of user "
        f"{settings.username!r} on database {settings.database or '(default)'!r}: "
        f"{error_message(exc)} ({exc.code})."
    )


def neo4j_failure(
    settings: Neo4jSettings,
    exc: BaseException,
    work: str,
    own: Callable[[nx.Neo4jError], CypherstreamError],
    not_done: str = "",
) -> CypherstreamError:
    """`exc`, raised by the driver (after its own retries) while it ran `work` ("the
    write", "the read"), as cypherstream's error: `ConfigurationError` for what only
    the operator can fix, `Neo4jUnavailable` while Neo4j cannot be reached or the
    driver fails otherwise (`not_done` says `work` did not happen; a connection lost
    during the commit, that it may have), and `own(exc)` for Neo4j's answer about
    `work` itself (a syntax error, a constraint)."""
    if isinstance(exc, nx.IncompleteCommit):
        return Neo4jUnavailable(
            f"lost the connection to Neo4j at {settings.uri} while it committed {work}: "
            "it may or may not have been applied. Read before trying it again."
        )
    if not isinstance(exc, nx.Neo4jError):
        return neo4j_unreachable(settings, exc, not_done)
    refusal = _neo4j_refused(settings, exc, work)
    if refusal is not None:
        return refusal
    if classify(exc) is Disposition.RETRY:
        return neo4j_unreachable(settings, exc, not_done)
    return own(exc)


def neo4j_unreachable(
    settings: Neo4jSettings, exc: BaseException, not_done: str = ""
) -> Neo4jUnavailable:
    """Neo4j not answering, named; `not_done` says what of the call did not happen."""
    return Neo4jUnavailable(
        f"cannot reach Neo4j at {settings.uri}: {error_clause(exc)}. {not_done}"
        "Check NEO4J_URI and that Neo4j is running."
    )
