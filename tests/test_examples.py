"""Every example runs, at a small size, and its own verification against Neo4j passes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import run_python

ROOT = Path(__file__).resolve().parents[1]


async def _run(script: str, *args: str, env: dict[str, str]) -> str:
    return await run_python(ROOT / script, *args, env=env)


@pytest.fixture
def example_env(env: dict[str, str]) -> dict[str, str]:
    return {**env, "COLUMNS": "200", "TERM": "dumb"}


async def test_the_agent_fleet_demo_applies_every_record_and_says_so(
    example_env: dict[str, str],
) -> None:
    output = await _run(
        "examples/agent-fleet/fleet.py",
        *("--agents", "2", "--sessions", "2", "--turns", "3", "--drainers", "2"),
        *("--think-ms", "5"),
        env=example_env,
    )

    assert "verified: all records are in Neo4j" in output
    assert "messages    in Neo4j: 48 (expected 48)" in output
    assert "mentions    in Neo4j: 24 (expected 24)" in output
    assert "drainer status" in output
    assert re.search(r"trace of the first turn of \S+: [0-9a-f]{32} ", output)


async def test_the_buffered_writes_example_shows_each_behaviour_and_verifies(
    example_env: dict[str, str],
) -> None:
    output = await _run("examples/buffered-writes/example.py", "--turns", "6", env=example_env)

    assert "queued after flush:  0" in output
    deepest = re.search(r"the queue never held more than (\d+) \(the limit is 4\)", output)
    assert deepest is not None and 1 <= int(deepest.group(1)) <= 4
    assert "invalid write: 1 in write_errors" in output
    assert "in Neo4j: 19 messages, 19 mentions (expected 19 of each)" in output
    assert output.rstrip().endswith("verified")


async def test_the_agent_memory_example_records_both_conversations_in_order(
    example_env: dict[str, str], agent_memory_neo4j: Any
) -> None:
    pytest.importorskip("neo4j_agent_memory", reason="neo4j-agent-memory needs Python >= 3.11")
    target = agent_memory_neo4j
    own = {"NEO4J_URI": target.uri, "NEO4J_USERNAME": target.username,
           "NEO4J_PASSWORD": target.password}  # fmt: skip
    output = await _run(
        "examples/agent-memory/example.py", "--turns", "5", env={**example_env, **own}
    )

    assert "in Neo4j (sync): 5 messages in order: True, 5 mentions" in output
    assert "in Neo4j (buffered): 5 messages in order: True, 5 mentions" in output
    assert output.rstrip().endswith("verified")
