"""`SyncMemoryClient`: the `MemoryClient` API for synchronous agent code.

Many agent frameworks call tools from plain functions and threads. This client
runs one `MemoryClient` on an event loop of its own, in a background thread,
and every method waits for its coroutine there. Any number of threads may share
one client: each call returns when the async method would have, so a thread's
writes to a session keep their order, and writes from different threads to one
session are ordered as the calls arrive.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import types
from collections.abc import Coroutine, Iterable, Mapping
from typing import TypeVar

from cypherstream.producer.client import BufferedWrites, ErrorCallback, MemoryClient
from cypherstream.producer.reads import FlushResult
from cypherstream.producer.records import (
    MemoryRecord,
    Mention,
    Message,
    ReasoningStep,
    Role,
    ToolCall,
)
from cypherstream.producer.settings import MemorySettings
from cypherstream.shared.errors import ClientClosed
from cypherstream.shared.write_errors import BufferedWriteError

T = TypeVar("T")
R = TypeVar("R", bound=MemoryRecord)


class SyncBufferedWrites:
    """`client.buffered` of a `SyncMemoryClient`; the same methods, blocking."""

    def __init__(self, client: SyncMemoryClient) -> None:
        self._client = client

    def submit(
        self,
        query: str,
        params: Mapping[str, object] | None = None,
        *,
        session_id: str | None = None,
    ) -> None:
        """Queue one write; see `BufferedWrites.submit`."""
        self._client._call(self._async.submit(query, params, session_id=session_id))

    def submit_named(
        self,
        name: str,
        params: Mapping[str, object] | None = None,
        *,
        session_id: str | None = None,
    ) -> None:
        """Queue one write of a named query; see `BufferedWrites.submit_named`."""
        self._client._call(self._async.submit_named(name, params, session_id=session_id))

    def pending(self) -> int:
        """Writes still queued for the sessions this client wrote to."""
        return self._client._call(self._async.pending())

    def add(self, record: R) -> R:
        """Submit one typed record to its session; returns it."""
        return self._client._call(self._async.add(record))

    def add_message(self, session_id: str, role: Role, content: str, **fields: object) -> Message:
        """Store a message; see `BufferedWrites.add_message`."""
        return self._client._call(self._async.add_message(session_id, role, content, **fields))

    def record_tool_call(
        self,
        session_id: str,
        name: str,
        arguments: Mapping[str, object] | None = None,
        **fields: object,
    ) -> ToolCall:
        """Store a tool call; see `BufferedWrites.record_tool_call`."""
        return self._client._call(
            self._async.record_tool_call(session_id, name, arguments, **fields)
        )

    def add_reasoning_step(self, session_id: str, content: str, **fields: object) -> ReasoningStep:
        """Store a reasoning step; see `BufferedWrites.add_reasoning_step`."""
        return self._client._call(self._async.add_reasoning_step(session_id, content, **fields))

    def link_mention(
        self, session_id: str, message_id: str, entity: str, entity_type: str | None = None
    ) -> Mention:
        """Link a message to an entity; see `BufferedWrites.link_mention`."""
        return self._client._call(
            self._async.link_mention(session_id, message_id, entity, entity_type)
        )

    @property
    def _async(self) -> BufferedWrites:
        return self._client._inner.buffered


class SyncMemoryClient:
    """Writes an agent's memory to Neo4j from synchronous code.

    Use as ``with SyncMemoryClient(settings) as client``; leaving the block flushes
    buffered writes and disconnects, as `MemoryClient` does. `on_error` is called
    on the client's own thread: keep it short and thread-safe.
    """

    def __init__(
        self, settings: MemorySettings | None = None, *, on_error: ErrorCallback | None = None
    ) -> None:
        self._inner = MemoryClient(settings, on_error=on_error)
        self.buffered = SyncBufferedWrites(self)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def settings(self) -> MemorySettings:
        return self._inner.settings

    @property
    def client_id(self) -> str:
        return self._inner.client_id

    @property
    def session_id(self) -> str:
        return self._inner.session_id

    @property
    def write_errors(self) -> list[BufferedWriteError]:
        """Writes that failed for good, collected at each flush."""
        return self._inner.write_errors

    def __enter__(self) -> SyncMemoryClient:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self._call(self._inner.__aexit__(exc_type, exc, tb))
        self._stop_loop()

    def open(self) -> None:
        """Start the client's thread and connect; safe to call twice."""
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=self._loop.run_forever, name="cypherstream-client", daemon=True
                )
                self._thread.start()
        self._call(self._inner.open())

    def execute_write(self, query: str, params: Mapping[str, object] | None = None) -> None:
        """Run one write inline, whatever the write mode; see `MemoryClient.execute_write`."""
        self._call(self._inner.execute_write(query, params))

    def ensure_schema(self) -> None:
        """Create the constraints the typed records rely on."""
        self._call(self._inner.ensure_schema())

    def flush(
        self, timeout: float | None = None, *, session_ids: Iterable[str] | None = None
    ) -> FlushResult:
        """Block until every write submitted before this call is applied (to
        `session_ids` by anyone, if given); see `MemoryClient.flush`."""
        return self._call(self._inner.flush(timeout, session_ids=session_ids))

    wait_for_pending = flush

    def read(
        self,
        query: str,
        params: Mapping[str, object] | None = None,
        *,
        after: FlushResult | None = None,
    ) -> list[dict[str, object]]:
        """Run a read that sees what `after` flushed; see `MemoryClient.read`."""
        return self._call(self._inner.read(query, params, after=after))

    def end_session(self, *session_ids: str, timeout: float | None = None) -> None:
        """Finish sessions: flush them, then free their keys; see `MemoryClient.end_session`."""
        self._call(self._inner.end_session(*session_ids, timeout=timeout))

    def close(self) -> None:
        """Flush, disconnect and stop the client's thread. Safe to call twice."""
        if self._loop is None:
            return
        try:
            self._call(self._inner.close())
        finally:
            self._stop_loop()

    def _call(self, coro: Coroutine[object, object, T]) -> T:
        loop = self._loop
        if loop is None or not loop.is_running():
            coro.close()
            raise ClientClosed(
                "SyncMemoryClient is not open: use `with SyncMemoryClient(settings) as client` "
                "or `client.open()` first."
            )
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError(
                "SyncMemoryClient was called from its own thread (an on_error callback?); "
                "that would wait forever. Hand the work to another thread instead."
            )
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, loop)
        return future.result()

    def _stop_loop(self) -> None:
        with self._lock:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join()
        loop.close()
