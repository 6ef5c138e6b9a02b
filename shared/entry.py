"""The wire format of a stream entry: a write, a flush sentinel or a session's end.

Version 2, which producers write, is one field, ``p``, holding a MessagePack array,
because Redis and the drainer pay per field for every entry read: Redis takes a fifth
less time reading version 2 entries in a script than version 1's six fields, and the
drainer a sixth less CPU per write (`README.md`, "Performance"):

* a write: ``[2, "w", client id, sequence number, named, query, parameters,
  signature, trace]``: the query is the Cypher, or with ``named`` true the name of a
  query the drainer knows; the parameters are `shared.codec`'s bytes; the signature is
  the HMAC when signing is on (`shared.signing`), else nil; the trace is the W3C
  ``traceparent`` of the span active at submit (`shared.tracing`), else nil
* a flush sentinel ``[2, "f", client id, token]``, or a session's end ``[2, "e",
  client id, token]`` (a flush sentinel after which the session's keys go): the
  drainer replies to the token

Version 1, which drainers still read (a queue may hold it while a fleet upgrades, and
a producer writes it while a live drainer reads nothing else,
`shared.presence.Presence.writable`), has a
field each: ``v`` ``1``, ``k`` the kind (``w``, ``f``, ``e``), ``c`` the client id;
writes ``q`` the Cypher or ``a`` a query name (exactly one), ``p`` the parameters,
``n`` the sequence number, ``s`` the signature and ``x`` the trace where present;
sentinels and ends ``t`` the token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import msgpack

from cypherstream.shared.errors import MalformedEntry

EntryVersion = Literal[1, 2]

#: The version producers write when every live drainer reads it.
VERSION: EntryVersion = 2
#: What a drainer of this release reads; it announces them with its heartbeat.
READABLE: tuple[EntryVersion, ...] = (1, 2)

# Version 2's one field. Named as version 1's parameters are, so that a drainer of an
# older release, which refuses the entry as malformed, keeps it whole in the
# dead-letter record as the parameters, for `drainer dlq replay` to queue again.
_FIELD = b"p"
_V1 = b"1"
_WRITE = b"w"
_FLUSH = b"f"
_END = b"e"


class WriteEntry(NamedTuple):
    """One queued write, as the drainer reads it.

    A named tuple, immutable and built in 0.8 us, where a frozen dataclass took 2.3 us
    (a setattr per field): a drainer builds one for every write it reads."""

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


def announced(text: str) -> tuple[int, ...]:
    """The entry versions a drainer's heartbeat names (`READABLE`, comma-separated);
    a drainer that names none predates version 2 and reads version 1 only."""
    return tuple(int(v) for v in text.split(",") if v.isdigit()) or (1,)


def announcement() -> str:
    """What a drainer's heartbeat says it reads: `READABLE`, for `announced`."""
    return ",".join(map(str, READABLE))


def write_fields(
    query: str,
    params: bytes,
    client_id: str,
    seq: int,
    *,
    named: bool = False,
    signature: bytes | None = None,
    trace: str | None = None,
    version: EntryVersion = VERSION,
) -> list[bytes | str]:
    """Field/value pairs of a write, flat, in the order XADD takes them.

    `query` is the Cypher, or with `named` the name of a query the drainer knows.
    """
    if version == 2:
        return [_FIELD, _pack([2, "w", client_id, seq, named, query, params, signature, trace])]
    fields: list[bytes | str] = [b"v", _V1, b"k", _WRITE, b"c", client_id, b"n", str(seq)]
    fields += [b"a" if named else b"q", query, b"p", params]
    if signature is not None:
        fields += [b"s", signature]
    if trace is not None:
        fields += [b"x", trace]
    return fields


def flush_fields(token: str, client_id: str, version: EntryVersion = VERSION) -> list[bytes | str]:
    """Field/value pairs of a flush sentinel."""
    if version == 2:
        return [_FIELD, _pack([2, "f", client_id, token])]
    return [b"v", _V1, b"k", _FLUSH, b"c", client_id, b"t", token]


def end_fields(token: str, client_id: str, version: EntryVersion = VERSION) -> list[bytes | str]:
    """Field/value pairs of a session's end marker (answered like a flush sentinel)."""
    if version == 2:
        return [_FIELD, _pack([2, "e", client_id, token])]
    return [b"v", _V1, b"k", _END, b"c", client_id, b"t", token]


def _pack(value: list[object]) -> bytes:
    packed: bytes = msgpack.packb(value)
    return packed


