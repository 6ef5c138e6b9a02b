"""Redis over TLS with ACL users: the producer role works, other users are refused clearly."""

from __future__ import annotations

from typing import Any

import pytest

from cypherstream import MemoryClient
from cypherstream.shared.errors import ConfigurationError, RedisPermissionDenied
from cypherstream.shared.settings import StreamSettings
from tests.conftest import ACL_USERS, SecureRedis


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
