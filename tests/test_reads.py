"""What a drain's read returns: its own pending entries first, else new ones, and which;
and, on taking the session, the bookmarks its earlier drains recorded as they settled."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from cypherstream.drainer.session_scripts import FlushAnswer, SessionScripts
from cypherstream.shared.keys import Keyspace
from cypherstream.shared.scripts import Scripts, submit_call
from cypherstream.shared.settings import StreamSettings

OWNER = "drainer-1"


@pytest.fixture
def keys(streams: StreamSettings) -> Keyspace:
    return Keyspace(streams.key_prefix, streams.partitions)


@pytest_asyncio.fixture
async def reads(redis: Any, keys: Keyspace) -> AsyncIterator[SessionScripts]:
    """A drain's scripts for session "s", which holds 5 queued entries and is leased
    to `OWNER`."""
    scripts = Scripts(redis)
    for seq in range(1, 6):
        call_keys, args = submit_call(keys, "s", [b"q", b"x"], limit=0, client_id="c", seq=seq)
        await scripts.submit(keys=call_keys, args=args)
    await redis.set(keys.lease("s"), OWNER, px=60_000)
    drain = SessionScripts(redis, scripts, keys, OWNER, lease_ms=60_000, idle_ms=IDLE_MS)
    yield drain
    await drain.close()


IDLE_MS = 600_000


async def settled(drain: SessionScripts, bookmarks: tuple[str, ...]) -> None:
    """Read the next entry and settle it as applied by a transaction with `bookmarks`."""
    (entry_id, _), *_ = (await drain.read("s", 1, ">")).entries
    await drain.settle("s", [entry_id], applied=bookmarks)


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


async def test_a_read_taking_the_session_returns_the_bookmarks_the_last_settle_recorded(
    reads: SessionScripts,
) -> None:
    await settled(reads, ("FB:one",))
    await settled(reads, ("FB:two",))

    taking = await reads.read("s", 2, "0", claim=True)

    assert taking.recorded == ("FB:two",)  # the owner's later transaction covers the earlier


async def test_a_read_taking_a_session_with_nothing_recorded_returns_no_bookmarks(
    reads: SessionScripts,
) -> None:
    assert (await reads.read("s", 2, "0", claim=True)).recorded == ()


async def test_a_former_owners_late_settle_adds_its_bookmarks_to_the_recorded_ones(
    reads: SessionScripts, redis: Any, keys: Keyspace
) -> None:
    await settled(reads, ("FB:owner",))
    (applied, _), *_ = (await reads.read("s", 1, ">")).entries
    await redis.set(keys.lease("s"), "drainer-2", px=60_000)  # taken over meanwhile

    await reads.settle("s", [applied], applied=("FB:late",))  # may commit after the owner's

    successor = SessionScripts(redis, Scripts(redis), keys, "drainer-2", 60_000, IDLE_MS)
    assert (await successor.read("s", 1, "0", claim=True)).recorded == ("FB:owner", "FB:late")
    await successor.close()


async def test_recorded_bookmarks_expire_with_the_idle_session(
    reads: SessionScripts, redis: Any, keys: Keyspace
) -> None:
    await settled(reads, ("FB:one",))

    assert 0 < await redis.pttl(keys.applied("s")) <= IDLE_MS


async def test_ending_the_session_removes_its_recorded_bookmarks(
    reads: SessionScripts, redis: Any, keys: Keyspace
) -> None:
    await settled(reads, ("FB:one",))
    rest = [entry_id for entry_id, _ in (await reads.read("s", 10, ">")).entries]
    await reads.settle("s", rest)

    ended = await reads.answer_end("s", FlushAnswer("0-1", "token", "c", ("FB:one",)))

    assert ended
    assert not await redis.exists(keys.applied("s"))
