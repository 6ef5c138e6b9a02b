"""Sync mode: each write is awaited against Neo4j before submit returns."""

from __future__ import annotations

from collections.abc import Mapping

from neo4j import AsyncDriver, AsyncManagedTransaction
from neo4j import exceptions as nx

from cypherstream.shared.codec import check_params
from cypherstream.shared.connection import neo4j_failure
from cypherstream.shared.dispositions import Disposition, classify, error_clause, error_code
from cypherstream.shared.errors import CypherstreamError, WriteFailed
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
    except (nx.Neo4jError, nx.DriverError, OSError) as exc:
        raise inline_failure(settings, exc, session_id) from exc


def inline_failure(settings: Neo4jSettings, exc: Exception, session_id: str) -> CypherstreamError:
    """What a write awaited inline raises for the driver's `exc` (`neo4j_failure`):
    `WriteFailed` with Neo4j's code for the write's own failure. Each error says
    whether the write was applied."""

    def own(error: nx.Neo4jError) -> WriteFailed:
        hint = (
            "it failed on its own (a timeout, a deadlock, the transaction's memory) and "
            "may pass if tried again"
            if classify(error) is Disposition.RETRY_BUDGETED
            else "fix the query or its parameters"
        )
        return WriteFailed(
            error_code(error),
            f"{error_clause(error)}. The write was not applied: {hint}.",
            reason="failed",
            session_id=session_id,
        )

    return neo4j_failure(settings, exc, "the write", own, "The write was not applied. ")


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
