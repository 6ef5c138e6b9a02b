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


# Rewritten forms: a property-map parameter, scoped and unscoped subqueries, a literal
# LIMIT and a dropped RETURN, each reading what the rows before it wrote.
REWRITTEN = [
    "CREATE (n:$L $props) WITH n MATCH (c:$L {id: 'c'}) SET c.log = c.log + [n.k]",
    "MATCH (c:$L {id: 'c'}) CALL (c) { SET c.v = c.v + $d } RETURN c.v",
    "MATCH (c:$L {id: 'c'}) CALL { WITH c SET c.log = c.log + [$d] }",
    "MATCH (n:$L) WHERE n.k IS NOT NULL WITH n ORDER BY n.k DESC LIMIT 1 "
    "SET n.seen = coalesce(n.seen, 0) + $d RETURN n.k AS k",
]


async def test_rewritten_forms_end_as_one_by_one_execution(neo4j: AsyncDriver, graph: Any) -> None:
    rng = random.Random(7)
    picks = [rng.choice(REWRITTEN) for _ in range(60)]

    def writes(label: str) -> list[tuple[int, str, dict[str, Any]]]:
        return [
            (n, query.replace("$L", label), {"props": {"k": n, "s": f"s{n}"}, "d": n})
            for n, query in enumerate(picks)
        ]

    one, grouped = f"{graph.label}_one", f"{graph.label}_grouped"
    try:
        expected = await _run(neo4j, one, [(q, p) for _, q, p in writes(one)])
        statements = group(writes(grouped))
        assert len(statements) == 1  # every form was rewritten
        assert await _run(neo4j, grouped, [(s.text, s.params) for s in statements]) == expected
        found, _, _ = await neo4j.execute_query(
            f"MATCH (n:{grouped}) WHERE n.k IS NOT NULL RETURN n.s AS s, n.seen AS seen "
            "ORDER BY n.k"
        )
        expected_nodes, _, _ = await neo4j.execute_query(
            f"MATCH (n:{one}) WHERE n.k IS NOT NULL RETURN n.s AS s, n.seen AS seen ORDER BY n.k"
        )
        assert [r.data() for r in found] == [r.data() for r in expected_nodes]
    finally:
        for label in (one, grouped):
            await neo4j.execute_query(f"MATCH (n:{label}) DETACH DELETE n")
