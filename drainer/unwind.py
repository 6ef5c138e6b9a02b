"""Running many writes as one statement, where that changes nothing.

Consecutive writes with the same Cypher become one statement over rows:

    UNWIND range(0, $cs_n - 1) AS cs_i
    WITH {a: $cs_cols[0][cs_i], b: $cs_cols[1][cs_i]} AS cs_row
    CALL { WITH cs_row <query, $a rewritten to cs_row.a> }

A CALL subquery runs once per row, in row order, and each run sees the writes of
the runs before it, so this is the same as running the writes one by one in the
same transaction: the way Neo4j's own Kafka sink batches Cypher. It costs one
round trip instead of one per write.

The parameters go as columns, one list per parameter name, not as a map per row:
the driver encodes a value per parameter instead of a map and every key per row,
which more than halves the drainer's encoding time and cuts a third of the bytes sent
(`make bench` measures this).

Consecutive writes of different queries (a message, then a tool call, then a
mention...) become one statement too: column `$cs_q` names each row's query, and
one CALL per row holds a filtered CALL for every query of the batch:

    UNWIND range(0, $cs_n - 1) AS cs_i CALL { WITH cs_i
      CALL { WITH cs_i WITH cs_i WHERE $cs_q[cs_i] = 0 WITH {..} AS cs_row <A> }
      CALL { WITH cs_i WITH cs_i WHERE $cs_q[cs_i] = 1 WITH {..} AS cs_row <B> } }

The outer CALL is what keeps entry order: with the filtered CALLs directly under
the UNWIND, Cypher's clause-by-clause semantics would run every A row before any
B row (tests/test_unwind_neo4j.py shows the difference on a real Neo4j). A column
holds a row's value for each parameter its query reads (null for one it does not).

A query is only rewritten where that is certain to change nothing: a trailing
RETURN that cannot raise is dropped (a buffered write's result is never read), a
CALL subquery gets the row in scope, each WITH keeps the row, and a CREATE pattern's
property-map parameter becomes a SET. Anything else (schema, IN TRANSACTIONS,
procedures, LIMIT $n, or anything the scanner below is unsure of) runs as it is, one
statement per write, and says why (`Unbatched.reason`, a metric label).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Generic, Literal, TypeVar

ROW = "cs_row"
INDEX = "cs_i"  # a row's number
COUNT = "cs_n"  # parameter: how many rows
COLUMNS = "cs_cols"  # parameter: a list of values per parameter name
QUERIES = "cs_q"  # parameter: each row's query, of several
MAX_QUERIES = 16  # distinct queries in one statement: bounds its size and plan count

Item = TypeVar("Item")  # what the caller tracks each write by (the applier: its entry)
Write = tuple[Item, str, dict[str, object]]
"""One write: (item, query, params)."""

# Keywords (outside strings and comments) that make a query unsafe to wrap, with the
# reason a write is not batched. A word right after `.`, `$` or `:`, or before `:`, is
# a property, parameter, label or map key (`m.role`, `$user`, `:Index`, `{limit: 1}`).
_REFUSED = {
    "in-transactions": "TRANSACTIONS|PERIODIC",
    "schema": "INDEX|CONSTRAINT",
    "administration": "USE|DATABASE|ALIAS|USER|ROLE|PRIVILEGE|GRANT|DENY|REVOKE|SHOW|TERMINATE",
    "explain": "EXPLAIN|PROFILE",
    "reserved-name": ROW,
}


def _keywords(words: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![.$:\w])\b({words})\b(?!\s*:)", re.IGNORECASE)


_REFUSALS = [(reason, _keywords(words)) for reason, words in _REFUSED.items()]
# Clauses (and the words that start a part of one), to find where a clause ends.
_CLAUSE = _keywords(
    "MATCH|OPTIONAL|WITH|UNWIND|CREATE|MERGE|SET|DELETE|DETACH|REMOVE|FOREACH|CALL|RETURN|"
    "LOAD|FINISH|ORDER|SKIP|LIMIT|OFFSET|WHERE|ON|USING|YIELD"
)
# Clauses that change the graph: a write's last clause before the RETURN it drops.
_UPDATING = frozenset({"CREATE", "MERGE", "SET", "DELETE", "REMOVE", "FOREACH"})
# Clauses that only read: dropped with the RETURN they lead to.
_READING = frozenset({"WITH", "WHERE", "ORDER", "SKIP", "LIMIT", "OFFSET", "MATCH", "OPTIONAL",
                      "UNWIND"})  # fmt: skip
_RETURN = _keywords("RETURN")
# A function call in a dropped tail (a name before `(` that is not a keyword).
_FUNCTION_CALL = re.compile(
    r"(?<![.\w$:])(?!(?:NOT|AND|OR|XOR|IN|WHERE|MATCH|OPTIONAL|WITH|RETURN|UNWIND|AS|IS|"
    r"WHEN|THEN|ELSE|CASE|ANY|ALL|NONE|SINGLE|EXISTS|COUNT|COLLECT)\s*\()"
    r"([A-Za-z_][\w.]*)\s*\(",
    re.IGNORECASE,
)
#: Functions a dropped RETURN may call: none of them can raise on any input.
_SAFE_FUNCTIONS = frozenset({
    "count", "collect", "size", "coalesce", "id", "elementid", "keys", "labels", "type",
    "properties", "exists", "min", "max", "head", "last", "nodes", "relationships",
    "length", "startnode", "endnode", "tostring", "isempty", "any", "all", "none", "single",
})  # fmt: skip
_UNION = _keywords("UNION")
_SCOPED = re.compile(r"\bCALL\s*\([^()]*\)\s*$", re.IGNORECASE)
_PAGING = _keywords("SKIP|LIMIT|OFFSET")
_CALL = _keywords("CALL")
# `(n:Label $props)` or `[r:TYPE $props]`: a parameter as a pattern's property map.
_PROPERTY_MAP = re.compile(
    r"([(\[])\s*([A-Za-z_]\w*|`_*`)?\s*(:[^()\[\]{}$,]*?)?\s*"
    r"\$([A-Za-z_]\w*|`_*`|\d+)\s*[)\]]"
)
# A parameter, or a WITH projection. A WITH ends the scope of every variable it does
# not name, so the row variable is added to each one (`WITH *` keeps it already).
_TOKEN = re.compile(
    r"\$(?:([A-Za-z_][A-Za-z0-9_]*)|`([^`]+)`|(\d+))"
    r"|(?<![.$:\w])(WITH\b(?!\s*:)(?:\s+DISTINCT\b)?)(\s*\*)?",
    re.IGNORECASE,
)
_STRING_OPERATOR = re.compile(r"\b(STARTS|ENDS)\s+$", re.IGNORECASE)  # STARTS WITH, ENDS WITH
_CLOSING = {")": "(", "]": "[", "}": "{"}


@dataclass(frozen=True)
class Statement(Generic[Item]):
    """One statement to run, and the items of the writes it runs, in order."""

    text: str
    params: dict[str, object]
    items: list[Item]
    #: Why its one write could not share a statement (a metric label); None if it could.
    unbatched: str | None = None
    #: For a statement over rows (`UNWIND range(0, $cs_n - 1) AS cs_i <per_row>`): what
    #: runs for each row, so another statement can run the same rows after its own work.
    per_row: str | None = None

    @property
    def kind(self) -> Literal["unwind", "single"]:
        return "unwind" if self.per_row is not None else "single"


@dataclass(frozen=True)
class Rewrite:
    """A query ready to run once per row, and the parameters it reads."""

    params: frozenset[str]
    #: The query with each parameter read from the map `cs_row`, which it keeps in scope.
    inner: str


@dataclass(frozen=True)
class Unbatched:
    """Why a query runs as it is, one statement per write (a metric label)."""

    reason: str


class _Refused(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


def _masked(query: str) -> str | None:
    """`query` with string literals and comments blanked and backticked names filled
    with `_`, position for position, so keywords are only found in code; None when a
    literal or comment is left open."""
    out, i, n = list(query), 0, len(query)
    while i < n:
        ch, two = query[i], query[i : i + 2]
        if ch in "'\"`":
            end = i + 1
            while end < n and query[end] != ch:
                end += 2 if query[end] == "\\" and ch != "`" else 1
            if end >= n:
                return None
            out[i + 1 : end] = ("_" if ch == "`" else " ") * (end - i - 1)
            i = end + 1
        elif two in ("//", "/*"):
            end = query.find("\n" if two == "//" else "*/", i + 2)
            if end < 0:
                if two == "/*":
                    return None
                end = n
            end += 0 if two == "//" else 2
            out[i:end] = " " * (end - i)
            i = end
        else:
            i += 1
    return "".join(out)


def _levels(masked: str) -> list[int] | None:
    """The bracket nesting of each character (a bracket has its outer level); None when
    the brackets do not pair up."""
    levels: list[int] = []
    stack: list[str] = []
    for ch in masked:
        if ch in _CLOSING and (not stack or stack.pop() != _CLOSING[ch]):
            return None
        levels.append(len(stack))
        if ch in "([{":
            stack.append(ch)
    return levels if not stack else None


@lru_cache(maxsize=1024)
def rewrite(query: str) -> Rewrite | Unbatched:
    """The per-row form of `query`, or why it must run as it is."""
    try:
        return _rewrite(query.strip().rstrip(";").strip())
    except _Refused as refused:
        return Unbatched(refused.reason)


def _rewrite(body: str) -> Rewrite:
    masked = _masked(body)
    levels = _levels(masked) if masked is not None else None
    if masked is None or levels is None:
        raise _Refused("unparsable")
    if ";" in masked:
        raise _Refused("several-statements")
    for reason, pattern in _REFUSALS:
        if pattern.search(masked):
            raise _Refused(reason)
    _check_unions(masked, levels)
    cut = _without_return(masked, levels)
    body, masked, levels = body[:cut].rstrip(), masked[:cut].rstrip(), levels[:cut]
    for paging in _PAGING.finditer(masked):
        if not re.match(r"\s+\d+\b", masked[paging.end() :]):
            raise _Refused("limit-parameter")  # LIMIT cs_row.n would read a variable
    edits: list[tuple[int, int, str]] = []
    edits += _scoped_calls(masked)
    property_maps, names = _property_maps(body, masked, levels)
    edits += property_maps
    skip = {start for start, end, _ in property_maps if end > start}
    edits += _rows_in_scope(body, masked, skip, names)
    inner = _applied(body, edits)
    return Rewrite(frozenset(names), inner)


_UNWIND = f"UNWIND range(0, ${COUNT} - 1) AS {INDEX} "


def _row(names: tuple[str, ...], columns: dict[str, int]) -> str:
    """The clause that makes row `cs_i` of `names`' columns the map `cs_row`."""
    fields = ", ".join(f"`{name}`: ${COLUMNS}[{columns[name]}][{INDEX}]" for name in names)
    return f"WITH {{{fields}}} AS {ROW}"


