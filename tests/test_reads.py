"""What a drain's read returns: its own pending entries first, else new ones, and which."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio

from cypherstream.drainer.session_scripts import SessionScripts
from cypherstream.shared.keys import Keyspace
from cypherstream.shared.scripts import Scripts, submit_call
from cypherstream.shared.settings import StreamSettings

OWNER = "drainer-1"


@pytest_asyncio.fixture
async def reads(redis: Any, streams: StreamSettings) -> AsyncIterator[SessionScripts]:
    """A drain's scripts for session "s", which holds 5 queued entries and is leased
    to `OWNER`."""
    keys = Keyspace(streams.key_prefix, streams.partitions)
    scripts = Scripts(redis)
    for seq in range(1, 6):
        call_keys, args = submit_call(keys, "s", [b"q", b"x"], limit=0, client_id="c", seq=seq)
        await scripts.submit(keys=call_keys, args=args)
    await redis.set(keys.lease("s"), OWNER, px=60_000)
    drain = SessionScripts(redis, scripts, keys, OWNER, lease_ms=60_000, idle_ms=0)
    yield drain
    await drain.close()


async def test_a_read_of_own_pending_entries_that_finds_none_returns_new_ones_and_says_so(
    reads: SessionScripts,
) -> None:
    first = await reads.read("s", 2, "0")

    assert first.new
    assert len(first.entries) == 2


async def test_a_read_of_own_pending_entries_returns_them_again_as_not_new(
    reads: SessionScripts,
) -> None:
    first = await reads.read("s", 2, "0")

    again = await reads.read("s", 2, "0")  # nothing acknowledged in between

    assert not again.new
    assert [entry_id for entry_id, _ in again.entries] == [i for i, _ in first.entries]


async def test_a_read_of_new_entries_says_they_are_new(reads: SessionScripts) -> None:
    await reads.read("s", 2, "0")

    following = await reads.read("s", 2, ">")

    assert following.new
    assert len(following.entries) == 2
