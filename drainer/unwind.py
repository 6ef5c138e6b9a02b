"""Running many writes as one statement, where that changes nothing.

Consecutive writes with the same Cypher become

    UNWIND $cs_rows AS cs_row CALL { WITH cs_row <query, $p rewritten to cs_row.p> }

A CALL subquery runs once per row, in row order, and each run sees the writes of
the runs before it, so this is the same as running the writes one by one in the
same transaction: the way Neo4j's own Kafka sink batches Cypher. It costs one
round trip instead of one per write.

Consecutive writes of different queries (a message, then a tool call, then a
mention...) become one statement too: each row names its query, and one CALL per
row holds a filtered CALL for every query of the batch:

    UNWIND $cs_rows AS cs_row CALL { WITH cs_row
      CALL { WITH cs_row WITH cs_row WHERE cs_row.cs_q = 0 WITH cs_row.cs_p AS cs_row <A> }
      CALL { WITH cs_row WITH cs_row WHERE cs_row.cs_q = 1 WITH cs_row.cs_p AS cs_row <B> } }

The outer CALL is what keeps entry order: with the filtered CALLs directly under
the UNWIND, Cypher's clause-by-clause semantics would run every A row before any
B row (tests/test_unwind_neo4j.py shows the difference on a real Neo4j).

A query is only rewritten when that is certain to be safe: it returns nothing,
commits nothing on its own, changes no schema, and has no subquery or UNION of its
own (whose scope would not see the row). Each WITH gets the row variable added, so
parameters stay readable after it. Anything else (or anything the scanner below is
unsure of) runs as it is, one statement per write.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import TypeVar

ROW = "cs_row"
ROWS = "cs_rows"
QUERY_FIELD = "cs_q"
PARAMS_FIELD = "cs_p"
MAX_QUERIES = 16  # distinct queries in one statement: bounds its size and plan count

Item = TypeVar("Item")  # what the caller tracks each write by (the applier: its entry)
Write = tuple[Item, str, dict[str, object]]
"""One write: (item, query, params)."""
Statement = tuple[str, dict[str, object], list[Item]]
"""One statement to run: (text, params, the items of the writes it runs)."""

# Keywords (outside strings and comments) that make a query unsafe to wrap. A word
# right after `.`, `$` or `:`, or before `:`, is a property, parameter, label or map
# key (`m.role`, `$user`, `:Index`, `{limit: 1}`), not a keyword.
_UNSAFE = re.compile(
    r"(?<![.$:])\b(RETURN|TRANSACTIONS|PERIODIC|USE|INDEX|CONSTRAINT|DATABASE|ALIAS|USER|ROLE|"
    r"PRIVILEGE|GRANT|DENY|REVOKE|SHOW|TERMINATE|EXPLAIN|PROFILE|SKIP|LIMIT|OFFSET|CALL|UNION|"
    rf"{ROW}|{ROWS})\b(?!\s*:)",
    re.IGNORECASE,
)
# A parameter, or a WITH projection. A WITH ends the scope of every variable it does
# not name, so the row variable is added to each one (`WITH *` keeps it already).
_TOKEN = re.compile(
    r"\$(?:([A-Za-z_][A-Za-z0-9_]*)|`([^`]+)`|(\d+))"
    r"|(?<![.$:\w])(WITH\b(?!\s*:)(?:\s+DISTINCT\b)?)(\s*\*)?",
    re.IGNORECASE,
)
_STRING_OPERATOR = re.compile(r"\b(STARTS|ENDS)\s+$", re.IGNORECASE)  # STARTS WITH, ENDS WITH


@dataclass(frozen=True)
class Rewrite:
    """A query ready to run over many rows, and the parameters it reads."""

    text: str
    params: frozenset[str]
    inner: str


def _code_spans(query: str) -> list[tuple[int, int]] | None:
    """Spans of `query` outside string literals, comments and backticked names.

    None when a literal or comment is left open: then nothing is rewritten.
    """
    spans, start, i, n = [], 0, 0, len(query)
    while i < n:
        ch = query[i]
        two = query[i : i + 2]
        if ch in "'\"`":
            spans.append((start, i))
            end = i + 1
            while end < n and query[end] != ch:
                end += 2 if query[end] == "\\" and ch != "`" else 1
            if end >= n:
                return None
            i = start = end + 1
        elif two in ("//", "/*"):
            spans.append((start, i))
            end = query.find("\n" if two == "//" else "*/", i + 2)
            if end < 0:
                if two == "/*":
                    return None
                end = n
            i = start = end + (0 if two == "//" else 2)
        else:
            i += 1
    spans.append((start, n))
    return spans


@lru_cache(maxsize=1024)
def rewrite(query: str) -> Rewrite | None:
    """The per-row form of `query`, or None when it must run as it is."""
    body = query.strip().rstrip(";").strip()
    spans = _code_spans(body)
    if spans is None or ";" in "".join(body[a:b] for a, b in spans):
        return None
    code = "".join(body[a:b] for a, b in spans)
    if _UNSAFE.search(code):
        return None
    names: set[str] = set()
    pieces, last = [], 0
    for a, b in spans:
        for match in _TOKEN.finditer(body, a, b):
            projection, star = match.group(4), match.group(5)
            if projection and (star or _STRING_OPERATOR.search(body, a, match.start())):
                continue
            pieces.append(body[last : match.start()])
            if projection:
                pieces.append(f"{projection} {ROW},")
            else:
                name = match.group(1) or match.group(2) or match.group(3)
                names.add(name)
                pieces.append(f"{ROW}.`{name}`")
            last = match.end()
    pieces.append(body[last:])
    inner = "".join(pieces)
    text = f"UNWIND ${ROWS} AS {ROW} CALL {{ WITH {ROW} {inner}\n}}"
    return Rewrite(text, frozenset(names), inner)


@lru_cache(maxsize=256)
def _mixed(queries: tuple[str, ...]) -> str:
    """One statement for rows of several queries; row field `cs_q` indexes `queries`."""
    calls = []
    for index, query in enumerate(queries):
        form = rewrite(query)
        assert form is not None
        calls.append(
            f"CALL {{ WITH {ROW} WITH {ROW} WHERE {ROW}.{QUERY_FIELD} = {index} "
            f"WITH {ROW}.{PARAMS_FIELD} AS {ROW} {form.inner}\n}}"
        )
    return f"UNWIND ${ROWS} AS {ROW} CALL {{ WITH {ROW}\n" + "\n".join(calls) + "\n}"


def _statement(run: list[Write[Item]]) -> Statement[Item]:
    items = [item for item, _, _ in run]
    if len(run) == 1:
        _, query, params = run[0]
        return query, params, items
    # Sorted, so one set of queries always gives one text (and one cached plan).
    queries = tuple(sorted({query for _, query, _ in run}))
    if len(queries) == 1:
        form = rewrite(queries[0])
        assert form is not None
        return form.text, {ROWS: [params for _, _, params in run]}, items
    index = {query: n for n, query in enumerate(queries)}
    rows = [{QUERY_FIELD: index[query], PARAMS_FIELD: params} for _, query, params in run]
    return _mixed(queries), {ROWS: rows}, items


def group(
    writes: list[Write[Item]],
) -> list[Statement[Item]]:
    """Consecutive (item, query, params) into statements: (text, params, items).

    Writes are merged when each query can be rewritten and every row carries every
    parameter its query reads (a missing one must fail as it would alone, not
    become null); a write that cannot be merged runs alone, in its place.
    """
    statements: list[Statement[Item]] = []
    run: list[Write[Item]] = []
    queries: set[str] = set()

    def close() -> None:
        if run:
            statements.append(_statement(run))
        run.clear()
        queries.clear()

    for item, query, params in writes:
        form = rewrite(query)
        if form is None or not form.params <= params.keys():
            close()
            statements.append((query, params, [item]))
            continue
        if query not in queries and len(queries) == MAX_QUERIES:
            close()
        queries.add(query)
        run.append((item, query, params))
    close()
    return statements
