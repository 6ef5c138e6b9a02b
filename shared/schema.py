"""Creating constraints and indexes safely while other processes create them too.

`CREATE ... IF NOT EXISTS` is not atomic across transactions: two drainers starting
together both find the rule missing, and the second to commit fails with "an
equivalent rule exists", or they deadlock on the label's schema lock. Both mean the
rule is (or will be) there, so both count as success here.
"""

from __future__ import annotations

from collections.abc import Iterable

from neo4j import AsyncDriver, AsyncManagedTransaction
from neo4j import exceptions as nx

from cypherstream.shared.dispositions import Disposition, classify
from cypherstream.shared.retry import Backoff, call_with_retry

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
#: Seconds one schema statement may keep losing races (deadlocks) before it fails.
_RACE_WINDOW = 10.0


async def create_schema(
    driver: AsyncDriver, database: str | None, statements: Iterable[str]
) -> None:
    """Run `CREATE CONSTRAINT|INDEX ... IF NOT EXISTS` statements, one transaction each;
    "already exists" counts as done and a lost race is tried again."""
    for statement in statements:
        await _create(driver, database, statement)


async def _create(driver: AsyncDriver, database: str | None, statement: str) -> None:
    async def attempt() -> None:
        try:
            async with driver.session(database=database) as session:
                await session.execute_write(_run, statement)
        except nx.Neo4jError as exc:
            if exc.code not in _ALREADY_THERE:
                raise

    await call_with_retry(
        attempt,
        retryable=lambda exc: classify(exc) is not Disposition.DEAD_LETTER,
        backoff=lambda: Backoff(first=0.05, cap=1.0),
        on_retry=lambda exc, delay: None,  # a lost race: quiet, and soon over
        window=_RACE_WINDOW,
    )


async def _run(tx: AsyncManagedTransaction, statement: str) -> None:
    await (await tx.run(statement)).consume()
