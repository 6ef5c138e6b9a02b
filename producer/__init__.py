"""What agent processes import: `MemoryClient` and its settings.

async with MemoryClient(settings) as client:
    await client.buffered.submit("MERGE (m:Message {id: $id})", {"id": 1})
    await client.flush()
"""

from producer.client import BufferedWrites, MemoryClient
from producer.settings import MemoryOptions, MemorySettings
from shared.errors import (
    BackpressureTimeout,
    ClientClosed,
    ConfigurationError,
    CypherstreamError,
    FlushTimeout,
    InvalidSessionId,
    InvalidWrite,
    RedisUnavailable,
    UnsupportedParameter,
)
from shared.failures import BufferedWriteError
from shared.settings import Neo4jSettings, RedisSettings, StreamSettings

__all__ = [
    "BackpressureTimeout",
    "BufferedWriteError",
    "BufferedWrites",
    "ClientClosed",
    "ConfigurationError",
    "CypherstreamError",
    "FlushTimeout",
    "InvalidSessionId",
    "InvalidWrite",
    "MemoryClient",
    "MemoryOptions",
    "MemorySettings",
    "Neo4jSettings",
    "RedisSettings",
    "RedisUnavailable",
    "StreamSettings",
    "UnsupportedParameter",
]