def _without_return(masked: str, levels: list[int]) -> int:
    """Where the query ends once its trailing RETURN is dropped, with the reads just
    before it (`WITH v, count(x) AS n RETURN v, n`): a buffered write's result is never
    read, and reads change nothing. The query must then end on a clause that changes
    the graph (or a CALL subquery that returns nothing)."""
    top = [m for m in _CLAUSE.finditer(masked) if levels[m.start()] == 0]
    returns = [m for m in top if m.group(1).upper() == "RETURN"]
    if not returns:
        return len(masked)
    cut = returns[0].start()
    if len(returns) > 1:
        raise _Refused("return-value")
    for clause in reversed([m for m in top if m.start() < cut]):
        word = clause.group(1).upper()
        if word in _UPDATING or (word == "CALL" and _is_unit_subquery(masked, levels, clause)):
            if _may_raise(masked[cut:]):
                break  # a tail that can fail the write (`RETURN 1 / 0`) must still run
            return cut
        if word not in _READING:
            break
        cut = clause.start()
    raise _Refused("return-value")


def _may_raise(tail: str) -> bool:
    """Whether dropped clauses could raise an error, and so fail the write one by one:
    arithmetic that can divide by zero or overflow, or a function outside those that
    cannot fail."""
    if re.search(r"[/%^]", tail):
        return True
    calls = {name.lower() for name in _FUNCTION_CALL.findall(tail)}
    return not calls <= _SAFE_FUNCTIONS


