"""A Redis PING every `INTERVAL` from a process of its own, until SIGTERM; then its
round trips' seconds as one line of JSON.

`targets.tail_under_load` runs it beside the end-to-end run, so the PING (the same
client and call as `bench.ping_floor`'s) meets the same load as the submits: the
drainer, Redis and Neo4j busy on the same cores. Its tail is the round trip's own
under that load, which a submit, one round trip itself, cannot undercut.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time

from cypherstream import MemorySettings

#: Seconds between PINGs: often enough for a p99 over a run of about a second, seldom
#: enough to add little load (a PING costs 100-170 us of CPU here).
INTERVAL = 0.0005


async def main() -> None:
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    redis = MemorySettings().redis.client()
    await redis.ping()
    print("ready", flush=True)
    times: list[float] = []
    while not stopping.is_set():
        started = time.perf_counter()
        await redis.ping()
        times.append(time.perf_counter() - started)
        await asyncio.sleep(INTERVAL)
    await redis.aclose()
    print(json.dumps(times))


if __name__ == "__main__":
    asyncio.run(main())
