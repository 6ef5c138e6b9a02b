"""Recording a write that was given up, on the drain path: in the dead-letter stream and
in the error list its client collects at its next flush. (`drainer dlq` reads them
back: `drainer/dlq.py`.)"""

from __future__ import annotations

import datetime as dt
import logging
import re

from cypherstream.shared.dispositions import error_code, error_message
from cypherstream.shared.entry import WriteEntry
from cypherstream.shared.errors import (
    RejectedEntry,
    RetriesExhausted,
)
from cypherstream.shared.keys import Keyspace
from cypherstream.shared.scripts import Scripts
from cypherstream.shared.tracing import span
from cypherstream.shared.write_errors import BufferedWriteError

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
    links = [(write.trace, {"cypherstream.entry_id": write.entry_id})] if write.trace else []
    attributes = {"cypherstream.session": session_id, "cypherstream.code": report.code,
                  "cypherstream.reason": report.reason}  # fmt: skip
    with span("cypherstream.dead_letter", attributes, links):
        await _record(scripts, keys, session_id, write, report, drainer_id, error_ttl, redact)


async def _record(
    scripts: Scripts,
    keys: Keyspace,
    session_id: str,
    write: WriteEntry,
    report: BufferedWriteError,
    drainer_id: str,
    error_ttl: int,
    redact: bool,
) -> None:
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
