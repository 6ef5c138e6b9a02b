"""Named queries: drainers that run only the Cypher they were given, by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cypherstream import MemoryClient
from cypherstream.drainer.dlq import list_dead_letters
from cypherstream.shared.errors import ConfigurationError, UnknownQuery
from cypherstream.shared.queries import QueryBook


@pytest.fixture
def query_file(tmp_path: Path, graph: Any) -> Path:
    path = tmp_path / "queries.yaml"
    path.write_text(
        f"add_note: |\n  CREATE (:{graph.label} {{id: $id, text: $text}})\n"
        f"count_note: >\n  MATCH (n:{graph.label} {{id: $id}})\n"
        "  SET n.seen = coalesce(n.seen, 0) + 1\n"
    )
    return path


async def test_an_allow_list_drainer_runs_named_queries_and_refuses_raw_cypher(
    query_file: Path, start_drainer: Any, make_settings: Any, graph: Any, redis: Any,
    streams: Any,
) -> None:  # fmt: skip
    await start_drainer(queries=query_file, allow_raw_cypher=False)

    async with MemoryClient(make_settings("redis")) as client:
        await client.buffered.submit_named("add_note", {"id": 1, "text": "hello"})
        await client.buffered.submit_named("count_note", {"id": 1})
        await client.buffered.submit(f"MATCH (n:{graph.label}) DETACH DELETE n")
        await client.buffered.submit_named("no_such_query", {"id": 1})
        await client.buffered.submit_named("count_note", {"id": 1})
        await client.flush()

        assert [e.code for e in client.write_errors] == ["QueryNotAllowed", "UnknownQuery"]

    assert await graph.query("MATCH (n:$$) RETURN n.text AS t, n.seen AS s") == [
        {"t": "hello", "s": 2}
    ]
    letters = await list_dead_letters(redis, streams.keyspace())
    assert [(d.reason, d.named) for d in letters] == [
        ("not-allowed", False),
        ("unknown-query", True),
    ]


async def test_typed_records_are_built_in_named_queries_an_allow_list_drainer_runs(
    start_drainer: Any, make_settings: Any, neo4j: Any, tag: str
) -> None:
    await start_drainer(allow_raw_cypher=False)
    session = f"{tag}-s"
    try:
        async with MemoryClient(make_settings("redis")) as client:
            message = await client.buffered.add_message(session, "user", "hi")
            await client.buffered.link_mention(session, message.id, f"{tag}-e")
            await client.flush()
            assert client.write_errors == []
        records, _, _ = await neo4j.execute_query(
            "MATCH (:Session {id: $s})-[:HAS_MESSAGE]->(m)-[:MENTIONS]->(e) RETURN e.name AS e",
            s=session,
        )
        assert [r["e"] for r in records] == [f"{tag}-e"]
    finally:
        await neo4j.execute_query(
            "MATCH (n) WHERE n.session_id = $s OR n.id = $s OR n.name = $e DETACH DELETE n",
            s=session,
            e=f"{tag}-e",
        )


@pytest.mark.parametrize("local_mode", ["sync", "embedded"])
async def test_local_modes_run_named_queries_from_the_producers_file(
    local_mode: str, query_file: Path, make_settings: Any, graph: Any, open_client: Any
) -> None:
    async with open_client(make_settings(local_mode, queries=query_file)) as client:
        await client.buffered.submit_named("add_note", {"id": 7, "text": "local"})
        await client.flush()

    assert await graph.query("MATCH (n:$$) RETURN n.id AS id") == [{"id": 7}]


async def test_an_unknown_name_the_producer_can_check_is_refused_at_submit(
    query_file: Path, make_settings: Any, redis: Any, streams: Any
) -> None:
    async with MemoryClient(make_settings("redis", queries=query_file)) as client:
        with pytest.raises(UnknownQuery, match="no_such_query"):
            await client.buffered.submit_named("no_such_query", {})
        with pytest.raises(UnknownQuery):
            await client.buffered.submit_named("cypherstream.no_such_record", {})

        assert await client.buffered.pending() == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a list\n", "mapping of names"),
        ("cypherstream.message: CREATE ()\n", "reserved"),
        ("'bad name!': CREATE ()\n", "not valid"),
        ("empty: ''\n", "non-empty"),
        ("a: [unclosed\n", "not valid YAML"),
    ],
)
def test_a_bad_query_file_is_a_configuration_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "queries.yaml"
    path.write_text(text)

    with pytest.raises(ConfigurationError, match=message):
        QueryBook.load(path)


async def test_a_drainer_with_a_bad_query_file_refuses_to_start(
    tmp_path: Path, start_drainer: Any
) -> None:
    path = tmp_path / "queries.yaml"
    path.write_text("- not a mapping\n")

    with pytest.raises(ConfigurationError, match="mapping"):
        await start_drainer(queries=path)
