"""Bad input at submit raises a specific error before anything is queued."""

from __future__ import annotations

from typing import Any

import pytest

from cypherstream import (
    ClientClosed,
    InvalidSessionId,
    InvalidWrite,
    MemoryClient,
    UnsupportedParameter,
)


@pytest.mark.parametrize(
    ("query", "params", "error"),
    [
        ("", None, InvalidWrite),
        ("   ", None, InvalidWrite),
        (None, None, InvalidWrite),
        (b"CREATE ()", None, InvalidWrite),
        ("CREATE () // \ud800", None, InvalidWrite),  # an unpaired surrogate: not UTF-8
        ("CREATE ()", {"x": "\udc80"}, UnsupportedParameter),
        ("CREATE ()", ["not", "a", "map"], UnsupportedParameter),
        ("CREATE ()", {1: "non-str key"}, UnsupportedParameter),
        ("CREATE ()", {"x": {1, 2}}, UnsupportedParameter),
        ("CREATE ()", {"x": 2**64}, UnsupportedParameter),
    ],
)
async def test_bad_writes_are_refused_in_every_mode(
    mode: str, make_settings: Any, query: Any, params: Any, error: type[Exception]
) -> None:
    async with MemoryClient(make_settings(mode)) as client:
        with pytest.raises(error):
            await client.buffered.submit(query, params)

        assert await client.buffered.pending() == 0


@pytest.mark.parametrize("session_id", ["has space", "{slot}", "x" * 300])
async def test_unsafe_session_ids_are_refused(client: MemoryClient, session_id: str) -> None:
    with pytest.raises(InvalidSessionId):
        await client.buffered.submit("CREATE ()", session_id=session_id)

    assert await client.buffered.pending() == 0


async def test_an_entry_over_the_size_limit_is_refused(make_settings: Any) -> None:
    async with MemoryClient(make_settings("redis", max_entry_bytes=4096)) as client:
        with pytest.raises(InvalidWrite, match="max_entry_bytes"):
            await client.buffered.submit("CREATE (n {blob: $b})", {"b": b"x" * 5000})

        assert await client.buffered.pending() == 0


async def test_submit_on_a_client_that_is_not_open_says_how_to_open_it(make_settings: Any) -> None:
    client = MemoryClient(make_settings("redis"))

    with pytest.raises(ClientClosed, match="async with"):
        await client.buffered.submit("CREATE ()")
