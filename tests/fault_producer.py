"""A producer process for the fault suite: submits numbered writes to one session and
prints `ok <seq>` once each submit has returned, until it is killed."""

from __future__ import annotations

import asyncio
import sys

from cypherstream import MemoryClient, MemorySettings
from tests.helpers import SEQUENCED_WRITE


async def main(label: str, session: str) -> None:
    settings = MemorySettings()
    settings.memory.write_mode = "buffered"
    client = MemoryClient(settings)
    await client.open()
    query = SEQUENCED_WRITE.format(label=label)
    for seq in range(100_000):
        await client.buffered.submit(query, {"session": session, "seq": seq}, session_id=session)
        print(f"ok {seq}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
