"""The `drainer` command as an operator runs it."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from typing import Any

from producer import MemoryClient


async def test_sigterm_finishes_the_work_and_exits_zero(
    spawn_drainer: Any, client: MemoryClient, graph: Any, redis: Any, streams: Any
) -> None:
    proc = await spawn_drainer()
    for i in range(20):
        await client.buffered.submit(f"CREATE (:{graph.label} {{i: $i}})", {"i": i})
    await client.flush()

    proc.proc.send_signal(signal.SIGTERM)

    assert proc.proc.wait(60) == 0, proc.output()
    assert "drainer stopped" in proc.output()
    assert await redis.zscore(streams.keyspace().drainers, proc.drainer_id) is None


async def test_refuses_to_run_when_redis_may_evict_queued_writes(
    env: dict[str, str], redis: Any
) -> None:
    await redis.config_set("maxmemory-policy", "allkeys-lru")
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "drainer", "run", env=env, stderr=asyncio.subprocess.PIPE
        )
        _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        await redis.config_set("maxmemory-policy", "noeviction")

    assert proc.returncode == 2
    assert b"allkeys-lru" in stderr
    assert b"--allow-eviction" in stderr


def test_help_lists_every_setting_with_its_environment_variable() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "drainer", "run", "--help"], capture_output=True, text=True
    )

    assert result.returncode == 0
    for flag in ("--redis-url", "--concurrency", "--batch-size", "--lease-ttl", "--shutdown-grace"):
        assert flag in result.stdout
    assert "env REDIS_URL" in result.stdout
