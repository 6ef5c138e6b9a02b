"""Creating constraints and indexes safely while other processes create them too.

`CREATE ... IF NOT EXISTS` is not atomic across transactions: two drainers starting
together both find the rule missing, and the second to commit fails with "an
equivalent rule exists", or they deadlock on the label's schema lock. Both mean the
rule is (or will be) there, so both count as success here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from neo4j import AsyncDriver
from neo4j import exceptions as nx

from cypherstream.shared.backoff import Backoff
from cypherstream.shared.failures import Disposition, classify

# Another process created the same rule between our check and our commit.
_ALREADY_THERE = frozenset(
    {
        "Neo.ClientError.Schema.EquivalentSchemaRuleAlreadyExists",
        "Neo.ClientError.Schema.ConstraintAlreadyExists",
        "Neo.ClientError.Schema.IndexAlreadyExists",
        "Neo.ClientError.Schema.ConstraintWithNameAlreadyExists",
        "Neo.ClientError.Schema.IndexWithNameAlreadyExists",
    }
)
#: Tries of one schema statement that keeps losing races (deadlocks) before giving up.
_ATTEMPTS = 10


async def create_schema(
    driver: AsyncDriver, database: str | None, statements: Iterable[str]
) -> None:
    """Run `CREATE CONSTRAINT|INDEX ... IF NOT EXISTS` statements, one transaction each;
    "already exists" counts as done and a lost race is tried again."""
    for statement in statements:
        await _create(driver, database, statement)


async def _create(driver: AsyncDriver, database: str | None, statement: str) -> None:
    backoff = Backoff(first=0.05, cap=1.0)
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            async with driver.session(database=database) as session:
                await session.execute_write(_run, statement)
            return
        except nx.Neo4jError as exc:
            if exc.code in _ALREADY_THERE:
                return
            if classify(exc) is Disposition.DEAD_LETTER or attempt == _ATTEMPTS:
                raise
        await backoff.wait()


async def _run(tx: Any, statement: str) -> None:
    await (await tx.run(statement)).consume()
