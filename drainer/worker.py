"""`Drainer`: the long-running worker behind `drainer run`.

It finds sessions with queued writes in the partitions' ready sets, takes each
one's lease (one owner per stream), drains up to `concurrency` sessions at once,
keeps its leases and heartbeat fresh, and on `stop()` finishes in-flight batches
and hands its sessions back.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from neo4j import AsyncDriver
from neo4j import exceptions as nx
from redis import exceptions as rx

from cypherstream.drainer.admission import Admission
from cypherstream.drainer.apply import Applier
from cypherstream.drainer.backlog import snapshot
from cypherstream.drainer.endpoints import Endpoints
from cypherstream.drainer.metrics import Metrics
from cypherstream.drainer.progress import ProgressRecords
from cypherstream.drainer.read_budget import ReadBudget
from cypherstream.drainer.session import DrainContext, SessionDrain
from cypherstream.drainer.session_scripts import SessionScripts
from cypherstream.drainer.settings import DrainerSettings
from cypherstream.drainer.worker_scripts import WorkerScripts
from cypherstream.shared.channel import Channel
from cypherstream.shared.connection import (
    REDIS_DOWN,
    RedisClient,
    check_neo4j,
    open_redis,
    refused,
    transient,
)
from cypherstream.shared.entry import announcement
from cypherstream.shared.errors import Neo4jUnavailable, RedisUnavailable, UnsafeRedisConfig
from cypherstream.shared.keys import Keyspace
from cypherstream.shared.memory import WARN_RATIO, memory_use
from cypherstream.shared.queries import QueryBook
from cypherstream.shared.retry import Backoff, call_with_retry
from cypherstream.shared.schema import schema_failure
from cypherstream.shared.scripts import Scripts
from cypherstream.shared.settings import masked_url
from cypherstream.shared.signing import fingerprints_text

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Streams one pipelined round trip of the sweep checks.
_SWEEP_PAGE = 500
#: First delay between start-up attempts to reach a server (doubling to retry_max_delay).
_STARTUP_RETRY_FIRST = 0.5
#: Seconds `/readyz` gives Redis and Neo4j each to answer.
_PROBE_TIMEOUT = 2.0
#: Seconds between warnings while Redis memory stays above `WARN_RATIO`.
_MEMORY_WARN_EVERY = 60.0
#: Seconds between log lines of one refusal while Redis keeps refusing the same work.
_REFUSAL_LOG_EVERY = 60.0


class Drainer:
    """Applies queued writes from Redis to Neo4j until stopped."""

    def __init__(self, settings: DrainerSettings) -> None:
        self.settings = settings
        self.keys = settings.streams.keyspace()
        self._stopping = asyncio.Event()
        self._active: dict[str, tuple[SessionDrain, asyncio.Task[None]]] = {}
        self._waiting = 0
        self._wake = asyncio.Event()
        # Sessions announced as ready while a slot was free, to take before the next look.
        self._announced_ids: dict[str, None] = {}
        self.ready = asyncio.Event()
        self.metrics = Metrics()
        self.endpoints: Endpoints | None = None
        self._last_tick = time.monotonic()
        self._started = time.time()
        self._redis: RedisClient | None = None  # set once connected
        self._driver: AsyncDriver | None = None
        self._memory_warned: float | None = None  # when the last memory warning was logged
        self._waiting_for: str | None = None  # the server start-up waits for, if any
        self._upkeep: WorkerScripts  # set once connected
        self._failures = _Failures(settings, self.keys)

    def stop(self) -> None:
        """Begin a graceful shutdown: no new sessions, finish in-flight batches."""
        self._stopping.set()
        self._wake.set()

    async def run_until_signalled(self) -> None:
        """`run`, with SIGTERM and SIGINT calling `stop()` (arq's `run_worker`); a second
        signal exits at once, which is still safe: unacknowledged entries stay pending
        and another drainer takes them over."""
        loop = asyncio.get_running_loop()
        signals = 0

        def on_signal() -> None:
            nonlocal signals
            signals += 1
            if signals > 1:
                os._exit(1)
            self.stop()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        try:
            await self.run()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    async def run(self) -> None:
        """Connect, then drain until `stop()`; returns after handing sessions back.

        A server that cannot be reached yet is waited for (one log line per attempt,
        `/readyz` false meanwhile); `stop()` ends the wait at once. Settings that cannot
        work raise `ConfigurationError`.
        """
        async with contextlib.AsyncExitStack() as stack:
            await self._run(stack)
        log.info("drainer stopped", extra={"drainer_id": self.settings.drainer_id})

    async def _run(self, stack: contextlib.AsyncExitStack) -> None:
        """Connect (what to close goes on `stack`), then drain; return early if stopped."""
        settings = self.settings
        signer = settings.streams.signer()
        admission = Admission(signer, QueryBook.load(settings.queries), settings.allow_raw_cypher)
        if settings.metrics_port is not None:
            await self._serve_endpoints(settings)
            stack.push_async_callback(self._stop_endpoints)
        redis = await self._until_up(
            f"Redis at {masked_url(settings.redis.url)}",
            lambda: open_redis(settings.redis, self.keys, max_connections=_redis_pool(settings)),
        )
        if redis is None:
            return
        stack.push_async_callback(redis.aclose)
        await self._check_eviction(redis)
        # A connection per transaction slot (opened at start-up), one per session for its
        # own statements (a given-up write, a forgotten session), and a few to spare.
        pool = settings.transactions + settings.concurrency + 4
        driver = settings.neo4j.driver(max_connection_pool_size=pool)
        stack.push_async_callback(driver.close)
        applier = Applier(
            driver, settings.neo4j.database, settings.tx_timeout, settings.transactions,
            events=self.metrics, transaction_bytes=settings.transaction_bytes,
        )  # fmt: skip
        progress = ProgressRecords(driver, settings.neo4j.database, settings.tx_timeout)
        neo4j = await self._until_up(
            f"Neo4j at {settings.neo4j.uri}",
            lambda: self._prepare_neo4j(driver, progress, applier),
        )
        if neo4j is None:
            return
        scripts = Scripts(redis)
        lease_ms = int(settings.lease_ttl * 1000)
        self._upkeep = WorkerScripts(redis, scripts, self.keys, settings.drainer_id, lease_ms)
        stack.push_async_callback(self._upkeep.close)
        calls = SessionScripts(
            redis, scripts, self.keys, settings.drainer_id,
            lease_ms=lease_ms,
            idle_ms=int(settings.idle_session_ttl * 1000),
        )  # fmt: skip
        stack.push_async_callback(calls.close)
        context = DrainContext(
            redis, scripts, calls, self.keys, applier, progress, settings, self._stopping,
            self.metrics, admission, ReadBudget(settings.batch_size, settings.read_bytes),
        )  # fmt: skip
        self._redis, self._driver = redis, driver
        await self._drain(context)

    async def _prepare_neo4j(
        self, driver: AsyncDriver, progress: ProgressRecords, applier: Applier
    ) -> bool:
        await check_neo4j(self.settings.neo4j, driver)
        try:
            await progress.ensure_schema()
            await applier.open_connections()
        except (nx.Neo4jError, nx.DriverError, OSError) as exc:
            raise schema_failure(self.settings.neo4j, exc) from exc
        return True

    async def _until_up(self, what: str, attempt: Callable[[], Awaitable[T]]) -> T | None:
        """`attempt()`'s result once the server answers; None when stopped meanwhile."""

        def waiting(exc: Exception, delay: float) -> None:
            self._last_tick = time.monotonic()  # waiting is alive, not stuck
            reason = " ".join(str(exc.__cause__ or exc).split())
            log.warning(
                "%s is not reachable yet, retrying in %.1fs: %s",
                what, delay, reason, extra={"waiting_for": what},
            )  # fmt: skip

        cap = self.settings.retry_max_delay
        self._waiting_for = what
        result = await self._unless_stopped(
            call_with_retry(
                attempt,
                retryable=lambda exc: isinstance(exc, (RedisUnavailable, Neo4jUnavailable)),
                backoff=lambda: Backoff(first=_STARTUP_RETRY_FIRST, cap=cap),
                on_retry=waiting,
            )
        )
        self._waiting_for = None
        return result

    async def _unless_stopped(self, attempt: Awaitable[T]) -> T | None:
        """Await `attempt`, cancelled as soon as `stop()` is called (then None)."""
        task = asyncio.ensure_future(attempt)
        stopped = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait([task, stopped], return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return None
        return task.result()

    async def _drain(self, context: DrainContext) -> None:
        """Heartbeat, sweep and watch in the background; schedule sessions until stopped."""
        settings = self.settings
        await self._heartbeat(context)
        fail, stats = self._failures, settings.stats_interval
        background = [
            _every(settings.lease_ttl / 3, lambda: self._heartbeat(context), "the heartbeat", fail),
            _every(settings.sweep_interval, lambda: self._sweep(context), "the sweep", fail),
            _every(stats, lambda: self._watch_memory(context), "the memory check", fail),
        ]
        if settings.metrics_port is not None:
            figures = functools.partial(self._backlog_stats, context)
            background.append(_every(stats, figures, "the backlog figures", fail))
        # Submits announce sessions that became ready: look at once, not at the next poll.
        announcements = Channel(
            context.redis, self.keys.ready_channel, self._announced,
            refused="drainers find new sessions every --poll-interval",
        )  # fmt: skip
        announcements.start()
        log.info("drainer started", extra=_effective(settings))
        self.ready.set()
        try:
            await self._schedule(context)
        finally:
            await announcements.close()
            await self._shutdown(context)
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await self._leave(context.redis)

    async def _leave(self, redis: RedisClient) -> None:
        """Take this drainer off the registry; where Redis cannot or will not, its
        heartbeat record goes stale instead, which flushes read the same way."""
        try:
            await redis.zrem(self.keys.drainers, self.settings.drainer_id)
            await redis.delete(self.keys.drainer_info(self.settings.drainer_id))
        except REDIS_DOWN:
            pass
        except rx.ResponseError as exc:
            self._failures("the drainer's removal from the registry", exc)

    async def _stop_endpoints(self) -> None:
        if self.endpoints is not None:
            await self.endpoints.stop()

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
        if self._redis is None or self._driver is None:
            return False, f"starting: waiting for {self._waiting_for or 'the servers'}"
        try:
            await asyncio.wait_for(self._redis.ping(), _PROBE_TIMEOUT)
        except Exception as exc:
            return False, f"Redis unreachable: {type(exc).__name__}"
        try:
            await asyncio.wait_for(self._driver.verify_connectivity(), _PROBE_TIMEOUT)
        except Exception as exc:
            return False, f"Neo4j unreachable: {type(exc).__name__}"
        return True, "ok"

    async def _backlog_stats(self, context: DrainContext) -> None:
        """Keep the backlog gauges current for scrapes."""
        status = await snapshot(context.redis, self.keys, top=0)
        self.metrics.backlog(status)

    async def _watch_memory(self, context: DrainContext) -> None:
        """Redis memory against maxmemory: gauges, and a warning above `WARN_RATIO` (once
        a minute while it lasts), since a full Redis makes every producer wait."""
        use = await memory_use(context.redis)
        self.metrics.redis_memory(use)
        now = time.monotonic()
        if use.ratio < WARN_RATIO:
            if self._memory_warned is not None:
                log.info("Redis memory is below the warning level again: %s", use.describe())
            self._memory_warned = None
        elif self._memory_warned is None or now - self._memory_warned >= _MEMORY_WARN_EVERY:
            self._memory_warned = now
            log.warning(
                "Redis is nearly or fully out of memory: %s. Producers wait for room while "
                "it is full; drainers free it as they apply writes. Add drainers if the "
                "backlog grows, or raise maxmemory.",
                use.describe(),
                extra={"used_bytes": use.used, "maxmemory_bytes": use.limit},
            )

    async def _check_eviction(self, redis: RedisClient) -> None:
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

    async def _schedule(self, context: DrainContext) -> None:
        """Take ready sessions while there are free slots; wait when there is nothing."""
        while not self._stopping.is_set():
            self._last_tick = time.monotonic()
            self._wake.clear()  # what wakes it from here on is news for the next look
            free = self.settings.concurrency - len(self._active)
            started = 0
            # Sessions announced since the last look are taken first, without one; the
            # look right after finds any others.
            candidates = self._announced_candidates() if free > 0 else []
            announced = bool(candidates)
            try:
                if not announced:
                    ready = await self._upkeep.ready(limit=max(free, 1) * 2)
                    candidates = [session for session in ready if session not in self._active]
                    self._waiting = len(candidates)
                while started < free and candidates:
                    # Those at the front may be another drainer's: try a slot's worth at once.
                    batch, candidates = candidates[: free - started], candidates[free - started :]
                    for session_id in await self._upkeep.acquire(batch):
                        self._start(context, session_id)
                        started += 1
            except Exception as exc:  # the scheduler outlives any one failed look
                self._failures("the look for ready sessions", exc)
            if started == 0 and not announced:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval)

    def _announced_candidates(self) -> list[str]:
        """The sessions announced since the last look that this worker does not drain."""
        announced, self._announced_ids = self._announced_ids, {}
        return [session for session in announced if session not in self._active]

    def _announced(self, session_id: str) -> None:
        """A session became ready: take it now, if a slot is free to take it."""
        free = self.settings.concurrency - len(self._active)
        if free > 0:
            if len(self._announced_ids) < free:
                self._announced_ids[session_id] = None
            self._wake.set()

    def _start(self, context: DrainContext, session_id: str) -> None:
        drain = SessionDrain(context, session_id)
        task = asyncio.create_task(drain.run(lambda: self._waiting > 0), name=f"drain:{session_id}")
        self._active[session_id] = (drain, task)
        self.metrics.owning(len(self._active))
        task.add_done_callback(lambda t: self._finished(session_id, t))

    def _finished(self, session_id: str, task: asyncio.Task[None]) -> None:
        self._active.pop(session_id, None)
        self.metrics.owning(len(self._active))
        self._wake.set()
        exc = None if task.cancelled() else task.exception()
        if isinstance(exc, Exception):  # its lease expires and the session is taken over
            self._failures("a session's drain", exc, session_id=session_id)

    # -- liveness -------------------------------------------------------------------------

    async def _heartbeat(self, context: DrainContext) -> None:
        info: list[str | int] = [
            "host", socket.gethostname(), "pid", os.getpid(),
            "streams_owned", len(self._active), "started", int(self._started),
            "signing", fingerprints_text(context.admission.signer),
            "reads", announcement(),
            "writes_batched", self.metrics.batched_writes,
            "writes_single", self.metrics.single_writes,
        ]  # fmt: skip
        await self._upkeep.heartbeat(info)
        lost = await self._upkeep.renew(list(self._active)) if self._active else []
        for session_id in lost:  # the drain stops at its next call
            entry = self._active.get(session_id)
            if entry is not None:
                entry[0].lost = True

    async def _sweep(self, context: DrainContext) -> None:
        """One SCAN over every session stream, by one drainer of the fleet per interval:
        the net costs O(all sessions) per interval, however many drainers run."""
        if not await self._upkeep.take_sweep_turn(int(self.settings.sweep_interval * 1000)):
            return
        page: list[str] = []
        async for key in context.redis.scan_iter(
            match=self.keys.stream_pattern, count=1000, _type="stream"
        ):
            page.append(key.decode())
            if len(page) == _SWEEP_PAGE:
                await self._sweep_page(context, page)
                page = []
        await self._sweep_page(context, page)
        await self._prune(context)

    async def _sweep_page(self, context: DrainContext, streams: list[str]) -> None:
        if not streams:
            return
        for session_id in await self._upkeep.sweep(streams):
            log.warning("sweep found a ready session missing", extra={"session_id": session_id})

    async def _prune(self, context: DrainContext) -> None:
        """Delete the Neo4j progress records of sessions whose streams Redis expired
        (idle past `idle_session_ttl`, never ended); a page per sweep."""
        idle = self.settings.idle_session_ttl
        prefix = self.keys.progress_id("")
        records = await context.progress.idle_records(prefix, idle, _SWEEP_PAGE)
        if not records:
            return
        async with context.redis.pipeline(transaction=False) as pipe:
            for record in records:
                pipe.exists(self.keys.stream(record.removeprefix(prefix)))
            exists = await pipe.execute()
        expired = [record for record, found in zip(records, exists, strict=True) if not found]
        if expired:
            await context.progress.forget_idle(expired, idle)
            log.info("pruned progress records of expired sessions", extra={"records": len(expired)})

    async def _shutdown(self, context: DrainContext) -> None:
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


def _redis_pool(settings: DrainerSettings) -> int:
    """Redis connections a drainer may open: two per session it drains (a script in
    flight and a pipelined one), and a few for heartbeat, sweep and scheduler."""
    return settings.concurrency * 2 + 8


def _every(
    interval: float,
    action: Callable[[], Awaitable[None]],
    name: str,
    failed: Callable[[str, Exception], None],
) -> asyncio.Task[None]:
    """A task running `action` every `interval` seconds until cancelled; a failed run is
    reported to `failed` and the next one goes ahead (a missed heartbeat must never end
    the loop)."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await action()
            except Exception as exc:
                failed(name, exc)

    return asyncio.create_task(loop(), name=name)


class _Failures:
    """Logs a failure the worker outlives in one line: Redis unreachable or refusing for
    now as a warning; Redis refusing the work for good (a revoked ACL right, a key of
    another type under the prefix) as an error saying what to change, once a minute
    while it lasts; anything else with its traceback, since that is a bug."""

    def __init__(self, settings: DrainerSettings, keys: Keyspace) -> None:
        self._settings = settings
        self._keys = keys
        self._refusals: dict[str, float] = {}  # message -> when last logged

    def __call__(self, what: str, exc: Exception, **extra: object) -> None:
        fields = {"error": repr(exc), **extra}
        if transient(exc):
            log.warning("%s failed: Redis unavailable (%s)", what, exc, extra=fields)
        elif isinstance(exc, rx.ResponseError):
            message = str(refused(self._settings.redis, self._keys, exc, what))
            now = time.monotonic()
            if now - self._refusals.get(message, -_REFUSAL_LOG_EVERY) >= _REFUSAL_LOG_EVERY:
                self._refusals[message] = now
                log.error("%s", message, extra=fields)
        else:
            log.error("%s failed", what, exc_info=exc, extra=fields)


def _effective(settings: DrainerSettings) -> dict[str, object]:
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
