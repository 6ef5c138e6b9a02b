"""Typed memory records build the graph documented in docs/memory-graph.md, in every mode."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pydantic
import pytest
import pytest_asyncio
from neo4j import AsyncDriver

from cypherstream import SCHEMA, Message, ToolCall
from cypherstream.shared.errors import InvalidSessionId


@pytest_asyncio.fixture
async def session(neo4j: AsyncDriver, tag: str) -> AsyncIterator[str]:
    """A session id unique to this test; its records and entities are removed afterwards."""
    yield f"{tag}-session"
    await neo4j.execute_query(
        "MATCH (n) WHERE n.session_id STARTS WITH $tag OR n.id STARTS WITH $tag "
        "OR n.name STARTS WITH $tag DETACH DELETE n",
        tag=tag,
    )


async def test_a_turn_of_typed_records_builds_the_documented_graph(
    mode: str, make_settings: Any, open_client: Any, session: str, tag: str, neo4j: AsyncDriver
) -> None:
    async with open_client(make_settings(mode)) as client:
        await client.ensure_schema()
        asked = await client.buffered.add_message(session, "user", "Is Anthem in stock?")
        await client.buffered.add_reasoning_step(
            session, "look the product up", step=1, message_id=asked.id
        )
        await client.buffered.record_tool_call(
            session, "inventory", {"sku": "A-1"}, result={"stock": 3}, message_id=asked.id
        )
        await client.buffered.link_mention(session, asked.id, f"{tag}-Anthem", "product")
        await client.buffered.add_message(session, "assistant", "Yes, 3 left.")
        await client.flush()
        assert client.write_errors == []

    records, _, _ = await neo4j.execute_query(
        "MATCH (s:Session {id: $s}) "
        "OPTIONAL MATCH (s)-[:HAS_MESSAGE]->(m:Message) "
        "WITH s, collect(m.role) AS roles "
        "MATCH (s)-[:HAS_TOOL_CALL]->(t:ToolCall)<-[:CALLED]-(asked:Message {role: 'user'}) "
        "MATCH (s)-[:HAS_STEP]->(r:ReasoningStep)-[:ABOUT]->(asked) "
        "MATCH (asked)-[:MENTIONS]->(e:Entity) "
        "RETURN roles, t.name AS tool, t.arguments AS arguments, t.result AS result, "
        "r.step AS step, e.name AS entity, e.type AS type",
        s=session,
    )
    assert len(records) == 1
    row = records[0]
    assert sorted(row["roles"]) == ["assistant", "user"]
    assert (row["tool"], row["step"], row["type"]) == ("inventory", 1, "product")
    assert json.loads(row["arguments"]) == {"sku": "A-1"}
    assert json.loads(row["result"]) == {"stock": 3}
    assert row["entity"] == f"{tag}-Anthem"


async def test_a_record_written_twice_is_stored_once(
    mode: str, make_settings: Any, session: str, neo4j: AsyncDriver
) -> None:
    from cypherstream import MemoryClient

    message = Message(session_id=session, role="user", content="hello")
    async with MemoryClient(make_settings(mode)) as client:
        await client.buffered.add(message)
        await client.buffered.add(message)
        await client.flush()

    records, _, _ = await neo4j.execute_query(
        "MATCH (:Session {id: $s})-[r:HAS_MESSAGE]->(m:Message) RETURN count(r) AS c",
        s=session,
    )
    assert records[0]["c"] == 1


async def test_ensure_schema_creates_the_uniqueness_constraints(
    make_settings: Any, neo4j: AsyncDriver
) -> None:
    from cypherstream import MemoryClient

    async with MemoryClient(make_settings("sync")) as client:
        await client.ensure_schema()
        await client.ensure_schema()  # idempotent

    records, _, _ = await neo4j.execute_query(
        "SHOW CONSTRAINTS YIELD name WHERE name STARTS WITH 'cypherstream_' RETURN name"
    )
    wanted = {statement.split()[2] for statement in SCHEMA}
    assert wanted <= {r["name"] for r in records}


def test_structured_fields_are_stored_as_json_text() -> None:
    call = ToolCall(session_id="s", name="search", arguments={"q": "x", "n": 2}, result=[1, 2])

    query, params = call.write()

    assert json.loads(params["arguments"]) == {"q": "x", "n": 2}
    assert json.loads(params["result"]) == [1, 2]
    assert "$arguments" in query


def test_a_record_refuses_fields_it_does_not_know() -> None:
    with pytest.raises(pydantic.ValidationError, match="colour"):
        Message(session_id="s", role="user", content="hi", colour="red")  # type: ignore[call-arg]


def test_a_record_refuses_an_unknown_role() -> None:
    with pytest.raises(pydantic.ValidationError, match="role"):
        Message(session_id="s", role="robot", content="hi")  # type: ignore[arg-type]


async def test_a_record_for_an_unsafe_session_id_is_refused_at_submit(client: Any) -> None:
    with pytest.raises(InvalidSessionId):
        await client.buffered.add_message("bad session id}", "user", "hi")
