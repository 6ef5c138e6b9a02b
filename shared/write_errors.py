"""`BufferedWriteError`: a given-up write as `client.write_errors` holds it, and the
JSON form in which drainers hand it to the client that submitted it."""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import dataclass
from typing import TypedDict

from cypherstream.shared.codec import decode_params


class _ErrorFields(TypedDict):
    q: str  # query
    p: str | None  # encoded parameters, base64
    code: str
    msg: str
    s: str  # session
    id: str  # entry
    when: str  # ISO 8601


class ErrorJson(_ErrorFields, total=False):
    """`BufferedWriteError`'s wire form (`to_json`), as decoded JSON."""

    d: str  # drainer
    r: str  # reason


@dataclass(frozen=True)
class BufferedWriteError:
    """A buffered write that failed permanently and was dead-lettered.

    `error` is ``"<code>: <message>"``; `parameters` is None when the entry was too
    malformed to decode them. `reason` says why it was given up: ``failed`` (Neo4j
    refused it for good), ``retries-exhausted`` (its own failure came back on every
    attempt; `code` is the last one's), or a refusal before it ran (``signature``,
    ``not-allowed``, ``unknown-query``, ``malformed``).
    """

    query: str
    parameters: dict[str, object] | None
    code: str
    message: str
    session_id: str
    entry_id: str
    when: dt.datetime
    drainer_id: str = ""
    reason: str = "failed"

    @property
    def error(self) -> str:
        return f"{self.code}: {self.message}"

    def to_json(self, raw_params: bytes | None) -> str:
        """The wire form; parameters travel as their encoded bytes, to decode exactly."""
        return json.dumps(
            {
                "q": self.query,
                "p": base64.b64encode(raw_params).decode() if raw_params is not None else None,
                "code": self.code,
                "msg": self.message,
                "s": self.session_id,
                "id": self.entry_id,
                "when": self.when.isoformat(),
                "d": self.drainer_id,
                "r": self.reason,
            }
        )

    @classmethod
    def from_json(cls, data: ErrorJson) -> BufferedWriteError:
        params: dict[str, object] | None = None
        if data["p"]:
            try:
                params = decode_params(base64.b64decode(data["p"]))
            except ValueError:
                params = None
        return cls(
            query=data["q"],
            parameters=params,
            code=data["code"],
            message=data["msg"],
            session_id=data["s"],
            entry_id=data["id"],
            when=dt.datetime.fromisoformat(data["when"]),
            drainer_id=data.get("d", ""),
            reason=data.get("r", "failed"),
        )
