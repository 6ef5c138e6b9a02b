"""Reading session streams only while holding their leases, without passing the
entries through Lua.

`read.lua` checks the lease and reads in one atomic step, but Redis converts every
entry a script reads into Lua and back, which costs it more than `XREADGROUP` itself,
on the one thread every producer and drainer of a fleet shares. So a read watches the
lease (`WATCH`), checks its holder (and, on taking the lease, runs `claim.lua`, which
takes over what a former owner left pending and says whether any of it is the
caller's to read first), then reads in `MULTI`/`EXEC`, which Redis runs only if nothing
touched the lease in between: a takeover sets it, and an expiry aborts it too. As with
the script, a drainer that lost its lease never takes entries, which would let the new
owner apply later ones first.

`read.lua` stays for the reads that branch inside Redis (own pending entries first,
then new ones), on Redis Cluster (a batch's leases live on several nodes), and for any
read whose transaction did not run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, NamedTuple, cast

from redis import exceptions as rx
from redis.asyncio.cluster import RedisCluster

from cypherstream.shared.coalescing import Coalescer
from cypherstream.shared.keys import GROUP
from cypherstream.shared.lane import Command, Lane, Reply
from cypherstream.shared.pipelines import Call, Outcome, run_many
from cypherstream.shared.scripts import ScriptArg, ScriptReply, reply_int

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript

    from cypherstream.shared.connection import RedisClient


class ReadCall(NamedTuple):
    """One read of a session stream, as `read.lua` documents its KEYS and ARGV."""

    lease: str
    stream: str
    recorded: str
    """The key of the session's recorded bookmarks (returned on a read with `claim`)."""
    owner: str
    limit: int
    """The most entries to return."""
    start: Literal["0", ">"]
    lease_ms: int
    claim: bool

    @property
    def watchable(self) -> bool:
        """Whether it can go without `read.lua`: new entries only, or a first read."""
        return self.start == ">" or self.claim

    def script_call(self) -> Call:
        keys = [self.lease, self.stream, self.recorded]
        args: list[ScriptArg] = [
            self.owner, GROUP, self.owner, self.limit, self.start, self.lease_ms,
            int(self.claim),
        ]  # fmt: skip
        return keys, args


class LeasedReads:
    """Reads for one worker, auto-batched across the sessions it drains (one batch in
    flight at a time, so one connection carries the watches); replies as `read.lua`
    gives them, a lease not held as its `LEASELOST` error."""

    def __init__(self, redis: RedisClient, read: AsyncScript, claim: AsyncScript) -> None:
        self._redis = redis
        self._read = read
        self._claim = claim
        self._lane = None if isinstance(redis, RedisCluster) else Lane(redis)
        self._calls: Coalescer[ReadCall, ScriptReply] = Coalescer(
            self._send, name="cypherstream-read"
        )
        self._loaded = False  # claim.lua, before the first read (and again on NOSCRIPT)
        self.scripted = 0
        """Reads that went through `read.lua` so far."""

    async def call(self, read: ReadCall) -> ScriptReply:
        """The read's reply; raises the error it met (`LEASELOST` when the lease is not
        held)."""
        return await self._calls.call(read)

    async def close(self) -> None:
        """Close its connection."""
        if self._lane is not None:
            await self._lane.close()

    async def _send(self, reads: list[ReadCall]) -> list[Outcome]:
        outcomes: list[Outcome | ReadAgain] = [ReadAgain(0)] * len(reads)
        if self._lane is not None:
            watched = [i for i, read in enumerate(reads) if read.watchable]
            if watched:
                if not self._loaded:
                    await self._lane.run([("SCRIPT", "LOAD", cast("str", self._claim.script))])
                    self._loaded = True
                batch = WatchedBatch(self._lane, self._claim, [reads[i] for i in watched])
                for i, outcome in zip(watched, await batch.run(), strict=True):
                    outcomes[i] = outcome
        again = [i for i, outcome in enumerate(outcomes) if isinstance(outcome, ReadAgain)]
        if again:
            self.scripted += len(again)
            calls = [reads[i].script_call() for i in again]
            replies = await run_many(self._redis, self._read, calls, lane=self._lane)
            for i, reply in zip(again, replies, strict=True):
                outcomes[i] = _with_claimed(reply, cast("ReadAgain", outcomes[i]).claimed)
        return cast("list[Outcome]", outcomes)


class ReadAgain(NamedTuple):
    """The read did not run: read again through `read.lua`, counting the entries this
    attempt already took over from a former owner."""

    claimed: int


