"""`Drainer`: the long-running worker behind `drainer run`.

It finds sessions with queued writes in the partitions' ready sets, takes each
one's lease (one owner per stream), drains up to `concurrency` sessions at once,
keeps its leases and heartbeat fresh, and on `stop()` finishes in-flight batches
and hands its sessions back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from typing import Any

from redis import exceptions as rx

from drainer.admission import Admission
from drainer.apply import Applier
from drainer.backlog import ready_sessions, snapshot
from drainer.endpoints import Endpoints
from drainer.metrics import Metrics
from drainer.session import DrainDeps, SessionDrain, SessionScripts
from drainer.settings import DrainerSettings
from shared.batching import run_many
from shared.connection import REDIS_DOWN, open_redis, transient
from shared.errors import UnsafeRedisConfig
from shared.queries import QueryBook
from shared.scripts import Scripts
from shared.signing import announce

log = logging.getLogger(__name__)

_SWEEP_PAGE = 500  # streams one pipelined round trip checks


class Drainer:
    """Applies queued writes from Redis to Neo4j until stopped."""

    def __init__(self, settings: DrainerSettings) -> None:
        self.settings = settings
        self.keys = settings.streams.keyspace()
        self._stopping = asyncio.Event()
        self._active: dict[str, tuple[SessionDrain, asyncio.Task[None]]] = {}
        self._waiting = 0
        self._wake = asyncio.Event()
        self.ready = asyncio.Event()
        self.metrics = Metrics()
        self.endpoints: Endpoints | None = None
        self._last_tick = time.monotonic()
        self._started = time.time()
        self._redis: Any = None
        self._driver: Any = None

    @property
    def owned_sessions(self) -> list[str]:
        return list(self._active)

    def stop(self) -> None:
        """Begin a graceful shutdown: no new sessions, finish in-flight batches."""
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        """Connect, then drain until `stop()`; returns after handing sessions back."""
        settings = self.settings
        signer = settings.streams.signer()
        admission = Admission(signer, QueryBook.load(settings.queries), settings.allow_raw_cypher)
        redis = await open_redis(
            settings.redis, self.keys, max_connections=settings.concurrency * 2 + 8
        )
        driver = settings.neo4j.driver(max_connection_pool_size=settings.concurrency + 4)
        try:
            await self._check_eviction(redis)
            applier = Applier(
                driver, settings.neo4j.database, settings.tx_timeout, settings.transactions,
                on_commit=self.metrics.committed,
            )  # fmt: skip
            await applier.ensure_schema()
            await announce(redis, self.keys, signer)
            scripts = Scripts(redis)
            deps = DrainDeps(
                redis, scripts, SessionScripts(redis, scripts), self.keys, applier, settings,
                self._stopping, self.metrics, admission,
            )  # fmt: skip
            self._redis, self._driver = redis, driver
            await self._heartbeat(deps)
            background = [
                asyncio.create_task(self._heartbeat_loop(deps), name="heartbeat"),
                asyncio.create_task(self._sweep_loop(deps), name="sweep"),
            ]
            if settings.metrics_port is not None:
                await self._serve_endpoints(settings)
                background.append(asyncio.create_task(self._stats_loop(deps), name="stats"))
            log.info("drainer started", extra=_effective(settings))
            self.ready.set()
            try:
                await self._schedule(deps)
            finally:
                await self._shutdown(deps)
                if self.endpoints is not None:
                    await self.endpoints.stop()
                for task in background:
                    task.cancel()
                await asyncio.gather(*background, return_exceptions=True)
                with contextlib.suppress(*REDIS_DOWN):
                    await redis.zrem(self.keys.drainers, settings.drainer_id)
                    await redis.delete(self.keys.drainer_info(settings.drainer_id))
        finally:
            await driver.close()
            await redis.aclose()
            log.info("drainer stopped", extra={"drainer_id": settings.drainer_id})

    async def _serve_endpoints(self, settings: DrainerSettings) -> None:
        assert settings.metrics_port is not None
        self.endpoints = Endpoints(
            self.metrics.registry, self._healthy, self._readiness,
            settings.metrics_host, settings.metrics_port,
        )  # fmt: skip
        await self.endpoints.start()

    async def _healthy(self) -> tuple[bool, str]:
        """Alive: this loop answers and the scheduler has ticked recently."""
        quiet = time.monotonic() - self._last_tick
        limit = max(30.0, 20 * self.settings.poll_interval)
        if quiet > limit:
            return False, f"scheduler has not run for {quiet:.0f}s"
        return True, "ok"

    async def _readiness(self) -> tuple[bool, str]:
        """Ready: not shutting down, and both Redis and Neo4j answer."""
        if self._stopping.is_set():
            return False, "shutting down"
        try:
            await asyncio.wait_for(self._redis.ping(), 2)
        except Exception as exc:
            return False, f"Redis unreachable: {type(exc).__name__}"
        try:
            await asyncio.wait_for(self._driver.verify_connectivity(), 2)
        except Exception as exc:
            return False, f"Neo4j unreachable: {type(exc).__name__}"
        return True, "ok"

    async def _stats_loop(self, deps: DrainDeps) -> None:
        """Keep the backlog gauges current for scrapes."""
        while True:
            try:
                status = await snapshot(deps.redis, self.keys, top=0)
                self.metrics.backlog_entries.set(status.entries)
                self.metrics.ready_sessions.set(status.ready_sessions)
                self.metrics.oldest_pending_seconds.set(status.oldest_pending_age_seconds)
            except Exception as exc:  # gauges go stale rather than the loop dying
                log.warning("backlog stats failed", extra={"error": repr(exc)})
            await asyncio.sleep(self.settings.stats_interval)

    async def _check_eviction(self, redis: Any) -> None:
        try:
            policy = (await redis.config_get("maxmemory-policy")).get("maxmemory-policy", "")
        except rx.ResponseError:
            log.warning(
                "cannot read maxmemory-policy (CONFIG is disabled); make sure it is noeviction"
            )
            return
        policy = policy.decode() if isinstance(policy, bytes) else str(policy)
        if policy.startswith("allkeys") and not self.settings.allow_eviction:
            raise UnsafeRedisConfig(
                f"Redis runs with maxmemory-policy {policy}, which can evict streams and lose "
                "queued writes. Set `maxmemory-policy noeviction` (recommended), or start the "
                "drainer with --allow-eviction to accept that risk."
            )
        if policy != "noeviction":
            log.warning("Redis maxmemory-policy is %s; noeviction is recommended", policy)

    # -- scheduling -----------------------------------------------------------------------

    async def _schedule(self, deps: DrainDeps) -> None:
        """Take ready sessions while there are free slots; wait when there is nothing."""
        while not self._stopping.is_set():
            self._last_tick = time.monotonic()
            free = self.settings.concurrency - len(self._active)
            started = 0
            try:
                ready = await self._ready_sessions(deps, limit=max(free, 1) * 2)
                candidates = [session for session in ready if session not in self._active]
                self._waiting = len(candidates)
                while started < free and candidates:
                    # Those at the front may be another drainer's: try a slot's worth at once.
                    batch, candidates = candidates[: free - started], candidates[free - started :]
                    for session_id in await self._acquire(deps, batch):
                        self._start(deps, session_id)
                        started += 1
            except Exception as exc:  # the scheduler outlives any one failed look
                if transient(exc):
                    log.warning(
                        "Redis unavailable while looking for work", extra={"error": str(exc)}
                    )
                else:
                    log.exception("looking for work failed", extra={"error": repr(exc)})
            if started == 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval)

    async def _ready_sessions(self, deps: DrainDeps, limit: int) -> list[str]:
        ready = await ready_sessions(deps.redis, self.keys, per_partition=limit)
        return [session for session, _ in ready[:limit]]

    async def _acquire(self, deps: DrainDeps, sessions: list[str]) -> list[str]:
        """Take the leases of those of `sessions` nobody holds, in one round trip."""
        ttl_ms = int(self.settings.lease_ttl * 1000)
        async with deps.redis.pipeline(transaction=False) as pipe:
            for session_id in sessions:
                pipe.set(self.keys.lease(session_id), self.settings.drainer_id, nx=True, px=ttl_ms)
            taken = await pipe.execute()
        return [session_id for session_id, ok in zip(sessions, taken, strict=True) if ok]

    def _start(self, deps: DrainDeps, session_id: str) -> None:
        drain = SessionDrain(deps, session_id)
        task = asyncio.create_task(drain.run(lambda: self._waiting > 0), name=f"drain:{session_id}")
        self._active[session_id] = (drain, task)
        self.metrics.streams_owned.set(len(self._active))
        task.add_done_callback(lambda t: self._finished(session_id, t))

    def _finished(self, session_id: str, task: asyncio.Task[None]) -> None:
        self._active.pop(session_id, None)
        self.metrics.streams_owned.set(len(self._active))
        self._wake.set()
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "session drain crashed; its lease expires and it is taken over",
                exc_info=task.exception(),
                extra={"session_id": session_id},
            )

    # -- liveness -------------------------------------------------------------------------

    async def _heartbeat(self, deps: DrainDeps) -> None:
        ttl_ms = int(self.settings.lease_ttl * 1000)
        info = [
            "host", socket.gethostname(), "pid", os.getpid(),
            "streams_owned", len(self._active), "started", int(self._started),
        ]  # fmt: skip
        await deps.scripts.heartbeat(
            keys=[self.keys.drainers, self.keys.drainer_info(self.settings.drainer_id)],
            args=[self.settings.drainer_id, ttl_ms, *info],
        )
        sessions = list(self._active)
        if not sessions:
            return
        calls = [([self.keys.lease(s)], [self.settings.drainer_id, ttl_ms]) for s in sessions]
        renewed = await run_many(deps.redis, deps.scripts.renew, calls)
        for session_id, ok in zip(sessions, renewed, strict=True):
            if isinstance(ok, BaseException):
                raise ok  # the heartbeat loop logs it and tries again
            entry = self._active.get(session_id)
            if not ok and entry is not None:
                entry[0].lost = True

    async def _heartbeat_loop(self, deps: DrainDeps) -> None:
        while True:
            await asyncio.sleep(self.settings.lease_ttl / 3)
            try:
                await self._heartbeat(deps)
            except Exception as exc:  # a missed heartbeat must never end the loop
                log.warning("heartbeat failed", extra={"error": repr(exc)})

    async def _sweep_loop(self, deps: DrainDeps) -> None:
        """Safety net: put streams with entries back in their ready set if missing."""
        while True:
            await asyncio.sleep(self.settings.sweep_interval)
            try:
                await self._sweep(deps)
            except Exception as exc:  # the safety net must keep running
                log.warning("sweep failed", extra={"error": repr(exc)})

    async def _sweep(self, deps: DrainDeps) -> None:
        """One SCAN over every session stream, by one drainer of the fleet per interval:
        the net costs O(all sessions) per interval, however many drainers run."""
        turn_ms = int(self.settings.sweep_interval * 1000)
        if not await deps.redis.set(
            self.keys.sweep_turn, self.settings.drainer_id, nx=True, px=turn_ms
        ):
            return
        page: list[str] = []
        async for key in deps.redis.scan_iter(
            match=self.keys.stream_pattern, count=1000, _type="stream"
        ):
            page.append(key.decode())
            if len(page) == _SWEEP_PAGE:
                await self._sweep_page(deps, page)
                page = []
        await self._sweep_page(deps, page)
        await self._prune(deps)

    async def _sweep_page(self, deps: DrainDeps, streams: list[str]) -> None:
        if not streams:
            return
        calls = []
        for stream in streams:
            session_id = self.keys.session_of_stream(stream)
            ready = self.keys.ready(self.keys.partition_of(session_id))
            calls.append(([stream, ready], [session_id]))
        for (_, [session_id]), readied in zip(
            calls, await run_many(deps.redis, deps.scripts.sweep, calls), strict=True
        ):
            if isinstance(readied, Exception):
                raise readied
            if readied:
                log.warning("sweep found a ready session missing", extra={"session_id": session_id})

    async def _prune(self, deps: DrainDeps) -> None:
        """Delete the Neo4j progress records of sessions whose streams Redis expired
        (idle past `idle_session_ttl`, never ended); a page per sweep."""
        idle = self.settings.idle_session_ttl
        prefix = self.keys.progress_id("")
        records = await deps.applier.idle_records(prefix, idle, _SWEEP_PAGE)
        if not records:
            return
        async with deps.redis.pipeline(transaction=False) as pipe:
            for record in records:
                pipe.exists(self.keys.stream(record.removeprefix(prefix)))
            exists = await pipe.execute()
        expired = [record for record, found in zip(records, exists, strict=True) if not found]
        if expired:
            await deps.applier.forget_idle(expired, idle)
            log.info("pruned progress records of expired sessions", extra={"records": len(expired)})

    async def _shutdown(self, deps: DrainDeps) -> None:
        """Let in-flight batches finish (they release their leases), within the grace time."""
        self._stopping.set()
        tasks = [task for _, task in self._active.values()]
        if not tasks:
            return
        log.info("finishing in-flight batches", extra={"sessions": len(tasks)})
        _, late = await asyncio.wait(tasks, timeout=self.settings.shutdown_grace)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)


def _effective(settings: DrainerSettings) -> dict[str, Any]:
    """Settings for the start-up log line, without secrets."""
    shown = settings.model_dump(
        exclude={
            "neo4j": {"password"},
            "redis": {"url", "password"},
            "streams": {"signing_keys"},
        }
    )
    shown["signing"] = settings.streams.signing_keys is not None
    shown["redis_url_set"] = bool(settings.redis.url)
    return {"settings": shown, "drainer_id": settings.drainer_id}
