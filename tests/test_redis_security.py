"""Redis over TLS with ACL users: the producer role works, other users are refused clearly."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from cypherstream import ConfigurationError, MemoryClient, RedisPermissionDenied
from cypherstream.shared.settings import RedisSettings, StreamSettings
from tests.conftest import ACL_USERS, SecureRedis
from tests.helpers import DrainerProcess, wait_until


@pytest.fixture
def secure_streams(tag: str) -> StreamSettings:
    # The producer's ACL rules cover the `secure` prefix only.
    return StreamSettings(key_prefix="secure", partitions=4)


async def test_producer_and_drainer_work_over_tls_as_acl_users(
    secure_redis: SecureRedis, secure_streams: StreamSettings, make_settings: Any,
    start_drainer: Any, graph: Any,
) -> None:  # fmt: skip
    await start_drainer(redis=secure_redis.settings("drainer"), streams=secure_streams)
    settings = make_settings("redis")
    settings.redis, settings.streams = secure_redis.settings("producer"), secure_streams

    async with MemoryClient(settings) as client:
        for i in range(20):
            await client.buffered.submit(f"CREATE (:{graph.label} {{i: $i}})", {"i": i})
        await client.flush()

    assert await graph.count() == 20


async def test_a_user_without_rights_on_the_streams_is_refused_with_a_clear_error(
    secure_redis: SecureRedis, secure_streams: StreamSettings, make_settings: Any
) -> None:
    settings = make_settings("redis")
    settings.redis, settings.streams = secure_redis.settings("outsider"), secure_streams

    with pytest.raises(RedisPermissionDenied, match="'outsider' may not use") as caught:
        await MemoryClient(settings).open()

    assert ACL_USERS["outsider"] not in str(caught.value)


async def test_a_wrong_password_is_a_configuration_error_that_does_not_echo_it(
    secure_redis: SecureRedis, secure_streams: StreamSettings, make_settings: Any
) -> None:
    settings = make_settings("redis")
    settings.redis = secure_redis.settings("producer", password="not-the-password-42")
    settings.streams = secure_streams

    with pytest.raises(ConfigurationError, match="REDIS_PASSWORD") as caught:
        await MemoryClient(settings).open()

    assert "not-the-password-42" not in str(caught.value)


async def test_tls_options_without_a_rediss_url_are_refused(secure_redis: SecureRedis) -> None:
    settings = secure_redis.settings("producer")
    settings.url = "redis://127.0.0.1:1/0"

    with pytest.raises(ConfigurationError, match="rediss://"):
        settings.client()


@pytest.fixture
async def revocable_user(redis: Any, redis_url: str, tag: str) -> AsyncIterator[RedisSettings]:
    """An ACL user of the test Redis with every right, for a test to take some away."""
    name = f"revocable-{tag}"
    await redis.execute_command("ACL", "SETUSER", name, "on", ">revocable-pw", "~*", "&*", "+@all")
    yield RedisSettings(url=redis_url, username=name, password="revocable-pw")
    await redis.execute_command("ACL", "DELUSER", name)


@pytest.mark.parametrize(
    ("revoked", "written"),
    [
        ("resetkeys", "Nothing was written"),  # refused before the script runs
        ("-xadd", "the write may be queued even so"),  # refused where the script calls XADD
    ],
)
async def test_a_user_whose_rights_are_revoked_after_open_is_refused_at_submit_by_name(
    revocable_user: RedisSettings, make_settings: Any, redis: Any, revoked: str, written: str
) -> None:
    settings = make_settings("redis", redis_retry=0)
    settings.redis = revocable_user
    client = MemoryClient(settings)
    await client.open()
    await redis.execute_command("ACL", "SETUSER", revocable_user.username, revoked)
    try:
        with pytest.raises(RedisPermissionDenied, match="may not use") as caught:
            await client.buffered.submit("RETURN 1")
    finally:
        await client.close()

    assert f"user {revocable_user.username!r}" in str(caught.value)
    assert written in str(caught.value) and "revocable-pw" not in str(caught.value)
    assert await redis.xlen(settings.streams.keyspace().stream(client.session_id)) == 0


async def acl_denials(redis: Any, user: str) -> int:
    """Commands and keys Redis refused to `user` so far (its ACL LOG counts them)."""
    entries = await redis.acl_log()
    return sum(int(entry["count"]) for entry in entries if entry["username"] == user)


async def test_a_drainer_whose_rights_are_revoked_says_so_in_one_line_then_drains_once_back(
    revocable_user: RedisSettings, env: dict[str, str], redis: Any, streams: StreamSettings,
    make_settings: Any, graph: Any,
) -> None:  # fmt: skip
    assert revocable_user.username and revocable_user.password
    user, password = revocable_user.username, revocable_user.password.get_secret_value()
    user_env = {**env, "REDIS_USERNAME": user, "REDIS_PASSWORD": password}
    drainer = DrainerProcess(user_env, [], redis, streams.keyspace())
    try:
        await drainer.wait_ready()
        before = await acl_denials(redis, user)
        await redis.execute_command("ACL", "SETUSER", user, "resetkeys")

        async def refused_often() -> bool:  # the scheduler looks every --poll-interval
            return await acl_denials(redis, user) >= before + 20

        await wait_until(refused_often, what="the drainer to be refused 20 times")
        await redis.execute_command("ACL", "SETUSER", user, "~*")
        async with MemoryClient(make_settings("redis")) as client:
            await client.buffered.submit(f"CREATE (:{graph.label})")
            await client.flush()
    finally:
        code = drainer.terminate()

    output = drainer.output()
    said = [line for line in output.splitlines() if "may not use cypherstream's keys" in line]
    assert code == 0, output
    assert len(said) == 1 and f"user {user!r}" in said[0], output
    assert "Traceback" not in output, output
    assert await graph.count() == 1
