"""cypherstream: fire-and-forget Neo4j writes for AI agent fleets, queued durably in
Redis Streams and applied in order by `drainer run` workers.

    from cypherstream import MemoryClient, MemorySettings

    async with MemoryClient(MemorySettings()) as client:
        await client.buffered.submit("MERGE (m:Message {id: $id})", {"id": 1})
        await client.flush()

What agent processes use lives in `cypherstream.producer` (re-exported here), the
worker behind the `drainer` command in `cypherstream.drainer`, and what both agree
on (settings, wire format, key names, scripts) in `cypherstream.shared`.
"""

from cypherstream.producer import *  # noqa: F403 - the public API, listed in producer.__all__
from cypherstream.producer import __all__ as _public

__version__ = "0.1.0"

__all__ = [*_public, "__version__"]
