"""The progress records: one `CypherstreamProgress` node per session holds the id of the
last entry applied, moved forward in the same transaction as the writes (see
`drainer/apply.py`). Here: their schema, the statements that lock and advance them,
and their lifecycle outside a batch (moving past a given-up write, forgetting an ended
session, pruning those of sessions whose streams expired)."""

from __future__ import annotations

from functools import lru_cache

from neo4j import AsyncDriver, AsyncManagedTransaction, unit_of_work

from cypherstream.shared.entry import WriteEntry, id_key
from cypherstream.shared.schema import create_schema

PROGRESS_LABEL = "CypherstreamProgress"

SCHEMA = (
    f"CREATE CONSTRAINT cypherstream_progress IF NOT EXISTS "
    f"FOR (p:{PROGRESS_LABEL}) REQUIRE p.stream IS UNIQUE"
)
# Finds records of sessions idle for long, to prune those whose stream expired.
_UPDATED_INDEX = (
    f"CREATE INDEX cypherstream_progress_updated IF NOT EXISTS "
    f"FOR (p:{PROGRESS_LABEL}) ON (p.updated_at)"
)
# Writing a property takes the node's write lock, serializing every committer.
_LOCK = (
    f"UNWIND $streams AS stream MERGE (p:{PROGRESS_LABEL} {{stream: stream}}) "
    "SET p.transactions = coalesce(p.transactions, 0) + 1 "
    "RETURN stream, p.last_id AS last_id"
)
# Lock and advance, before the writes run: each record of `$cs_progress` moves to its
# batch's last entry unless it is already past it (ids compare as [ms, seq] lists, in
# dictionary order); the previous value (`cs_last`) says which writes an earlier
# delivery applied. Should a write fail, the whole transaction rolls back, the advance
# with it.
# The record is read only once the first SET holds its write lock: read before, it is
# what was there when this transaction started waiting, and a transaction that held the
# lock meanwhile (a drainer resumed after its lease was taken over, applying the same
# batch) may have committed it, which would then run again.
# Few expressions on purpose: Neo4j plans a statement again whenever its statistics
# drift, and each expression adds to that (the bench's statement plans in 129 ms this
# way, 174 ms when every id was parsed in Cypher).
_LOCKED = (
    f"UNWIND $cs_progress AS cs_p MERGE (p:{PROGRESS_LABEL} {{stream: cs_p.stream}}) "
    "SET p.transactions = coalesce(p.transactions, 0) + 1, p.updated_at = datetime() "
    "WITH p, cs_p, p.last_id AS cs_last, "
    "[x IN split(coalesce(p.last_id, '0-0'), '-') | toInteger(x)] AS cs_old "
    "SET p.last_id = CASE WHEN cs_p.last > cs_old THEN cs_p.last_id ELSE cs_last END "
)
_LOCK_AND_ADVANCE = _LOCKED + "RETURN cs_p.stream AS stream, cs_last AS last_id"
# The same in front of a batch's writes, in one statement (one round trip, and an
# auto-commit transaction: no BEGIN or COMMIT of its own). Each record's rows are
# rows `from ..` (`cs_i`) and its entry ids `ids` (comma-separated); a row runs through
# `per_row` unless an earlier delivery applied it, which can only be where the record
# is at or past the batch's first entry. `collect` ends the locking before any write.
_GUARDED = (
    _LOCKED + "WITH collect([cs_p.stream, cs_last]) AS cs_before, "
    "collect(CASE WHEN cs_old >= cs_p.first THEN [cs_p.from, cs_p.from + size([i IN "
    "split(cs_p.ids, ',') WHERE [x IN split(i, '-') | toInteger(x)] <= cs_old])] END) "
    "AS cs_skip "
    "CALL { WITH cs_skip UNWIND range(0, $cs_n - 1) AS cs_i "
    "WITH cs_i, cs_skip WHERE none(s IN cs_skip WHERE s[0] <= cs_i AND cs_i < s[1]) "
)
ADVANCE = (
    f"UNWIND $rows AS row MATCH (p:{PROGRESS_LABEL} {{stream: row.stream}}) "
    "SET p.last_id = row.last_id, p.updated_at = datetime()"
)


