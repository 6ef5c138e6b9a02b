"""Creating cypherstream's schema is safe when many processes do it at once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from neo4j import AsyncDriver
from neo4j import exceptions as nx

from cypherstream import SCHEMA, ConfigurationError, MemoryClient
from cypherstream.drainer.worker import Drainer
from tests.helpers import index_in_the_way_is_named

ROUNDS = 10
DRAINERS = 4
PROGRESS_SCHEMA = ("cypherstream_progress", "cypherstream_progress_updated")


async def drop(neo4j: AsyncDriver, names: list[str]) -> None:
    rows, _, _ = await neo4j.execute_query(
        "SHOW CONSTRAINTS YIELD name WHERE name IN $names RETURN name", names=names
    )
    for row in rows:
        await neo4j.execute_query(f"DROP CONSTRAINT {row['name']} IF EXISTS")
    for name in names:
        await neo4j.execute_query(f"DROP INDEX {name} IF EXISTS")


async def test_drainers_starting_together_on_a_database_without_the_schema_all_come_up(
    neo4j: AsyncDriver, drainer_settings: Any
) -> None:
    for _ in range(ROUNDS):
        await drop(neo4j, list(PROGRESS_SCHEMA))
        drainers = [Drainer(drainer_settings()) for _ in range(DRAINERS)]
        tasks = [asyncio.create_task(drainer.run()) for drainer in drainers]
        try:
            for drainer, task in zip(drainers, tasks, strict=True):
                ready = asyncio.create_task(drainer.ready.wait())
                await asyncio.wait([task, ready], timeout=60, return_when="FIRST_COMPLETED")
                ready.cancel()
                if task.done():
                    task.result()  # raises what stopped it
                assert drainer.ready.is_set(), "a drainer did not start within 60s"
        finally:
            for drainer in drainers:
                drainer.stop()
            await asyncio.gather(*tasks, return_exceptions=True)

    rows, _, _ = await neo4j.execute_query(
        "SHOW INDEXES YIELD name WHERE name IN $names RETURN count(*) AS n",
        names=list(PROGRESS_SCHEMA),
    )
    assert rows[0]["n"] == len(PROGRESS_SCHEMA)


async def test_clients_creating_the_typed_record_schema_together_all_succeed(
    neo4j: AsyncDriver, make_settings: Any
) -> None:
    names = [statement.split()[2] for statement in SCHEMA]
    for _ in range(ROUNDS):
        await drop(neo4j, names)
        clients = [MemoryClient(make_settings("sync")) for _ in range(DRAINERS)]
        try:
            await asyncio.gather(*(client.ensure_schema() for client in clients))
        finally:
            await asyncio.gather(*(client.close() for client in clients))


async def test_an_index_in_the_way_of_a_uniqueness_constraint_is_named_not_ignored(
    neo4j: AsyncDriver, tag: str
) -> None:
    await index_in_the_way_is_named(neo4j, tag)


async def test_nodes_that_break_a_uniqueness_constraint_are_named_and_then_it_is_created(
    neo4j: AsyncDriver, make_settings: Any, tag: str
) -> None:
    await drop(neo4j, ["cypherstream_message_id"])
    twice = "UNWIND [1, 2] AS n CREATE (:Message {id: $id, n: n})"
    await neo4j.execute_query(twice, id=f"{tag}-m")
    try:
        async with MemoryClient(make_settings("sync")) as client:
            with pytest.raises(ConfigurationError) as raised:
                await client.ensure_schema()
            assert "nodes already in the graph break it" in str(raised.value)
            assert f"`id` = '{tag}-m'" in str(raised.value)  # Neo4j names one of them
            assert "Merge or remove the duplicates" in str(raised.value)
            assert isinstance(raised.value.__cause__, nx.Neo4jError)
    finally:
        await neo4j.execute_query("MATCH (m:Message {id: $id}) DELETE m", id=f"{tag}-m")

    async with MemoryClient(make_settings("sync")) as client:
        await client.ensure_schema()  # the duplicates gone, it is created
    rows, _, _ = await neo4j.execute_query(
        "SHOW CONSTRAINTS YIELD name WHERE name = 'cypherstream_message_id' RETURN name"
    )
    assert len(rows) == 1


async def test_a_drainer_names_progress_records_that_break_their_constraint_and_stops(
    neo4j: AsyncDriver, drainer_settings: Any, tag: str
) -> None:
    await drop(neo4j, list(PROGRESS_SCHEMA))
    twice = "UNWIND [1, 2] AS n CREATE (:CypherstreamProgress {stream: $stream, n: n})"
    await neo4j.execute_query(twice, stream=f"{tag}:s")
    try:
        with pytest.raises(ConfigurationError, match="nodes already in the graph break it"):
            await asyncio.wait_for(Drainer(drainer_settings()).run(), 60)
    finally:
        await neo4j.execute_query(
            "MATCH (p:CypherstreamProgress {stream: $stream}) DELETE p", stream=f"{tag}:s"
        )
