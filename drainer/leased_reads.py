"""Reading session streams only while holding their leases, without passing the
entries through Lua.

A script that reads a stream makes Redis convert every entry into Lua and back, which
costs it more than `XREADGROUP` itself, on the one thread every producer and drainer
of a fleet shares. So a read watches the lease (`WATCH`), checks its holder (and, on
taking the lease, runs `claim.lua`, which takes over what a former owner left pending
and says whether any of it is the caller's to read first), then reads in
`MULTI`/`EXEC`, which Redis runs only if nothing touched the lease in between: a
takeover sets it, and an expiry aborts it too. As with a script, a drainer that lost
its lease never takes entries, which would let the new owner apply later ones first.

`read.lua`, which checks the lease and reads in one step, stays for the reads that
branch inside Redis (own pending entries first, then new ones), on Redis Cluster (a
batch's leases live on several nodes), and for any read whose transaction did not run;
a first read there runs `claim.lua` before it, unless its watched attempt did.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, NamedTuple, cast

from redis import exceptions as rx
from redis.asyncio.cluster import RedisCluster

from cypherstream.shared.coalescing import Coalescer
from cypherstream.shared.keys import GROUP
from cypherstream.shared.lane import Command, Lane
from cypherstream.shared.pipelines import Call, Outcome, run_many
from cypherstream.shared.scripts import ScriptArg, ScriptReply, reply_int

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript

    from cypherstream.shared.connection import RedisClient


class ReadCall(NamedTuple):
    """One read of a session stream."""

    lease: str
    stream: str
    recorded: str
    """The key of the session's recorded bookmarks (returned on a read with `claim`)."""
    owner: str
    limit: int
    """The most entries to return."""
    start: Literal["0", ">"]
    """"0": own pending entries first, else new ones; ">": new ones."""
    lease_ms: int
    claim: bool
    """A first read: take over what a former owner left pending, first."""

    @property
    def watchable(self) -> bool:
        """Whether it can go without `read.lua`: new entries only, or a first read."""
        return self.start == ">" or self.claim

    def claim_call(self) -> Call:
        """`claim.lua`'s KEYS and ARGV."""
        return [self.lease, self.stream, self.recorded], [self.owner, GROUP, self.owner]

    def read_call(self) -> Call:
        """`read.lua`'s KEYS and ARGV."""
        args: list[ScriptArg] = [
            self.owner, GROUP, self.owner, self.limit, self.start, self.lease_ms,
        ]  # fmt: skip
        return [self.lease, self.stream], args


class Claimed(NamedTuple):
    """What `claim.lua` answered for a first read."""

    entries: int
    """Entries taken over from a former owner."""
    pending: int
    """Entries now pending for the caller: its read starts with them."""
    recorded: ScriptReply
    """The bookmarks `settle.lua` recorded for the session (a JSON list), or None."""


class ReadAgain(NamedTuple):
    """The read did not run: read through `read.lua`, after `claim.lua` for a first
    read unless `claimed` holds what it answered already."""

    claimed: Claimed | None = None


class LeasedReads:
    """Reads for one worker, auto-batched across the sessions it drains (one batch in
    flight at a time, so one connection carries the watches); a lease not held is a
    `LEASELOST` error, as the scripts answer it."""

    def __init__(self, redis: RedisClient, read: AsyncScript, claim: AsyncScript) -> None:
        self._redis = redis
        self._read = read
        self._claim = claim
        self._lane = None if isinstance(redis, RedisCluster) else Lane(redis)
        self._calls: Coalescer[ReadCall, ScriptReply] = Coalescer(
            self._send, name="cypherstream-read"
        )
        self._loaded = False  # claim.lua, before the first watched read
        self.scripted = 0
        """Reads that went through `read.lua` so far."""

    async def call(self, read: ReadCall) -> ScriptReply:
        """The read's reply: [entries claimed, `XREADGROUP`'s reply, 1 if new entries
        else 0, recorded bookmarks or None]. Raises the error it met (`LEASELOST` when
        the lease is not held)."""
        return await self._calls.call(read)

    async def close(self) -> None:
        """Close its connection."""
        if self._lane is not None:
            await self._lane.close()

    async def _send(self, reads: list[ReadCall]) -> list[Outcome]:
        results: list[Outcome | ReadAgain] = [ReadAgain()] * len(reads)
        if self._lane is not None:
            watched = [i for i, read in enumerate(reads) if read.watchable]
            if watched:
                if not self._loaded:
                    await self._lane.run([("SCRIPT", "LOAD", cast("str", self._claim.script))])
                    self._loaded = True
                batch = WatchedBatch(self._lane, self._claim, [reads[i] for i in watched])
                for i, result in zip(watched, await batch.run(), strict=True):
                    results[i] = result
        await self._scripted(reads, results)
        return cast("list[Outcome]", results)

    async def _scripted(self, reads: list[ReadCall], results: list[Outcome | ReadAgain]) -> None:
        """Each `ReadAgain` of `results` through the scripts, in place."""
        again = [i for i, result in enumerate(results) if isinstance(result, ReadAgain)]
        unclaimed = [i for i in again if reads[i].claim and results[i] == ReadAgain()]
        if unclaimed:
            calls = [reads[i].claim_call() for i in unclaimed]
            answers = await run_many(self._redis, self._claim, calls, lane=self._lane)
            for i, answer in zip(unclaimed, answers, strict=True):
                claimed = _claimed(answer)
                results[i] = ReadAgain(claimed) if isinstance(claimed, Claimed) else claimed
            again = [i for i in again if isinstance(results[i], ReadAgain)]
        if again:
            self.scripted += len(again)
            calls = [reads[i].read_call() for i in again]
            replies = await run_many(self._redis, self._read, calls, lane=self._lane)
            for i, reply in zip(again, replies, strict=True):
                results[i] = _read_reply(reply, cast("ReadAgain", results[i]).claimed)


