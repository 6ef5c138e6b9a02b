"""Which drainers are alive, as producers see them: whether a flush can be answered,
and whether the live drainers accept this producer's signing key."""

from __future__ import annotations

from dataclasses import dataclass, field

from redis.commands.core import AsyncScript

from cypherstream.shared.keys import Keyspace
from cypherstream.shared.scripts import reply_text


@dataclass(frozen=True)
class Presence:
    """The drainers alive now under one prefix."""

    signing: dict[str, str] = field(default_factory=dict)
    """Live drainer id to the fingerprints of the keys it verifies, comma-separated
    (`shared.signing.OFF` when it verifies nothing)."""
    ever: bool = False
    """Whether any drainer has ever run under this prefix."""

    @property
    def live(self) -> int:
        return len(self.signing)


async def presence(live_script: AsyncScript, keys: Keyspace) -> Presence:
    """Run `live.lua` (read-only, so it works on a full Redis too)."""
    reply = await live_script(keys=[keys.drainers, keys.meta], args=[keys.drainer_info("")])
    ever, *pairs = reply
    signing = {reply_text(pairs[i]): reply_text(pairs[i + 1]) for i in range(0, len(pairs), 2)}
    return Presence(signing, bool(ever))
