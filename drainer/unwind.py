"""Running many writes of one query text as one statement, where that changes nothing.

Consecutive writes with the same Cypher become

    UNWIND $cs_rows AS cs_row CALL { WITH cs_row <query, $p rewritten to cs_row.p> }

A CALL subquery runs once per row, in row order, and each run sees the writes of
the runs before it, so this is the same as running the writes one by one in the
same transaction: the way Neo4j's own Kafka sink batches Cypher. It costs one
round trip instead of one per write.

A query is only rewritten when that is certain to be safe: it returns nothing,
commits nothing on its own, and changes no schema. Anything else (or anything the
scanner below is unsure of) runs as it is, one statement per write.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

ROW = "cs_row"
ROWS = "cs_rows"

# Keywords (outside strings and comments) that make a query unsafe to wrap.
_UNSAFE = re.compile(
    r"\b(RETURN|TRANSACTIONS|PERIODIC|USE|INDEX|CONSTRAINT|DATABASE|ALIAS|USER|ROLE|"
    r"PRIVILEGE|GRANT|DENY|REVOKE|SHOW|TERMINATE|EXPLAIN|PROFILE|SKIP|LIMIT|OFFSET|"
    rf"{ROW}|{ROWS})\b",
    re.IGNORECASE,
)
_PARAM = re.compile(r"\$(?:([A-Za-z_][A-Za-z0-9_]*)|`([^`]+)`|(\d+))")


@dataclass(frozen=True)
class Rewrite:
    """A query ready to run over many rows, and the parameters it reads."""

    text: str
    params: frozenset[str]


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
        for match in _PARAM.finditer(body, a, b):
            name = match.group(1) or match.group(2) or match.group(3)
            names.add(name)
            pieces.append(body[last : match.start()])
            pieces.append(f"{ROW}.`{name}`")
            last = match.end()
    pieces.append(body[last:])
    inner = "".join(pieces)
    text = f"UNWIND ${ROWS} AS {ROW} CALL {{ WITH {ROW} {inner}\n}}"
    return Rewrite(text, frozenset(names))


def group(
    writes: list[tuple[Any, str, dict[str, Any]]],
) -> list[tuple[str, dict[str, Any], list[Any]]]:
    """Consecutive (item, query, params) into statements: (text, params, items).

    Writes are merged only when they share the query text, the query can be
    rewritten, and every row carries every parameter the query reads (a missing
    one must fail as it would alone, not become null).
    """
    statements: list[tuple[str, dict[str, Any], list[Any]]] = []
    run: list[tuple[Any, dict[str, Any]]] = []  # consecutive writes of `run_query`
    run_query = ""

    def close() -> None:
        if len(run) == 1:
            statements.append((run_query, run[0][1], [run[0][0]]))
        elif run:
            form = rewrite(run_query)
            assert form is not None
            statements.append((form.text, {ROWS: [p for _, p in run]}, [i for i, _ in run]))
        run.clear()

    for item, query, params in writes:
        form = rewrite(query)
        if form is None or not form.params <= params.keys():
            close()
            statements.append((query, params, [item]))
            run_query = ""
            continue
        if query != run_query:
            close()
            run_query = query
        run.append((item, params))
    close()
    return statements
