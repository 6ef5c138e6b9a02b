"""The wire encoding of query parameters.

Parameters travel through Redis as MessagePack. Types MessagePack lacks (dates,
times, durations, points) travel as extension types whose payload is itself
MessagePack, so every value the Neo4j driver accepts decodes to an equal value
of the same Python type. Anything else is refused at submit with
`UnsupportedParameter`, before it reaches Redis.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Callable, Mapping
from typing import Any

import msgpack
import pytz
from neo4j import spatial
from neo4j import time as ntime

from cypherstream.shared.errors import CypherstreamError, UnsupportedParameter

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_MAX_DEPTH = 64

_DATE, _TIME, _DATETIME, _TIMEDELTA = 1, 2, 3, 4
_N_DATE, _N_TIME, _N_DATETIME, _N_DURATION = 10, 11, 12, 13
_POINT = 20

_POINT_CLASSES: dict[int, type[spatial.Point]] = {
    7203: spatial.CartesianPoint,
    9157: spatial.CartesianPoint,
    4326: spatial.WGS84Point,
    4979: spatial.WGS84Point,
}

_SCALARS = (str, bytes, float, bool, type(None))
# Exactly these types need no check at all (a subclass of one may still need one); a
# str needs none when it is ASCII (a flag CPython keeps), else its UTF-8 is checked.
_PLAIN = frozenset((bytes, float, bool, type(None)))
_TEMPORAL = (
    dt.date,
    dt.time,
    dt.timedelta,
    ntime.Date,
    ntime.Time,
    ntime.DateTime,
    ntime.Duration,
    spatial.Point,
)


def encode_params(params: object) -> bytes:
    """Encode a parameter map (None: no parameters), raising `UnsupportedParameter` for
    anything Neo4j cannot take."""
    params = check_params(params)
    # strict_types sends tuple subclasses (Duration, Point) and other subclasses to _to_ext.
    try:
        packed = msgpack.packb(
            params, default=_to_ext, use_bin_type=True, datetime=False, strict_types=True
        )
    except (ValueError, OverflowError) as exc:
        raise UnsupportedParameter(f"params cannot be encoded: {exc}") from exc
    return packed  # type: ignore[no-any-return]


def decode_params(data: bytes) -> dict[str, object]:
    """Decode what `encode_params` produced; raises ValueError on anything else."""
    try:
        value = msgpack.unpackb(data, ext_hook=_from_ext, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise ValueError(f"parameters are not valid MessagePack: {exc}") from exc
    if not isinstance(value, dict):
        raise ValueError(f"parameters must decode to a map, got {type(value).__name__}")
    return value


# -- validation ---------------------------------------------------------------------------


def _check_map(value: Mapping[Any, object], path: str, depth: int) -> None:
    for key, item in value.items():
        if not isinstance(key, str):
            raise UnsupportedParameter(
                f"{path} has a key {key!r} of type {type(key).__name__}; Neo4j map keys "
                "must be str. Convert the key with str() before submitting."
            )
        if not key.isascii():
            check_text(key, f"{path} has a key that")
        if depth < _MAX_DEPTH:  # plain values need no path, nor a call
            if type(item) is str:
                if not item.isascii():
                    check_text(item, _at(path, key))
                continue
            if type(item) in _PLAIN:
                continue
        _check(item, path, key, depth + 1)


def _check(value: object, parent: str, key: object, depth: int) -> None:
    """Check `value`, found at `parent[key]` (a path built only for a message or a
    container: most parameters are plain and checked without one)."""
    if depth > _MAX_DEPTH:
        raise UnsupportedParameter(f"{_at(parent, key)} nests deeper than {_MAX_DEPTH} levels")
    kind = type(value)
    if isinstance(value, int) and kind is not bool:
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise UnsupportedParameter(
                f"{_at(parent, key)} = {value} does not fit in a signed 64-bit integer, the "
                "largest integer Neo4j stores. Send it as a str or float instead."
            )
    elif isinstance(value, str):
        check_text(value, _at(parent, key))
    elif isinstance(value, (ntime.DateTime, ntime.Time)):
        _check_neo4j_zone(value, _at(parent, key))
    elif kind in _SCALARS or isinstance(value, _SCALARS + _TEMPORAL + (bytearray,)):
        pass
    elif isinstance(value, (list, tuple)):
        if kind is list and all(type(item) is float for item in value):
            return  # embeddings: the common large case, already known to be fine
        path = _at(parent, key)
        for index, item in enumerate(value):
            _check(item, path, index, depth + 1)
    elif isinstance(value, dict):
        _check_map(value, _at(parent, key), depth)
    else:
        raise UnsupportedParameter(
            f"{_at(parent, key)} is a {kind.__module__}.{kind.__qualname__}, which the Neo4j "
            "driver cannot send. Use None, bool, int, float, str, bytes, list, dict, "
            "date/time types, neo4j.time or neo4j.spatial values."
        )


def check_text(text: str, what: str, error: type[CypherstreamError] = UnsupportedParameter) -> None:
    """Raise `error` where `text` holds a character UTF-8 cannot encode (an unpaired
    surrogate, as decoding bytes with `surrogateescape` leaves): Neo4j and Redis take
    UTF-8, and the driver would raise a bare `UnicodeEncodeError`."""
    if text.isascii():  # a flag CPython keeps: free
        return
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        raise error(
            f"{what} holds an unpaired surrogate (position {exc.start}), which is not "
            "UTF-8 and which Neo4j cannot store. Decode the bytes it came from with "
            "errors='replace'."
        ) from None


def _at(parent: str, key: object) -> str:
    return f"{parent}[{key!r}]"


def _check_neo4j_zone(value: ntime.DateTime | ntime.Time, path: str) -> None:
    # The driver asks the zone for the value's offset; CPython's ZoneInfo (C code)
    # crashes the interpreter when handed a neo4j value instead of a datetime.
    zone = value.tzinfo
    if isinstance(value, ntime.DateTime) and isinstance(zone, zoneinfo.ZoneInfo):
        raise UnsupportedParameter(
            f"{path} is a neo4j DateTime with a zoneinfo.ZoneInfo zone, which crashes the "
            "driver. Use a pytz zone, or send a datetime.datetime instead."
        )
    if isinstance(value, ntime.Time) and zone is not None and not isinstance(zone, dt.timezone):
        raise UnsupportedParameter(
            f"{path} is a neo4j Time with zone {zone!r}; a Time can carry only a fixed "
            "offset (datetime.timezone)."
        )


# -- extension types -----------------------------------------------------------------------


def _pack(value: object) -> bytes:
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


def _tz(tzinfo: dt.tzinfo | None, offset: dt.timedelta | None) -> list[object] | None:
    """Encode a time zone; `offset` is the value's own UTC offset, where it has one."""
    if tzinfo is None:
        return None
    if isinstance(tzinfo, zoneinfo.ZoneInfo):
        return ["z", tzinfo.key]
    if isinstance(tzinfo, pytz.BaseTzInfo):
        # pytz keeps the offset in the tzinfo object; carry it to pick the same one back.
        return ["p", tzinfo.zone, None if offset is None else offset.total_seconds()]
    if isinstance(tzinfo, dt.timezone):
        offset = tzinfo.utcoffset(None)
        return ["o", offset.days * 86400 + offset.seconds, offset.microseconds]
    raise UnsupportedParameter(
        f"time zone {tzinfo!r} cannot be carried; use zoneinfo.ZoneInfo, pytz or datetime.timezone"
    )


