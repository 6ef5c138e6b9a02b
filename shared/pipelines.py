"""Running one script for many calls in one round trip per Redis node, and optionally
waiting until replicas hold what it wrote; and auto-batching concurrent calls so."""

from __future__ import annotations

import asyncio
import functools
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias, cast

from redis import exceptions as rx
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, PipelineCommand, RedisCluster
from redis.commands.core import AsyncScript

from cypherstream.shared.coalescing import Coalescer
from cypherstream.shared.connection import REDIS_DOWN
from cypherstream.shared.errors import NotReplicated
from cypherstream.shared.lane import Command, Lane
from cypherstream.shared.scripts import ScriptArg, ScriptReply, reply_int

if TYPE_CHECKING:
    from cypherstream.shared.connection import RedisClient


@dataclass(frozen=True)
class Wait:
    """`WAIT replicas timeout_ms` behind a batch: its writes count once replicas hold them.

    Redis replicates asynchronously, so a primary that dies right after a write can take
    it along. WAIT blocks until that many replicas acknowledged everything the *same
    connection* wrote, which is why batches run on one connection per node.
    """

    replicas: int
    timeout_ms: int


Call: TypeAlias = tuple[list[str], list[ScriptArg]]
"""One script call: its KEYS and ARGV."""
Calls: TypeAlias = list[Call]
Outcome: TypeAlias = "ScriptReply | BaseException"
"""A call's reply, or the error it raised (errors stay in place in a batch)."""

# A node's calls are sent again once the client learned the cluster's new shape; more
# than a few attempts means a failover is still running, and the caller backs off.
_ATTEMPTS = 3
_REDIRECTED = (rx.AskError, rx.ClusterDownError, rx.TryAgainError)


class ScriptPipeline:
    """Calls of one script: sent alone when idle, pipelined when busy (`Coalescer`).

    Order: a caller that needs its calls in order (the producer for a session's writes,
    a drain for its session) keeps one in flight, and a pipeline keeps the order it
    was given. On a single Redis the calls go over a connection of their own (`Lane`):
    one batch is in flight at a time, so one connection serves them all.
    """

    def __init__(self, redis: RedisClient, script: AsyncScript, wait: Wait | None = None) -> None:
        self._redis = redis
        self._script = script
        self._wait = wait
        self._lane = None if isinstance(redis, RedisCluster) else Lane(redis)
        self._calls: Coalescer[Call, ScriptReply] = Coalescer(
            self._send, name="cypherstream-script"
        )

    @property
    def round_trips(self) -> int:
        """Round trips made so far: one per lone call, one per pipeline."""
        return self._calls.batches

    async def call(self, keys: list[str], args: list[ScriptArg]) -> ScriptReply:
        """Run the script with `keys` and `args`; its reply, or the error it raised."""
        return await self._calls.call((keys, args))

    async def close(self) -> None:
        """Close its connection."""
        if self._lane is not None:
            await self._lane.close()

    async def _send(self, calls: Calls) -> list[Outcome]:
        return await run_many(self._redis, self._script, calls, self._wait, self._lane)


Send: TypeAlias = "Callable[[list[Command]], Awaitable[Sequence[Outcome]]]"
"""Sends commands in one write on one connection; their replies in order, errors in place."""


async def _evalsha(
    send: Send, script: AsyncScript, calls: Calls, wait: Wait | None, *, reload: bool = True
) -> list[Outcome]:
    """EVALSHA for each call, and WAIT behind them (on the same connection, as WAIT
    needs), in one round trip through `send`.

    Calls that met a script Redis lost (restart, failover, SCRIPT FLUSH) go again, once,
    after loading it; the others ran and keep their replies.
    """
    commands: list[Command] = [
        ("EVALSHA", script.sha, len(keys), *keys, *args) for keys, args in calls
    ]
    if wait is not None:
        commands.append(("WAIT", wait.replicas, wait.timeout_ms))
    replies = _judged(list(await send(commands)), wait)
    lost = [i for i, reply in enumerate(replies) if isinstance(reply, rx.NoScriptError)]
    if lost and reload:
        await send([("SCRIPT", "LOAD", cast("str", script.script))])  # our own text
        again = await _evalsha(send, script, [calls[i] for i in lost], wait, reload=False)
        for i, reply in zip(lost, again, strict=True):
            replies[i] = reply
    return replies


