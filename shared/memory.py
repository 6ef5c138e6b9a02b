"""Redis memory against its `maxmemory`: what back-pressure messages, `drainer status`,
the metrics and the drainer's warning report.

With `maxmemory-policy noeviction` a full Redis refuses new entries (the producer
waits, as for a full stream) but still runs every script of the drain path, which
frees memory as it acknowledges entries.
"""

from __future__ import annotations

from dataclasses import dataclass

from cypherstream.shared.connection import RedisClient
from cypherstream.shared.scripts import is_cluster

#: Above this share of `maxmemory` drainers log a warning (and keep warning while it lasts).
WARN_RATIO = 0.9


@dataclass(frozen=True)
class MemoryUse:
    """Bytes Redis uses and its `maxmemory` (0: no limit); on a cluster, the fullest primary's."""

    used: int
    limit: int

    @property
    def ratio(self) -> float:
        """Share of `maxmemory` in use; 0.0 when there is no limit."""
        return self.used / self.limit if self.limit else 0.0

    def describe(self) -> str:
        if not self.limit:
            return f"Redis uses {_mb(self.used)} (no maxmemory set)"
        return f"Redis uses {_mb(self.used)} of its {_mb(self.limit)} maxmemory ({self.ratio:.0%})"


def _mb(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MiB"


async def memory_use(redis: RedisClient) -> MemoryUse:
    """Read `INFO memory` (of every primary, on a cluster); INFO works on a full Redis."""
    if is_cluster(redis):
        replies = await redis.info("memory", target_nodes=redis.PRIMARIES)
        infos = list(replies.values()) if isinstance(replies, dict) else [replies]
        if infos and not isinstance(infos[0], dict):  # one node answered for all
            infos = [replies]
    else:
        infos = [await redis.info("memory")]
    uses = [MemoryUse(int(i.get("used_memory", 0)), int(i.get("maxmemory", 0))) for i in infos]
    return max(uses, key=lambda use: (use.ratio, use.used))
