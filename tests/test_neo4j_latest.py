"""Neo4j's newest release, on a database whose default language is Cypher 25, as Neo4j
2026.02+ and new Aura instances create them: a drainer comes up and applies a session
in order, and the schema cypherstream creates is found where it is there."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from neo4j import AsyncDriver, AsyncGraphDatabase

from cypherstream import SCHEMA, MemoryClient
from cypherstream.shared.settings import Neo4jSettings
from tests.conftest import Neo4jTarget
from tests.helpers import Graph, index_in_the_way_is_named

CHAIN = 200


@pytest.fixture
def neo4j_settings(latest_neo4j: Neo4jTarget) -> Neo4jSettings:
    """This module's clients and drainers write to the newest Neo4j."""
    return Neo4jSettings(
        uri=latest_neo4j.uri, username=latest_neo4j.username, password=latest_neo4j.password
    )


@pytest_asyncio.fixture
async def latest(latest_neo4j: Neo4jTarget) -> AsyncIterator[AsyncDriver]:
    driver = AsyncGraphDatabase.driver(
        latest_neo4j.uri,
        auth=(latest_neo4j.username, latest_neo4j.password),
        notifications_min_severity="OFF",
    )
    yield driver
    await driver.close()


@pytest_asyncio.fixture
async def graph(latest: AsyncDriver, tag: str) -> AsyncIterator[Graph]:
    helper = Graph(latest, tag)
    yield helper
    await helper.cleanup()


async def test_a_drainer_comes_up_and_applies_a_session_in_submission_order(
    drainer: Any, client: MemoryClient, graph: Graph
) -> None:
    # Each write finds the one before it: out of order, the chain would break.
    await client.buffered.submit(f"CREATE (:{graph.label} {{seq: 0}})")
    for seq in range(1, CHAIN):
        await client.buffered.submit(
            f"MATCH (prev:{graph.label} {{seq: $prev}}) "
            f"CREATE (prev)-[:NEXT]->(:{graph.label} {{seq: $seq}})",
            {"prev": seq - 1, "seq": seq},
        )
    await client.flush()

    chain = await graph.query(
        "MATCH p = (:$$ {seq: 0})-[:NEXT*]->(last:$$) WHERE NOT (last)-[:NEXT]->() "
        "RETURN length(p) AS hops, last.seq AS last"
    )
    assert chain == [{"hops": CHAIN - 1, "last": CHAIN - 1}]


async def test_the_typed_record_schema_is_created_and_found(
    make_settings: Any, latest: AsyncDriver
) -> None:
    async with MemoryClient(make_settings("sync")) as client:
        await client.ensure_schema()
        await client.ensure_schema()  # finds what the first call created

    records, _, _ = await latest.execute_query(
        "SHOW CONSTRAINTS YIELD name WHERE name STARTS WITH 'cypherstream_' RETURN name"
    )
    assert {statement.split()[2] for statement in SCHEMA} <= {r["name"] for r in records}


async def test_an_index_in_the_way_of_a_uniqueness_constraint_is_still_named(
    latest: AsyncDriver, tag: str
) -> None:
    await index_in_the_way_is_named(latest, tag)
