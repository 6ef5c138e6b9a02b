"""Which writes may share one UNWIND statement (pure functions: no servers)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cypherstream.drainer.unwind import (
    COLUMNS,
    COUNT,
    MAX_QUERIES,
    QUERIES,
    Rewrite,
    Unbatched,
    group,
    over_rows,
    rewrite,
)

CREATE = "CREATE (:A {i: $i})"


def rewritten(query: str) -> Rewrite:
    """`rewrite(query)`, which must batch it."""
    done = rewrite(query)
    assert isinstance(done, Rewrite), done
    return done


def test_parameters_become_row_fields_but_strings_and_comments_stay() -> None:
    done = rewritten("MERGE (n {id: $id}) SET n.s = '$no', n.t = \"$no\" // $no\nSET n.v = $v")

    assert "cs_row.`id`" in done.inner and "cs_row.`v`" in done.inner
    assert "'$no'" in done.inner and '"$no"' in done.inner and "// $no\n" in done.inner
    assert done.params == {"id", "v"}


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("MATCH (n) RETURN n", "return-value"),
        ("CREATE (n) WITH n CALL (n) { RETURN n AS m } RETURN m", "return-value"),
        ("MATCH (a) SET a.x = 1 WITH a WHERE a.ok IS NULL RETURN 1 / 0", "return-value"),
        ("MATCH (a) SET a.x = 1 RETURN toInteger(a.y) AS y", "return-value"),
        ("MATCH (n) CALL (n) { DELETE n } IN TRANSACTIONS", "in-transactions"),
        ("CREATE INDEX i FOR (n:A) ON (n.x)", "schema"),
        ("CREATE CONSTRAINT c FOR (n:A) REQUIRE n.x IS UNIQUE", "schema"),
        ("MATCH (n) WITH n LIMIT $n SET n.x = 1", "limit-parameter"),
        ("MATCH (n) WITH n SKIP toInteger($n) SET n.x = 1", "limit-parameter"),
        ("USE other CREATE ()", "administration"),
        ("CREATE (:A {s: 'unterminated})", "unparsable"),
        ("CREATE (:A {s: [1, 2})", "unparsable"),
        ("CREATE (); CREATE ()", "several-statements"),
        ("CREATE (cs_row)", "reserved-name"),
        ("CREATE (:A) UNION CREATE (:B)", "union"),
        ("MATCH (n) CALL { WITH n CREATE (:A) UNION WITH n CREATE (:B) }", "union"),
        ("CALL db.awaitIndexes()", "procedure-call"),
        (
            "MATCH (n) CALL apoc.create.addLabels(n, [$l]) YIELD node SET node.x = 1",
            "procedure-call",
        ),
        ("MERGE (n:A $props)", "merge-properties"),
    ],
)
def test_queries_that_could_behave_differently_are_never_wrapped(query: str, reason: str) -> None:
    assert rewrite(query) == Unbatched(reason)


@pytest.mark.parametrize(
    ("query", "inner"),
    [
        ("MERGE (m:M {id: $id}) SET m.x = 1 RETURN m", "MERGE (m:M {id: cs_row.`id`}) SET m.x = 1"),
        (
            "MATCH (m {id: $id}) DETACH DELETE m RETURN count(*) AS n ORDER BY n LIMIT $k",
            "MATCH (m {id: cs_row.`id`}) DETACH DELETE m",
        ),
        (
            "MATCH (v {id: $id}) SET v.on = true WITH v, count(*) AS c RETURN v, c",
            "MATCH (v {id: cs_row.`id`}) SET v.on = true",
        ),
        (
            "MATCH (c) CALL (c) { CREATE (c)-[:R]->(:N {v: $v}) } RETURN c",
            "MATCH (c) CALL (cs_row, c) { CREATE (c)-[:R]->(:N {v: cs_row.`v`}) }",
        ),
    ],
)
def test_a_trailing_return_and_the_reads_before_it_are_dropped(query: str, inner: str) -> None:
    done = rewritten(query)

    assert done.inner == inner


def test_a_literal_limit_stays_and_applies_per_row() -> None:
    done = rewritten("MATCH (c {id: $c}) WITH c ORDER BY c.t DESC LIMIT 1 SET c.n = $n")

    assert "WITH cs_row, c ORDER BY c.t DESC LIMIT 1 SET c.n = cs_row.`n`" in done.inner


@pytest.mark.parametrize(
    ("query", "inner"),
    [
        (
            "MATCH (a) CALL (a) { SET a.x = $x }",
            "MATCH (a) CALL (cs_row, a) { SET a.x = cs_row.`x` }",
        ),
        ("CALL () { CREATE (:A {x: $x}) }", "CALL (cs_row) { CREATE (:A {x: cs_row.`x`}) }"),
        ("CALL (*) { CREATE (:A {x: $x}) }", "CALL (*) { CREATE (:A {x: cs_row.`x`}) }"),
        ("CALL { CREATE (:A {x: $x}) }", "CALL { WITH cs_row CREATE (:A {x: cs_row.`x`}) }"),
        (
            "MATCH (a) CALL { WITH a SET a.x = $x }",
            "MATCH (a) CALL { WITH cs_row, a SET a.x = cs_row.`x` }",
        ),
        (
            "MATCH (a) CALL (a) { SET a.x = 1 UNION SET a.y = $y }",
            "MATCH (a) CALL (cs_row, a) { SET a.x = 1 UNION SET a.y = cs_row.`y` }",
        ),
    ],
)
def test_subqueries_bring_the_row_into_scope(query: str, inner: str) -> None:
    done = rewritten(query)

    assert done.inner == inner


@pytest.mark.parametrize(
    ("query", "inner"),
    [
        ("CREATE (n:L $props)", "CREATE (n:L ) SET n = cs_row.`props`"),
        (
            "CREATE (:L $p) SET x.y = $y",
            "CREATE (cs_v0:L ) SET cs_v0 = cs_row.`p` SET x.y = cs_row.`y`",
        ),
        (
            "MATCH (a {id: $a}) CREATE (a)-[r:T $rel]->(b:B $node) RETURN r",
            "MATCH (a {id: cs_row.`a`}) CREATE (a)-[r:T ]->(b:B ) SET r = cs_row.`rel` "
            "SET b = cs_row.`node`",
        ),
        (
            "FOREACH (x IN $xs | CREATE (n:L $p)) SET m.z = 1",
            "FOREACH (x IN cs_row.`xs` | CREATE (n:L ) SET n = cs_row.`p` ) SET m.z = 1",
        ),
    ],
)
def test_a_property_map_parameter_of_create_becomes_a_set(query: str, inner: str) -> None:
    done = rewritten(query)

    assert " ".join(done.inner.split()) == inner


def test_each_with_projection_keeps_the_row_in_scope_but_string_operators_stay() -> None:
    done = rewritten(
        "MATCH (n) WHERE n.id STARTS WITH $p WITH DISTINCT n WITH * "
        "MATCH (m) WHERE m.id ENDS WITH 'x' WITH m, count(n) AS c SET m.c = c + $x"
    )

    assert "STARTS WITH cs_row.`p`" in done.inner and "ENDS WITH 'x'" in done.inner
    assert "WITH DISTINCT cs_row, n WITH * " in done.inner
    assert "WITH cs_row, m, count(n)" in done.inner


@pytest.mark.parametrize(
    "query",
    [
        "MERGE (m:Message {id: $id}) SET m.role = $role, m.user = $user",
        "MATCH (i:Index {limit: $limit}) SET i.show = true",
        "MATCH (u)-[:USER]->(r:Role) SET r.n = $skip",
    ],
)
def test_names_that_look_like_keywords_do_not_stop_a_rewrite(query: str) -> None:
    assert isinstance(rewrite(query), Rewrite)


def test_consecutive_writes_of_one_query_share_a_statement_in_order() -> None:
    writes = [(n, CREATE, {"i": n}) for n in range(3)] + [(3, "MATCH (n) RETURN n", {})]

    statements = group(writes)

    assert [s.items for s in statements] == [[0, 1, 2], [3]]
    assert statements[0].params == {COUNT: 3, COLUMNS: [[0, 1, 2]]}
    assert statements[0].kind == "unwind" and statements[0].unbatched is None
    assert (statements[1].text, statements[1].params) == ("MATCH (n) RETURN n", {})
    assert (statements[1].kind, statements[1].unbatched) == ("single", "return-value")


def test_writes_of_different_queries_share_a_statement_and_each_row_names_its_query() -> None:
    writes = [(0, CREATE, {"i": 0}), (1, "CREATE (:B)", {}), (2, CREATE, {"i": 2})]

    [statement] = group(writes)

    assert statement.items == [0, 1, 2]
    assert statement.params[COLUMNS] == [[0, None, 2]]  # `i`; the second reads none
    queries = statement.params[QUERIES]
    assert isinstance(queries, list)
    assert queries[0] == queries[2] != queries[1]
    assert statement.text.count("CALL {") == 3  # one per row, holding one per query


def test_each_parameter_name_is_one_column_across_queries() -> None:
    a, b = "CREATE (:A {i: $i, s: $s})", "CREATE (:B {s: $s, t: $t})"

    [statement] = group([(0, a, {"i": 1, "s": "x"}), (1, b, {"s": "y", "t": 2, "extra": 3})])

    assert statement.params[COLUMNS] == [[1, None], ["x", "y"], [None, 2]]  # i, s, t


def test_a_lone_write_can_still_run_over_rows() -> None:
    statement = over_rows([(0, CREATE, {"i": 7})])

    assert statement is not None and statement.per_row is not None
    assert statement.params == {COUNT: 1, COLUMNS: [[7]]}
    assert statement.kind == "unwind"
    assert over_rows([(0, "MATCH (n) RETURN n", {})]) is None


def test_one_set_of_queries_always_makes_the_same_statement_text() -> None:
    a, b = (0, CREATE, {"i": 0}), (1, "CREATE (:B)", {})

    assert group([a, b])[0].text == group([b, a])[0].text


def test_a_statement_holds_at_most_max_queries_distinct_queries() -> None:
    writes = [(n, f"CREATE (:L{n})", {}) for n in range(MAX_QUERIES + 1)]

    assert [len(s.items) for s in group(writes)] == [MAX_QUERIES, 1]


def test_a_write_missing_a_parameter_runs_alone_so_it_fails_as_it_would() -> None:
    statements = group([(0, CREATE, {"i": 0}), (1, CREATE, {}), (2, CREATE, {"i": 2})])

    assert [(s.text, s.items, s.unbatched) for s in statements] == [
        (CREATE, [0], None),
        (CREATE, [1], "parameters-differ"),
        (CREATE, [2], None),
    ]


@given(st.lists(st.sampled_from([CREATE, "CREATE (:B {j: $j})", "MATCH (n) RETURN n"])))
def test_grouping_keeps_every_write_once_and_in_order(queries: list[str]) -> None:
    writes = [(n, q, {"i": n, "j": n}) for n, q in enumerate(queries)]

    items = [item for statement in group(writes) for item in statement.items]

    assert items == list(range(len(queries)))