class WatchedBatch:
    """One batch of reads in two round trips: `WATCH` and `MGET` the leases (and
    `claim.lua` for first reads), then `MULTI`, an extension of each lease still held
    and its read, `EXEC`."""

    def __init__(self, lane: Lane, claim: AsyncScript, reads: list[ReadCall]) -> None:
        self._lane = lane
        self._claim = claim
        self._reads = reads
        self._results: list[Outcome | ReadAgain] = [ReadAgain()] * len(reads)

    async def run(self) -> list[Outcome | ReadAgain]:
        """Each read's reply or error, or `ReadAgain` where its transaction did not run."""
        return await self.execute(await self.watch())

    async def watch(self) -> list[Planned]:
        """Watch the leases (first reads take over a former owner's entries meanwhile);
        the reads whose caller holds its lease, and where each starts."""
        reads = self._reads
        leases = [read.lease for read in reads]
        claims = [i for i, read in enumerate(reads) if read.claim]
        commands: list[Command] = [("WATCH", *leases), ("MGET", *leases)]
        for i in claims:
            keys, args = reads[i].claim_call()
            commands.append(("EVALSHA", self._claim.sha, len(keys), *keys, *args))
        watch, holders, *answers = await self._lane.run(commands)
        if isinstance(watch, rx.ResponseError) or not isinstance(holders, list):
            return []
        if any(isinstance(answer, rx.NoScriptError) for answer in answers):
            return []  # the scripts load it again
        claimed = dict(zip(claims, map(_claimed, answers), strict=True))
        plan: list[Planned] = []
        for i, (read, holder) in enumerate(zip(reads, holders, strict=True)):
            answer = claimed.get(i)
            if holder != read.owner.encode():
                self._results[i] = _lease_lost(read)
            elif answer is None:
                plan.append(Planned(i, ">", None))
            elif isinstance(answer, Claimed):
                plan.append(Planned(i, "0" if answer.pending else ">", answer))
            else:
                self._results[i] = answer
        return plan

    async def execute(self, plan: list[Planned]) -> list[Outcome | ReadAgain]:
        """Read as planned, in one transaction that runs only if no lease changed since
        `watch`; each read's reply or error, or `ReadAgain` where it did not run."""
        if not plan:
            await self._lane.run([("UNWATCH",)])
            return self._results
        commands: list[Command] = [("MULTI",)]
        for planned in plan:
            read = self._reads[planned.position]
            commands += [("PEXPIRE", read.lease, read.lease_ms), _xreadgroup(read, planned.start)]
        commands.append(("EXEC",))
        executed = (await self._lane.run(commands, watching=True))[-1]
        if not isinstance(executed, list):  # a lease changed (nil), or a command was refused
            for planned in plan:
                self._results[planned.position] = ReadAgain(planned.claimed)
            return self._results
        for planned, j in zip(plan, range(0, len(executed), 2), strict=True):
            extended, reply = executed[j], executed[j + 1]
            if extended == 0:
                # Expired meanwhile, on a Redis too old to abort for it: what it read stays
                # pending, and the next owner claims it before reading on.
                self._results[planned.position] = _lease_lost(self._reads[planned.position])
            elif isinstance(reply, rx.ResponseError):
                self._results[planned.position] = reply
            else:
                new = int(planned.start == ">")
                self._results[planned.position] = _reply(planned.claimed, reply, new)
        return self._results


class Planned(NamedTuple):
    """A read to make in the transaction: which, from where, and what `claim.lua`
    answered for it, if it is a first read."""

    position: int
    start: Literal["0", ">"]
    claimed: Claimed | None


def _xreadgroup(read: ReadCall, start: Literal["0", ">"]) -> Command:
    return (
        "XREADGROUP", "GROUP", GROUP, read.owner, "COUNT", read.limit,
        "STREAMS", read.stream, start,
    )  # fmt: skip


def _claimed(answer: Outcome) -> Claimed | Outcome:
    """`claim.lua`'s answer as `Claimed`; else the read's result: the error it met, or
    no entries where the stream is gone."""
    if isinstance(answer, BaseException):
        return answer
    entries, pending, recorded = cast("list[ScriptReply]", answer)
    if reply_int(pending) < 0:
        return [0, None, 0, None]
    return Claimed(reply_int(entries), reply_int(pending), recorded)


def _read_reply(reply: Outcome, claimed: Claimed | None) -> Outcome:
    """`read.lua`'s reply ([`XREADGROUP`'s reply, 1 if new entries]) as a read's."""
    if isinstance(reply, BaseException):
        return reply
    entries, new = cast("list[ScriptReply]", reply)
    return _reply(claimed, entries, reply_int(new))


def _reply(claimed: Claimed | None, entries: object, new: int) -> ScriptReply:
    if claimed is None:
        return [0, _as_array(entries), new, None]
    return [claimed.entries, _as_array(entries), new, claimed.recorded]


def _as_array(read: object) -> ScriptReply:
    """`XREADGROUP`'s reply as a script returns it: RESP2's array of [stream, entries],
    also where the connection speaks RESP3, which answers with a map."""
    if isinstance(read, dict):
        return [[stream, entries] for stream, entries in read.items()]
    return cast("ScriptReply", read)


def _lease_lost(read: ReadCall) -> rx.ResponseError:
    return rx.ResponseError(f"LEASELOST lease of {read.stream} is not held by {read.owner}")
