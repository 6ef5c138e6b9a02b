"""What is queued and who works on it: the numbers behind `drainer status` and the gauges."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import cast

from redis import exceptions as rx

from cypherstream.shared.connection import RedisClient
from cypherstream.shared.entry import announced
from cypherstream.shared.keys import Keyspace
from cypherstream.shared.lane import Command, Lane
from cypherstream.shared.memory import MemoryUse, memory_use


@dataclass(frozen=True)
class DrainerInfo:
    id: str
    host: str
    pid: int
    streams_owned: int
    last_heartbeat_age_seconds: float
    alive: bool
    #: Writes it ran sharing an UNWIND statement, and alone, since it started.
    writes_batched: int = 0
    writes_single: int = 0
    #: Entry versions it reads (`shared.entry`); (1,) from releases before version 2.
    entry_versions: tuple[int, ...] = (1,)


@dataclass(frozen=True)
class SessionBacklog:
    session: str
    entries: int
    waiting_seconds: float
    owner: str | None


@dataclass(frozen=True)
class Status:
    """A snapshot; `to_json()` is the stable form `drainer status --json` prints."""

    drainers: list[DrainerInfo] = field(default_factory=list)
    entries: int = 0
    ready_sessions: int = 0
    oldest_pending_age_seconds: float = 0.0
    sessions: list[SessionBacklog] = field(default_factory=list)
    dead_letters: int = 0
    redis_memory: MemoryUse = field(default_factory=lambda: MemoryUse(0, 0))

    @property
    def live_drainers(self) -> int:
        return sum(1 for d in self.drainers if d.alive)

    @property
    def batched_share(self) -> float | None:
        """Of the writes live drainers ran, the share that shared a statement (None:
        none ran yet). Low means writes run one by one: see `unbatched_writes_total`."""
        batched = sum(d.writes_batched for d in self.drainers if d.alive)
        total = batched + sum(d.writes_single for d in self.drainers if d.alive)
        return batched / total if total else None

    def to_json(self) -> dict[str, object]:
        return {
            "drainers": [asdict(d) for d in self.drainers],
            "backlog": {
                "entries": self.entries,
                "ready_sessions": self.ready_sessions,
                "oldest_pending_age_seconds": self.oldest_pending_age_seconds,
            },
            "sessions": [asdict(s) for s in self.sessions],
            "dead_letters": self.dead_letters,
            "batched_share": self.batched_share,
            "redis_memory": {
                "used_bytes": self.redis_memory.used,
                "maxmemory_bytes": self.redis_memory.limit,
            },
        }


async def _now_ms(redis: RedisClient) -> int:
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def ready_sessions(
    redis: RedisClient, keys: Keyspace, *, per_partition: int = 0, lane: Lane | None = None
) -> list[tuple[str, float]]:
    """Sessions with queued entries and since when (ms), oldest first: all of them, or
    the oldest `per_partition` of each partition (one pipelined call either way; over
    `lane` where given, a single Redis's).

    The replies are read raw: redis-py 8 turns each score of a RESP3 reply into text
    and back, which cost a drainer about 5% of its CPU draining many small sessions
    (a look reads 17 scores per session it takes)."""
    commands: list[Command] = [
        ("ZRANGE", keys.ready(partition), 0, per_partition - 1, "WITHSCORES")
        for partition in range(keys.partitions)
    ]
    if lane is not None:
        replies: list[object] = list(await lane.run(commands))
    else:
        async with redis.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            replies = await pipe.execute()
    ready = [pair for reply in replies for pair in _scored(reply)]
    return sorted(ready, key=lambda item: item[1])


def _scored(reply: object) -> list[tuple[str, float]]:
    """A raw `ZRANGE ... WITHSCORES` reply as (member, score) pairs: RESP3 gives pairs,
    RESP2 a flat member, score, member, ... list."""
    if isinstance(reply, rx.ResponseError):
        raise reply
    items = cast("list[bytes | list[bytes | float]]", reply)
    if items and isinstance(items[0], list):
        pairs = cast("list[list[bytes | float]]", items)
        return [(cast("bytes", m).decode(), float(s)) for m, s in pairs]
    flat = cast("list[bytes]", items)
    return [(flat[i].decode(), float(flat[i + 1])) for i in range(0, len(flat), 2)]


async def snapshot(redis: RedisClient, keys: Keyspace, *, top: int = 10) -> Status:
    """Backlog, drainers and dead letters, read from Redis in a few pipelined calls."""
    now = await _now_ms(redis)
    ready = await ready_sessions(redis, keys)
    async with redis.pipeline(transaction=False) as pipe:
        for session, _ in ready:
            pipe.xlen(keys.stream(session))
        for session, _ in ready[:top]:
            pipe.get(keys.lease(session))
        replies = await pipe.execute()
    lengths, owners = replies[: len(ready)], replies[len(ready) :]
    sessions = [
        SessionBacklog(
            session=session,
            entries=int(lengths[i]),
            waiting_seconds=max(0.0, (now - since) / 1000),
            owner=owners[i].decode() if owners[i] else None,
        )
        for i, (session, since) in enumerate(ready[:top])
    ]
    return Status(
        drainers=await _drainers(redis, keys, now),
        entries=int(sum(lengths)),
        ready_sessions=len(ready),
        oldest_pending_age_seconds=max(0.0, (now - ready[0][1]) / 1000) if ready else 0.0,
        sessions=sessions,
        dead_letters=int(await redis.xlen(keys.dead_letters)),
        redis_memory=await memory_use(redis),
    )


async def _drainers(redis: RedisClient, keys: Keyspace, now: int) -> list[DrainerInfo]:
    # Our clients return bytes (no decode_responses), which redis-py's types leave open.
    scored = await redis.zrange(keys.drainers, 0, -1, withscores=True)
    members = cast("list[tuple[bytes, float]]", scored)
    async with redis.pipeline(transaction=False) as pipe:
        for member, _ in members:
            pipe.hgetall(keys.drainer_info(member.decode()))
        infos: list[dict[bytes, bytes]] = await pipe.execute()
    drainers = []
    for (member, expires), info in zip(members, infos, strict=True):
        text = {k.decode(): v.decode() for k, v in info.items()}
        heartbeat = int(text.get("heartbeat_ms", 0))
        drainers.append(
            DrainerInfo(
                id=member.decode(),
                host=text.get("host", "?"),
                pid=int(text.get("pid", 0)),
                streams_owned=int(text.get("streams_owned", 0)),
                last_heartbeat_age_seconds=max(0.0, (now - heartbeat) / 1000) if heartbeat else -1,
                alive=expires >= now,
                writes_batched=int(text.get("writes_batched", 0)),
                writes_single=int(text.get("writes_single", 0)),
                entry_versions=announced(text.get("reads", "")),
            )
        )
    return drainers
