"""Writes that failed for good: the dead-letter stream and the submitting client's report."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from shared.entry import WriteEntry
from shared.failures import BufferedWriteError, error_code, error_message
from shared.keys import Keyspace

log = logging.getLogger(__name__)


def failure_report(
    session_id: str, write: WriteEntry, exc: BaseException, drainer_id: str
) -> BufferedWriteError:
    return BufferedWriteError(
        query=write.query,
        parameters=None,
        code=error_code(exc),
        message=error_message(exc),
        session_id=session_id,
        entry_id=write.entry_id,
        when=dt.datetime.now(dt.timezone.utc),
        drainer_id=drainer_id,
    )


async def dead_letter(
    redis: Any,
    keys: Keyspace,
    session_id: str,
    write: WriteEntry,
    exc: BaseException,
    *,
    drainer_id: str,
    error_ttl: int,
) -> None:
    """Record a failed write in the dead-letter stream and in its client's error list.

    Runs before the progress record moves past the write, so a crash in between
    reports it twice rather than never.
    """
    report = failure_report(session_id, write, exc, drainer_id)
    errors_key = keys.errors(session_id, write.client_id)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.rpush(errors_key, report.to_json(write.params))
        pipe.expire(errors_key, error_ttl)
        await pipe.execute()
    await redis.xadd(
        keys.dead_letters,
        {
            "session": session_id,
            "entry_id": write.entry_id,
            "client": write.client_id,
            "seq": str(write.seq),
            "query": write.query,
            "params": write.params,
            "code": report.code,
            "message": report.message,
            "when": report.when.isoformat(),
            "drainer": drainer_id,
        },
    )
    log.warning(
        "write dead-lettered",
        extra={"session_id": session_id, "entry_id": write.entry_id, "code": report.code},
    )