async def run_many(
    redis: RedisClient,
    script: AsyncScript,
    calls: Calls,
    wait: Wait | None = None,
    lane: Lane | None = None,
) -> list[Outcome]:
    """Run one script for many (keys, args) in one round trip per Redis node; replies in
    order, errors in place. On a single Redis, over `lane` where given (its caller's
    own connection, one batch at a time), else a pipeline of the pool.

    Scripts Redis lost (restart, failover, SCRIPT FLUSH) are loaded again. With `wait`,
    each reply that wrote becomes a `NotReplicated` error when fewer replicas confirmed it.
    """
    if not isinstance(redis, RedisCluster):
        if lane is not None:
            return await _evalsha(lane.run, script, calls, wait)
        return await _evalsha(lambda commands: _pipelined(redis, commands), script, calls, wait)
    groups: dict[str, list[int]] = defaultdict(list)
    nodes: dict[str, ClusterNode] = {}
    for index, (keys, _) in enumerate(calls):
        node = _owner(redis, keys[0])
        groups[node.name].append(index)
        nodes[node.name] = node
    replies: list[Outcome] = [None] * len(calls)

    async def one_node(name: str) -> None:
        indexes = groups[name]
        answered = await _on_node(redis, nodes[name], script, [calls[i] for i in indexes], wait)
        for i, reply in zip(indexes, answered, strict=True):
            replies[i] = reply

    await asyncio.gather(*(one_node(name) for name in groups))
    return replies


async def _pipelined(redis: Redis, commands: list[Command]) -> list[Outcome]:
    """`commands` as one redis-py pipeline on a connection of the pool."""
    async with redis.pipeline(transaction=False) as pipe:
        for command in commands:
            pipe.execute_command(*command)
        return list(await pipe.execute(raise_on_error=False))


async def _on_node(
    redis: RedisCluster, node: ClusterNode, script: AsyncScript, calls: Calls, wait: Wait | None
) -> list[Outcome]:
    """The calls on the node owning their slot (redis-py's cluster pipelines refuse
    scripts); after a failover, on the new owner."""
    replies: list[Outcome] = []
    for _ in range(_ATTEMPTS):
        try:
            replies = await _evalsha(functools.partial(_node_pipeline, node), script, calls, wait)
        except REDIS_DOWN as exc:
            replies = [exc] * len(calls)
        if not any(isinstance(reply, (*_REDIRECTED, *REDIS_DOWN)) for reply in replies):
            return replies
        try:  # a routed command makes the client learn where the slot lives now
            await redis.exists(calls[0][0][0])
        except REDIS_DOWN as exc:
            return [exc] * len(calls)
        node = _owner(redis, calls[0][0][0])
    return [_retryable(reply) for reply in replies]  # the caller backs off and retries


async def _node_pipeline(node: ClusterNode, commands: list[Command]) -> list[Outcome]:
    """`commands` as one pipeline on `node`'s connection."""
    queued = [PipelineCommand(i, *command) for i, command in enumerate(commands)]
    await node.execute_pipeline(queued)
    return [command.result for command in queued]


def _judged(replies: list[Outcome], wait: Wait | None) -> list[Outcome]:
    """The scripts' replies (WAIT's taken off), each write too few replicas confirmed
    turned into an error."""
    if wait is None:
        return replies
    *replies, confirmed = replies
    if isinstance(confirmed, BaseException):
        return [confirmed if _wrote(reply) else reply for reply in replies]
    confirmed = reply_int(confirmed)
    if confirmed >= wait.replicas:
        return replies
    error = NotReplicated(
        f"the write reached the Redis primary, but {confirmed} of {wait.replicas} "
        f"replicas confirmed it within {wait.timeout_ms} ms, so it could be lost if the "
        "primary failed now. Check the replicas (INFO replication), or lower "
        "CYPHERSTREAM_WAIT_REPLICAS or raise CYPHERSTREAM_WAIT_TIMEOUT."
    )
    return [error if _wrote(reply) else reply for reply in replies]


def _wrote(reply: Outcome) -> bool:
    """Whether a reply says the script wrote (a script that declined returns nil)."""
    return reply is not None and not isinstance(reply, BaseException)


def _owner(redis: RedisCluster, key: str) -> ClusterNode:
    """The node that serves `key`'s slot, as far as the client knows."""
    node = redis.get_node_from_key(key)
    if node is None:
        raise rx.ClusterDownError(f"no node serves the slot of {key!r} yet")
    return node


def _retryable(reply: Outcome) -> Outcome:
    if isinstance(reply, rx.AskError):  # MOVED and ASK: the client has not caught up yet
        return rx.TryAgainError(f"the slot is moving ({reply}); try again")
    return reply
