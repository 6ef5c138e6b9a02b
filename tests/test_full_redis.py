"""A Redis at maxmemory: producers wait for room, and a drainer still starts and drains it."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from cypherstream import BackpressureTimeout, FlushTimeout, MemoryClient
from cypherstream.drainer.backlog import snapshot
from cypherstream.shared.settings import RedisSettings
from tests.conftest import SMALL_REDIS_MAXMEMORY
from tests.helpers import SEQUENCED_WRITE, audit, wait_until

PAD = "x" * 1000  # about 1 kB per write, so a few thousand fill the small Redis
SESSIONS = [f"full-{n}" for n in range(5)]


async def fill(client: MemoryClient, query: str, limit: int = 20_000) -> dict[str, int]:
    """Submit to every session in turn until Redis refuses; writes acknowledged per session."""
    submitted = dict.fromkeys(SESSIONS, 0)
    for n in range(limit):
        session = SESSIONS[n % len(SESSIONS)]
        params = {"session": session, "seq": submitted[session], "pad": PAD}
        try:
            await client.buffered.submit(query, params, session_id=session)
        except BackpressureTimeout as exc:
            client.refusal = str(exc)  # type: ignore[attr-defined]
            return submitted
        submitted[session] += 1
    raise AssertionError(f"Redis took {limit} writes without filling up")


@pytest.fixture
def full_settings(make_settings: Any, small_redis: Any) -> Any:
    def build() -> Any:
        settings = make_settings("redis", max_pending=100_000, backpressure_timeout=0.5)
        settings.redis = RedisSettings(url=small_redis.url)
        return settings

    return build


async def test_a_full_redis_makes_submit_wait_then_fail_naming_redis_memory(
    full_settings: Any, graph: Any
) -> None:
    client = MemoryClient(full_settings())
    await client.open()
    submitted = await fill(client, SEQUENCED_WRITE.format(label=graph.label))
    refusal: str = client.refusal  # type: ignore[attr-defined]
    with pytest.raises(FlushTimeout, match="no drainer"):  # nothing drains here
        await client.close()

    assert sum(submitted.values()) > 1000
    assert "out of memory" in refusal
    assert f"of its {SMALL_REDIS_MAXMEMORY / 1024 / 1024:.1f} MiB maxmemory" in refusal
    assert "drainer" in refusal


async def test_a_drainer_started_on_a_full_redis_applies_every_acknowledged_write(
    full_settings: Any, start_drainer: Any, small_redis: Any, graph: Any
) -> None:
    query = SEQUENCED_WRITE.format(label=graph.label)
    async with MemoryClient(full_settings()) as client:
        submitted = await fill(client, query)

        await start_drainer(redis=RedisSettings(url=small_redis.url))
        await client.flush()
        for session in SESSIONS:  # room again: submits succeed
            params = {"session": session, "seq": submitted[session], "pad": PAD}
            await client.buffered.submit(query, params, session_id=session)
            submitted[session] += 1
        await client.flush()

    result = await audit(graph, submitted)
    assert (result.lost, result.duplicated, result.out_of_order) == (0, 0, 0), result


async def test_status_metrics_and_a_warning_show_redis_memory_near_its_limit(
    full_settings: Any,
    start_drainer: Any,
    small_redis: Any,
    graph: Any,
    streams: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with MemoryClient(full_settings()) as client:
        await fill(client, SEQUENCED_WRITE.format(label=graph.label))
        redis = RedisSettings(url=small_redis.url).client()
        status = await snapshot(redis, streams.keyspace())
        await redis.aclose()

        with caplog.at_level(logging.WARNING, logger="cypherstream.drainer.worker"):
            drainer = await start_drainer(
                redis=RedisSettings(url=small_redis.url), stats_interval=0.05, concurrency=1
            )
            await wait_until(
                lambda: _logged(caplog, "Redis is nearly or fully out of memory"),
                what="the memory warning",
            )
        await client.flush()

    assert status.redis_memory.limit == SMALL_REDIS_MAXMEMORY
    assert status.redis_memory.ratio >= 0.9
    assert status.to_json()["redis_memory"]["maxmemory_bytes"] == SMALL_REDIS_MAXMEMORY
    assert drainer.metrics.redis_maxmemory._value.get() == SMALL_REDIS_MAXMEMORY


async def _logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(text in record.getMessage() for record in caplog.records)
