"""`MemoryClient`: what agent code holds to write to Neo4j, inline or buffered."""

from __future__ import annotations

import collections
import logging
import types
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

from neo4j import AsyncDriver
from neo4j import exceptions as nx

from cypherstream.producer.backend import WriteBackend
from cypherstream.producer.embedded import EmbeddedBackend
from cypherstream.producer.inline import InlineBackend, run_inline
from cypherstream.producer.reads import FlushResult, run_read
from cypherstream.producer.records import (
    SCHEMA,
    MemoryRecord,
    Mention,
    Message,
    ReasoningStep,
    Role,
    ToolCall,
)
from cypherstream.producer.settings import MemorySettings
from cypherstream.producer.streams import StreamBackend
from cypherstream.shared.codec import check_text
from cypherstream.shared.connection import check_neo4j, open_redis
from cypherstream.shared.errors import ClientClosed, InvalidWrite, Neo4jUnavailable
from cypherstream.shared.keys import validate_session_id
from cypherstream.shared.presence import presence
from cypherstream.shared.queries import BUILTIN_PREFIX, QueryBook
from cypherstream.shared.schema import create_schema, schema_failure
from cypherstream.shared.scripts import Scripts
from cypherstream.shared.signing import check_producer
from cypherstream.shared.tracing import span
from cypherstream.shared.write_errors import BufferedWriteError

log = logging.getLogger(__name__)

ErrorCallback = Callable[[BufferedWriteError], object]
R = TypeVar("R", bound=MemoryRecord)


class BufferedWrites:
    """`client.buffered`: fire-and-forget writes. In sync mode each write is awaited inline."""

    def __init__(self, client: MemoryClient) -> None:
        self._client = client

    async def submit(
        self,
        query: str,
        params: Mapping[str, object] | None = None,
        *,
        session_id: str | None = None,
    ) -> None:
        """Queue one write (buffered mode) or run it (sync mode).

        Buffered: returns once the write is safely handed over; waits only while the
        session already holds `memory.max_pending` queued writes. Failures of the write
        itself appear in `client.write_errors` after a flush, never here. Sync: returns
        once Neo4j committed it; raises `WriteFailed` for a write Neo4j refuses (its
        `code` Neo4j's), `Neo4jUnavailable` while Neo4j cannot be reached.
        """
        if not isinstance(query, str) or not query.strip():
            raise InvalidWrite(f"query must be a non-empty str of Cypher, got {query!r:.80}")
        check_text(query, "the query", InvalidWrite)
        await self._hand_over(query, params, session_id, named=False)

    async def submit_named(
        self,
        name: str,
        params: Mapping[str, object] | None = None,
        *,
        session_id: str | None = None,
    ) -> None:
        """Queue one write of a named query (`shared.queries`) instead of Cypher text.

        Drainers look the name up in their `--queries` file (or the built-in queries
        of the typed records); with `--allow-raw-cypher false` only these run. A name
        this client can check (its own `memory.queries` file, or a built-in name) is
        checked here and raises `UnknownQuery` before anything is queued.
        """
        if not isinstance(name, str) or not name.strip():
            raise InvalidWrite(f"query name must be a non-empty str, got {name!r:.80}")
        check_text(name, "the query name", InvalidWrite)
        client = self._client
        if client.settings.memory.queries is not None or name.startswith(BUILTIN_PREFIX):
            client._queries.cypher(name)  # raises UnknownQuery
        await self._hand_over(name, params, session_id, named=True)

    async def _hand_over(
        self, query: str, params: Mapping[str, object] | None, session_id: str | None, named: bool
    ) -> None:
        session = validate_session_id(session_id) if session_id else self._client.session_id
        await self._client._backend_for_writes().submit(query, params, session, named=named)
        self._client._submitted[session] += 1

    async def pending(self) -> int:
        """Writes (and flush markers) still queued for the sessions this client wrote to."""
        return await self._client._backend_for_writes().pending()

    async def add(self, record: R) -> R:
        """Submit one typed record (see `producer.records`) to its session; returns it."""
        await self.submit_named(record.NAME, record.params(), session_id=record.session_id)
        return record

    async def add_message(
        self, session_id: str, role: Role, content: str, **fields: object
    ) -> Message:
        """Store a message of the conversation; returns it (its `id` links later records)."""
        record = {"session_id": session_id, "role": role, "content": content, **fields}
        return await self.add(Message.model_validate(record))

    async def record_tool_call(
        self,
        session_id: str,
        name: str,
        arguments: Mapping[str, object] | None = None,
        **fields: object,
    ) -> ToolCall:
        """Store a tool call (result, status, duration, `message_id` that caused it)."""
        record = {"session_id": session_id, "name": name, "arguments": dict(arguments or {})}
        return await self.add(ToolCall.model_validate({**record, **fields}))

    async def add_reasoning_step(
        self, session_id: str, content: str, **fields: object
    ) -> ReasoningStep:
        """Store one reasoning step (`step` number, `message_id` it is about)."""
        record = {"session_id": session_id, "content": content, **fields}
        return await self.add(ReasoningStep.model_validate(record))

    async def link_mention(
        self, session_id: str, message_id: str, entity: str, entity_type: str | None = None
    ) -> Mention:
        """Link a message (added earlier in this session) to the entity it mentions."""
        return await self.add(
            Mention(
                session_id=session_id,
                message_id=message_id,
                entity=entity,
                entity_type=entity_type,
            )
        )


