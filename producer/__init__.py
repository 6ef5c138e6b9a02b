"""What agent processes import: `MemoryClient` (or `SyncMemoryClient`) and its settings.

async with MemoryClient(settings) as client:
    await client.buffered.submit("MERGE (m:Message {id: $id})", {"id": 1})
    message = await client.buffered.add_message("session-1", "user", "Hello")
    await client.flush()
"""

from cypherstream.producer.blocking import SyncBufferedWrites, SyncMemoryClient
from cypherstream.producer.client import BufferedWrites, MemoryClient
from cypherstream.producer.reads import FlushResult
from cypherstream.producer.records import (
    SCHEMA,
    MemoryRecord,
    Mention,
    Message,
    ReasoningStep,
    ToolCall,
)
from cypherstream.producer.settings import MemoryOptions, MemorySettings
from cypherstream.shared.errors import (
    BackpressureTimeout,
    ClientClosed,
    ConfigurationError,
    CypherstreamError,
    FlushTimeout,
    InvalidSessionId,
    InvalidWrite,
    Neo4jUnavailable,
    NotReplicated,
    ReadFailed,
    RedisPermissionDenied,
    RedisUnavailable,
    UnsupportedParameter,
    WriteFailed,
)
from cypherstream.shared.settings import Neo4jSettings, RedisSettings, StreamSettings
from cypherstream.shared.write_errors import BufferedWriteError

__all__ = [
    "SCHEMA",
    "BackpressureTimeout",
    "BufferedWriteError",
    "BufferedWrites",
    "ClientClosed",
    "ConfigurationError",
    "CypherstreamError",
    "FlushResult",
    "FlushTimeout",
    "InvalidSessionId",
    "InvalidWrite",
    "MemoryClient",
    "MemoryOptions",
    "MemoryRecord",
    "MemorySettings",
    "Mention",
    "Message",
    "Neo4jSettings",
    "Neo4jUnavailable",
    "NotReplicated",
    "ReadFailed",
    "ReasoningStep",
    "RedisPermissionDenied",
    "RedisSettings",
    "RedisUnavailable",
    "StreamSettings",
    "SyncBufferedWrites",
    "SyncMemoryClient",
    "ToolCall",
    "UnsupportedParameter",
    "WriteFailed",
]
