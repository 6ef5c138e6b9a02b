"""`drainer dlq`: reading dead letters back, queueing them again, deleting them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from cypherstream.shared.connection import RedisClient
from cypherstream.shared.entry import (
    EndMarker,
    Entry,
    FlushSentinel,
    WriteEntry,
    id_key,
    unpack,
)
from cypherstream.shared.errors import BadSignature, CypherstreamError, MalformedEntry
from cypherstream.shared.keys import Keyspace
from cypherstream.shared.presence import presence
from cypherstream.shared.scripts import Scripts, submit_call
from cypherstream.shared.signing import Signer, signed_write_fields


@dataclass(frozen=True)
class DeadLetter:
    """One entry of the dead-letter stream."""

    dead_id: str
    session_id: str
    entry_id: str
    client_id: str
    query: str
    params: bytes
    code: str
    message: str
    when: str
    drainer_id: str
    reason: str = "failed"
    named: bool = False
    redacted: bool = False

    def summary(self) -> dict[str, str]:
        """The fields people and scripts read (parameters stay encoded, and out)."""
        return {
            "id": self.dead_id,
            "session": self.session_id,
            "entry_id": self.entry_id,
            "reason": self.reason,
            "code": self.code,
            "message": self.message,
            "query": self.query,
            "when": self.when,
            "drainer": self.drainer_id,
        }


def _from_fields(dead_id: bytes, fields: dict[bytes, bytes]) -> DeadLetter:
    def text(name: str) -> str:
        return fields.get(name.encode(), b"").decode(errors="replace")

    return DeadLetter(
        dead_id=dead_id.decode(),
        session_id=text("session"),
        entry_id=text("entry_id"),
        client_id=text("client"),
        query=text("query"),
        params=fields.get(b"params", b""),
        code=text("code"),
        message=text("message"),
        when=text("when"),
        drainer_id=text("drainer"),
        reason=text("reason") or "failed",
        named=fields.get(b"named") == b"1",
        redacted=fields.get(b"redacted") == b"1",
    )


async def list_dead_letters(
    redis: RedisClient,
    keys: Keyspace,
    *,
    session_id: str | None = None,
    ids: list[str] | None = None,
) -> list[DeadLetter]:
    """Dead letters in the order they were recorded, optionally of one session or by id."""
    entries = cast("list[tuple[bytes, dict[bytes, bytes]]]", await redis.xrange(keys.dead_letters))
    letters = [_from_fields(dead_id, fields) for dead_id, fields in entries]
    if session_id is not None:
        letters = [d for d in letters if d.session_id == session_id]
    if ids:
        wanted = set(ids)
        letters = [d for d in letters if d.dead_id in wanted]
    return letters


def _recovered(letter: DeadLetter) -> Entry | None:
    """The version 2 entry in a letter a drainer of an older release refused as
    malformed: it knew no such entry, and kept its one field as the parameters."""
    if letter.reason != MalformedEntry.reason or letter.query or not letter.params:
        return None
    try:
        return unpack(letter.entry_id, letter.params)
    except MalformedEntry:
        return None


def _write_to_replay(letter: DeadLetter, signer: Signer | None) -> WriteEntry | None:
    """What replaying `letter` queues (None: only its marker goes), or raises why not."""
    entry = _recovered(letter)
    if isinstance(entry, (FlushSentinel, EndMarker)):
        return None  # a flush's marker: that flush is over, nothing is left to queue
    if letter.redacted:
        raise CypherstreamError(
            f"dead letter {letter.dead_id} was recorded with its parameters redacted "
            "(--redact-params), so it cannot be replayed; resubmit it from the producer."
        )
    trusted = entry is not None and (
        signer is None or (entry.signature is not None and signer.verify(letter.session_id, entry))
    )
    if letter.reason in (BadSignature.reason, MalformedEntry.reason) and not trusted:
        raise CypherstreamError(
            f"dead letter {letter.dead_id} was refused as {letter.reason}: nobody "
            "trusted signed it, and replaying would sign it now. Resubmit it from a "
            "producer if it is genuine, or purge it."
        )
    if entry is not None:
        return entry
    name = letter.query if letter.named else None
    return WriteEntry(letter.entry_id, letter.query, letter.params, letter.client_id, 0, name)


async def replay(
    redis: RedisClient, keys: Keyspace, letters: list[DeadLetter], signer: Signer | None = None
) -> int:
    """Queue dead letters again, in their original order, each to its original session.

    Each is removed from the dead-letter stream once it is queued again. With signing
    on they are signed again (with `signer`, the drainer's first key); entries that
    were refused as unsigned or malformed, or recorded redacted, are never replayed,
    except a newer entry a drainer of an older release refused as malformed and kept
    whole: its write is queued again where its signature holds (or signing is off),
    and its flush marker is dropped.
    """
    writes = {letter.dead_id: _write_to_replay(letter, signer) for letter in letters}
    scripts = Scripts(redis)
    version = (await presence(scripts.live, keys)).writable
    for letter in sorted(letters, key=lambda d: id_key(d.dead_id)):
        write = writes[letter.dead_id]
        if write is not None:
            session = letter.session_id
            fields = signed_write_fields(
                signer, session, write.wire_query, write.params, write.client_id, 0,
                named=write.name is not None, version=version,
            )  # fmt: skip
            script_keys, args = submit_call(
                keys, session, fields, limit=0, client_id=write.client_id
            )
            await scripts.submit(keys=script_keys, args=args)
        await redis.xdel(keys.dead_letters, letter.dead_id)
    return len(letters)


async def purge(redis: RedisClient, keys: Keyspace, letters: list[DeadLetter]) -> int:
    """Delete dead letters for good."""
    if not letters:
        return 0
    return int(await redis.xdel(keys.dead_letters, *[d.dead_id for d in letters]))