def _untz_fixed(data: Any) -> dt.tzinfo | None:
    """Zones a neo4j Time can carry safely: none or a fixed offset."""
    if data is not None and data[0] != "o":
        raise ValueError("a neo4j Time can only carry a fixed UTC offset")
    return _untz(data)


def _untz(data: Any) -> dt.tzinfo | None:
    if data is None:
        return None
    kind, *rest = data
    if kind == "z":
        return zoneinfo.ZoneInfo(rest[0])
    if kind == "p":
        return pytz.timezone(rest[0])
    if kind == "o":
        return dt.timezone(dt.timedelta(seconds=rest[0], microseconds=rest[1]))
    raise ValueError(f"unknown time zone kind {kind!r}")


def _to_ext(value: object) -> object:
    # neo4j.time types first: some of them subclass nothing, some compare equal to natives.
    if isinstance(value, ntime.DateTime):
        # Only pytz needs the offset; asking a ZoneInfo for a neo4j DateTime's offset
        # crashes the interpreter (ZoneInfo's C code expects a datetime.datetime).
        pytz_offset = value.utcoffset() if isinstance(value.tzinfo, pytz.BaseTzInfo) else None
        tz = _tz(value.tzinfo, pytz_offset)
        fields = [value.year, value.month, value.day, value.hour, value.minute, value.second]
        return msgpack.ExtType(_N_DATETIME, _pack([*fields, value.nanosecond, tz]))
    if isinstance(value, ntime.Date):
        return msgpack.ExtType(_N_DATE, _pack([value.year, value.month, value.day]))
    if isinstance(value, ntime.Time):
        fields = [value.hour, value.minute, value.second, value.nanosecond]
        return msgpack.ExtType(_N_TIME, _pack([*fields, _tz(value.tzinfo, None)]))
    if isinstance(value, ntime.Duration):
        parts = [value.months, value.days, value.seconds, value.nanoseconds]
        return msgpack.ExtType(_N_DURATION, _pack(parts))
    if isinstance(value, dt.datetime):
        fields = [value.year, value.month, value.day, value.hour, value.minute, value.second]
        extra = [value.microsecond, _tz(value.tzinfo, value.utcoffset()), value.fold]
        return msgpack.ExtType(_DATETIME, _pack(fields + extra))
    if isinstance(value, dt.date):
        return msgpack.ExtType(_DATE, _pack([value.year, value.month, value.day]))
    if isinstance(value, dt.time):
        fields = [value.hour, value.minute, value.second, value.microsecond]
        return msgpack.ExtType(_TIME, _pack([*fields, _tz(value.tzinfo, None), value.fold]))
    if isinstance(value, dt.timedelta):
        return msgpack.ExtType(_TIMEDELTA, _pack([value.days, value.seconds, value.microseconds]))
    if isinstance(value, spatial.Point):
        return msgpack.ExtType(_POINT, _pack([value.srid, list(value)]))
    return _plain(value)


