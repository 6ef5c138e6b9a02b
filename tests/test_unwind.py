"""Which writes may share one UNWIND statement (pure functions: no servers)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drainer.unwind import ROWS, group, rewrite

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
    ],
)
def test_queries_that_could_behave_differently_are_never_wrapped(query: str) -> None:
    assert rewrite(query) is None


def test_consecutive_writes_of_one_query_share_a_statement_in_order() -> None:
    writes = [(n, CREATE, {"i": n}) for n in range(3)] + [(3, "CREATE (:B)", {})]

    statements = group(writes)

    assert [items for _, _, items in statements] == [[0, 1, 2], [3]]
    assert statements[0][1] == {ROWS: [{"i": 0}, {"i": 1}, {"i": 2}]}
    assert statements[1] == ("CREATE (:B)", {}, [3])


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
