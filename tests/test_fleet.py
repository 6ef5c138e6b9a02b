"""Several producers and several drainer processes at once."""

from __future__ import annotations

import asyncio
from typing import Any

from cypherstream import MemoryClient

SESSIONS = 50
WRITES = 100
PRODUCERS = 4


async def test_fan_out_applies_every_write_once_and_every_session_in_order(
    spawn_drainer: Any, make_settings: Any, graph: Any
) -> None:
    await spawn_drainer("--concurrency", "8")
    await spawn_drainer("--concurrency", "8")
    label = graph.label

    async def producer(index: int) -> None:
        async with MemoryClient(make_settings("redis")) as client:
            mine = [s for s in range(SESSIONS) if s % PRODUCERS == index]
            for seq in range(WRITES):
                for session in mine:
                    await client.buffered.submit(
                        f"MERGE (s:{label} {{session: $session}}) "
                        "SET s.seqs = coalesce(s.seqs, []) + $seq",
                        {"session": session, "seq": seq},
                        session_id=f"fleet-{session}",
                    )
            await client.flush()

    await asyncio.gather(*(producer(i) for i in range(PRODUCERS)))

    rows = await graph.query("MATCH (s:$$) RETURN s.session AS session, s.seqs AS seqs")
    assert len(rows) == SESSIONS
    for row in rows:
        assert row["seqs"] == list(range(WRITES)), f"session {row['session']} out of order"
