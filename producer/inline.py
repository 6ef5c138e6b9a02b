"""Sync mode: each write is awaited against Neo4j before submit returns."""

from __future__ import annotations

from collections.abc import Mapping

from neo4j import AsyncDriver, AsyncManagedTransaction
from neo4j import exceptions as nx

from cypherstream.shared.codec import check_params
from cypherstream.shared.connection import neo4j_refused, neo4j_unreachable
from cypherstream.shared.dispositions import Disposition, classify, error_code, error_message
from cypherstream.shared.errors import CypherstreamError, Neo4jUnavailable, WriteFailed
from cypherstream.shared.queries import QueryBook
from cypherstream.shared.settings import Neo4jSettings


async def run_write(
    driver: AsyncDriver, database: str | None, query: str, params: dict[str, object]
) -> tuple[str, ...]:
    """Run one write in its own managed transaction (the driver retries transient
    errors); the bookmarks after it."""

    async def work(tx: AsyncManagedTransaction) -> None:
        result = await tx.run(query, params)
        await result.consume()

    async with driver.session(database=database) as session:
        await session.execute_write(work)
        return tuple(sorted((await session.last_bookmarks()).raw_values))


async def run_inline(
    driver: AsyncDriver,
    settings: Neo4jSettings,
    query: str,
    params: Mapping[str, object] | None,
    session_id: str,
) -> tuple[str, ...]:
    """`run_write` for a caller awaiting it: its failure raised as cypherstream's own
    error (`inline_failure`), the driver's exception as the cause; the bookmarks after."""
    checked = check_params(params)
    try:
        return await run_write(driver, settings.database, query, checked)
    except _NAMED as exc:
        raise inline_failure(settings, exc, session_id) from exc


#: What `inline_failure` names: Neo4j's answers, and the connection failing. Any other
#: exception of the driver's is a misuse of it, a bug to see with its traceback.
_NAMED = (nx.Neo4jError, nx.ServiceUnavailable, nx.SessionExpired, nx.IncompleteCommit, OSError)


def inline_failure(settings: Neo4jSettings, exc: Exception, session_id: str) -> CypherstreamError:
    """What a write awaited inline raises for the driver's `exc` (after the driver's
    own retries): `ConfigurationError` for what only the operator can fix,
    `Neo4jUnavailable` while Neo4j cannot be reached, `WriteFailed` for the write's own
    failure, with its Neo4j code. Each says whether the write was applied."""
    if isinstance(exc, nx.IncompleteCommit):
        return Neo4jUnavailable(
            f"lost the connection to Neo4j at {settings.uri} while it committed a write: "
            "the write may or may not have been applied. Read before writing it again."
        )
    if isinstance(exc, nx.Neo4jError):
        refusal = neo4j_refused(settings, exc, "the write")
        if refusal is not None:
            return refusal
    kind = classify(exc)
    if kind is Disposition.RETRY or not isinstance(exc, nx.Neo4jError):
        return neo4j_unreachable(settings, exc, "The write was not applied. ")
    hint = (
        "it failed on its own (a timeout, a deadlock, the transaction's memory) and may "
        "pass if tried again"
        if kind is Disposition.RETRY_BUDGETED
        else "fix the query or its parameters"
    )
    message = " ".join(error_message(exc).split())  # one line
    return WriteFailed(
        error_code(exc),
        f"{message.rstrip('.')}. The write was not applied: {hint}.",
        reason="failed",
        session_id=session_id,
    )


class InlineBackend:
    """Awaits each write; its failure raises at submit (`inline_failure`)."""

    name = "sync (each write awaited inline)"

    def __init__(self, driver: AsyncDriver, settings: Neo4jSettings, queries: QueryBook) -> None:
        self._driver = driver
        self._settings = settings
        self._queries = queries
        self._bookmarks: tuple[str, ...] = ()  # after the last write

    async def submit(
        self,
        query: str,
        params: Mapping[str, object] | None,
        session_id: str,
        *,
        named: bool = False,
    ) -> None:
        text = self._queries.cypher(query) if named else query
        self._bookmarks = await run_inline(self._driver, self._settings, text, params, session_id)

    async def flush(self, timeout: float, sessions: set[str] | None = None) -> tuple[str, ...]:
        return self._bookmarks

    async def end(self, session_ids: set[str], timeout: float) -> None:
        return None

    async def pending(self) -> int:
        return 0

    async def close(self) -> None:
        return None
