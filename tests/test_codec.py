"""The parameter codec: everything the Neo4j driver accepts round-trips exactly."""

from __future__ import annotations

import datetime as dt
import math
import zoneinfo
from typing import Any

import pytest
import pytz
from hypothesis import given, settings
from hypothesis import strategies as st
from neo4j import spatial
from neo4j import time as ntime

from cypherstream.shared.codec import decode_params, encode_params
from cypherstream.shared.errors import UnsupportedParameter

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
ZONES = st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata"])
OFFSETS = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: dt.timezone(dt.timedelta(minutes=minutes))
)
TZINFOS = st.one_of(st.none(), OFFSETS, ZONES.map(zoneinfo.ZoneInfo), ZONES.map(pytz.timezone))


@st.composite
def aware_datetimes(draw: Any) -> dt.datetime:
    naive = draw(st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1)))
    tz = draw(TZINFOS)
    if isinstance(tz, pytz.BaseTzInfo):
        return tz.localize(naive)  # type: ignore[no-any-return]
    return naive.replace(tzinfo=tz)


neo4j_dates = st.dates().map(lambda d: ntime.Date(d.year, d.month, d.day))
neo4j_times = st.builds(
    ntime.Time,
    st.integers(0, 23),
    st.integers(0, 59),
    st.integers(0, 59),
    st.integers(0, 999_999_999),
    tzinfo=st.one_of(st.none(), OFFSETS),
)


def _neo4j_datetime(d: dt.datetime, ns: int, tz: Any, zone: Any) -> ntime.DateTime:
    value = ntime.DateTime(d.year, d.month, d.day, d.hour, d.minute, d.second, ns, tzinfo=tz)
    return zone.localize(value.replace(tzinfo=None)) if zone is not None else value


neo4j_datetimes = st.builds(
    _neo4j_datetime,
    st.datetimes(min_value=dt.datetime(1900, 1, 1)),  # the driver rejects older zone offsets
    st.integers(0, 999_999_999),
    # Zones as the driver itself attaches them (pytz); a ZoneInfo on a neo4j DateTime
    # crashes CPython's zoneinfo when asked for its offset, in the driver as anywhere.
    st.one_of(st.none(), OFFSETS),
    st.one_of(st.none(), ZONES.map(pytz.timezone)),
)
durations = st.builds(
    lambda m, d, s, ns: ntime.Duration(months=m, days=d, seconds=s, nanoseconds=ns),
    st.integers(-1000, 1000),
    st.integers(-1000, 1000),
    st.integers(-(10**6), 10**6),
    st.integers(0, 999_999_999),
)
points = st.one_of(
    st.lists(st.floats(allow_nan=False), min_size=2, max_size=3).map(spatial.CartesianPoint),
    st.lists(st.floats(allow_nan=False), min_size=2, max_size=3).map(spatial.WGS84Point),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    INT64,
    st.floats(allow_nan=False),
    st.text(),
    st.binary(),
    st.dates(),
    st.times(timezones=st.one_of(st.none(), OFFSETS)),
    aware_datetimes(),
    st.timedeltas(),
    neo4j_dates,
    neo4j_times,
    neo4j_datetimes,
    durations,
    points,
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(), inner, max_size=5)
    ),
    max_leaves=20,
)


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same type all the way down (and the same UTC offset for times)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (dt.datetime, ntime.DateTime, dt.time, ntime.Time)):
        return bool(a == b and a.utcoffset() == b.utcoffset() and str(a) == str(b))
    return bool(a == b)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(), values, max_size=6))
def test_every_supported_value_round_trips_exactly(params: dict[str, Any]) -> None:
    assert _same(decode_params(encode_params(params)), params)


@pytest.mark.parametrize("special", [math.inf, -math.inf])
def test_infinities_round_trip(special: float) -> None:
    assert decode_params(encode_params({"x": special})) == {"x": special}


def test_nan_round_trips() -> None:
    assert math.isnan(decode_params(encode_params({"x": math.nan}))["x"])


def test_tuples_travel_as_lists_as_the_driver_sends_them() -> None:
    assert decode_params(encode_params({"x": (1, (2, 3))})) == {"x": [1, [2, 3]]}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (2**63, "signed 64-bit"),
        (-(2**63) - 1, "signed 64-bit"),
        ({1, 2}, "builtins.set"),
        (object(), "builtins.object"),
        ({"nested": {3: "x"}}, "must be str"),
        (complex(1, 2), "builtins.complex"),
        (ntime.DateTime(2024, 1, 1, tzinfo=zoneinfo.ZoneInfo("UTC")), "crashes"),
        (ntime.Time(1, 2, 3, tzinfo=pytz.timezone("Europe/Paris")), "fixed offset"),
    ],
)
def test_values_the_driver_cannot_send_are_refused_with_the_path(value: Any, message: str) -> None:
    with pytest.raises(UnsupportedParameter, match=message) as info:
        encode_params({"field": value})

    assert "field" in str(info.value)
    assert isinstance(info.value, TypeError)


def _nested(levels: int, leaf: object, innermost: type) -> object:
    value = leaf
    for level in range(levels):
        as_map = (level % 2 == 0) == (innermost is dict)
        value = {"k": value} if as_map else [value]
    return value


@pytest.mark.parametrize("innermost", [dict, list])
@pytest.mark.parametrize("leaf", ["text", 1, [1.0]])
def test_values_nested_up_to_64_levels_pass_and_deeper_ones_are_refused(
    leaf: object, innermost: type
) -> None:
    encode_params({"field": _nested(63, leaf, innermost)})  # 64 levels below the map

    with pytest.raises(UnsupportedParameter, match="nests deeper than 64 levels"):
        encode_params({"field": _nested(64, leaf, innermost)})


@given(st.binary())
def test_garbage_never_decodes_to_anything_but_a_value_error_or_a_map(data: bytes) -> None:
    try:
        decoded = decode_params(data)
    except ValueError:
        return
    assert isinstance(decoded, dict)