class ProgressRecords:
    """The progress records of one drainer's sessions, outside its batch transactions."""

    def __init__(self, driver: AsyncDriver, database: str | None, tx_timeout: float) -> None:
        self._driver = driver
        self._database = database
        self._unit = unit_of_work(timeout=tx_timeout)

    async def ensure_schema(self) -> None:
        """Create the progress record's constraint and index (safe with other drainers
        doing it at the same moment)."""
        await create_schema(self._driver, self._database, (SCHEMA, _UPDATED_INDEX))

    async def idle_records(self, prefix: str, idle_seconds: float, limit: int) -> list[str]:
        """Progress records under `prefix` not advanced for `idle_seconds`, oldest first."""
        async with self._driver.session(database=self._database) as session:
            return list(await session.execute_read(_run_idle, prefix, idle_seconds, limit))

    async def forget_idle(self, streams: list[str], idle_seconds: float) -> None:
        """Delete those of `streams`' records that are still idle for `idle_seconds`."""
        async with self._driver.session(database=self._database) as session:
            await session.execute_write(
                self._unit(_run_statement), _FORGET_IDLE, streams=streams, idle=idle_seconds
            )

    async def consume(self, stream: str, write: WriteEntry) -> bool:
        """Move the progress record past a write that failed for good.

        Returns False when it was already past (another delivery got there first).
        """

        async def work(tx: AsyncManagedTransaction) -> bool:
            last = (await lock(tx, [stream])).get(stream)
            if last is not None and id_key(write.entry_id) <= id_key(last):
                return False
            rows = [{"stream": stream, "last_id": write.entry_id}]
            await (await tx.run(ADVANCE, rows=rows)).consume()
            return True

        async with self._driver.session(database=self._database) as session:
            return bool(await session.execute_write(self._unit(work)))

    async def forget(self, stream: str) -> None:
        """Delete a session's progress record: its stream is about to be removed."""
        async with self._driver.session(database=self._database) as session:
            await session.execute_write(self._unit(_run_statement), _FORGET, stream=stream)


_FORGET = f"MATCH (p:{PROGRESS_LABEL} {{stream: $stream}}) DELETE p"


_IDLE = (
    f"MATCH (p:{PROGRESS_LABEL}) WHERE p.updated_at < datetime() - duration({{seconds: $idle}}) "
    "AND p.stream STARTS WITH $prefix RETURN p.stream AS stream ORDER BY p.updated_at LIMIT $limit"
)
_FORGET_IDLE = (
    f"MATCH (p:{PROGRESS_LABEL}) WHERE p.stream IN $streams "
    "AND p.updated_at < datetime() - duration({seconds: $idle}) DELETE p"
)


async def _run_statement(tx: AsyncManagedTransaction, statement: str, /, **params: object) -> None:
    await (await tx.run(statement, params)).consume()


async def _run_idle(tx: AsyncManagedTransaction, prefix: str, idle: float, limit: int) -> list[str]:
    result = await tx.run(_IDLE, prefix=prefix, idle=idle, limit=limit)
    return [record["stream"] async for record in result]


async def lock_and_advance(
    tx: AsyncManagedTransaction, progress: list[dict[str, object]]
) -> dict[str, str]:
    """Lock the progress records of `progress` (`progress_rows`) and move each to its
    batch's last entry unless it is past it already; the last entry id each had applied
    before."""
    result = await tx.run(_LOCK_AND_ADVANCE, cs_progress=progress)
    return {r["stream"]: r["last_id"] async for r in result if r["last_id"] is not None}


@lru_cache(maxsize=256)
def guarded(per_row: str) -> str:
    """One statement that locks and advances the progress records of `$cs_progress`
    (`progress_rows`), then runs `per_row` for each row `cs_i` (of `$cs_n`) that no earlier
    delivery applied; it returns `cs_before`, a [stream, last entry id before] pair per
    record."""
    return f"{_GUARDED}{per_row}\n}} RETURN cs_before"


def progress_rows(spans: list[tuple[str, int, list[str]]]) -> list[dict[str, object]]:
    """`$cs_progress` for sessions' rows, given as (stream, number of its first row,
    its entry ids in order); sorted by stream, so two transactions never
    wait on each other's records."""
    return [
        {"stream": stream, "from": first, "first": list(id_key(ids[0])),
         "last": list(id_key(ids[-1])), "last_id": ids[-1], "ids": ",".join(ids)}
        for stream, first, ids in sorted(spans)
    ]  # fmt: skip


async def lock(tx: AsyncManagedTransaction, streams: list[str]) -> dict[str, str]:
    """Lock the progress records of `streams`; the last entry id each applied."""
    result = await tx.run(_LOCK, streams=streams)
    return {r["stream"]: r["last_id"] async for r in result if r["last_id"] is not None}
