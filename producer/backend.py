"""What every way of writing (inline, in process, Redis streams) offers the client."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from cypherstream.shared.write_errors import BufferedWriteError

Report = Callable[[BufferedWriteError], None]
"""How a backend hands a failed write to the client (`write_errors`, `on_error`)."""


class WriteBackend(Protocol):
    """A destination for writes whose query, session id and parameters the client has
    already validated (`shared.codec.check_params`): backends do not check them again."""

    name: str

    async def submit(
        self, query: str, params: dict[str, object], session_id: str, *, named: bool = False
    ) -> None:
        """Hand the write over; return once it is as safe as the backend makes it.

        With `named`, `query` is the name of a query (`shared.queries`), not Cypher.
        """

    async def flush(self, timeout: float) -> None:
        """Return when every write submitted before the call is applied or reported."""

    async def end(self, session_ids: set[str], timeout: float) -> None:
        """Flush these sessions, then let their bookkeeping go (see `end_session`)."""

    async def pending(self) -> int:
        """Writes handed over but not yet applied."""

    async def close(self) -> None:
        """Release resources; the client flushes first."""
