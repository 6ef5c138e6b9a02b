"""Signed entries: only holders of a shared secret can queue writes that drainers run.

Whoever can write to the streams could otherwise run any Cypher as the drainer's
Neo4j user. With `CYPHERSTREAM_SIGNING_KEYS` set on both sides, the producer signs
each write with HMAC-SHA256 over a canonical encoding of its session, query (or
query name), parameters, client and sequence number, and the drainer runs only
entries whose signature one of its keys confirms. Several keys allow rotation:
the first signs, all verify.

A key is never stored in Redis. Each drainer publishes the *fingerprints* of the
keys it accepts (an HMAC of a constant, which reveals nothing about the key) with its
heartbeat, so they expire with it; a producer can tell at start-up that a live
drainer would refuse its key, rather than fill the dead-letter stream.
"""

from __future__ import annotations

import hashlib
import hmac
import logging

import msgpack

from cypherstream.shared.entry import VERSION, EntryVersion, WriteEntry, write_fields
from cypherstream.shared.errors import ConfigurationError
from cypherstream.shared.presence import Presence

log = logging.getLogger(__name__)

_DOMAIN = b"cypherstream-entry-v1"
_FINGERPRINT = b"cypherstream-key-fingerprint-v1"
MIN_KEY_LENGTH = 16
OFF = "off"


def fingerprint(key: bytes) -> str:
    """A public name for a key: equal keys, equal names; the key cannot be recovered."""
    return hmac.new(key, _FINGERPRINT, hashlib.sha256).hexdigest()[:16]


def canonical(
    session_id: str,
    query: str,
    named: bool,
    params: bytes,
    client_id: str,
    seq: int,
    trace: str | None = None,
) -> bytes:
    """The bytes a signature covers: every field that decides what a write does, and
    its trace context when it carries one."""
    fields: list[object] = [_DOMAIN, session_id, named, query, params, client_id, seq]
    packed: bytes = msgpack.packb(fields if trace is None else [*fields, trace])
    return packed


class Signer:
    """Signs with the first key, verifies with any (`CYPHERSTREAM_SIGNING_KEYS`)."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise ConfigurationError("signing needs at least one key")
        for key in keys:
            if len(key) < MIN_KEY_LENGTH:
                raise ConfigurationError(
                    f"a signing key is {len(key)} bytes; use at least {MIN_KEY_LENGTH} "
                    "random bytes, e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`"
                )
        self._keys = keys

    @classmethod
    def parse(cls, value: str | None) -> Signer | None:
        """From the setting's text: keys separated by commas; None when unset or empty."""
        keys = [part.strip().encode() for part in (value or "").split(",") if part.strip()]
        return cls(keys) if keys else None

    @property
    def fingerprints(self) -> list[str]:
        return [fingerprint(key) for key in self._keys]

    def sign(
        self,
        session_id: str,
        query: str,
        named: bool,
        params: bytes,
        client_id: str,
        seq: int,
        trace: str | None = None,
    ) -> bytes:
        message = canonical(session_id, query, named, params, client_id, seq, trace)
        return hmac.new(self._keys[0], message, hashlib.sha256).digest()

    def verify(self, session_id: str, entry: WriteEntry) -> bool:
        """Whether `entry`, read from `session_id`'s stream, carries a valid signature."""
        if entry.signature is None:
            return False
        message = canonical(
            session_id,
            entry.wire_query,
            entry.name is not None,
            entry.params,
            entry.client_id,
            entry.seq,
            entry.trace,
        )
        return any(
            hmac.compare_digest(hmac.new(key, message, hashlib.sha256).digest(), entry.signature)
            for key in self._keys
        )


def signed_write_fields(
    signer: Signer | None,
    session_id: str,
    query: str,
    params: bytes,
    client_id: str,
    seq: int,
    *,
    named: bool = False,
    trace: str | None = None,
    version: EntryVersion = VERSION,
) -> list[bytes | str]:
    """The fields of a write entry, signed when `signer` is set: what `submit` appends,
    and what `drainer dlq replay` appends again. The signature covers the same fields
    in either entry version."""
    signature = None
    if signer is not None:
        signature = signer.sign(session_id, query, named, params, client_id, seq, trace)
    return write_fields(
        query, params, client_id, seq, named=named, signature=signature, trace=trace,
        version=version,
    )  # fmt: skip


def fingerprints_text(signer: Signer | None) -> str:
    """What a drainer publishes with its heartbeat: its keys' fingerprints, or `OFF`."""
    return ",".join(signer.fingerprints) if signer else OFF


def check_producer(live: Presence, signer: Signer | None) -> None:
    """Producer start: refuse to queue writes that a live drainer would dead-letter (or
    run unchecked). Each drainer publishes its keys with its heartbeat, so a drainer
    that stopped no longer counts, and keys rotate drainer by drainer."""
    if not live.live:
        log.info("no drainer is alive; the signing settings are not checked")
        return
    mine = signer.fingerprints[0] if signer else OFF
    refusing = {
        drainer: accepted
        for drainer, accepted in live.signing.items()
        if accepted and mine not in accepted.split(",")
    }
    if not refusing:
        return
    names = ", ".join(sorted(refusing))
    if signer is None:
        raise ConfigurationError(
            f"the live drainers {names} only run signed entries, and this producer has "
            "no signing key. Set CYPHERSTREAM_SIGNING_KEYS to their key."
        )
    if all(accepted == OFF for accepted in refusing.values()):
        raise ConfigurationError(
            "this producer signs entries (CYPHERSTREAM_SIGNING_KEYS is set) but the live "
            f"drainers {names} verify nothing: set the same key on them, or unset it here."
        )
    their = "; ".join(f"{d}: {refusing[d]}" for d in sorted(refusing))
    raise ConfigurationError(
        f"the live drainers {names} do not accept this producer's signing key "
        f"(fingerprint {mine}; they accept {their}). Use a key every live drainer lists in "
        "CYPHERSTREAM_SIGNING_KEYS; the first key of the list signs."
    )