def _is_unit_subquery(masked: str, levels: list[int], call: re.Match[str]) -> bool:
    """Whether a CALL is a subquery that returns nothing (its body has no RETURN)."""
    opening = masked.find("{", call.end())
    if opening < 0:
        return False
    level = levels[opening] + 1
    closing = next(i for i in range(opening + 1, len(masked)) if levels[i] < level)
    body = range(opening + 1, closing)
    return not any(
        levels[m.start()] == level for m in _RETURN.finditer(masked, body.start, body.stop)
    )


def _check_unions(masked: str, levels: list[int]) -> None:
    """A UNION is batched only inside a scoped `CALL (...) { }`, whose scope clause
    brings the row into every branch."""
    for union in _UNION.finditer(masked):
        level = levels[union.start()]
        opening = next(
            (
                i
                for i in range(union.start(), -1, -1)
                if masked[i] == "{" and levels[i] == level - 1
            ),
            None,
        )
        if level == 0 or opening is None or not _SCOPED.search(masked, 0, opening):
            raise _Refused("union")


def _scoped_calls(masked: str) -> list[tuple[int, int, str]]:
    """Edits that bring the row into each CALL subquery: `CALL (a) {` imports it with
    `a`, an unscoped `CALL {` gains `WITH cs_row` (its own importing WITH gets the
    row like every WITH). A procedure call is never batched."""
    edits = []
    for call in _CALL.finditer(masked):
        at = len(masked) - len(masked[call.end() :].lstrip())
        if masked.startswith("{", at):
            if not re.match(r"\{\s*WITH\b", masked[at:], re.IGNORECASE):
                edits.append((at + 1, at + 1, f" WITH {ROW}"))
            continue
        scope = re.match(r"\(([^()]*)\)\s*\{", masked[at:])
        if scope is None:
            raise _Refused("procedure-call")
        names = scope.group(1).strip()
        if names != "*":
            edits.append((at + 1, at + 1, f"{ROW}, " if names else ROW))
    return edits


