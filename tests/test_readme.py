"""The README's code is code that runs: every python block, as written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from neo4j import AsyncDriver

from cypherstream import Neo4jSettings
from tests.helpers import run_python

ROOT = Path(__file__).resolve().parents[1]


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


async def _run(code: str, env: dict[str, str], tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(code)
    assert "failed:" not in await run_python(script, env=env, timeout=120)


async def _sessions(neo4j: AsyncDriver, tag: str) -> dict[str, int]:
    records, _, _ = await neo4j.execute_query(
        "MATCH (s:Session)-[]->(n) WHERE s.id STARTS WITH $tag "
        "RETURN labels(n)[0] AS label, count(n) AS c",
        tag=tag,
    )
    return {r["label"]: r["c"] for r in records}


async def _forget(neo4j: AsyncDriver, tag: str) -> None:
    await neo4j.execute_query(
        "MATCH (n) WHERE n.session_id STARTS WITH $tag OR n.id STARTS WITH $tag "
        "OR n.name STARTS WITH $tag DETACH DELETE n",
        tag=tag,
    )


def test_the_readme_shows_the_quick_start_the_typed_records_and_the_blocking_client() -> None:
    blocks = _blocks()

    assert len(blocks) == 4
    assert "client.buffered.submit" in blocks[0]
    assert "add_message" in blocks[1] and "ensure_schema" in blocks[1]
    assert "SyncMemoryClient" in blocks[2]
    assert "attach(client)" in blocks[3]


async def test_the_quick_start_runs_and_leaves_its_message_in_neo4j(
    env: dict[str, str], drainer: Any, graph: Any, tmp_path: Path
) -> None:
    await _run(_blocks()[0].replace(":Message", f":{graph.label}"), env, tmp_path)

    assert await graph.query("MATCH (m:$$) RETURN m.content AS c") == [{"c": "Hello"}]


async def test_the_typed_records_example_builds_its_graph(
    env: dict[str, str], drainer: Any, neo4j: AsyncDriver, tag: str, tmp_path: Path
) -> None:
    try:
        await _run(_blocks()[1].replace('"agent-7"', f'"{tag}-agent-7"'), env, tmp_path)

        assert await _sessions(neo4j, tag) == {"Message": 2, "ReasoningStep": 1, "ToolCall": 1}
    finally:
        await _forget(neo4j, tag)


async def test_the_blocking_client_example_runs(
    env: dict[str, str], drainer: Any, neo4j: AsyncDriver, tag: str, tmp_path: Path
) -> None:
    code = _blocks()[2].replace('"agent-8"', f'"{tag}-agent-8"').replace(":Tool ", f":{tag} ")
    try:
        await _run(code, env, tmp_path)

        assert await _sessions(neo4j, tag) == {"Message": 1}
        records, _, _ = await neo4j.execute_query(f"MATCH (t:{tag}) RETURN t.name AS name")
        assert [r["name"] for r in records] == ["search"]
    finally:
        await _forget(neo4j, tag)
        await neo4j.execute_query(f"MATCH (t:{tag}) DELETE t")


async def test_the_agent_memory_example_records_its_conversation(
    env: dict[str, str], agent_memory_neo4j: Any, start_drainer: Any, tag: str, tmp_path: Path
) -> None:
    pytest.importorskip("neo4j_agent_memory", reason="neo4j-agent-memory needs Python >= 3.11")
    target = agent_memory_neo4j
    own = Neo4jSettings(uri=target.uri, username=target.username, password=target.password)
    await start_drainer(neo4j=own)
    code = _blocks()[3].replace('"chat-7', f'"{tag}-chat-7')

    await _run(code, {**env, "NEO4J_URI": target.uri, "NEO4J_PASSWORD": target.password},
               tmp_path)  # fmt: skip

    async with own.driver() as neo4j:
        records, _, _ = await neo4j.execute_query(
            "MATCH (:Conversation {id: $c})-[:FIRST_MESSAGE]->(m) RETURN m.content AS content",
            c=f"{tag}-chat-7",
        )
    assert [r["content"] for r in records] == ["Hello"]
