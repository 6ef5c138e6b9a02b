"""Sync mode: each write is awaited against Neo4j before submit returns."""

from __future__ import annotations

from collections.abc import Mapping

from neo4j import AsyncDriver, AsyncManagedTransaction

from cypherstream.shared.codec import check_params
from cypherstream.shared.queries import QueryBook


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


class InlineBackend:
    """Awaits each write; its errors propagate to the caller of submit."""

    name = "sync (each write awaited inline)"

    def __init__(self, driver: AsyncDriver, database: str | None, queries: QueryBook) -> None:
        self._driver = driver
        self._database = database
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
        checked = check_params(params)
        text = self._queries.cypher(query) if named else query
        self._bookmarks = await run_write(self._driver, self._database, text, checked)

    async def flush(self, timeout: float, sessions: set[str] | None = None) -> tuple[str, ...]:
        return self._bookmarks

    async def end(self, session_ids: set[str], timeout: float) -> None:
        return None

    async def pending(self) -> int:
        return 0

    async def close(self) -> None:
        return None
