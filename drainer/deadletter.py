"""Writes that failed for good: the dead-letter stream and the submitting client's report."""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass
from typing import Any

from cypherstream.shared.entry import WriteEntry, id_key, write_fields
from cypherstream.shared.errors import (
    BadSignature,
    CypherstreamError,
    MalformedEntry,
    RejectedEntry,
    RetriesExhausted,
)
from cypherstream.shared.failures import BufferedWriteError, error_code, error_message
from cypherstream.shared.keys import Keyspace
from cypherstream.shared.scripts import Scripts, submit_call
from cypherstream.shared.signing import Signer

log = logging.getLogger(__name__)


_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")


def reason_of(exc: BaseException) -> str:
    """Why a write was dead-lettered: a refusal's reason, that its attempts ran out
    (`retries-exhausted`), else that Neo4j failed it."""
    return exc.reason if isinstance(exc, (RejectedEntry, RetriesExhausted)) else "failed"


def redact_message(message: str) -> str:
    """An error message without the values it quotes (Neo4j quotes offending values)."""
    return _QUOTED.sub("'***'", message)


def failure_report(
    session_id: str, write: WriteEntry, exc: BaseException, drainer_id: str, redact: bool = False
) -> BufferedWriteError:
    message = error_message(exc)
    return BufferedWriteError(
        query=write.wire_query,
        parameters=None,
        code=error_code(exc),
        message=redact_message(message) if redact else message,
        session_id=session_id,
        entry_id=write.entry_id,
        when=dt.datetime.now(dt.timezone.utc),
        drainer_id=drainer_id,
        reason=reason_of(exc),
    )


async def dead_letter(
    scripts: Scripts,
    keys: Keyspace,
    session_id: str,
    write: WriteEntry,
    exc: BaseException,
    *,
    drainer_id: str,
    error_ttl: int,
    redact: bool = False,
) -> None:
    """Record a failed write in the dead-letter stream and in its client's error list.

    Runs before the progress record moves past the write, so a crash in between
    reports it twice rather than never. With `redact`, parameters are kept out of
    both and quoted values out of the error message (they may be personal data).
    """
    report = failure_report(session_id, write, exc, drainer_id, redact)
    await scripts.record_failure(
        keys=[keys.errors(session_id, write.client_id)],
        args=[report.to_json(None if redact else write.params), error_ttl],
    )
    fields: dict[str, str | bytes] = {
        "session": session_id,
        "entry_id": write.entry_id,
        "client": write.client_id,
        "seq": str(write.seq),
        "query": write.wire_query,
        "params": b"" if redact else write.params,
        "reason": report.reason,
        "code": report.code,
        "message": report.message,
        "when": report.when.isoformat(),
        "drainer": drainer_id,
    }
    if write.name is not None:
        fields["named"] = "1"
    if redact:
        fields["redacted"] = "1"
    await scripts.dead_letter(
        keys=[keys.dead_letters], args=[item for pair in fields.items() for item in pair]
    )
    log.warning(
        "write dead-lettered",
        extra={
            "session_id": session_id,
            "entry_id": write.entry_id,
            "reason": report.reason,
            "code": report.code,
        },
    )


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
    redis: Any, keys: Keyspace, *, session_id: str | None = None, ids: list[str] | None = None
) -> list[DeadLetter]:
    """Dead letters in the order they were recorded, optionally of one session or by id."""
    letters = [
        _from_fields(dead_id, fields) for dead_id, fields in await redis.xrange(keys.dead_letters)
    ]
    if session_id is not None:
        letters = [d for d in letters if d.session_id == session_id]
    if ids:
        wanted = set(ids)
        letters = [d for d in letters if d.dead_id in wanted]
    return letters


def _refuse_replay(letters: list[DeadLetter]) -> None:
    for letter in letters:
        if letter.reason in (BadSignature.reason, MalformedEntry.reason):
            raise CypherstreamError(
                f"dead letter {letter.dead_id} was refused as {letter.reason}: nobody "
                "trusted signed it, and replaying would sign it now. Resubmit it from a "
                "producer if it is genuine, or purge it."
            )
        if letter.redacted:
            raise CypherstreamError(
                f"dead letter {letter.dead_id} was recorded with its parameters redacted "
                "(--redact-params), so it cannot be replayed; resubmit it from the producer."
            )


async def replay(
    redis: Any, keys: Keyspace, letters: list[DeadLetter], signer: Signer | None = None
) -> int:
    """Queue dead letters again, in their original order, each to its original session.

    Each is removed from the dead-letter stream once it is queued again. With signing
    on they are signed again (with `signer`, the drainer's first key); entries that
    were refused as unsigned or malformed, or recorded redacted, are never replayed.
    """
    _refuse_replay(letters)
    scripts = Scripts(redis)
    for letter in sorted(letters, key=lambda d: id_key(d.dead_id)):
        session = letter.session_id
        signature = None
        if signer is not None:
            signature = signer.sign(
                session, letter.query, letter.named, letter.params, letter.client_id, 0
            )
        fields = write_fields(
            letter.query,
            letter.params,
            letter.client_id,
            0,
            named=letter.named,
            signature=signature,
        )
        script_keys, args = submit_call(keys, session, fields, limit=0, client_id=letter.client_id)
        await scripts.submit(keys=script_keys, args=args)
        await redis.xdel(keys.dead_letters, letter.dead_id)
    return len(letters)


async def purge(redis: Any, keys: Keyspace, letters: list[DeadLetter]) -> int:
    """Delete dead letters for good."""
    if not letters:
        return 0
    return int(await redis.xdel(keys.dead_letters, *[d.dead_id for d in letters]))