def parse_flat(entry_id: str, flat: list[bytes]) -> Entry:
    """Decode one entry as a stream read returns it, its field/value pairs flat;
    raises `MalformedEntry` on anything off."""
    if len(flat) == 2 and flat[0] == _FIELD:
        return unpack(entry_id, flat[1])
    return parse(entry_id, dict(zip(flat[::2], flat[1::2], strict=True)))


def parse(entry_id: str, fields: dict[bytes, bytes]) -> Entry:
    """Decode one entry from its fields, of either version; raises `MalformedEntry` on
    anything off."""
    if len(fields) == 1 and _FIELD in fields:
        return unpack(entry_id, fields[_FIELD])
    return _parse_v1(entry_id, fields)


def unpack(entry_id: str, raw: bytes) -> Entry:
    """Decode a version 2 entry from its one field's value; raises `MalformedEntry`."""
    try:
        value = msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise MalformedEntry(
            f"field 'p' is not MessagePack of text ({type(exc).__name__})"
        ) from exc
    if type(value) is not list or len(value) < 4 or type(value[0]) is not int or value[0] != 2:
        raise MalformedEntry("field 'p' alone is not a version 2 entry: [2, kind, client id, ...]")
    kind, client_id = value[1], value[2]
    if type(client_id) is not str:
        raise MalformedEntry("the client id is not text")
    if kind in ("f", "e") and len(value) == 4:
        if type(value[3]) is not str:
            raise MalformedEntry("the flush token is not text")
        marker = FlushSentinel if kind == "f" else EndMarker
        return marker(entry_id, value[3], client_id)
    if kind != "w" or len(value) != 9:
        raise MalformedEntry(f"unknown entry kind {kind!r} with {len(value)} items")
    _, _, _, seq, named, query, params, signature, trace = value
    if type(seq) is not int or seq < 0:
        raise MalformedEntry(f"sequence number {seq!r} is not a non-negative integer")
    if type(named) is not bool or type(query) is not str or type(params) is not bytes:
        raise MalformedEntry("a write's name flag, query or parameters has the wrong type")
    if not (signature is None or type(signature) is bytes):
        raise MalformedEntry("the signature is not bytes")
    if not (trace is None or type(trace) is str):
        raise MalformedEntry("the trace context is not text")
    name = query if named else None
    return WriteEntry(entry_id, _query(query), params, client_id, seq, name, signature, trace)


def _parse_v1(entry_id: str, fields: dict[bytes, bytes]) -> Entry:
    if fields.get(b"v") != _V1:
        raise MalformedEntry(f"unknown format version {fields.get(b'v')!r}; expected b'1'")
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


def _text(fields: dict[bytes, bytes], name: bytes) -> str:
    raw = fields.get(name)
    if raw is None:
        raise MalformedEntry(f"field {name.decode()!r} is missing")
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


def as_refused_write(entry_id: str, flat: list[bytes]) -> WriteEntry:
    """A refused entry as it arrived, shaped as a write so it is reported like one:
    whatever of it can be read, unchecked."""
    fields = dict(zip(flat[::2], flat[1::2], strict=False))  # as it came, odd or not
    if len(fields) == 1 and _FIELD in fields:
        return _refused_v2(entry_id, fields[_FIELD])
    client = fields.get(b"c", b"unknown").decode(errors="replace")
    query = fields.get(b"q", b"").decode(errors="replace")
    name = fields[b"a"].decode(errors="replace") if b"a" in fields else None
    seq = fields.get(b"n", b"0")
    number = int(seq) if seq.isdigit() and len(seq) < 20 else 0
    return WriteEntry(entry_id, query or (name or ""), fields.get(b"p", b""), client, number, name)


def _refused_v2(entry_id: str, raw: bytes) -> WriteEntry:
    try:
        value = msgpack.unpackb(raw, raw=True)
    except Exception:  # garbage: nothing of it is readable
        value = None
    if type(value) is not list or len(value) != 9:  # kept whole, for whoever looks
        return WriteEntry(entry_id, "", raw, "unknown", 0)
    _, _, client, seq, named, query, params, _, _ = value
    text = query.decode(errors="replace") if type(query) is bytes else ""
    return WriteEntry(
        entry_id,
        text,
        params if type(params) is bytes else b"",
        client.decode(errors="replace") if type(client) is bytes else "unknown",
        seq if type(seq) is int and 0 <= seq < 10**19 else 0,
        text if named is True else None,
    )


def id_ms(entry_id: str) -> int:
    """The Redis time, in ms, an entry id starts with ("ms-seq"): when it was queued."""
    return int(entry_id.partition("-")[0])


def id_key(entry_id: str) -> tuple[int, int]:
    """Sort key of a stream entry id ("ms-seq"), for comparing positions."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
