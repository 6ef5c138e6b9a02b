"""Which drainers are alive, as producers see them: whether a flush can be answered,
whether the live drainers accept this producer's signing key, and which entry versions
they all read."""

from __future__ import annotations

from dataclasses import dataclass, field

from redis.commands.core import AsyncScript

from cypherstream.shared.entry import VERSION, EntryVersion, announced
from cypherstream.shared.keys import Keyspace
from cypherstream.shared.scripts import reply_text


@dataclass(frozen=True)
class Presence:
    """The drainers alive now under one prefix."""

    signing: dict[str, str] = field(default_factory=dict)
    """Live drainer id to the fingerprints of the keys it verifies, comma-separated
    (`shared.signing.OFF` when it verifies nothing)."""
    reads: dict[str, tuple[int, ...]] = field(default_factory=dict)
    """Live drainer id to the entry versions it reads (`shared.entry.announced`)."""
    ever: bool = False
    """Whether any drainer has ever run under this prefix."""

    @property
    def live(self) -> int:
        return len(self.signing)

    @property
    def behind(self) -> list[str]:
        """Live drainers that do not read entries of the newest version."""
        return sorted(d for d, versions in self.reads.items() if VERSION not in versions)

    @property
    def writable(self) -> EntryVersion:
        """The entry version a producer writes: the newest unless a live drainer is behind."""
        return 1 if self.behind else VERSION


async def presence(live_script: AsyncScript, keys: Keyspace) -> Presence:
    """Run `live.lua` (read-only, so it works on a full Redis too)."""
    reply = await live_script(keys=[keys.drainers, keys.meta], args=[keys.drainer_info("")])
    ever, *triples = reply
    ids = [reply_text(drainer) for drainer in triples[::3]]
    signing = dict(zip(ids, map(reply_text, triples[1::3]), strict=True))
    reads = {d: announced(reply_text(text)) for d, text in zip(ids, triples[2::3], strict=True)}
    return Presence(signing, reads, bool(ever))
