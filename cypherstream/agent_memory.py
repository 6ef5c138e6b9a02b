"""neo4j-agent-memory's buffered writes, through cypherstream: one line for its users.

    from neo4j_agent_memory import MemoryClient, MemorySettings
    from cypherstream.agent_memory import attach

    async with MemoryClient(MemorySettings(memory={"write_mode": "buffered"})) as client:
        writer = await attach(client)  # cypherstream's settings from the environment
        await client.buffered.submit(CREATE_MESSAGE, {...})  # returns once queued
        with writer.session("conversation-7"):  # this conversation drains on its own
            await client.buffered.submit(...)
        await client.flush()  # everything before is in Neo4j (or in write_errors)

`attach` replaces the client's in-process `BufferedWriter` (neo4j-agent-memory 0.8)
with an `AttachedWriter` that keeps its documented meaning: `submit`, `flush`,
`wait_for_pending`, `pending`, `is_buffered`, `errors` (the client's `write_errors`, as
its own `BufferedWriteError` with an exception in `error`), an async `on_error`, and
`stop()` when the client closes. In the client's `write_mode="sync"` every write still
runs at once, as before; in `"buffered"` it goes through cypherstream: into Redis
Streams with `REDIS_URL` (durable, drained by `drainer run`), else in process.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

from neo4j_agent_memory import MemoryClient as AgentMemoryClient
from neo4j_agent_memory.memory.buffered import BufferedWriteError as AgentWriteError
from neo4j_agent_memory.memory.buffered import BufferedWriter

from cypherstream.producer.client import MemoryClient
from cypherstream.producer.settings import MemorySettings
from cypherstream.shared.errors import ClientClosed, WriteFailed
from cypherstream.shared.keys import validate_session_id
from cypherstream.shared.settings import Neo4jSettings
from cypherstream.shared.write_errors import BufferedWriteError

__all__ = ["AttachedWriter", "attach"]

log = logging.getLogger(__name__)

#: neo4j-agent-memory's error callback: awaited for each write that failed.
ErrorCallback = Callable[[AgentWriteError], Awaitable[None]]


class AttachedWriter:
    """Stands in for neo4j-agent-memory's `BufferedWriter`, backed by cypherstream.

    Writes without a `session_id` go to one session per attached client, in the order
    they were submitted; `session(...)` or `submit(..., session_id=...)` puts a
    conversation's writes in a session of its own, so conversations drain in parallel
    (each still in its own order).
    """

    def __init__(self, previous: BufferedWriter) -> None:
        self._previous = previous  # sync mode runs through it, as before
        self._memory: MemoryClient | None = None  # cypherstream, in buffered mode
        self._session: contextvars.ContextVar[str | None] = contextvars.ContextVar(
            "cypherstream_agent_memory_session", default=None
        )
        self._submitted = 0
        self._confirmed = 0  # submitted before the last flush that returned
        self._stopped = False
        self._callbacks: set[asyncio.Task[None]] = set()
        #: Awaited with each write that failed in the background (their `on_error`).
        self.on_error: ErrorCallback | None = None

    @property
    def is_buffered(self) -> bool:
        return self._memory is not None

    @property
    def errors(self) -> list[AgentWriteError]:
        """Background write errors since attach (newest last); `client.write_errors`."""
        if self._memory is None:
            return list(self._previous.errors)
        return [_agent_error(error) for error in self._memory.write_errors]

    @property
    def pending(self) -> int:
        """Writes submitted that no flush has confirmed yet (0 in sync mode)."""
        return self._submitted - self._confirmed

    async def submit(
        self,
        query: str,
        parameters: Mapping[str, object] | None = None,
        *,
        session_id: str | None = None,
    ) -> None:
        """Queue one write and return (sync mode: run it; its errors propagate)."""
        if self._stopped:
            raise ClientClosed("the writer was stopped (client closed): open a new client")
        if self._memory is None:
            await self._previous.submit(query, dict(parameters or {}))
            return
        session = session_id or self._session.get()
        await self._memory.buffered.submit(query, parameters, session_id=session)
        self._submitted += 1

    @contextlib.contextmanager
    def session(self, session_id: str) -> Iterator[None]:
        """Writes submitted inside (this task and those it starts) go to `session_id`."""
        token = self._session.set(validate_session_id(session_id))
        try:
            yield
        finally:
            self._session.reset(token)

    async def flush(self) -> None:
        """Return once every write submitted before is applied or in `errors`."""
        if self._memory is None:
            return
        mark = self._submitted
        await self._memory.flush()
        self._confirmed = max(self._confirmed, mark)

    async def wait_for_pending(self) -> None:
        """Alias of `flush`, as in neo4j-agent-memory."""
        await self.flush()

    async def stop(self) -> None:
        """Flush and disconnect (the client's `close()` calls it); later submits raise."""
        if self._stopped:
            return
        self._stopped = True
        if self._memory is not None:
            await self._memory.close()
        if self._callbacks:
            await asyncio.gather(*self._callbacks, return_exceptions=True)

    def _failed(self, error: BufferedWriteError) -> None:
        """cypherstream's report of a failed write, handed to their async `on_error`."""
        if self.on_error is None:
            return
        task = asyncio.get_running_loop().create_task(self._call_on_error(_agent_error(error)))
        self._callbacks.add(task)
        task.add_done_callback(self._callbacks.discard)

    async def _call_on_error(self, error: AgentWriteError) -> None:
        assert self.on_error is not None
        try:
            await self.on_error(error)
        except Exception:
            log.exception("on_error raised; the error is still in write_errors")


def _agent_error(error: BufferedWriteError) -> AgentWriteError:
    """cypherstream's error record in neo4j-agent-memory's form."""
    failure = WriteFailed(
        error.code, error.message, reason=error.reason, session_id=error.session_id
    )
    return AgentWriteError(
        query=error.query, parameters=dict(error.parameters or {}), error=failure, when=error.when
    )


async def attach(
    client: AgentMemoryClient[Any, Any, Any], settings: MemorySettings | None = None
) -> AttachedWriter:
    """Make a connected neo4j-agent-memory `MemoryClient` write through cypherstream.

    `settings` default to the environment (`REDIS_URL`, `CYPHERSTREAM_*`, `NEO4J_*`);
    without `NEO4J_URI` the client's own Neo4j connection is used. The client's
    `write_mode` decides as before: "sync" runs each write at once, "buffered" queues it.
    Writes its own writer still held are applied first. Returns the writer, also
    `client.buffered` from now on.
    """
    previous = client.buffered  # raises neo4j-agent-memory's NotConnectedError if closed
    writer = AttachedWriter(previous)
    if previous.is_buffered:
        memory = MemoryClient(_buffered(settings, client), on_error=writer._failed)
        await memory.open()
        await previous.stop()  # flushes what it still held
        writer._memory = memory
    # neo4j-agent-memory reads the writer only through this attribute (0.8.x).
    client._buffered = writer
    mode = "buffered" if writer.is_buffered else "sync: each write runs at once"
    log.info("neo4j-agent-memory writes through cypherstream (%s)", mode)
    return writer


def _buffered(
    settings: MemorySettings | None, client: AgentMemoryClient[Any, Any, Any]
) -> MemorySettings:
    """Our settings in buffered mode; the client's Neo4j unless configured."""
    chosen = settings if settings is not None else MemorySettings()
    chosen = chosen.model_copy(
        update={"memory": chosen.memory.model_copy(update={"write_mode": "buffered"})}
    )
    if settings is None and "uri" not in chosen.neo4j.model_fields_set:
        theirs = client._settings.neo4j
        chosen.neo4j = Neo4jSettings(
            uri=theirs.uri, username=theirs.username, password=theirs.password,
            database=theirs.database,
        )  # fmt: skip
    return chosen
