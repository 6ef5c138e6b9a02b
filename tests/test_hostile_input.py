"""Whatever is written to the streams by hand fails loudly and harmlessly."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cypherstream import MemoryClient
from cypherstream.drainer.dlq import list_dead_letters, replay
from cypherstream.shared.codec import encode_params
from cypherstream.shared.entry import (
    READABLE,
    Entry,
    EntryVersion,
    WriteEntry,
    as_refused_write,
    parse,
    parse_flat,
    write_fields,
)
from cypherstream.shared.errors import CypherstreamError, MalformedEntry
from tests.helpers import as_read

FIELD_NAMES = [b"v", b"k", b"c", b"n", b"q", b"a", b"p", b"s", b"t", b"x"]
FIELD_VALUES = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b"1", b"2", b"w", b"f", b"", b"-1", b"\xff", b"\xd9\x9a", b"00"]),
)
# What a version 2 entry's one field might hold: arrays like the real ones, with any
# item of any MessagePack type, or anything else.
ITEMS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False),
    st.sampled_from(["w", "f", "e", "", " ", "CREATE ()", "c1"]),
    st.binary(max_size=8),
)
PACKED = st.one_of(
    st.binary(max_size=40),
    st.lists(ITEMS, max_size=10).map(msgpack.packb),
    st.tuples(st.sampled_from([2, 1, 2.0, True]), st.sampled_from(["w", "f", "e", "x", 2]))
    .flatmap(lambda head: st.lists(ITEMS, min_size=2, max_size=8).map(lambda t: [*head, *t]))
    .map(msgpack.packb),
)


@given(st.dictionaries(st.sampled_from(FIELD_NAMES), FIELD_VALUES))
def test_the_entry_decoder_returns_an_entry_or_raises_malformed_entry(
    fields: dict[bytes, bytes],
) -> None:
    _assert_entry_or_malformed(fields)


@settings(max_examples=500)
@given(PACKED)
def test_a_version_2_entry_decodes_to_an_entry_or_raises_malformed_entry(packed: bytes) -> None:
    _assert_entry_or_malformed({b"p": packed})


def _assert_entry_or_malformed(fields: dict[bytes, bytes]) -> None:
    try:
        entry = parse("1-0", fields)
    except MalformedEntry:
        return
    if isinstance(entry, WriteEntry):
        assert entry.query.strip() and entry.seq >= 0 and isinstance(entry.params, bytes)
        assert isinstance(entry.client_id, str)
    else:
        assert isinstance(entry.token, str) and isinstance(entry.client_id, str)


def _outcome(decode: Any, *args: Any) -> Entry | str:
    try:
        return decode(*args)  # type: ignore[no-any-return]
    except MalformedEntry as exc:
        return f"malformed: {exc}"


def _laid_out(
    version: EntryVersion,
    query: str,
    named: bool,
    client: str,
    seq: int,
    signature: bytes | None,
    trace: str | None,
) -> list[bytes]:
    fields = write_fields(
        query, b"\x80", client, seq, named=named, signature=signature, trace=trace, version=version
    )
    return as_read(fields)


# Writes as producers lay them out, in either version, to be changed at one place.
LAID_OUT = st.builds(
    _laid_out,
    st.sampled_from(READABLE),
    st.sampled_from(["CREATE ()", " ", "", "x"]),
    st.booleans(),
    st.sampled_from(["c1", ""]),
    st.integers(min_value=0, max_value=2**64 - 1),
    st.one_of(st.none(), st.binary(max_size=4)),
    st.one_of(st.none(), st.sampled_from(["00-ab-cd-01", ""])),
)


@st.composite
def flat_entries(draw: st.DrawFn) -> list[bytes]:
    if draw(st.booleans()):  # any fields, in any order, names perhaps repeated
        pairs = draw(st.lists(st.tuples(st.sampled_from(FIELD_NAMES), FIELD_VALUES), max_size=9))
        return [part for pair in pairs for part in pair]
    flat = draw(LAID_OUT)
    at = draw(st.integers(min_value=0, max_value=len(flat) - 1))
    change = draw(st.sampled_from(["keep", "rename", "replace", "drop a pair", "repeat a pair"]))
    if change == "rename":
        flat[at - at % 2] = draw(st.sampled_from(FIELD_NAMES))
    elif change == "replace":
        flat[at] = draw(st.one_of(st.sampled_from(FIELD_NAMES), FIELD_VALUES))
    elif change == "drop a pair":
        del flat[at - at % 2 : at - at % 2 + 2]
    elif change == "repeat a pair":
        flat += flat[at - at % 2 : at - at % 2 + 2]
    return flat


@settings(max_examples=500)
@given(flat_entries())
def test_a_read_entry_decodes_as_the_same_fields_as_a_dict_would(flat: list[bytes]) -> None:
    as_dict = dict(zip(flat[::2], flat[1::2], strict=True))

    assert _outcome(parse_flat, "1-0", flat) == _outcome(parse, "1-0", as_dict)


@given(
    st.sampled_from(READABLE),
    st.text(min_size=1).filter(str.strip),
    st.booleans(),
    st.binary(),
    st.text(),
    st.integers(min_value=0, max_value=10**19 - 1),
    st.one_of(st.none(), st.binary(min_size=1)),
    st.one_of(st.none(), st.text()),
)
def test_a_write_reads_back_as_it_was_written_in_either_version(
    version: EntryVersion,
    query: str,
    named: bool,
    params: bytes,
    client: str,
    seq: int,
    signature: bytes | None,
    trace: str | None,
) -> None:
    fields = write_fields(
        query, params, client, seq, named=named, signature=signature, trace=trace, version=version
    )

    entry = parse_flat("1-0", as_read(fields))

    name = query if named else None
    assert entry == WriteEntry("1-0", query, params, client, seq, name, signature, trace)
    assert as_refused_write("1-0", as_read(fields)) == WriteEntry(
        "1-0", query, params, client, seq, name
    )


def test_a_refused_entry_nothing_of_which_is_readable_is_reported_as_unknown() -> None:
    for flat in ([b"p", b"\xc1"], [b"p", msgpack.packb([2, "w"])], [b"\xff", b"\x00"]):
        refused = as_refused_write("1-0", flat)
        assert (refused.client_id, refused.query, refused.seq) == ("unknown", "", 0)


def test_an_unreadable_version_2_entry_is_kept_whole_as_its_parameters() -> None:
    for raw in (b"\xc1", msgpack.packb([2, "w"])):
        assert as_refused_write("1-0", [b"p", raw]).params == raw


GOOD = {b"v": b"1", b"k": b"w", b"c": b"intruder", b"n": b"1", b"p": encode_params({})}


def _v2(*items: object) -> dict[bytes, bytes]:
    return {b"p": msgpack.packb([2, *items])}


HAND_WRITTEN = {
    "missing parameters": {b"v": b"1", b"k": b"w", b"c": b"x", b"n": b"1", b"q": b"CREATE ()"},
    "garbage bytes": {b"\xff\xfe": b"\x00\x01\x02"},
    "sequence not a number": {**GOOD, b"n": b"one", b"q": b"CREATE ()"},
    "unknown version": {**GOOD, b"v": b"9", b"q": b"CREATE ()"},
    "query and name both": {**GOOD, b"q": b"CREATE ()", b"a": b"x"},
    "query not UTF-8": {**GOOD, b"q": b"\xff\xfe"},
    "parameters not MessagePack": {**GOOD, b"q": b"CREATE ()", b"p": b"\xc1\xc1"},
    "parameters a list": {**GOOD, b"q": b"CREATE ()", b"p": b"\x92\x01\x02"},
    "a 2 MB query": {**GOOD, b"q": b"CREATE () //" + b"x" * 2_000_000},
    "version 2, not MessagePack": {b"p": b"\xc1"},
    "version 2, and another field": {**_v2("f", "c", "t"), b"v": b"1"},
    "version 2, negative sequence": _v2("w", "c", -1, False, "CREATE ()", b"", None, None),
    "version 2, parameters as text": _v2("w", "c", 1, False, "CREATE ()", "{}", None, None),
    "version 2, query not UTF-8": {b"p": b"\x99\x02\xa1w\xa1c\x01\xc2\xa2\xff\xfe\xc4\x00\xc0\xc0"},
    "version 3": {b"p": msgpack.packb([3, "w", "c", 1, False, "CREATE ()", b"", None, None])},
}


async def test_entries_written_by_hand_are_dead_lettered_and_the_stream_goes_on(
    drainer: Any, client: MemoryClient, graph: Any, redis: Any, streams: Any
) -> None:
    keys = streams.keyspace()
    stream = keys.stream(client.session_id)
    await client.buffered.submit(f"CREATE (:{graph.label} {{i: 0}})")
    for fields in HAND_WRITTEN.values():
        await redis.xadd(stream, fields)
    await client.buffered.submit(f"CREATE (:{graph.label} {{i: 1}})")
    await client.flush()

    assert await graph.count() == 2
    letters = await list_dead_letters(redis, keys)
    assert len(letters) == len(HAND_WRITTEN) - 1  # the 2 MB query is valid Cypher and ran
    assert {d.reason for d in letters} == {"malformed"}
    assert drainer.ready.is_set()


HOSTILE = [
    "'}) DETACH DELETE n //",
    '"}) MATCH (x) DETACH DELETE x //',
    "` MATCH (x) DETACH DELETE x //",
    "$id} ) WITH 1 AS one MATCH (x) DETACH DELETE x //",
    "\\'; MATCH (x) DETACH DELETE x",
    "cs_row.`id`",
    "/* */ RETURN 1",
]


async def test_parameters_stay_parameters_even_when_they_look_like_cypher(
    mode: str, make_settings: Any, graph: Any
) -> None:
    await graph.query("CREATE (:$$ {sentinel: true})")
    async with MemoryClient(make_settings(mode)) as client:
        for n, text in enumerate(HOSTILE * 3):  # a run of one query: one UNWIND statement
            await client.buffered.submit(
                f"CREATE (:{graph.label} {{n: $n, text: $text, `$text`: $n}})",
                {"n": n, "text": text},
            )
        await client.flush()
        assert client.write_errors == []

    rows = await graph.query("MATCH (x:$$) WHERE x.n IS NOT NULL RETURN x.text AS t ORDER BY x.n")
    assert [r["t"] for r in rows] == HOSTILE * 3
    assert await graph.query("MATCH (x:$$ {sentinel: true}) RETURN count(x) AS c") == [{"c": 1}]


async def test_redacted_dead_letters_and_reports_keep_no_parameters(
    start_drainer: Any, make_settings: Any, graph: Any, redis: Any, streams: Any, neo4j: Any
) -> None:
    await start_drainer(redact_params=True)
    secret = "alice@example.com"
    async with MemoryClient(make_settings("redis")) as client:
        await client.buffered.submit(
            f"CREATE (:{graph.label} {{email: $email}})", {"email": secret}
        )
        # Fails for good, and Neo4j's message quotes the value.
        await client.buffered.submit(
            f"CREATE (:{graph.label} {{x: datetime($email)}})", {"email": secret}
        )
        await client.flush()
        [report] = client.write_errors

    assert report.parameters is None
    assert secret not in report.message and "***" in report.message
    [letter] = await list_dead_letters(redis, streams.keyspace())
    assert letter.redacted and letter.params == b""
    assert secret not in letter.message
    with pytest.raises(CypherstreamError, match="redacted"):
        await replay(redis, streams.keyspace(), [letter])
