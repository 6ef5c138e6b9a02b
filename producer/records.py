"""Typed memory records: the common agent writes without hand-written Cypher.

Each record is a pydantic model that becomes one parameterised, idempotent write
(MERGE on the record's id), so a write that is retried or replayed changes
nothing. The writes are built-in named queries (`shared.queries.BUILTIN`): entries
carry the name, not the Cypher, and drainers that run named queries only accept
them too. The graph they build is documented in `docs/memory-graph.md`:

    (:Session {id})-[:HAS_MESSAGE]->(:Message {id, role, content, ...})
    (:Session)-[:HAS_TOOL_CALL]->(:ToolCall {id, name, arguments, ...})
    (:Message)-[:CALLED]->(:ToolCall)
    (:Session)-[:HAS_STEP]->(:ReasoningStep {id, step, content, ...})
    (:ReasoningStep)-[:ABOUT]->(:Message)
    (:Message)-[:MENTIONS]->(:Entity {name, type})
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from cypherstream.shared.queries import BUILTIN

Role = Literal["user", "assistant", "system", "tool"]

SCHEMA: tuple[str, ...] = (
    "CREATE CONSTRAINT cypherstream_session_id IF NOT EXISTS "
    "FOR (n:Session) REQUIRE n.id IS UNIQUE",
    "CREATE CONSTRAINT cypherstream_message_id IF NOT EXISTS "
    "FOR (n:Message) REQUIRE n.id IS UNIQUE",
    "CREATE CONSTRAINT cypherstream_tool_call_id IF NOT EXISTS "
    "FOR (n:ToolCall) REQUIRE n.id IS UNIQUE",
    "CREATE CONSTRAINT cypherstream_reasoning_step_id IF NOT EXISTS "
    "FOR (n:ReasoningStep) REQUIRE n.id IS UNIQUE",
    "CREATE CONSTRAINT cypherstream_entity_name IF NOT EXISTS "
    "FOR (n:Entity) REQUIRE n.name IS UNIQUE",
)
"""The uniqueness constraints `MemoryClient.ensure_schema()` creates (each also an index)."""


def _new_id() -> str:
    return uuid.uuid4().hex


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _json(value: object) -> str | None:
    # Neo4j properties cannot hold maps, so structured values are stored as JSON text.
    return None if value is None else json.dumps(value, default=str, sort_keys=True)


class MemoryRecord(BaseModel):
    """One record of an agent's memory: its session, and the write that stores it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    NAME: ClassVar[str]
    """The built-in named query (`shared.queries.BUILTIN`) that stores this record."""

    session_id: str

    def params(self) -> dict[str, object]:
        """The parameters of the record's query."""
        return self.model_dump()

    def write(self) -> tuple[str, dict[str, object]]:
        """The Cypher and parameters that store this record."""
        return BUILTIN[self.NAME], self.params()


class Message(MemoryRecord):
    """A message of the conversation, linked to its session."""

    NAME: ClassVar[str] = "cypherstream.message"

    role: Role
    content: str
    id: str = Field(default_factory=_new_id)
    created_at: dt.datetime = Field(default_factory=_now)
    metadata: dict[str, object] | None = None

    def params(self) -> dict[str, object]:
        return {**self.model_dump(), "metadata": _json(self.metadata)}


class ToolCall(MemoryRecord):
    """A tool the agent called, with its arguments and result, optionally tied to a message."""

    NAME: ClassVar[str] = "cypherstream.tool_call"

    name: str = Field(min_length=1)
    arguments: dict[str, object] = Field(default_factory=dict)
    result: object = None
    status: Literal["ok", "error"] = "ok"
    error: str | None = None
    duration_ms: float | None = None
    message_id: str | None = None
    id: str = Field(default_factory=_new_id)
    created_at: dt.datetime = Field(default_factory=_now)

    def params(self) -> dict[str, object]:
        return {
            **self.model_dump(),
            "arguments": _json(self.arguments),
            "result": _json(self.result),
        }


class ReasoningStep(MemoryRecord):
    """One step of the agent's reasoning, optionally about a message."""

    NAME: ClassVar[str] = "cypherstream.reasoning_step"

    content: str
    step: int | None = None
    message_id: str | None = None
    id: str = Field(default_factory=_new_id)
    created_at: dt.datetime = Field(default_factory=_now)


class Mention(MemoryRecord):
    """A message mentions an entity; the entity is created once, by name."""

    NAME: ClassVar[str] = "cypherstream.mention"

    message_id: str
    entity: str = Field(min_length=1)
    entity_type: str | None = None
