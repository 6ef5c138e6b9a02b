"""Starting a drainer or a client: mistakes are one clear line, late servers are waited for."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import services
from redis import asyncio as aioredis

from cypherstream import ConfigurationError, MemoryClient, RedisUnavailable
from cypherstream.drainer.worker import Drainer
from cypherstream.shared.settings import RedisSettings
from tests.conftest import OwnRedis, SecureRedis
from tests.helpers import DRAINER, DrainerProcess, http_get, run_to_end, wait_until


async def drainer_run(env: dict[str, str], *args: str) -> tuple[int, str]:
    """Run `drainer run` until it exits by itself: (exit code, stderr)."""
    ended = await run_to_end(*DRAINER, "run", *args, env=env)
    return ended.code, ended.stderr


def without(env: dict[str, str], *names: str) -> dict[str, str]:
    return {name: value for name, value in env.items() if name not in names}


@pytest.mark.parametrize(
    ("change", "args", "says"),
    [
        ({"REDIS_URL": None}, (), "REDIS_URL is not set"),
        ({"REDIS_URL": "localhost:6379"}, (), "REDIS_URL 'localhost:6379' is not a Redis URL"),
        ({"NEO4J_URI": "localhost:7687"}, (), "NEO4J_URI 'localhost:7687' is not a Neo4j URI"),
        ({"NEO4J_PASSWORD": "wrong-password"}, (), "Check NEO4J_USERNAME and NEO4J_PASSWORD"),
        ({"NEO4J_DATABASE": "nosuchdb"}, (), "has no database 'nosuchdb'"),
        ({}, ("--queries", "/nonexistent/queries.yaml"), "cannot read the query file"),
        ({"DRAINER_CONCURRENCY": "0"}, (), "invalid setting DRAINER_CONCURRENCY"),
        ({"DRAINER_BATCH_SIZE": "many"}, (), "invalid setting DRAINER_BATCH_SIZE"),
        ({"CYPHERSTREAM_PARTITIONS": "0"}, (), "invalid setting CYPHERSTREAM_PARTITIONS"),
        ({}, ("--partitions", "0"), "invalid setting CYPHERSTREAM_PARTITIONS"),
    ],
)
async def test_a_configuration_mistake_is_one_line_and_exit_code_two(
    env: dict[str, str], change: dict[str, str | None], args: tuple[str, ...], says: str
) -> None:
    settings = {**without(env, *change), **{k: v for k, v in change.items() if v is not None}}

    code, stderr = await drainer_run(settings, *args)

    assert code == 2, stderr
    assert stderr.startswith("drainer: ") and stderr.count("\n") == 1, stderr
    assert says in stderr
    assert "wrong-password" not in stderr


async def test_an_invalid_query_file_names_the_line(env: dict[str, str], tmp_path: Path) -> None:
    queries = tmp_path / "queries.yaml"
    queries.write_text("add_note: MERGE (n:Note)\nbroken: [\n")

    code, stderr = await drainer_run(env, "--queries", str(queries))

    assert code == 2
    assert stderr.count("\n") == 1
    assert "is not valid YAML (line 3)" in stderr


async def test_a_wrong_redis_password_is_one_line_and_exit_code_two(
    env: dict[str, str], secure_redis: SecureRedis
) -> None:
    settings = {
        **env,
        "REDIS_URL": secure_redis.url,
        "REDIS_USERNAME": "drainer",
        "REDIS_PASSWORD": "wrong-password",
        "REDIS_SSL_CA_CERTS": str(secure_redis.ca),
    }

    code, stderr = await drainer_run(settings)

    assert code == 2, stderr
    assert stderr.count("\n") == 1
    assert "Check REDIS_USERNAME and REDIS_PASSWORD" in stderr
    assert "wrong-password" not in stderr


async def test_a_drainer_waits_for_a_late_redis_then_drains(
    env: dict[str, str], tmp_path: Path, make_settings: Any, graph: Any, streams: Any
) -> None:
    late = services.RedisServer(tmp_path / "late-redis")
    port = services.free_port()
    drainer = DrainerProcess(
        {**env, "REDIS_URL": late.url, "DRAINER_METRICS_PORT": str(port)}, [], None, None
    )
    try:
        await wait_until(lambda: _said(drainer, "is not reachable yet"), what="a retry line")
        assert await http_get(port, "/healthz") == (200, "ok\n")
        status, body = await http_get(port, "/readyz")
        assert (status, body) == (503, f"starting: waiting for Redis at {late.url}\n")

        await asyncio.to_thread(late.start)
        settings = make_settings("redis")
        settings.redis = RedisSettings(url=late.url)
        await wait_until(lambda: _ready(port), timeout=60, what="the drainer to be ready")
        async with MemoryClient(settings) as client:
            await client.buffered.submit(f"CREATE (:{graph.label})")
            await client.flush()
    finally:
        assert drainer.terminate() == 0, drainer.output()
        late.stop()

    assert await graph.count() == 1
    assert drainer.output().count("Traceback") == 0


@pytest.mark.faults
async def test_a_drainer_waits_for_a_late_neo4j_then_drains(
    env: dict[str, str], tmp_path: Path, make_settings: Any, tag: str
) -> None:
    from neo4j import AsyncGraphDatabase

    from tests.helpers import Graph

    late = services.Neo4jServer(tmp_path / "late-neo4j")
    port = services.free_port()
    drainer = DrainerProcess(
        {**env, "NEO4J_URI": late.uri, "NEO4J_PASSWORD": late.password,
         "DRAINER_METRICS_PORT": str(port)},
        [], None, None,
    )  # fmt: skip
    try:
        await wait_until(lambda: _said(drainer, "is not reachable yet"), what="a retry line")
        assert (await http_get(port, "/readyz"))[0] == 503

        await asyncio.to_thread(late.start)
        await wait_until(lambda: _ready(port), timeout=120, what="the drainer to be ready")
        async with MemoryClient(make_settings("redis")) as client:
            await client.buffered.submit(f"CREATE (:{tag})")
            await client.flush()
        driver = AsyncGraphDatabase.driver(late.uri, auth=("neo4j", late.password))
        try:
            assert await Graph(driver, tag).count() == 1
        finally:
            await driver.close()
    finally:
        assert drainer.terminate() == 0, drainer.output()
        late.stop()


async def test_sigterm_stops_a_drainer_waiting_for_a_server_within_a_second(
    env: dict[str, str],
) -> None:
    nowhere = f"redis://127.0.0.1:{services.free_port()}/0"
    drainer = DrainerProcess({**env, "REDIS_URL": nowhere}, [], None, None)
    await wait_until(lambda: _said(drainer, "is not reachable yet"), what="a retry line")

    sent = time.monotonic()
    drainer.proc.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(drainer.proc.wait, 10)

    assert code == 0, drainer.output()
    assert time.monotonic() - sent < 1.0
    assert "drainer stopped" in drainer.output()


async def test_a_client_names_a_malformed_redis_url(make_settings: Any) -> None:
    settings = make_settings("redis")
    settings.redis = RedisSettings(url="localhost:6379")

    with pytest.raises(ConfigurationError, match="is not a Redis URL"):
        await MemoryClient(settings).open()


async def test_a_client_says_when_redis_cannot_be_reached(make_settings: Any) -> None:
    settings = make_settings("redis", redis_retry=0)
    settings.redis = RedisSettings(url=f"redis://127.0.0.1:{services.free_port()}/0")

    with pytest.raises(RedisUnavailable, match="cannot reach Redis"):
        await MemoryClient(settings).open()


@pytest.fixture
def lonely_primary(own_redis: OwnRedis) -> services.RedisServer:
    """A Redis primary that asks for a replica it does not have: it refuses writes."""
    return own_redis("lonely", "--min-replicas-to-write", "1")


@pytest.fixture
def replica(own_redis: OwnRedis) -> services.RedisServer:
    """A Redis replica of a primary of its own: it refuses writes, as a primary just
    demoted by a failover does."""
    primary = own_redis("primary")
    return own_redis("replica", "--replicaof", "127.0.0.1", str(primary.port))


async def test_a_drainer_waits_while_redis_refuses_writes_for_want_of_replicas(
    drainer_settings: Any, lonely_primary: Any, caplog: pytest.LogCaptureFixture
) -> None:
    drainer = Drainer(drainer_settings(redis=RedisSettings(url=lonely_primary.url)))
    task = asyncio.create_task(drainer.run())

    async def waiting() -> bool:  # one line per attempt, with Redis' reason
        return "not reachable yet, retrying in" in caplog.text and "NOREPLICAS" in caplog.text

    await wait_until(waiting, what="a retry line")
    drainer.stop()
    await asyncio.wait_for(task, 30)  # stopped while waiting: no error
    assert not drainer.ready.is_set()


@pytest.fixture
def scriptless_redis(own_redis: OwnRedis) -> services.RedisServer:
    """A Redis that refuses Lua scripts (EVAL and EVALSHA renamed away), as some
    locked-down servers and proxies do."""
    return own_redis(
        "scriptless", "--rename-command", "EVALSHA", "", "--rename-command", "EVAL", ""
    )


@pytest.mark.parametrize(
    ("server", "error", "says"),
    [
        ("lonely_primary", RedisUnavailable, "refuses writes for now: NOREPLICAS"),
        ("replica", RedisUnavailable, "refuses writes for now: You can't write against"),
        ("scriptless_redis", ConfigurationError, "refused cypherstream's start-up script: unknown"),
    ],
)
async def test_a_client_opened_on_a_redis_that_refuses_says_why(
    make_settings: Any,
    request: pytest.FixtureRequest,
    server: str,
    error: type[Exception],
    says: str,
) -> None:
    settings = make_settings("redis", redis_retry=0)
    settings.redis = RedisSettings(url=request.getfixturevalue(server).url)

    with pytest.raises(error, match=says):
        await MemoryClient(settings).open()


async def test_a_client_opened_on_a_redis_at_its_maxclients_says_so(
    own_redis: OwnRedis, make_settings: Any
) -> None:
    server = own_redis("full-of-clients", "--maxclients", "2")
    others = [aioredis.from_url(server.url) for _ in range(2)]
    try:
        for other in others:
            await other.ping()
        settings = make_settings("redis", redis_retry=0)
        settings.redis = RedisSettings(url=server.url)

        with pytest.raises(RedisUnavailable, match=r"refuses new connections.*maxclients"):
            await MemoryClient(settings).open()
    finally:
        for other in others:
            await other.aclose()


async def test_a_client_names_a_key_prefix_something_else_uses(
    make_settings: Any, redis: Any
) -> None:
    settings = make_settings("redis")
    meta = settings.streams.keyspace().meta
    await redis.set(meta, "another application's value")
    try:
        with pytest.raises(ConfigurationError, match="CYPHERSTREAM_KEY_PREFIX"):
            await MemoryClient(settings).open()
    finally:
        await redis.delete(meta)


async def test_a_submit_names_a_key_of_another_type_under_the_prefix(
    make_settings: Any, redis: Any
) -> None:
    client = MemoryClient(make_settings("redis"))
    await client.open()
    stream = client.settings.streams.keyspace().stream(client.session_id)
    await redis.set(stream, "another application's value")
    try:
        with pytest.raises(ConfigurationError, match=r"another kind of value.*KEY_PREFIX"):
            await client.buffered.submit("RETURN 1")
        assert await redis.get(stream) == b"another application's value"
    finally:
        await redis.delete(stream)
        await client.close()


async def test_a_drainer_names_a_key_prefix_something_else_uses_in_one_line(
    env: dict[str, str], streams: Any, redis: Any
) -> None:
    meta = streams.keyspace().meta
    await redis.set(meta, "another application's value")
    try:
        code, stderr = await drainer_run(env)
    finally:
        await redis.delete(meta)

    assert code == 2, stderr
    assert stderr.startswith("drainer: ") and stderr.count("\n") == 1, stderr
    assert "holds another kind of value" in stderr and "CYPHERSTREAM_KEY_PREFIX" in stderr


@pytest.fixture
async def user_to_change(neo4j: Any, tag: str) -> AsyncIterator[tuple[str, str]]:
    """A Neo4j user, and its password, that must change it before any other query: as
    every user created without `CHANGE NOT REQUIRED` is, and a fresh server's `neo4j`."""
    user, password = f"fresh_{tag}", f"first-password-{tag}"
    async with neo4j.session(database="system") as session:
        create = f"CREATE USER {user} SET PASSWORD $password CHANGE REQUIRED"
        await (await session.run(create, password=password)).consume()
    yield user, password
    async with neo4j.session(database="system") as session:
        await (await session.run(f"DROP USER {user}")).consume()


