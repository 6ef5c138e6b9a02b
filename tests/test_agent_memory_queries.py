"""neo4j-agent-memory's own write queries batch, and batched they leave the graph they
leave one by one (a differential test on the real Neo4j, each run rolled back)."""

from __future__ import annotations

import random
import re
from typing import Any

import pytest
from neo4j import AsyncDriver
from neo4j import time as ntime

from cypherstream.drainer.unwind import Rewrite, group, rewrite

queries = pytest.importorskip(
    "neo4j_agent_memory.graph.queries", reason="neo4j-agent-memory needs Python >= 3.11"
)

_UPDATES = re.compile(r"\b(CREATE|MERGE|SET|DELETE|REMOVE)\b")
_SCHEMA = re.compile(r"^\s*(CREATE|DROP)\s+(INDEX|CONSTRAINT|VECTOR|FULLTEXT)\b", re.IGNORECASE)


def _constants() -> dict[str, str]:
    return {
        name: value
        for name, value in vars(queries).items()
        if name.isupper() and isinstance(value, str) and _UPDATES.search(value)
    }


#: Data writes: everything that changes the graph but schema commands, which Neo4j
#: runs in transactions of their own and never with other writes.
WRITES = {name: text for name, text in _constants().items() if not _SCHEMA.match(text)}
#: Parameters that are lists of maps, not scalars or lists of them.
_MAP_PARAMETERS = {"messages"}
BATCHED = sorted(
    name
    for name, text in WRITES.items()
    if isinstance(form := rewrite(text), Rewrite) and not form.params & _MAP_PARAMETERS
)


def test_nearly_every_write_query_of_neo4j_agent_memory_batches() -> None:
    refused = {name: rewrite(text) for name, text in WRITES.items()}
    refused = {name: form for name, form in refused.items() if not isinstance(form, Rewrite)}

    assert len(WRITES) >= 40, "neo4j-agent-memory's queries moved: update this test"
    assert (len(WRITES) - len(refused)) / len(WRITES) >= 0.95, refused


# -- the differential test ----------------------------------------------------------------

_LABELS = ("Conversation", "Message", "Entity", "ReasoningTrace", "ReasoningStep", "ToolCall",
           "Tool", "Preference", "Fact", "Schema", "Ontology", "OntologyVersion", "Extractor",
           "User")  # fmt: skip
_FLOATS = {"confidence", "latitude", "longitude"}
_INTS = {"start_pos", "end_pos", "step_number", "revision", "total", "processed", "errored",
         "extraction_time_ms", "duration_ms"}  # fmt: skip
_BOOLS = {"derived", "success", "is_active"}
_NULLABLE = {"valid_from", "valid_until", "completed_at", "error", "error_message"}
# Queries that change what exists: their `id` and `name` name something new.
_MAKES = ("CREATE_", "RECORD_SCHEMA")


def _value(query: str, param: str, n: int, tag: str, rng: random.Random) -> object:
    """A parameter value for the `n`th write of `query`: ids and names of the seeded
    graph (or new ones where the query creates), typed by the parameter's name."""
    if "embedding" in param:
        return [round(rng.random(), 3) for _ in range(4)]
    if param in _FLOATS:
        return round(rng.random(), 3)
    if param in _INTS:
        return rng.randrange(100)
    if param in _BOOLS:
        return rng.random() < 0.5
    if param in _NULLABLE:
        return None
    new = query.startswith(_MAKES)
    if param == "id" or param.endswith("_id"):
        return f"{tag}-{query}-{n}" if new and param == "id" else f"{tag}-k{rng.randrange(3)}"
    if param.endswith("name") or param in ("alias", "subject", "object", "type"):
        return f"{tag}-{query}-name{n}" if new else f"{tag}-n{rng.randrange(3)}"
    if param in ("role", "status"):
        return rng.choice(["user", "assistant", "success", "error"])
    return f"{tag}-{param}-{n}"


# Three nodes of each label, and conversations whose messages form one chain in time
# order (as the library leaves them: one tail for the next message to follow).
_SEED = """
UNWIND $labels AS label
UNWIND range(0, 2) AS i
CALL (label, i) {
  CREATE (n:$(label) {id: $tag + '-k' + i, name: $tag + '-n' + i, canonical_name: $tag + '-n' + i,
                     session_id: $tag + '-k' + i, ontology_id: $tag + '-k' + i, type: 'T',
                     timestamp: datetime({epochSeconds: 1000000 + i})})
}
WITH DISTINCT i
MATCH (c:Conversation {id: $tag + '-k' + i})
UNWIND range(0, 2) AS j
MATCH (m:Message {id: $tag + '-k' + j})
MERGE (c)-[:HAS_MESSAGE]->(m)
WITH DISTINCT c
MATCH (m0:Message {id: $tag + '-k0'}), (m1:Message {id: $tag + '-k1'}),
      (m2:Message {id: $tag + '-k2'})
MERGE (c)-[:FIRST_MESSAGE]->(m0)
MERGE (m0)-[:NEXT_MESSAGE]->(m1)
MERGE (m1)-[:NEXT_MESSAGE]->(m2)
"""

