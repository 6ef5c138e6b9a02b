"""A producer process that submits N numbered writes to one session and exits at once,
without flush or close (`os._exit`), printing `submitted` first."""

from __future__ import annotations

import asyncio
import os
import sys

from cypherstream import MemoryClient, MemorySettings


async def main(label: str, session: str, count: int) -> None:
    settings = MemorySettings()
    settings.memory.write_mode = "buffered"
    client = MemoryClient(settings)
    await client.open()
    for i in range(count):
        await client.buffered.submit(f"CREATE (:{label} {{i: $i}})", {"i": i}, session_id=session)
    print("submitted", flush=True)
    os._exit(0)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
