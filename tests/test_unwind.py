"""Which writes may share one UNWIND statement (pure functions: no servers)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cypherstream.drainer.unwind import MAX_QUERIES, PARAMS_FIELD, QUERY_FIELD, ROWS, group, rewrite

CREATE = "CREATE (:A {i: $i})"


def test_parameters_become_row_fields_but_strings_and_comments_stay() -> None:
    done = rewrite("MERGE (n {id: $id}) SET n.s = '$no', n.t = \"$no\" // $no\nSET n.v = $v")

    assert done is not None
    assert "cs_row.`id`" in done.text and "cs_row.`v`" in done.text
    assert "'$no'" in done.text and '"$no"' in done.text and "// $no\n" in done.text
    assert done.params == {"id", "v"}


@pytest.mark.parametrize(
    "query",
    [
        "MATCH (n) RETURN n",
        "MATCH (n) CALL (n) { DELETE n } IN TRANSACTIONS",
        "CREATE INDEX i FOR (n:A) ON (n.x)",
        "CREATE CONSTRAINT c FOR (n:A) REQUIRE n.x IS UNIQUE",
        "MATCH (n) WITH n LIMIT $n SET n.x = 1",
        "USE other CREATE ()",
        "CREATE (:A {s: 'unterminated})",
        "CREATE (); CREATE ()",
        "CREATE (cs_row)",
        "CALL { CREATE (:A) }",
        "CREATE (:A) UNION CREATE (:B)",
    ],
)
def test_queries_that_could_behave_differently_are_never_wrapped(query: str) -> None:
    assert rewrite(query) is None


def test_each_with_projection_keeps_the_row_in_scope_but_string_operators_stay() -> None:
    done = rewrite(
        "MATCH (n) WHERE n.id STARTS WITH $p WITH DISTINCT n WITH * "
        "MATCH (m) WHERE m.id ENDS WITH 'x' WITH m, count(n) AS c SET m.c = c + $x"
    )

    assert done is not None
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
    assert rewrite(query) is not None


def test_consecutive_writes_of_one_query_share_a_statement_in_order() -> None:
    writes = [(n, CREATE, {"i": n}) for n in range(3)] + [(3, "MATCH (n) RETURN n", {})]

    statements = group(writes)

    assert [items for _, _, items in statements] == [[0, 1, 2], [3]]
    assert statements[0][1] == {ROWS: [{"i": 0}, {"i": 1}, {"i": 2}]}
    assert statements[1] == ("MATCH (n) RETURN n", {}, [3])


def test_writes_of_different_queries_share_a_statement_and_each_row_names_its_query() -> None:
    writes = [(0, CREATE, {"i": 0}), (1, "CREATE (:B)", {}), (2, CREATE, {"i": 2})]

    [(text, params, items)] = group(writes)

    assert items == [0, 1, 2]
    rows = params[ROWS]
    assert [row[PARAMS_FIELD] for row in rows] == [{"i": 0}, {}, {"i": 2}]
    assert rows[0][QUERY_FIELD] == rows[2][QUERY_FIELD] != rows[1][QUERY_FIELD]
    assert text.count("CALL {") == 3  # one per row, holding one per query


def test_one_set_of_queries_always_makes_the_same_statement_text() -> None:
    a, b = (0, CREATE, {"i": 0}), (1, "CREATE (:B)", {})

    assert group([a, b])[0][0] == group([b, a])[0][0]


def test_a_statement_holds_at_most_max_queries_distinct_queries() -> None:
    writes = [(n, f"CREATE (:L{n})", {}) for n in range(MAX_QUERIES + 1)]

    assert [len(items) for _, _, items in group(writes)] == [MAX_QUERIES, 1]


def test_a_write_missing_a_parameter_runs_alone_so_it_fails_as_it_would() -> None:
    statements = group([(0, CREATE, {"i": 0}), (1, CREATE, {}), (2, CREATE, {"i": 2})])

    assert [(text, items) for text, _, items in statements] == [
        (CREATE, [0]),
        (CREATE, [1]),
        (CREATE, [2]),
    ]


@given(st.lists(st.sampled_from([CREATE, "CREATE (:B {j: $j})", "MATCH (n) RETURN n"])))
def test_grouping_keeps_every_write_once_and_in_order(queries: list[str]) -> None:
    writes = [(n, q, {"i": n, "j": n}) for n, q in enumerate(queries)]

    items = [item for _, _, batch in group(writes) for item in batch]

    assert items == list(range(len(queries)))
