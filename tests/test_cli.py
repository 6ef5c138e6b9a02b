"""The `drainer` command as an operator runs it."""

from __future__ import annotations

import asyncio
import gc
import json
import signal
import subprocess
from typing import Any

from cypherstream import MemoryClient
from cypherstream.drainer.cli import serve
from cypherstream.drainer.settings import DrainerSettings
from cypherstream.drainer.worker import Drainer
from tests.helpers import DRAINER, SEQUENCED_WRITE, audit, run_to_end, wait_until


async def test_sigterm_finishes_the_work_and_exits_zero(
    spawn_drainer: Any, client: MemoryClient, graph: Any, redis: Any, streams: Any
) -> None:
    proc = await spawn_drainer()
    for i in range(20):
        await client.buffered.submit(f"CREATE (:{graph.label} {{i: $i}})", {"i": i})
    await client.flush()

    proc.proc.send_signal(signal.SIGTERM)

    assert await asyncio.to_thread(proc.proc.wait, 60) == 0, proc.output()
    assert "drainer stopped" in proc.output()
    assert await redis.zscore(streams.keyspace().drainers, proc.drainer_id) is None


async def test_refuses_to_run_when_redis_may_evict_queued_writes(
    env: dict[str, str], redis: Any
) -> None:
    await redis.config_set("maxmemory-policy", "allkeys-lru")
    try:
        ended = await run_to_end(*DRAINER, "run", env=env)
    finally:
        await redis.config_set("maxmemory-policy", "noeviction")

    assert ended.code == 2
    assert "allkeys-lru" in ended.stderr
    assert "--allow-eviction" in ended.stderr


def test_help_lists_every_setting_with_its_environment_variable() -> None:
    result = subprocess.run([*DRAINER, "run", "--help"], capture_output=True, text=True)
    text = " ".join(result.stdout.split())  # click wraps long lines

    assert result.returncode == 0
    expected = [("", name, "DRAINER_") for name in DrainerSettings.model_fields]
    for group, prefix in (("redis", "REDIS_"), ("neo4j", "NEO4J_"), ("streams", "CYPHERSTREAM_")):
        model = DrainerSettings.model_fields[group].annotation
        expected += [(group, name, prefix) for name in model.model_fields]  # type: ignore[union-attr]
    for group, name, prefix in expected:
        if name in ("redis", "neo4j", "streams"):
            continue
        variable = f"env {prefix}{name.upper()}"
        if name in ("password", "signing_keys"):  # secrets: environment only
            assert variable not in text
            continue
        flag = "--" + (f"{group}-{name}" if group in ("redis", "neo4j") else name)
        assert f"{flag.replace('_', '-')} " in text, flag
        assert variable in text, variable


async def test_sigterm_mid_backlog_exits_zero_and_hands_its_sessions_back(
    spawn_drainer: Any, make_settings: Any, graph: Any, redis: Any, streams: Any
) -> None:
    keys = streams.keyspace()
    query = SEQUENCED_WRITE.format(label=graph.label)
    sessions = [f"g{i}" for i in range(10)]
    async with MemoryClient(make_settings("redis", flush_timeout=120)) as client:
        for seq in range(200):
            for name in sessions:
                await client.buffered.submit(query, {"session": name, "seq": seq}, session_id=name)
        first = await spawn_drainer("--batch-size", "10", "--shutdown-grace", "20")
        await wait_until(lambda: _some_applied(graph), what="draining to start")

        first.proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(first.proc.wait, 60)
        leases = await redis.mget([keys.lease(name) for name in sessions])

        await spawn_drainer()
        await client.flush()

    assert code == 0, first.output()
    assert first.drainer_id.encode() not in leases
    result = await audit(graph, dict.fromkeys(sessions, 200))
    assert (result.duplicated, result.out_of_order, result.lost) == (0, 0, 0)


async def _some_applied(graph: Any) -> bool:
    return await graph.count() > 0


async def test_json_logs_say_each_event_once_per_line_and_never_a_secret(
    spawn_drainer: Any, env: dict[str, str]
) -> None:
    signing_key = "signing-key-never-logged-0123456789"
    proc = await spawn_drainer(DRAINER_LOG_FORMAT="json", CYPHERSTREAM_SIGNING_KEYS=signing_key)
    proc.terminate()

    lines = [json.loads(line) for line in proc.output().splitlines() if line.strip()]
    messages = [line["message"] for line in lines]
    assert "drainer started" in messages and "drainer stopped" in messages
    started = lines[messages.index("drainer started")]
    assert started["settings"]["batch_size"] == 500
    assert started["settings"]["signing"] is True
    assert env["NEO4J_PASSWORD"] not in proc.output()
    assert signing_key not in proc.output()


async def test_drainer_run_takes_what_start_up_made_out_of_the_collectors_sight_once_ready(
    drainer_settings: Any,
) -> None:
    drainer = Drainer(drainer_settings())
    assert gc.get_freeze_count() == 0
    serving = asyncio.create_task(serve(drainer))
    try:

        async def frozen() -> bool:
            return gc.get_freeze_count() > 0

        await wait_until(frozen, timeout=60, what="a frozen heap")
        assert drainer.ready.is_set()
    finally:
        drainer.stop()
        await asyncio.wait_for(serving, 60)
        gc.unfreeze()