_TAGGED = """
MATCH (n) WHERE any(k IN keys(n) WHERE n[k] IS :: STRING AND n[k] CONTAINS $tag)
WITH collect(n) AS tagged
UNWIND tagged AS n
OPTIONAL MATCH (n)--(m)
WITH tagged, collect(DISTINCT m) AS near
UNWIND tagged + near AS n
WITH DISTINCT n WHERE n IS NOT NULL
RETURN elementId(n) AS id, labels(n) AS labels, properties(n) AS props
"""
_EDGES = """
MATCH (a)-[r]->(b) WHERE elementId(a) IN $ids OR elementId(b) IN $ids
RETURN elementId(a) AS a, type(r) AS type, properties(r) AS props, elementId(b) AS b
"""


def _stable(props: dict[str, Any]) -> str:
    """Properties without transaction timestamps, in a form that sorts."""
    kept = {k: v for k, v in props.items() if not isinstance(v, (ntime.DateTime, ntime.Date))}
    return repr(sorted(kept.items()))


async def _graph_after(
    neo4j: AsyncDriver, tag: str, statements: list[tuple[str, dict[str, Any]]]
) -> tuple[list[str], list[str]] | str:
    """The tagged part of the graph after the seed and `statements`, all rolled back;
    or the error they met (a node deleted with its relationships left fails here, as
    it would fail at commit)."""
    async with neo4j.session() as session, await session.begin_transaction() as tx:
        await (await tx.run(_SEED, labels=list(_LABELS), tag=tag)).consume()
        try:
            for text, params in statements:
                await (await tx.run(text, params)).consume()
            return await _tagged(tx, tag)
        except Exception as exc:
            return type(exc).__name__
        finally:
            await tx.rollback()


async def _tagged(tx: Any, tag: str) -> tuple[list[str], list[str]]:
    nodes = [record.data() async for record in await tx.run(_TAGGED, tag=tag)]
    names = {node["id"]: f"{sorted(node['labels'])}{_stable(node['props'])}" for node in nodes}
    edges = await tx.run(_EDGES, ids=list(names))
    rels = [
        f"{names.get(r['a'], '?')}-{r['type']}{_stable(r['props'])}->{names.get(r['b'], '?')}"
        async for r in edges
    ]
    return sorted(names.values()), sorted(rels)


Writes = list[tuple[int, str, dict[str, Any]]]


async def _same_both_ways(neo4j: AsyncDriver, tag: str, writes: Writes) -> None:
    one_by_one = await _graph_after(neo4j, tag, [(text, params) for _, text, params in writes])
    statements = group(writes)
    batched = await _graph_after(neo4j, tag, [(s.text, s.params) for s in statements])

    assert any(s.kind == "unwind" for s in statements)
    assert batched == one_by_one


def _writes_of(names: list[str], count: int, tag: str, seed: int) -> Writes:
    rng = random.Random(seed)
    writes: Writes = []
    for n in range(count):
        name = names[n % len(names)]
        form = rewrite(WRITES[name])
        assert isinstance(form, Rewrite)
        params = {p: _value(name, p, n, tag, rng) for p in sorted(form.params)}
        writes.append((n, WRITES[name], params))
    return writes


@pytest.mark.parametrize("name", BATCHED)
async def test_each_write_query_batched_leaves_the_graph_it_leaves_one_by_one(
    neo4j: AsyncDriver, tag: str, name: str
) -> None:
    await _same_both_ways(neo4j, tag, _writes_of([name], 6, tag, seed=len(name)))


async def test_a_conversation_of_20_messages_chains_as_it_does_one_by_one(
    neo4j: AsyncDriver, tag: str
) -> None:
    start = [(0, WRITES["CREATE_CONVERSATION"], {"id": f"{tag}-chat", "session_id": tag,
                                                   "title": "chat"})]  # fmt: skip
    messages = [
        (
            n,
            WRITES["CREATE_MESSAGE"],
            {
                "conversation_id": f"{tag}-chat",
                "id": f"{tag}-m{n}",
                "role": "user",
                "content": f"turn {n}",
                "embedding": None,
                "metadata": None,
            },
        )
        for n in range(1, 21)
    ]
    await _same_both_ways(neo4j, tag, start + messages)
    chain = await _chain(neo4j, tag, start + messages)
    assert chain == [f"{tag}-m{n}" for n in range(1, 21)]


async def _chain(neo4j: AsyncDriver, tag: str, writes: Writes) -> list[str]:
    """The message ids in FIRST_MESSAGE / NEXT_MESSAGE order after the batched writes."""
    async with neo4j.session() as session, await session.begin_transaction() as tx:
        for statement in group(writes):
            await (await tx.run(statement.text, statement.params)).consume()
        result = await tx.run(
            "MATCH (:Conversation {id: $c})-[:FIRST_MESSAGE]->(first) "
            "MATCH path = (first)-[:NEXT_MESSAGE*0..]->(last) WHERE NOT (last)-[:NEXT_MESSAGE]->() "
            "RETURN [m IN nodes(path) | m.id] AS ids",
            c=f"{tag}-chat",
        )
        ids: list[str] = (await result.single(strict=True))["ids"]
        await tx.rollback()
    return ids


HOT_PATH = ["CREATE_MESSAGE", "CREATE_REASONING_STEP", "CREATE_TOOL_CALL",
            "LINK_TOOL_CALL_TO_MESSAGE", "LINK_MESSAGE_TO_ENTITY"]  # fmt: skip


@pytest.mark.parametrize("seed", range(3))
async def test_the_hot_path_queries_mixed_in_one_statement_match_one_by_one(
    neo4j: AsyncDriver, tag: str, seed: int
) -> None:
    writes = _writes_of(HOT_PATH, 30, tag, seed)
    random.Random(seed).shuffle(writes)
    await _same_both_ways(neo4j, tag, writes)