def _property_maps(
    body: str, masked: str, levels: list[int]
) -> tuple[list[tuple[int, int, str]], set[str]]:
    """`CREATE (n:L $props)` becomes `CREATE (n:L) SET n = cs_row.props` (a pattern's
    property map cannot be a row field); `MERGE (n $props)` is not batched."""
    edits, names = [], set()
    for n, pattern in enumerate(_PROPERTY_MAP.finditer(masked)):
        variable, labels = pattern.group(2), pattern.group(3)
        if not variable and not labels:
            continue  # a list or a parenthesised parameter, not a pattern
        clauses = list(_CLAUSE.finditer(masked, 0, pattern.start()))
        clause = clauses[-1] if clauses else None
        kind = clause.group(1).upper() if clause is not None else ""
        if clause is None or kind != "CREATE":
            raise _Refused("merge-properties" if kind == "MERGE" else "properties-parameter")
        start, end = pattern.start(4) - 1, pattern.end(4)
        name = body[start + 1 : end].strip("`")
        names.add(name)
        if not variable:
            variable = f"cs_v{n}"
            edits.append((pattern.start(1) + 1, pattern.start(1) + 1, variable))
        else:
            variable = body[pattern.start(2) : pattern.end(2)]
        edits.append((start, end, ""))
        at = _clause_end(masked, levels, clause)
        edits.append((at, at, f" SET {variable} = {ROW}.`{name}` "))
    return edits, names


def _clause_end(masked: str, levels: list[int], clause: re.Match[str]) -> int:
    """Where the clause starting at `clause` ends: the next clause at its level, the
    bracket that closes its level, or the end of the query."""
    level = levels[clause.start()]
    following = (m.start() for m in _CLAUSE.finditer(masked, clause.end()))
    next_clause = next((at for at in following if levels[at] == level), len(masked))
    for at in range(clause.end(), next_clause):
        if masked[at] in _CLOSING and levels[at] < level:
            return at
    return next_clause


