"""Finding work costs O(ready sessions): an idle drainer never touches idle sessions."""

from __future__ import annotations

import asyncio
from typing import Any

from cypherstream import MemoryClient
from tests.helpers import count_is, wait_until

PER_SESSION_COMMANDS = ("xreadgroup", "xautoclaim", "xlen", "xack", "xinfo", "scan")


async def _calls(redis: Any) -> dict[str, int]:
    stats = await redis.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


async def _nothing_ready(redis: Any, streams: Any) -> bool:
    keys = streams.keyspace()
    sizes = [await redis.zcard(keys.ready(p)) for p in range(keys.partitions)]
    return sum(sizes) == 0


async def test_an_idle_drainer_polls_the_ready_sets_and_nothing_of_idle_sessions(
    start_drainer: Any, make_settings: Any, graph: Any, redis: Any, streams: Any
) -> None:
    await start_drainer(poll_interval=0.01, sweep_interval=3600)
    async with MemoryClient(make_settings("redis")) as client:
        await asyncio.gather(
            *(
                client.buffered.submit(f"CREATE (:{graph.label})", session_id=f"idle-{n}")
                for n in range(1_000)
            )
        )
        await client.flush()
    # A session leaves its ready set in the same script that releases it: after this,
    # no drain of these sessions is under way.
    await wait_until(lambda: _nothing_ready(redis, streams), what="every session to go idle")

    # Every command Redis runs (scripts' own included), kept when it names a session key
    # of this test: commandstats would also count other clients of the shared Redis.
    session_keys = f"{{{streams.key_prefix}:p"
    touched: list[str] = []
    marker = f"monitor-ready-{streams.key_prefix}"
    watching = asyncio.Event()

    async def watch() -> None:
        async with redis.monitor() as monitor:
            async for command in monitor.listen():
                text = command["command"]
                if marker in text:
                    watching.set()
                elif session_keys in text and text.split()[0].lower() in PER_SESSION_COMMANDS:
                    touched.append(text)

    watcher = asyncio.create_task(watch())
    try:
        await wait_until(lambda: _marked(redis, marker, watching), what="MONITOR to start")
        before = await _calls(redis)

        async def polled_enough() -> bool:
            return (await _calls(redis)).get("zrange", 0) >= before.get("zrange", 0) + 200

        await wait_until(polled_enough, what="the drainer to poll 200 times")
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)

    assert await graph.count() == 1_000
    assert touched == []


async def _marked(redis: Any, marker: str, watching: asyncio.Event) -> bool:
    await redis.echo(marker)
    return watching.is_set()


async def test_the_sweep_finds_a_stream_missing_from_its_ready_set(
    start_drainer: Any, make_settings: Any, graph: Any, redis: Any, streams: Any
) -> None:
    keys = streams.keyspace()
    async with MemoryClient(make_settings("redis")) as client:
        await client.buffered.submit(f"CREATE (:{graph.label})", session_id="lost")
        # As if the ready set lost the session (restored from an older snapshot, say).
        await redis.zrem(keys.ready(keys.partition_of("lost")), "lost")
        await start_drainer(poll_interval=0.01, sweep_interval=0.2)

        await wait_until(lambda: count_is(graph, 1), what="the sweep to find the session")
