"""neo4j-agent-memory's own MemoryClient, with cypherstream attached: its users keep
their code, and their writes become durable and drained by `drainer run`."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from neo4j import AsyncDriver, AsyncGraphDatabase

from cypherstream import Neo4jSettings
from cypherstream.shared.errors import ClientClosed, WriteFailed
from tests.helpers import run_to_end, wait_until

pytest.importorskip("neo4j_agent_memory", reason="neo4j-agent-memory needs Python >= 3.11")

from neo4j_agent_memory import MemoryClient as AgentMemoryClient
from neo4j_agent_memory.graph import queries

from cypherstream.agent_memory import AttachedWriter, attach
from tests.agent_memory_app import agent_memory_settings, fake_embedder

PRODUCER = Path(__file__).with_name("agent_memory_producer.py")


# -- this module's Neo4j: the library's own (see `agent_memory_neo4j`) -----------------


@pytest.fixture
def neo4j_settings(agent_memory_neo4j: Any) -> Neo4jSettings:
    target = agent_memory_neo4j
    return Neo4jSettings(uri=target.uri, username=target.username, password=target.password)


@pytest.fixture
def env(env: dict[str, str], agent_memory_neo4j: Any) -> dict[str, str]:
    return {**env, "NEO4J_URI": agent_memory_neo4j.uri,
            "NEO4J_USERNAME": agent_memory_neo4j.username,
            "NEO4J_PASSWORD": agent_memory_neo4j.password}  # fmt: skip


@pytest.fixture
async def neo4j(agent_memory_neo4j: Any) -> AsyncIterator[AsyncDriver]:
    target = agent_memory_neo4j
    async with AsyncGraphDatabase.driver(
        target.uri, auth=(target.username, target.password), notifications_min_severity="OFF"
    ) as driver:
        yield driver


@pytest.fixture
async def agent_client(env: dict[str, str]) -> AsyncIterator[Callable[[str], Any]]:
    """Open neo4j-agent-memory clients (`await agent_client("buffered")`); closed after."""
    opened: list[AgentMemoryClient[Any, Any, Any]] = []

    async def open_one(write_mode: str) -> AgentMemoryClient[Any, Any, Any]:
        client = AgentMemoryClient(
            agent_memory_settings(write_mode, env),  # type: ignore[arg-type]
            embedder=fake_embedder(),
        )
        await client.connect()
        opened.append(client)
        return client

    yield open_one
    for client in opened:
        await client.close()


def _conversation(tag: str) -> dict[str, Any]:
    return {"id": f"{tag}-chat", "session_id": tag, "title": "chat"}


def _message(tag: str, n: int) -> dict[str, Any]:
    return {"conversation_id": f"{tag}-chat", "id": f"{tag}-m{n}", "role": "user",
            "content": f"turn {n}", "embedding": [0.5] * 4, "metadata": None}  # fmt: skip


async def _chain(neo4j: AsyncDriver, tag: str) -> list[str]:
    records, _, _ = await neo4j.execute_query(
        "MATCH (:Conversation {id: $c})-[:FIRST_MESSAGE]->(first) "
        "MATCH path = (first)-[:NEXT_MESSAGE*0..]->(last) WHERE NOT (last)-[:NEXT_MESSAGE]->() "
        "RETURN [m IN nodes(path) | m.id] AS ids",
        c=f"{tag}-chat",
    )
    return list(records[0]["ids"]) if records else []


async def test_their_queries_are_queued_and_applied_in_order(
    agent_client: Any, make_settings: Any, start_drainer: Any, neo4j: AsyncDriver, tag: str
) -> None:
    await start_drainer()
    client = await agent_client("buffered")
    writer = await attach(client, make_settings("redis"))

    await client.buffered.submit(queries.CREATE_CONVERSATION, _conversation(tag))
    for n in range(5):
        await client.buffered.submit(queries.CREATE_MESSAGE, _message(tag, n))
    step = {"trace_id": f"{tag}-trace", "id": f"{tag}-step", "step_number": 1,
            "thought": "look it up", "action": "search", "observation": None,
            "embedding": None, "metadata": None}  # fmt: skip
    trace = {"id": f"{tag}-trace", "session_id": tag, "task": "answer", "task_embedding": None,
             "outcome": None, "success": None, "completed_at": None, "metadata": None}  # fmt: skip
    call = {"step_id": f"{tag}-step", "id": f"{tag}-call", "tool_name": f"{tag}-search",
            "arguments": "{}", "result": "found", "status": "success", "duration_ms": 12,
            "error": None}  # fmt: skip
    await client.buffered.submit(queries.CREATE_REASONING_TRACE, trace)
    await client.buffered.submit(queries.CREATE_REASONING_STEP, step)
    await client.buffered.submit(queries.CREATE_TOOL_CALL, call)
    assert client.buffered is writer and writer.is_buffered and writer.pending == 9
    await client.flush()

    assert writer.pending == 0 and client.write_errors == []
    assert await _chain(neo4j, tag) == [f"{tag}-m{n}" for n in range(5)]
    records, _, _ = await neo4j.execute_query(
        "MATCH (:ReasoningTrace {id: $t})-[:HAS_STEP]->(:ReasoningStep)-[:USES_TOOL]->"
        "(c:ToolCall)-[:INSTANCE_OF]->(tool:Tool) RETURN c.result AS result, tool.name AS tool",
        t=f"{tag}-trace",
    )
    assert [r.data() for r in records] == [{"result": "found", "tool": f"{tag}-search"}]


async def test_a_failing_write_surfaces_in_their_write_errors_and_on_error(
    agent_client: Any, make_settings: Any, start_drainer: Any
) -> None:
    await start_drainer()
    client = await agent_client("buffered")
    writer: AttachedWriter = await attach(client, make_settings("redis"))
    seen: list[Any] = []

    async def on_error(error: Any) -> None:
        seen.append(error)

    writer.on_error = on_error
    await client.buffered.submit("CREAT broken", {"x": 1})
    await client.flush()

    [error] = client.write_errors
    assert error.query == "CREAT broken" and error.parameters == {"x": 1}
    assert isinstance(error.error, WriteFailed)
    assert error.error.code == "Neo.ClientError.Statement.SyntaxError"
    await wait_until(lambda: _true(len(seen) == 1), timeout=10, what="on_error to be awaited")
    assert seen[0].error.code == error.error.code


async def _true(value: bool) -> bool:
    return value


async def test_sync_mode_still_runs_each_write_at_once(
    agent_client: Any, neo4j: AsyncDriver, tag: str
) -> None:
    client = await agent_client("sync")
    writer = await attach(client)

    await client.buffered.submit(queries.CREATE_CONVERSATION, _conversation(tag))

    assert not writer.is_buffered and writer.pending == 0
    records, _, _ = await neo4j.execute_query(
        "MATCH (c:Conversation {id: $c}) RETURN c.title AS t", c=f"{tag}-chat"
    )
    assert [r["t"] for r in records] == ["chat"]
    with pytest.raises(Exception, match="Invalid input"):
        await client.buffered.submit("CREAT broken")


async def test_conversations_in_sessions_of_their_own_drain_each_in_order(
    agent_client: Any, make_settings: Any, start_drainer: Any, neo4j: AsyncDriver, redis: Any,
    streams: Any, tag: str,
) -> None:  # fmt: skip
    client = await agent_client("buffered")
    writer = await attach(client, make_settings("redis"))
    tags = [f"{tag}a", f"{tag}b"]

    async def converse(conversation: str) -> None:
        with writer.session(conversation):
            await client.buffered.submit(queries.CREATE_CONVERSATION, _conversation(conversation))
            for n in range(4):
                await client.buffered.submit(queries.CREATE_MESSAGE, _message(conversation, n))

    await asyncio.gather(*(converse(t) for t in tags))
    keys = streams.keyspace()
    assert [await redis.xlen(keys.stream(t)) for t in tags] == [5, 5]  # no drainer yet
    await start_drainer()
    await client.flush()

    for t in tags:
        assert await _chain(neo4j, t) == [f"{t}-m{n}" for n in range(4)]


async def test_after_close_the_writer_refuses_writes(
    agent_client: Any, make_settings: Any, start_drainer: Any
) -> None:
    await start_drainer()
    client = await agent_client("buffered")
    writer = await attach(client, make_settings("redis"))
    await client.close()

    with pytest.raises(ClientClosed):
        await writer.submit(queries.CREATE_CONVERSATION, {"id": "x", "session_id": "x"})


async def test_a_producer_killed_after_submit_loses_nothing(
    env: dict[str, str], start_drainer: Any, neo4j: AsyncDriver, tag: str
) -> None:
    child_env = {**env, "PYTHONPATH": str(Path.cwd())}
    ended = await run_to_end(
        sys.executable, str(PRODUCER), f"{tag}-chat", "20", env=child_env, timeout=120
    )
    assert ended.code == 9 and "submitted" in ended.stdout, ended.stderr[-2000:]

    await start_drainer()

    async def applied() -> bool:
        return len(await _chain(neo4j, tag)) == 20

    await wait_until(applied, timeout=60, what="the dead producer's 20 messages")
    assert await _chain(neo4j, tag) == [f"{tag}-chat-{n}" for n in range(20)]
