"""Reading what was written: what a flush confirms, and reads that see it.

Neo4j answers "when can I read what was written?" with bookmarks: a transaction
started with them waits until the server it runs on holds those writes, which on a
cluster may be a secondary that has not caught up yet
(https://neo4j.com/docs/operations-manual/current/clustering/setup/causal-consistency/).
The drainer that commits a session's writes hands their bookmarks to the flush that
waits for them; `FlushResult` carries them to the reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from neo4j import READ_ACCESS, AsyncDriver, AsyncManagedTransaction, Bookmarks
from neo4j import exceptions as nx

from cypherstream.shared.codec import check_params
from cypherstream.shared.connection import neo4j_failure
from cypherstream.shared.dispositions import error_clause, error_code
from cypherstream.shared.errors import ReadFailed
from cypherstream.shared.settings import Neo4jSettings


@dataclass(frozen=True)
class FlushResult:
    """What `flush()` confirmed: this client's writes `applied` and `failed` (those in
    `write_errors`) since its previous flush, and the Neo4j `bookmarks` under which a
    read sees every flushed write, on any member of a cluster."""

    applied: int = 0
    failed: int = 0
    bookmarks: tuple[str, ...] = ()

    def neo4j_bookmarks(self) -> Bookmarks:
        """The bookmarks for your own driver: `driver.session(bookmarks=...)`."""
        return Bookmarks.from_raw_values(self.bookmarks)


async def run_read(
    driver: AsyncDriver,
    settings: Neo4jSettings,
    query: str,
    params: Mapping[str, object] | None,
    bookmarks: tuple[str, ...],
) -> list[dict[str, object]]:
    """Run a read (retried by the driver on passing failures) that waits for
    `bookmarks`; its records as dicts."""
    checked = check_params(params)

    async def work(tx: AsyncManagedTransaction) -> list[dict[str, object]]:
        return [record.data() async for record in await tx.run(query, checked)]

    session = driver.session(
        database=settings.database,
        default_access_mode=READ_ACCESS,
        bookmarks=Bookmarks.from_raw_values(bookmarks),
    )
    try:
        async with session:
            return await session.execute_read(work)
    except (nx.Neo4jError, nx.DriverError, OSError) as exc:
        raise neo4j_failure(settings, exc, "the read", _read_failed) from exc


def _read_failed(exc: nx.Neo4jError) -> ReadFailed:
    return ReadFailed(f"the read failed: {error_code(exc)}: {error_clause(exc)}. Fix the query.")
