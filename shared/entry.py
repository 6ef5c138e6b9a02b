"""The wire format of a stream entry: a write or a flush sentinel.

Field names are short because every queued write carries them. Version 1:

* ``v`` format version, ``k`` kind (``w`` write, ``f`` flush sentinel, ``e`` the
  session's end: a flush sentinel after which the session's keys go)
* ``c`` id of the client that submitted it
* writes: ``q`` Cypher text, or ``a`` the name of a query the drainer knows
  (exactly one of the two); ``p`` parameters (see `shared.codec`); ``n`` the
  client's sequence number; ``s`` the HMAC signature when signing is on
  (`shared.signing`); ``x`` the W3C `traceparent` of the span active at submit,
  when there was one (`shared.tracing`)
* sentinels and end markers: ``t`` the flush token the drainer replies to
"""

from __future__ import annotations

from dataclasses import dataclass

from cypherstream.shared.errors import MalformedEntry

VERSION = b"1"
_WRITE = b"w"
_FLUSH = b"f"
_END = b"e"


@dataclass(frozen=True, slots=True)
class WriteEntry:
    """One queued write, as the drainer reads it."""

    entry_id: str
    query: str
    params: bytes
    client_id: str
    seq: int
    name: str | None = None
    """The query's name when submitted by name; `query` is then its text once resolved."""
    signature: bytes | None = None
    trace: str | None = None
    """The W3C traceparent of the span the write was submitted in, if any."""

    @property
    def wire_query(self) -> str:
        """What the entry carried: the name of a named query, else the Cypher."""
        return self.name if self.name is not None else self.query


@dataclass(frozen=True, slots=True)
class FlushSentinel:
    """A marker a flush appends; acknowledged once everything before it is applied."""

    entry_id: str
    token: str
    client_id: str


@dataclass(frozen=True, slots=True)
class EndMarker:
    """`client.end_session()`: once everything before it is applied, drop the session."""

    entry_id: str
    token: str
    client_id: str


Entry = WriteEntry | FlushSentinel | EndMarker


def write_fields(
    query: str,
    params: bytes,
    client_id: str,
    seq: int,
    *,
    named: bool = False,
    signature: bytes | None = None,
    trace: str | None = None,
) -> list[bytes | str]:
    """Field/value pairs of a write, flat, in the order XADD takes them.

    `query` is the Cypher, or with `named` the name of a query the drainer knows.
    """
    fields: list[bytes | str] = [b"v", VERSION, b"k", _WRITE, b"c", client_id, b"n", str(seq)]
    fields += [b"a" if named else b"q", query, b"p", params]
    if signature is not None:
        fields += [b"s", signature]
    if trace is not None:
        fields += [b"x", trace]
    return fields


def flush_fields(token: str, client_id: str) -> list[bytes | str]:
    """Field/value pairs of a flush sentinel."""
    return [b"v", VERSION, b"k", _FLUSH, b"c", client_id, b"t", token]


def end_fields(token: str, client_id: str) -> list[bytes | str]:
    """Field/value pairs of a session's end marker (answered like a flush sentinel)."""
    return [b"v", VERSION, b"k", _END, b"c", client_id, b"t", token]


def _text(fields: dict[bytes, bytes], name: bytes) -> str:
    raw = fields.get(name)
    if raw is None:
        raise MalformedEntry(f"field {name.decode()!r} is missing")
    return _utf8(name, raw)


def _utf8(name: bytes, raw: bytes) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError as exc:
        raise MalformedEntry(f"field {name.decode()!r} is not UTF-8") from exc


def _query(query: str) -> str:
    if not query.strip():
        raise MalformedEntry("query is empty")
    return query


def _sequence(seq: str) -> int:
    if not seq.isascii() or not seq.isdigit():
        raise MalformedEntry(f"sequence number {seq!r} is not a non-negative integer")
    return int(seq)


def parse(entry_id: str, fields: dict[bytes, bytes]) -> Entry:
    """Decode one entry read from a stream; raises `MalformedEntry` on anything off."""
    if fields.get(b"v") != VERSION:
        raise MalformedEntry(f"unknown format version {fields.get(b'v')!r}; expected {VERSION!r}")
    kind = fields.get(b"k")
    client_id = _text(fields, b"c")
    if kind == _FLUSH:
        return FlushSentinel(entry_id, _text(fields, b"t"), client_id)
    if kind == _END:
        return EndMarker(entry_id, _text(fields, b"t"), client_id)
    if kind != _WRITE:
        raise MalformedEntry(f"unknown entry kind {kind!r}")
    if (b"q" in fields) == (b"a" in fields):
        raise MalformedEntry("a write carries exactly one of 'q' (Cypher) and 'a' (a name)")
    name = _text(fields, b"a") if b"a" in fields else None
    query = _query(name if name is not None else _text(fields, b"q"))
    params = fields.get(b"p")
    if params is None:
        raise MalformedEntry("field 'p' is missing")
    seq = _sequence(_text(fields, b"n"))
    trace = _text(fields, b"x") if b"x" in fields else None
    signature = fields.get(b"s")
    return WriteEntry(entry_id, query, params, client_id, seq, name, signature, trace)


def parse_flat(entry_id: str, flat: list[bytes]) -> Entry:
    """`parse` for the flat field/value list a stream read returns.

    A write in the layout `write_fields` makes is read where it lies, without building
    a dict (a drainer parses every entry); anything else goes through `parse`, so both
    accept and refuse exactly the same entries.
    """
    n = len(flat)
    if not (
        n in (12, 14, 16)
        and flat[0:8:2] == [b"v", b"k", b"c", b"n"]
        and flat[1] == VERSION
        and flat[3] == _WRITE
        and flat[8] in (b"q", b"a")
        and flat[10] == b"p"
        and flat[12::2] in _TAILS
    ):
        return parse(entry_id, dict(zip(flat[::2], flat[1::2], strict=True)))
    # `parse`'s checks, in its order.
    client_id = _utf8(flat[4], flat[5])
    query = _query(_utf8(flat[8], flat[9]))
    seq = _sequence(_utf8(flat[6], flat[7]))
    tail = dict(zip(flat[12::2], flat[13::2], strict=True)) if n > 12 else {}
    trace = _text(tail, b"x") if b"x" in tail else None
    name = query if flat[8] == b"a" else None
    return WriteEntry(entry_id, query, flat[11], client_id, seq, name, tail.get(b"s"), trace)


# What may follow the parameters, in `write_fields`' order.
_TAILS: tuple[list[bytes], ...] = ([], [b"s"], [b"x"], [b"s", b"x"])


def id_ms(entry_id: str) -> int:
    """The Redis time, in ms, an entry id starts with ("ms-seq"): when it was queued."""
    return int(entry_id.partition("-")[0])


def id_key(entry_id: str) -> tuple[int, int]:
    """Sort key of a stream entry id ("ms-seq"), for comparing positions."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
