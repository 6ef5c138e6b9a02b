"""Reads outside Lua keep `read.lua`'s guarantee: a drainer takes entries only while it
holds the session's lease, also when the lease changes between watching it and reading;
first reads take over what a former owner left pending; and reads go without the
script unless they must."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from cypherstream.drainer.leased_reads import Claimed, ReadAgain, ReadCall, WatchedBatch
from cypherstream.drainer.session_scripts import LeaseLost, SessionScripts
from cypherstream.shared.keys import GROUP, Keyspace
from cypherstream.shared.lane import Lane
from cypherstream.shared.scripts import Scripts, submit_call
from cypherstream.shared.settings import StreamSettings
from tests.helpers import wait_until

OWNER, OTHER = "drainer-1", "drainer-2"
LEASE_MS = 60_000


@pytest.fixture
def keys(streams: StreamSettings) -> Keyspace:
    return Keyspace(streams.key_prefix, streams.partitions)


@pytest_asyncio.fixture
async def queued(redis: Any, keys: Keyspace) -> Scripts:
    """Session "s" with 5 queued entries, leased to `OWNER`."""
    scripts = Scripts(redis)
    for seq in range(1, 6):
        call_keys, args = submit_call(keys, "s", [b"q", b"x"], limit=0, client_id="c", seq=seq)
        await scripts.submit(keys=call_keys, args=args)
    await redis.set(keys.lease("s"), OWNER, px=LEASE_MS)
    return scripts


@pytest_asyncio.fixture
async def drains(redis: Any, keys: Keyspace, queued: Scripts) -> AsyncIterator[Any]:
    """`drains(owner)`: a drain's scripts for that owner, closed after the test."""
    opened: list[SessionScripts] = []

    def drain(owner: str = OWNER) -> SessionScripts:
        opened.append(SessionScripts(redis, queued, keys, owner, LEASE_MS, 600_000))
        return opened[-1]

    yield drain
    for one in opened:
        await one.close()


@pytest_asyncio.fixture
async def lane(redis: Any) -> AsyncIterator[Lane]:
    one = Lane(redis)
    yield one
    await one.close()


def read_call(keys: Keyspace, owner: str = OWNER, *, claim: bool = False) -> ReadCall:
    return ReadCall(
        keys.lease("s"), keys.stream("s"), keys.applied("s"), owner, 10, "0" if claim else ">",
        LEASE_MS, claim,
    )  # fmt: skip


async def pending(redis: Any, keys: Keyspace) -> dict[str, int]:
    """Entries pending per consumer of session "s"."""
    consumers = await redis.xinfo_consumers(keys.stream("s"), GROUP)
    return {c["name"].decode(): c["pending"] for c in consumers if c["pending"]}


async def test_reads_go_without_the_script_when_the_lease_is_held(drains: Any) -> None:
    drain = drains()

    first = await drain.read("s", 2, "0", claim=True)
    following = await drain.read("s", 2, ">")

    assert len(first.entries) == len(following.entries) == 2
    assert first.new and following.new
    assert drain.scripted_reads == 0


async def test_a_read_without_the_lease_is_refused_and_takes_nothing(
    drains: Any, redis: Any, keys: Keyspace
) -> None:
    with pytest.raises(LeaseLost):
        await drains(OTHER).read("s", 2, ">")
    with pytest.raises(LeaseLost):
        await drains(OTHER).read("s", 2, "0", claim=True)

    assert await pending(redis, keys) == {}


async def test_a_takeover_between_watching_the_lease_and_reading_stops_the_read(
    queued: Scripts, lane: Lane, redis: Any, keys: Keyspace
) -> None:
    batch = WatchedBatch(lane, queued.claim, [read_call(keys)])
    plan = await batch.watch()
    await redis.set(keys.lease("s"), OTHER, px=LEASE_MS)  # taken over meanwhile

    (outcome,) = await batch.execute(plan)

    assert outcome == ReadAgain()  # `read.lua` then refuses it
    assert await pending(redis, keys) == {}


async def test_a_lease_expiring_between_watching_and_reading_stops_the_read(
    queued: Scripts, lane: Lane, redis: Any, keys: Keyspace
) -> None:
    await redis.set(keys.lease("s"), OWNER, px=200)
    batch = WatchedBatch(lane, queued.claim, [read_call(keys)])
    plan = await batch.watch()
    await wait_until(lambda: _gone(redis, keys.lease("s")), timeout=10, what="the lease to expire")

    (outcome,) = await batch.execute(plan)

    assert isinstance(outcome, ReadAgain)
    assert await pending(redis, keys) == {}


async def _gone(redis: Any, key: str) -> bool:
    return not await redis.exists(key)


async def test_a_first_read_whose_transaction_did_not_run_keeps_what_its_claim_took_over(
    drains: Any, queued: Scripts, lane: Lane, redis: Any, keys: Keyspace
) -> None:
    await redis.set(keys.lease("s"), OTHER, px=LEASE_MS)
    await drains(OTHER).read("s", 3, ">")  # left pending by a former owner
    await redis.set(keys.lease("s"), OWNER, px=LEASE_MS)
    batch = WatchedBatch(lane, queued.claim, [read_call(keys, claim=True)])
    plan = await batch.watch()
    await redis.pexpire(keys.lease("s"), LEASE_MS)  # touched, still held

    (outcome,) = await batch.execute(plan)

    assert outcome == ReadAgain(Claimed(entries=3, pending=3, recorded=None))
    assert await pending(redis, keys) == {OWNER: 3}


async def test_a_first_read_takes_over_a_former_owners_entries_and_returns_them_first(
    drains: Any, redis: Any, keys: Keyspace
) -> None:
    await redis.set(keys.lease("s"), OTHER, px=LEASE_MS)
    left = [entry_id for entry_id, _ in (await drains(OTHER).read("s", 3, ">")).entries]
    await redis.set(keys.lease("s"), OWNER, px=LEASE_MS)  # the former owner died
    drain = drains()

    first = await drain.read("s", 5, "0", claim=True)

    assert first.claimed == 3
    assert [entry_id for entry_id, _ in first.entries] == left
    assert not first.new  # the next read asks for its own pending entries again
    assert await pending(redis, keys) == {OWNER: 3}
    assert drain.scripted_reads == 0


async def test_a_first_read_of_a_deleted_stream_returns_nothing(
    drains: Any, redis: Any, keys: Keyspace
) -> None:
    await redis.delete(keys.stream("s"))

    delivery = await drains().read("s", 2, "0", claim=True)

    assert delivery.entries == []
    assert not delivery.new


async def test_a_first_read_after_redis_lost_its_scripts_reads_and_loads_them_again(
    drains: Any, redis: Any, keys: Keyspace
) -> None:
    drain = drains()

    async def taking() -> int:
        """Take the session, read one entry, settle it and give the session back."""
        await redis.set(keys.lease("s"), OWNER, px=LEASE_MS)
        ((entry_id, _),) = (await drain.read("s", 1, "0", claim=True)).entries
        await drain.settle("s", [entry_id], release="yield")
        return drain.scripted_reads

    assert await taking() == 0
    await redis.script_flush()  # as a restart does
    assert await taking() == 1  # read through `read.lua`, which is loaded again
    assert await taking() == 1  # and so is `claim.lua`