def _rows_in_scope(
    body: str, masked: str, skip: set[int], names: set[str]
) -> list[tuple[int, int, str]]:
    """Parameters read as row fields, and the row added to each WITH projection."""
    edits = []
    for match in _TOKEN.finditer(masked):
        if match.start() in skip:
            continue
        projection, star = match.group(4), match.group(5)
        if projection:
            if not (star or _STRING_OPERATOR.search(masked, 0, match.start())):
                at = match.end(4)
                edits.append((at, at, f" {ROW},"))
            continue
        text = body[match.start() : match.end()]
        name = text[1:].strip("`")
        names.add(name)
        edits.append((match.start(), match.end(), f"{ROW}.`{name}`"))
    return edits


def _applied(body: str, edits: list[tuple[int, int, str]]) -> str:
    pieces, last = [], 0
    for start, end, text in sorted(edits, key=lambda edit: (edit[0], edit[1])):
        pieces += [body[last:start], text]
        last = max(last, end)
    pieces.append(body[last:])
    return "".join(pieces)


@lru_cache(maxsize=256)
def _per_row(queries: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    """What runs for row `cs_i` of one query, or of one of several (column `cs_q` says
    which), and the parameter name of each column."""
    forms = [form for form in map(rewrite, queries) if isinstance(form, Rewrite)]
    assert len(forms) == len(queries)
    reads = [tuple(sorted(form.params)) for form in forms]
    names = tuple(sorted({name for read in reads for name in read}))
    columns = {name: n for n, name in enumerate(names)}
    inners = [form.inner for form in forms]
    if len(queries) == 1:
        return f"{_row(reads[0], columns)} CALL {{ WITH {ROW} {inners[0]}\n}}", names
    calls = [
        f"CALL {{ WITH {INDEX} WITH {INDEX} WHERE ${QUERIES}[{INDEX}] = {n} "
        f"{_row(read, columns)} {inner}\n}}"
        for n, (read, inner) in enumerate(zip(reads, inners, strict=True))
    ]
    return f"CALL {{ WITH {INDEX}\n" + "\n".join(calls) + "\n}", names


def _statement(run: list[Write[Item]], *, over_rows: bool = False) -> Statement[Item]:
    """The statement for a run of mergeable writes: a lone write as it is, unless
    `over_rows`; else one over a row per write."""
    items = [item for item, _, _ in run]
    if len(run) == 1 and not over_rows:
        _, query, params = run[0]
        return Statement(query, params, items)
    # Sorted, so one set of queries always gives one text (and one cached plan).
    queries = tuple(sorted({query for _, query, _ in run}))
    per_row, names = _per_row(queries)
    columns = [[params.get(name) for _, _, params in run] for name in names]
    statement_params: dict[str, object] = {COUNT: len(run), COLUMNS: columns}
    if len(queries) > 1:
        index = {query: n for n, query in enumerate(queries)}
        statement_params[QUERIES] = [index[query] for _, query, _ in run]
    return Statement(_UNWIND + per_row, statement_params, items, per_row=per_row)


def over_rows(writes: list[Write[Item]]) -> Statement[Item] | None:
    """All of `writes` as one statement over rows (a lone write too), or None
    where `group` would make more than one statement or run a write as it is."""
    if not writes or any(_unbatched(query, params) for _, query, params in writes):
        return None
    if len({query for _, query, _ in writes}) > MAX_QUERIES:
        return None
    return _statement(writes, over_rows=True)


def _unbatched(query: str, params: dict[str, object]) -> str | None:
    """Why a write must run as it is, alone; None if it can share a statement."""
    form = rewrite(query)
    if isinstance(form, Unbatched):
        return form.reason
    if not form.params <= params.keys():
        return "parameters-differ"
    return None


def group(writes: list[Write[Item]]) -> list[Statement[Item]]:
    """Consecutive (item, query, params) into statements, in order.

    Writes are merged when each query can be rewritten and every row carries every
    parameter its query reads (a missing one must fail as it would alone, not
    become null); a write that cannot be merged runs alone, in its place, and its
    statement says why (`Statement.unbatched`).
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
        reason = _unbatched(query, params)
        if reason is not None:
            close()
            statements.append(Statement(query, params, [item], unbatched=reason))
            continue
        if query not in queries and len(queries) == MAX_QUERIES:
            close()
        queries.add(query)
        run.append((item, query, params))
    close()
    return statements
