"""Signed entries: drainers with signing keys run only what a key they hold signed."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from cypherstream import MemoryClient
from cypherstream.drainer.dlq import list_dead_letters, replay
from cypherstream.shared.codec import encode_params
from cypherstream.shared.entry import write_fields
from cypherstream.shared.errors import ConfigurationError, CypherstreamError
from cypherstream.shared.scripts import Scripts, submit_call
from cypherstream.shared.settings import StreamSettings
from cypherstream.shared.signing import Signer
from tests.helpers import wait_until

KEY = "k" * 32
OLD_KEY = "o" * 32
OTHER_KEY = "x" * 32


@pytest.fixture
def signed(streams: StreamSettings) -> Any:
    """`signed(keys)`: this test's stream settings with CYPHERSTREAM_SIGNING_KEYS set."""

    def build(keys: str | None) -> StreamSettings:
        return streams.model_copy(update={"signing_keys": SecretStr(keys) if keys else None})

    return build


async def _hand_written(
    redis: Any, streams: StreamSettings, session: str, query: str, **fields: Any
) -> None:
    """Append a write as someone with Redis access but not necessarily the key would."""
    keys = streams.keyspace()
    entry = write_fields(query, encode_params({}), "intruder", 0, **fields)
    script_keys, args = submit_call(keys, session, entry, limit=0, client_id="intruder")
    await Scripts(redis).submit(keys=script_keys, args=args)


async def _reasons(redis: Any, streams: StreamSettings) -> list[str]:
    return [d.reason for d in await list_dead_letters(redis, streams.keyspace())]


async def test_signed_writes_run_when_the_drainer_holds_the_key(
    signed: Any, make_settings: Any, start_drainer: Any, graph: Any
) -> None:
    await start_drainer(streams=signed(KEY))
    settings = make_settings("redis")
    settings.streams = signed(KEY)

    async with MemoryClient(settings) as client:
        for i in range(10):
            await client.buffered.submit(f"CREATE (:{graph.label} {{i: $i}})", {"i": i})
        await client.buffered.add_message(f"{graph.label}-s", "user", "signed too")
        await client.flush()
        assert client.write_errors == []

    assert await graph.count() == 10


@pytest.mark.parametrize(
    ("how", "signature"),
    [
        ("unsigned", None),
        ("forged", Signer([OTHER_KEY.encode()]).sign("S", "CREATE (:X)", False, b"", "i", 0)),
    ],
)
async def test_unsigned_and_forged_entries_are_dead_lettered_and_the_stream_goes_on(
    how: str, signature: bytes | None, signed: Any, make_settings: Any, start_drainer: Any,
    graph: Any, redis: Any, streams: StreamSettings,
) -> None:  # fmt: skip
    drainer = await start_drainer(streams=signed(KEY))
    settings = make_settings("redis")
    settings.streams = signed(KEY)

    async with MemoryClient(settings) as client:
        await client.buffered.submit(f"CREATE (:{graph.label} {{i: 1}})")
        await _hand_written(
            redis, streams, client.session_id, f"MATCH (n:{graph.label}) DETACH DELETE n",
            signature=signature,
        )  # fmt: skip
        await client.buffered.submit(f"CREATE (:{graph.label} {{i: 2}})")
        await client.flush()

    assert await graph.count() == 2
    assert await _reasons(redis, streams) == ["signature"]
    rejected = drainer.metrics.registry.get_sample_value(
        "cypherstream_entries_rejected_total", {"reason": "signature"}
    )
    assert rejected == 1


async def test_a_tampered_entry_is_refused(
    signed: Any, make_settings: Any, start_drainer: Any, graph: Any, redis: Any,
    streams: StreamSettings,
) -> None:  # fmt: skip
    signer = Signer([KEY.encode()])
    params = encode_params({})
    good = signer.sign("s1", f"CREATE (:{graph.label})", False, params, "intruder", 0)
    # Signed for a harmless CREATE, sent with a different query.
    await _hand_written(
        redis, streams, "s1", f"MATCH (n:{graph.label}) SET n.owned = true", signature=good
    )
    await start_drainer(streams=signed(KEY))
    settings = make_settings("redis")
    settings.streams = signed(KEY)
    async with MemoryClient(settings) as client:
        await client.buffered.submit(f"CREATE (:{graph.label})", session_id="s1")
        await client.flush()

    assert await graph.query("MATCH (n:$$) RETURN n.owned AS owned") == [{"owned": None}]
    assert await _reasons(redis, streams) == ["signature"]


