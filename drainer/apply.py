"""Applying a session's writes to Neo4j exactly once in effect.

Each session has a `CypherstreamProgress` node holding the id of the last entry
applied. Every transaction locks it first, skips entries at or below it, runs the
rest in entry order and moves it forward, all in one commit. So a batch that
committed but was never acknowledged in Redis is skipped when it is delivered
again, and a stalled former owner that wakes up cannot apply anything twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from neo4j import AsyncDriver, unit_of_work

from drainer.unwind import group
from shared.codec import decode_params
from shared.entry import WriteEntry, id_key
from shared.errors import MalformedEntry
from shared.failures import Disposition, classify

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
    f"MERGE (p:{PROGRESS_LABEL} {{stream: $stream}}) "
    "SET p.transactions = coalesce(p.transactions, 0) + 1 RETURN p.last_id AS last_id"
)
_ADVANCE = (
    f"MATCH (p:{PROGRESS_LABEL} {{stream: $stream}}) "
    "SET p.last_id = $last_id, p.updated_at = datetime()"
)


class MalformedParams(MalformedEntry):
    """An entry whose parameters do not decode; it can never run."""


@dataclass
class BatchResult:
    """What became of each write of a batch."""

    applied: list[WriteEntry] = field(default_factory=list)
    skipped: list[WriteEntry] = field(default_factory=list)  # applied by an earlier delivery
    failed: list[tuple[WriteEntry, BaseException]] = field(default_factory=list)


class Applier:
    """Runs writes of one session in transactions, with the progress record."""

    def __init__(self, driver: AsyncDriver, database: str | None, tx_timeout: float = 60.0) -> None:
        self._driver = driver
        self._database = database
        # A server-side limit: a transaction of a stalled drainer (SIGSTOP, partition)
        # is ended by Neo4j, releasing the progress lock for the new owner.
        self._unit = unit_of_work(timeout=tx_timeout)

    async def ensure_schema(self) -> None:
        """Create the progress record's constraint and index. Managed transactions, so
        drainers starting together on a fresh database retry the deadlock Neo4j reports."""
        async with self._driver.session(database=self._database) as session:
            for statement in (SCHEMA, _UPDATED_INDEX):
                await session.execute_write(_run_statement, statement)

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

    async def apply(self, stream: str, writes: list[WriteEntry]) -> BatchResult:
        """Apply `writes` (in entry order). Raises on a passing failure, for the caller
        to retry the same list; permanent failures are returned in `failed`."""
        decoded: list[tuple[WriteEntry, dict[str, Any] | BaseException]] = []
        for write in writes:
            try:
                decoded.append((write, decode_params(write.params)))
            except ValueError as exc:
                decoded.append((write, MalformedParams(str(exc))))
        if not any(isinstance(params, BaseException) for _, params in decoded):
            try:
                return await self._transaction(stream, decoded)  # type: ignore[arg-type]
            except Exception as exc:
                if classify(exc) is Disposition.RETRY:
                    raise
                if len(writes) == 1:
                    return BatchResult(failed=[(writes[0], exc)])
        # One write (or a decode) failed for good: find which, one transaction each, so
        # only that write is reported and the others commit.
        return await self._one_by_one(stream, decoded)

    async def _one_by_one(
        self, stream: str, decoded: list[tuple[WriteEntry, dict[str, Any] | BaseException]]
    ) -> BatchResult:
        result = BatchResult()
        for write, params in decoded:
            if isinstance(params, BaseException):
                result.failed.append((write, params))
                continue
            try:
                one = await self._transaction(stream, [(write, params)])
            except Exception as exc:
                if classify(exc) is Disposition.RETRY:
                    raise
                result.failed.append((write, exc))
                continue
            result.applied += one.applied
            result.skipped += one.skipped
        return result

    async def consume(self, stream: str, write: WriteEntry) -> bool:
        """Move the progress record past a write that failed for good.

        Returns False when it was already past (another delivery got there first).
        """

        async def work(tx: Any) -> bool:
            last = await _lock(tx, stream)
            if last is not None and id_key(write.entry_id) <= id_key(last):
                return False
            await (await tx.run(_ADVANCE, stream=stream, last_id=write.entry_id)).consume()
            return True

        async with self._driver.session(database=self._database) as session:
            return bool(await session.execute_write(self._unit(work)))

    async def forget(self, stream: str) -> None:
        """Delete a session's progress record: its stream is about to be removed."""
        async with self._driver.session(database=self._database) as session:
            await session.execute_write(self._unit(_run_statement), _FORGET, stream=stream)

    async def _transaction(
        self, stream: str, decoded: list[tuple[WriteEntry, dict[str, Any]]]
    ) -> BatchResult:
        async def work(tx: Any) -> BatchResult:
            last = await _lock(tx, stream)
            result = BatchResult()
            todo = []
            for write, params in decoded:
                if last is not None and id_key(write.entry_id) <= id_key(last):
                    result.skipped.append(write)
                else:
                    todo.append((write, write.query, params))
            # Runs of one query text go as one UNWIND statement where that is the same.
            for text, params, writes in group(todo):
                await (await tx.run(text, params)).consume()
                result.applied += writes
            if result.applied:
                last_id = result.applied[-1].entry_id
                await (await tx.run(_ADVANCE, stream=stream, last_id=last_id)).consume()
            return result

        async with self._driver.session(database=self._database) as session:
            result: BatchResult = await session.execute_write(self._unit(work))
            return result


_FORGET = f"MATCH (p:{PROGRESS_LABEL} {{stream: $stream}}) DELETE p"


_IDLE = (
    f"MATCH (p:{PROGRESS_LABEL}) WHERE p.updated_at < datetime() - duration({{seconds: $idle}}) "
    "AND p.stream STARTS WITH $prefix RETURN p.stream AS stream ORDER BY p.updated_at LIMIT $limit"
)
_FORGET_IDLE = (
    f"MATCH (p:{PROGRESS_LABEL}) WHERE p.stream IN $streams "
    "AND p.updated_at < datetime() - duration({seconds: $idle}) DELETE p"
)


async def _run_statement(tx: Any, statement: str, /, **params: Any) -> None:
    await (await tx.run(statement, params)).consume()


async def _run_idle(tx: Any, prefix: str, idle: float, limit: int) -> list[str]:
    result = await tx.run(_IDLE, prefix=prefix, idle=idle, limit=limit)
    return [record["stream"] async for record in result]


async def _lock(tx: Any, stream: str) -> str | None:
    record = await (await tx.run(_LOCK, stream=stream)).single()
    return None if record is None else record["last_id"]