async def test_a_client_names_a_neo4j_password_that_must_be_changed_at_open(
    make_settings: Any, user_to_change: tuple[str, str]
) -> None:
    settings = make_settings("sync")
    settings.neo4j.username, settings.neo4j.password = user_to_change

    with pytest.raises(ConfigurationError, match="requires it to be changed") as caught:
        await MemoryClient(settings).open()

    assert user_to_change[1] not in str(caught.value)


async def test_a_drainer_names_a_neo4j_password_that_must_be_changed_in_one_line(
    env: dict[str, str], user_to_change: tuple[str, str]
) -> None:
    user, password = user_to_change

    code, stderr = await drainer_run({**env, "NEO4J_USERNAME": user, "NEO4J_PASSWORD": password})

    assert code == 2, stderr
    assert stderr.startswith("drainer: ") and stderr.count("\n") == 1, stderr
    assert f"user {user!r}" in stderr and "requires it to be changed" in stderr
    assert password not in stderr


@pytest.mark.parametrize("mode", ["sync", "embedded"])
async def test_a_client_that_writes_to_neo4j_names_refused_credentials_at_open(
    make_settings: Any, mode: str
) -> None:
    settings = make_settings(mode)
    settings.neo4j.password = "wrong-password"  # type: ignore[assignment]

    with pytest.raises(ConfigurationError, match="Check NEO4J_USERNAME and NEO4J_PASSWORD"):
        await MemoryClient(settings).open()


async def _said(drainer: DrainerProcess, text: str) -> bool:
    if drainer.proc.poll() is not None:
        raise AssertionError(f"the drainer exited:\n{drainer.output()}")
    return text in drainer.output()


async def _ready(port: int) -> bool:
    return (await http_get(port, "/readyz"))[0] == 200


async def test_a_drainer_with_more_transaction_slots_than_sessions_starts_and_drains(
    drainer_settings: Any, client: MemoryClient, graph: Any
) -> None:
    """Its connections opened up front fit its pool, whatever the two numbers."""
    drainer = Drainer(drainer_settings(concurrency=1, transactions=8))
    running = asyncio.create_task(drainer.run())
    try:
        await asyncio.wait_for(drainer.ready.wait(), 20)
        for i in range(5):
            await client.buffered.submit(f"CREATE (:{graph.label} {{i: $i}})", {"i": i})
        await client.flush(timeout=20)
        assert len(await graph.query("MATCH (n:$$) RETURN n")) == 5
    finally:
        drainer.stop()
        await asyncio.wait_for(running, 60)