async def test_a_signed_entry_moved_to_another_session_is_refused(
    signed: Any, make_settings: Any, start_drainer: Any, graph: Any, redis: Any,
    streams: StreamSettings,
) -> None:  # fmt: skip
    settings = make_settings("redis")
    settings.streams = signed(KEY)
    await start_drainer(streams=signed(KEY))
    async with MemoryClient(settings) as client:
        await client.buffered.submit(f"CREATE (:{graph.label} {{i: 1}})", session_id="alice")
        # What an intruder copies from alice's stream before it drains.
        stream = streams.keyspace().stream("alice")
        [(_, fields)] = await redis.xrange(stream, count=1)
        copied = [item for pair in fields.items() for item in pair]
        script_keys, args = submit_call(
            streams.keyspace(), "mallory", copied, limit=0, client_id="intruder"
        )
        await Scripts(redis).submit(keys=script_keys, args=args)
        await client.buffered.submit(f"CREATE (:{graph.label} {{i: 2}})", session_id="mallory")
        await client.flush()

    assert sorted(r["i"] for r in await graph.query("MATCH (n:$$) RETURN n.i AS i")) == [1, 2]
    assert await _reasons(redis, streams) == ["signature"]


async def test_rotation_a_drainer_accepts_every_key_it_lists(
    signed: Any, make_settings: Any, start_drainer: Any, graph: Any
) -> None:
    await start_drainer(streams=signed(f"{KEY},{OLD_KEY}"))
    settings = make_settings("redis")
    settings.streams = signed(OLD_KEY)  # a producer not yet moved to the new key

    async with MemoryClient(settings) as client:
        await client.buffered.submit(f"CREATE (:{graph.label})")
        await client.flush()

    assert await graph.count() == 1


@pytest.mark.parametrize(
    ("producer_keys", "drainer_keys", "message"),
    [
        (None, KEY, "has no signing key"),
        (KEY, None, "verify nothing"),
        (OTHER_KEY, KEY, "do not accept this producer's signing key"),
    ],
)
async def test_signing_configured_on_one_side_only_is_a_startup_error(
    producer_keys: str | None, drainer_keys: str | None, message: str, signed: Any,
    make_settings: Any, start_drainer: Any,
) -> None:  # fmt: skip
    await start_drainer(streams=signed(drainer_keys))
    settings = make_settings("redis")
    settings.streams = signed(producer_keys)

    with pytest.raises(ConfigurationError, match=message) as caught:
        await MemoryClient(settings).open()

    for key in (KEY, OTHER_KEY):
        assert key not in str(caught.value)


def test_a_short_signing_key_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="at least 16"):
        Signer.parse("too-short")


async def test_an_entry_refused_for_its_signature_is_never_replayed(
    signed: Any, start_drainer: Any, make_settings: Any, redis: Any, streams: StreamSettings,
    graph: Any,
) -> None:  # fmt: skip
    await start_drainer(streams=signed(KEY))
    await _hand_written(redis, streams, "s1", f"CREATE (:{graph.label})")
    settings = make_settings("redis")
    settings.streams = signed(KEY)
    async with MemoryClient(settings) as client:
        await client.buffered.submit(f"CREATE (:{graph.label} {{marker: 1}})", session_id="s1")
        await client.flush()
    letters = await list_dead_letters(redis, streams.keyspace())

    with pytest.raises(CypherstreamError, match="replaying would sign it"):
        await replay(redis, streams.keyspace(), letters, Signer([KEY.encode()]))


async def test_a_producer_without_a_key_starts_once_the_drainer_that_had_one_stopped(
    signed: Any, make_settings: Any, start_drainer: Any, redis: Any, streams: Any
) -> None:
    drainer = await start_drainer(streams=signed(KEY))
    drainer.stop()
    keys = streams.keyspace()

    async def gone() -> bool:
        return await redis.zscore(keys.drainers, drainer.settings.drainer_id) is None

    await wait_until(gone, what="the signing drainer to stop")

    await MemoryClient(make_settings("redis")).open()  # no live drainer requires signing


async def test_a_producer_is_told_which_live_drainers_refuse_its_key(
    signed: Any, make_settings: Any, start_drainer: Any
) -> None:
    with_key = await start_drainer(streams=signed(KEY), drainer_id="with-key")
    without = await start_drainer(streams=signed(None), drainer_id="without-key")
    settings = make_settings("redis")
    settings.streams = signed(KEY)

    with pytest.raises(ConfigurationError, match="verify nothing") as caught:
        await MemoryClient(settings).open()

    assert without.settings.drainer_id in str(caught.value)
    assert with_key.settings.drainer_id not in str(caught.value)


async def test_rotating_keys_drainer_by_drainer_accepts_producers_of_the_new_key(
    signed: Any, make_settings: Any, start_drainer: Any, graph: Any
) -> None:
    await start_drainer(streams=signed(f"{OLD_KEY},{KEY}"))  # rotated: signs new, accepts old
    await start_drainer(streams=signed(f"{KEY},{OLD_KEY}"))
    settings = make_settings("redis")
    settings.streams = signed(KEY)

    async with MemoryClient(settings) as client:
        await client.buffered.submit(f"CREATE (:{graph.label})")
        await client.flush()

    assert await graph.count() == 1