def _plain(value: object) -> object:
    """Subclasses of plain types (IntEnum, OrderedDict, tuple) travel as their base type."""
    bases: tuple[type, ...] = (bool, int, float, str, bytes, dict)
    for base in bases:
        if isinstance(value, base):
            return base(value)
    if isinstance(value, (tuple, list, bytearray)):
        return list(value) if not isinstance(value, bytearray) else bytes(value)
    raise UnsupportedParameter(f"cannot encode {type(value).__name__}")


def _from_ext(code: int, payload: bytes) -> object:
    data = msgpack.unpackb(payload, raw=False)
    decoder = _DECODERS.get(code)
    if decoder is None:
        raise ValueError(f"unknown extension type {code}")
    return decoder(data)


def _pytz_localize(tz: pytz.BaseTzInfo, naive: Any, offset: float | None) -> Any:
    """Attach a pytz zone, choosing the DST side whose offset was carried."""
    for is_dst in (False, True):
        candidate = tz.localize(naive, is_dst=is_dst)
        found = candidate.utcoffset()
        if offset is None or (found is not None and found.total_seconds() == offset):
            return candidate
    return tz.localize(naive)


def _decode_datetime(d: list[Any]) -> dt.datetime:
    tz = _untz(d[7])
    if isinstance(tz, pytz.BaseTzInfo):
        naive = dt.datetime(d[0], d[1], d[2], d[3], d[4], d[5], d[6], fold=d[8])
        return _pytz_localize(tz, naive, d[7][2])  # type: ignore[no-any-return]
    return dt.datetime(d[0], d[1], d[2], d[3], d[4], d[5], d[6], tzinfo=tz, fold=d[8])


def _decode_neo4j_datetime(d: list[Any]) -> ntime.DateTime:
    if d[7] is not None and d[7][0] == "z":
        raise ValueError("a neo4j DateTime with a ZoneInfo zone would crash the driver")
    tz = _untz(d[7])
    naive = ntime.DateTime(d[0], d[1], d[2], d[3], d[4], d[5], nanosecond=d[6])
    if isinstance(tz, pytz.BaseTzInfo):
        return _pytz_localize(tz, naive, d[7][2])  # type: ignore[no-any-return]
    return naive.replace(tzinfo=tz) if tz is not None else naive


def _decode_point(d: list[Any]) -> spatial.Point:
    srid, coords = d
    cls = _POINT_CLASSES.get(srid)
    if cls is None:
        raise ValueError(f"unknown point SRID {srid}")
    return cls(coords)


_DECODERS: dict[int, Callable[[Any], object]] = {
    _DATE: lambda d: dt.date(*d),
    _TIME: lambda d: dt.time(d[0], d[1], d[2], d[3], tzinfo=_untz(d[4]), fold=d[5]),
    _DATETIME: _decode_datetime,
    _TIMEDELTA: lambda d: dt.timedelta(days=d[0], seconds=d[1], microseconds=d[2]),
    _N_DATE: lambda d: ntime.Date(*d),
    _N_TIME: lambda d: ntime.Time(d[0], d[1], d[2], nanosecond=d[3], tzinfo=_untz_fixed(d[4])),
    _N_DATETIME: _decode_neo4j_datetime,
    _N_DURATION: lambda d: ntime.Duration(months=d[0], days=d[1], seconds=d[2], nanoseconds=d[3]),
    _POINT: _decode_point,
}


def check_params(params: object) -> dict[str, object]:
    """Check a parameter map (None: no parameters) without encoding it; a copy of it, so a
    caller that changes its map afterwards does not change the write."""
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise UnsupportedParameter(
            f"params must be a mapping of str to values, got {type(params).__name__}"
        )
    _check_map(params, "params", 0)
    return dict(params)
