"""A flush rides over a drainer restart (a rolling update) within a grace period."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from cypherstream import FlushTimeout, MemoryClient
from tests.helpers import wait_until

WAITING = "no drainer is alive; the flush waits for one"


async def stopped(drainer: Any, redis: Any, streams: Any) -> None:
    """Stop an in-process drainer and wait until it has left the live set."""
    drainer.stop()
    keys = streams.keyspace()

    async def gone() -> bool:
        return await redis.zscore(keys.drainers, drainer.settings.drainer_id) is None

    await wait_until(gone, what="the drainer to stop")


async def test_a_flush_waits_for_a_drainer_that_comes_back(
    start_drainer: Any,
    make_settings: Any,
    graph: Any,
    redis: Any,
    streams: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await stopped(await start_drainer(), redis, streams)
    async with MemoryClient(make_settings("redis", no_drainer_grace=60)) as client:
        await client.buffered.submit(f"CREATE (:{graph.label})")
        with caplog.at_level(logging.INFO, logger="cypherstream.producer.streams"):
            flushing = asyncio.create_task(client.flush())
            await wait_until(lambda: _logged(caplog, WAITING, flushing), what="the flush to wait")
        await start_drainer()  # the restarted drainer
        await flushing

    assert await graph.count() == 1


async def test_a_flush_fails_when_no_drainer_comes_back_within_the_grace(
    start_drainer: Any, make_settings: Any, graph: Any, redis: Any, streams: Any
) -> None:
    await stopped(await start_drainer(), redis, streams)
    client = MemoryClient(make_settings("redis", no_drainer_grace=0.5))
    await client.open()
    await client.buffered.submit(f"CREATE (:{graph.label})")

    with pytest.raises(FlushTimeout, match=r"none came back within 0.5s"):
        await client.flush()

    await start_drainer()
    await client.close()  # the writes stayed queued: the next flush applies them
    assert await graph.count() == 1


async def _logged(caplog: pytest.LogCaptureFixture, text: str, task: asyncio.Task[Any]) -> bool:
    if task.done():
        task.result()  # a flush that ended early says why
    return any(text in record.getMessage() for record in caplog.records)
