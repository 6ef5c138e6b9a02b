"""Grouped statements leave Neo4j exactly as the same writes run one by one."""

from __future__ import annotations

import random
from typing import Any

from neo4j import AsyncDriver

from cypherstream.drainer.unwind import group

# Each query reads what the others write, so any reordering shows in the result.
STEP = "MATCH (c:$L {id: 'c'}) WHERE c.v = $i - 1 SET c.v = $i"
LOG = "MATCH (c:$L {id: 'c'}) SET c.log = c.log + [c.v]"
TAG = "MATCH (c:$L {id: 'c'}) CREATE (c)-[:T]->(:$L {at: c.v, n: $n})"
COUNT = "MATCH (t:$L) WITH count(t) AS k MATCH (c:$L {id: 'c'}) SET c.log = c.log + [k + $n]"
ALONE = "MATCH (c:$L {id: 'c'}) SET c.log = c.log + [-1] RETURN c.v AS v"


def _writes(label: str, seed: int) -> list[tuple[int, str, dict[str, Any]]]:
    rng = random.Random(seed)
    writes, step = [], 0
    for n in range(300):
        query = rng.choice([STEP, STEP, LOG, TAG, COUNT, ALONE])
        params: dict[str, Any] = {"n": n}
        if query is STEP:
            params["i"] = step
            step += 1
        writes.append((n, query.replace("$L", label), params))
    return writes


async def _state(neo4j: AsyncDriver, label: str) -> Any:
    records, _, _ = await neo4j.execute_query(
        f"MATCH (c:{label} {{id: 'c'}}) OPTIONAL MATCH (c)-[:T]->(t) "
        "WITH c, t ORDER BY t.n RETURN c.v AS v, c.log AS log, collect([t.n, t.at]) AS tags"
    )
    return dict(records[0])


async def _run(neo4j: AsyncDriver, label: str, statements: list[tuple[str, Any]]) -> Any:
    await neo4j.execute_query(f"CREATE (:{label} {{id: 'c', v: -1, log: []}})")

    async def work(tx: Any) -> None:
        for text, params in statements:
            await (await tx.run(text, params)).consume()

    async with neo4j.session() as session:
        await session.execute_write(work)
    return await _state(neo4j, label)


async def test_mixed_dependent_writes_end_as_one_by_one_execution(
    neo4j: AsyncDriver, graph: Any
) -> None:
    one, grouped = f"{graph.label}_one", f"{graph.label}_grouped"
    try:
        for seed in range(3):
            expected = await _run(
                neo4j, f"{one}{seed}", [(q, p) for _, q, p in _writes(f"{one}{seed}", seed)]
            )
            statements = group(_writes(f"{grouped}{seed}", seed))
            assert len(statements) < 130  # it did group
            pairs = [(s.text, s.params) for s in statements]
            assert await _run(neo4j, f"{grouped}{seed}", pairs) == expected
    finally:
        for seed in range(3):
            for label in (f"{one}{seed}", f"{grouped}{seed}"):
                await neo4j.execute_query(f"MATCH (n:{label}) DETACH DELETE n")