class WatchedBatch:
    """One batch of reads in two round trips: `WATCH` and `MGET` the leases (and
    `claim.lua` for first reads), then `MULTI`, an extension of each lease still held
    and its read, `EXEC`."""

    def __init__(self, lane: Lane, claim: AsyncScript, reads: list[ReadCall]) -> None:
        self._lane = lane
        self._claim = claim
        self._reads = reads
        self._outcomes: list[Outcome | ReadAgain] = [ReadAgain(0)] * len(reads)

    async def run(self) -> list[Outcome | ReadAgain]:
        """Each read's reply or error, or `ReadAgain` where its transaction did not run."""
        return await self.execute(await self.watch())

    async def watch(self) -> list[Planned]:
        """Watch the leases (first reads take over a former owner's entries meanwhile);
        the reads whose caller holds its lease, and where each starts."""
        reads = self._reads
        leases = [read.lease for read in reads]
        claims = [i for i, read in enumerate(reads) if read.claim]
        sha = self._claim.sha
        commands: list[Command] = [("WATCH", *leases), ("MGET", *leases)]
        commands += [
            ("EVALSHA", sha, 3, reads[i].lease, reads[i].stream, reads[i].recorded,
             reads[i].owner, GROUP, reads[i].owner)
            for i in claims
        ]  # fmt: skip
        watch, holders, *claimed = await self._lane.run(commands)
        if isinstance(watch, rx.ResponseError) or not isinstance(holders, list):
            return []
        if any(isinstance(reply, rx.NoScriptError) for reply in claimed):
            await self._lane.run([("SCRIPT", "LOAD", cast("str", self._claim.script))])
            return []  # all read through `read.lua` this once
        by_read = dict(zip(claims, claimed, strict=True))
        plan: list[Planned] = []
        for i, (read, holder) in enumerate(zip(reads, holders, strict=True)):
            if holder != read.owner.encode():
                self._outcomes[i] = _lease_lost(read)
            elif i not in by_read:
                plan.append(Planned(i, ">", 0, None))
            else:
                planned = self._claimed(i, by_read[i])
                if planned is not None:
                    plan.append(planned)
        return plan

    def _claimed(self, i: int, reply: Reply) -> Planned | None:
        """The read after `claim.lua` answered `reply`, or None when that was the answer."""
        if isinstance(reply, rx.ResponseError):
            self._outcomes[i] = reply
            return None
        claimed, pending, recorded = cast("list[ScriptReply]", reply)
        if reply_int(pending) < 0:  # no stream: nothing to read
            self._outcomes[i] = [0, None, 0, None]
            return None
        return Planned(i, "0" if reply_int(pending) else ">", reply_int(claimed), recorded)

    async def execute(self, plan: list[Planned]) -> list[Outcome | ReadAgain]:
        """Read as planned, in one transaction that runs only if no lease changed since
        `watch`; each read's reply or error, or `ReadAgain` where it did not run."""
        if not plan:
            await self._lane.run([("UNWATCH",)])
            return self._outcomes
        commands: list[Command] = [("MULTI",)]
        for planned in plan:
            read = self._reads[planned.position]
            commands += [("PEXPIRE", read.lease, read.lease_ms), _xreadgroup(read, planned.start)]
        commands.append(("EXEC",))
        executed = (await self._lane.run(commands, watching=True))[-1]
        if not isinstance(executed, list):  # a lease changed (nil), or a command was refused
            for planned in plan:
                self._outcomes[planned.position] = ReadAgain(planned.claimed)
            return self._outcomes
        for planned, j in zip(plan, range(0, len(executed), 2), strict=True):
            extended, reply = executed[j], executed[j + 1]
            if extended == 0:
                # Expired meanwhile, on a Redis too old to abort for it: what it read stays
                # pending, and the next owner claims it before reading on.
                self._outcomes[planned.position] = _lease_lost(self._reads[planned.position])
            elif isinstance(reply, rx.ResponseError):
                self._outcomes[planned.position] = reply
            else:
                new = int(planned.start == ">")
                entries = _as_array(reply)
                self._outcomes[planned.position] = [planned.claimed, entries, new, planned.recorded]
        return self._outcomes


class Planned(NamedTuple):
    """A read to make in the transaction: which, from where, and what `claim.lua` said."""

    position: int
    start: Literal["0", ">"]
    claimed: int
    recorded: ScriptReply


def _xreadgroup(read: ReadCall, start: Literal["0", ">"]) -> Command:
    return (
        "XREADGROUP", "GROUP", GROUP, read.owner, "COUNT", read.limit,
        "STREAMS", read.stream, start,
    )  # fmt: skip


def _as_array(read: object) -> ScriptReply:
    """`XREADGROUP`'s reply as a script returns it: RESP2's array of [stream, entries],
    also where the connection speaks RESP3, which answers with a map."""
    if isinstance(read, dict):
        return [[stream, entries] for stream, entries in read.items()]
    return cast("ScriptReply", read)


def _with_claimed(reply: Outcome, claimed: int) -> Outcome:
    """`read.lua`'s reply, counting entries an earlier attempt took over."""
    if not claimed or not isinstance(reply, list):
        return reply
    return [reply_int(reply[0]) + claimed, *reply[1:]]


def _lease_lost(read: ReadCall) -> rx.ResponseError:
    return rx.ResponseError(f"LEASELOST lease of {read.stream} is not held by {read.owner}")
