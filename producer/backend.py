"""What every way of writing (inline, in process, Redis streams) offers the client."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from cypherstream.shared.write_errors import BufferedWriteError

Report = Callable[[BufferedWriteError], None]
"""How a backend hands a failed write to the client (`write_errors`, `on_error`)."""


class WriteBackend(Protocol):
    """A destination for writes whose query and session id the client has validated.
    Each backend checks the parameters as it takes them (`shared.codec`), so a write it
    cannot carry fails in `submit`, before anything is queued."""

    name: str

    async def submit(
        self,
        query: str,
        params: Mapping[str, object] | None,
        session_id: str,
        *,
        named: bool = False,
    ) -> None:
        """Hand the write over; return once it is as safe as the backend makes it.

        With `named`, `query` is the name of a query (`shared.queries`), not Cypher.
        """

    async def flush(self, timeout: float, sessions: set[str] | None = None) -> tuple[str, ...]:
        """Return when every write submitted before the call is applied or reported: to
        `sessions` by any process where the backend can tell (the streams), else this
        client's. Returns Neo4j bookmarks under which a read sees them."""

    async def end(self, session_ids: set[str], timeout: float) -> None:
        """Flush these sessions, then let their bookkeeping go (see `end_session`)."""

    async def pending(self) -> int:
        """Writes handed over but not yet applied."""

    async def close(self) -> None:
        """Release resources; the client flushes first."""