class MemoryClient:
    """Writes an agent's memory to Neo4j.

    Use as ``async with MemoryClient(settings) as client``. Leaving the block (also on
    an exception) flushes buffered writes and disconnects.
    """

    def __init__(
        self, settings: MemorySettings | None = None, *, on_error: ErrorCallback | None = None
    ) -> None:
        self.settings = settings if settings is not None else MemorySettings()
        self.client_id = uuid.uuid4().hex[:16]
        configured = self.settings.memory.session_id
        self.session_id = validate_session_id(configured or f"client-{self.client_id}")
        self.write_errors: list[BufferedWriteError] = []
        self.buffered = BufferedWrites(self)
        self._on_error = on_error
        self._queries = QueryBook.load(self.settings.memory.queries)
        self._driver: AsyncDriver | None = None
        self._backend: WriteBackend | None = None
        # Writes submitted per session since that session's last flush.
        self._submitted: collections.Counter[str] = collections.Counter()

    async def __aenter__(self) -> MemoryClient:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        try:
            await self.close()
        except Exception:
            if exc is None:
                raise
            # The body's exception matters more; the flush failure is logged, not lost.
            log.exception("flush on leaving `async with` failed after the body raised")

    async def open(self) -> None:
        """Connect the configured backend; logs once which backend is active.

        Raises `ConfigurationError` for settings only their owner can fix (a malformed
        URL, refused credentials, an unknown database), `RedisUnavailable` or
        `Neo4jUnavailable` when a server it needs now cannot be reached.
        """
        if self._backend is not None:
            return
        try:
            self._backend = await self._make_backend()
        except BaseException:
            await self._close_driver()
            raise
        log.info(
            "cypherstream writes: %s", self._backend.name, extra={"backend": self._backend.name}
        )

    async def _make_backend(self) -> WriteBackend:
        memory = self.settings.memory
        database = self.settings.neo4j.database
        if memory.write_mode == "sync":
            await check_neo4j(self.settings.neo4j, self._neo4j())
            return InlineBackend(self._neo4j(), self.settings.neo4j, self._queries)
        if not self.settings.redis.url:
            try:
                await check_neo4j(self.settings.neo4j, self._neo4j())
            except Neo4jUnavailable as exc:  # writes wait in the queue until it answers
                log.warning("%s Buffered writes are retried until it answers.", exc)
            return EmbeddedBackend(
                self._neo4j(), database, memory.max_pending, self._record, self._queries
            )
        keyspace = self.settings.streams.keyspace()
        signer = self.settings.streams.signer()
        redis = await open_redis(self.settings.redis, keyspace)
        try:
            live = await presence(Scripts(redis).live, keyspace)
            check_producer(live, signer)
        except BaseException:
            await redis.aclose()
            raise
        if live.behind:
            log.warning(
                "the live drainers %s read entry version 1 only, so this client writes it "
                "until it is opened again; upgrade them to let it write the newer, cheaper one",
                ", ".join(live.behind),
            )
        return StreamBackend(
            redis, self.settings.redis, keyspace, memory, self.client_id, self._record, signer,
            live.writable,
        )  # fmt: skip

    def _neo4j(self) -> AsyncDriver:
        if self._driver is None:
            self._driver = self.settings.neo4j.driver()
        return self._driver

    def _backend_for_writes(self) -> WriteBackend:
        if self._backend is None:
            raise ClientClosed(
                "MemoryClient is not open: use `async with MemoryClient(settings) as client` "
                "or `await client.open()` first."
            )
        return self._backend

    def _record(self, error: BufferedWriteError) -> None:
        self.write_errors.append(error)
        log.warning(
            "buffered write failed",
            extra={"code": error.code, "session_id": error.session_id, "entry_id": error.entry_id},
        )
        if self._on_error is not None:
            try:
                self._on_error(error)
            except Exception:
                log.exception("on_error callback raised; the error is still in write_errors")

    async def execute_write(self, query: str, params: Mapping[str, object] | None = None) -> None:
        """Run one write inline, whatever the write mode. Raises `WriteFailed` for a
        write Neo4j refuses, `Neo4jUnavailable` while it cannot be reached."""
        await run_inline(self._neo4j(), self.settings.neo4j, query, params, self.session_id)

    async def ensure_schema(self) -> None:
        """Create the constraints the typed records rely on (idempotent, and safe with
        other clients doing it at the same moment; runs inline)."""
        try:
            await create_schema(self._neo4j(), self.settings.neo4j.database, SCHEMA)
        except (nx.Neo4jError, nx.DriverError, OSError) as exc:
            raise schema_failure(self.settings.neo4j, exc) from exc

    async def flush(
        self, timeout: float | None = None, *, session_ids: Iterable[str] | None = None
    ) -> FlushResult:
        """Return once every write submitted before this call is applied in Neo4j.

        By default the writes of this client; with `session_ids`, every write submitted
        to those sessions by any process (with Redis: another process can wait for an
        agent's conversation). Failed writes of this client land in `write_errors`.
        Raises `FlushTimeout` when nothing acknowledges in time, and at once when no
        drainer is alive. The result's bookmarks make `read(..., after=result)` see
        every flushed write, on any member of a Neo4j cluster.
        """
        limit = timeout if timeout is not None else self.settings.memory.flush_timeout
        chosen = None if session_ids is None else {validate_session_id(s) for s in session_ids}
        before = len(self.write_errors)
        with span("cypherstream.flush", {"cypherstream.client": self.client_id}) as traced:
            bookmarks = await self._backend_for_writes().flush(limit, chosen)
            failed = len(self.write_errors) - before
            if traced is not None:
                traced.set_attribute("cypherstream.failed", failed)
        flushed = self._submitted if chosen is None else {s: self._submitted[s] for s in chosen}
        applied = sum(flushed.values()) - failed
        for session in list(flushed):
            del self._submitted[session]
        return FlushResult(max(applied, 0), failed, bookmarks)

    wait_for_pending = flush

    async def read(
        self,
        query: str,
        params: Mapping[str, object] | None = None,
        *,
        after: FlushResult | None = None,
    ) -> list[dict[str, object]]:
        """Run a read query; with `after`, Neo4j runs it only once the server holds
        every write that flush confirmed (bookmarks), so it sees them on any member of
        a cluster. Records as dicts. Raises `ReadFailed` for a query Neo4j refuses."""
        bookmarks = after.bookmarks if after is not None else ()
        return await run_read(self._neo4j(), self.settings.neo4j, query, params, bookmarks)

    async def end_session(self, *session_ids: str, timeout: float | None = None) -> None:
        """Finish sessions (default: this client's): flush them, then free their keys.

        Returns once their writes are applied (failures in `write_errors`, as with
        `flush`). Drainers then remove the sessions' streams and bookkeeping from
        Redis, and their progress records from Neo4j, so finished sessions leave
        nothing behind. Writing to a session again later simply starts it afresh.
        """
        ids = {validate_session_id(s) for s in session_ids} or {self.session_id}
        limit = timeout if timeout is not None else self.settings.memory.flush_timeout
        await self._backend_for_writes().end(ids, limit)

    async def close(self) -> None:
        """Flush, then disconnect. Safe to call twice."""
        backend, self._backend = self._backend, None
        try:
            if backend is not None:
                try:
                    await backend.flush(self.settings.memory.flush_timeout)
                finally:
                    await backend.close()
        finally:
            await self._close_driver()

    async def _close_driver(self) -> None:
        if self._driver is not None:
            driver, self._driver = self._driver, None
            await driver.close()
