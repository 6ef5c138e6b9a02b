"""Creating constraints and indexes safely while other processes create them too.

`CREATE ... IF NOT EXISTS` is not atomic across transactions: two drainers starting
together both find the rule missing, and the second to commit fails with "an
equivalent rule exists", or they deadlock on the label's schema lock. Both mean the
rule is (or will be) there, so both count as success here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from neo4j import AsyncDriver, AsyncManagedTransaction
from neo4j import exceptions as nx

from cypherstream.shared.connection import neo4j_failure
from cypherstream.shared.dispositions import Disposition, classify, error_clause, error_code
from cypherstream.shared.errors import ConfigurationError, CypherstreamError
from cypherstream.shared.retry import Backoff, call_with_retry
from cypherstream.shared.settings import Neo4jSettings

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
# `FOR (n:Label) REQUIRE n.prop IS UNIQUE`: a single-property uniqueness constraint.
_UNIQUE = re.compile(
    r"FOR\s*\(\s*\w+\s*:\s*`?(\w+)`?\s*\)\s*REQUIRE\s+\w+\.`?(\w+)`?\s+IS\s+UNIQUE",
    re.IGNORECASE,
)
# The constraints that make node properties unique (uniqueness and key constraints):
# those backed by an index of their own. Asked so, not by `type`, whose names depend on
# the database's default language: Cypher 5's `UNIQUENESS` is Cypher 25's
# `NODE_PROPERTY_UNIQUENESS`, and Neo4j 2026.02+ creates databases with Cypher 25.
_CONSTRAINTS = (
    "SHOW CONSTRAINTS YIELD entityType, ownedIndex, labelsOrTypes AS labels, properties "
    "WHERE entityType = 'NODE' AND ownedIndex IS NOT NULL RETURN labels, properties"
)
_BLOCKING = (
    "SHOW INDEXES YIELD name, labelsOrTypes, properties, owningConstraint "
    "WHERE owningConstraint IS NULL AND $label IN labelsOrTypes AND properties = [$prop] "
    "RETURN name"
)
#: Seconds one schema statement may keep losing races (deadlocks) before it fails.
_RACE_WINDOW = 10.0
#: Neo4j's code for a uniqueness constraint that nodes already in the graph break.
_BROKEN_BY_DATA = "Neo.DatabaseError.Schema.ConstraintCreationFailed"


async def create_schema(
    driver: AsyncDriver, database: str | None, statements: Iterable[str]
) -> None:
    """Run `CREATE CONSTRAINT|INDEX ... IF NOT EXISTS` statements, one transaction each;
    "already exists" counts as done and a lost race is tried again. Raises
    `ConfigurationError` when a uniqueness constraint is still missing afterwards: an
    index on the same property (another library's schema) keeps Neo4j from creating it."""
    statements = list(statements)
    for statement in statements:
        await _create(driver, database, statement)
    await _check_unique(driver, database, statements)


async def _check_unique(driver: AsyncDriver, database: str | None, statements: list[str]) -> None:
    wanted = {(m.group(1), m.group(2)) for text in statements if (m := _UNIQUE.search(text))}
    if not wanted:
        return
    constraints, _, _ = await driver.execute_query(_CONSTRAINTS, database_=database)
    have = {(r["labels"][0], r["properties"][0]) for r in constraints if len(r["properties"]) == 1}
    for label, prop in sorted(wanted - have):
        indexes, _, _ = await driver.execute_query(
            _BLOCKING, label=label, prop=prop, database_=database
        )
        blocking = ", ".join(repr(r["name"]) for r in indexes) or "an index"
        raise ConfigurationError(
            f"Neo4j has no uniqueness constraint on :{label}({prop}) because {blocking} on "
            f"the same property is in the way (another library's schema?). Drop it (DROP "
            f"INDEX <name>) and run ensure_schema() again, or create the constraint yourself; "
            f"until then :{label}.{prop} is not unique."
        )


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


def schema_failure(settings: Neo4jSettings, exc: BaseException) -> CypherstreamError:
    """`create_schema`'s failure from the driver, named (`neo4j_failure`); Neo4j refusing
    a rule is a `ConfigurationError`: nodes already there that break a uniqueness
    constraint, say, which only their owner can sort out."""

    def refused(error: nx.Neo4jError) -> ConfigurationError:
        message = error_clause(error)
        if error.code == _BROKEN_BY_DATA:
            return ConfigurationError(
                f"Neo4j at {settings.uri} cannot create a uniqueness constraint cypherstream "
                f"relies on, because nodes already in the graph break it: {message}. Merge or "
                "remove the duplicates, then try again."
            )
        return ConfigurationError(
            f"Neo4j at {settings.uri} refused a constraint or index cypherstream relies on: "
            f"{error_code(error)}: {message}."
        )

    return neo4j_failure(settings, exc, "a schema change", refused)
