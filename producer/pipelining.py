"""Auto-batching of submit-script calls: one round trip for many concurrent submits.

A call that finds nothing in flight goes out at once, so a lone caller waits one
round trip and no more. Calls that arrive while a round trip is in flight wait,
and go out together as one pipeline when it returns; under load, batches grow to
whatever arrived during the last round trip (the way a Kafka producer batches,
without a linger delay).

Order: the stream backend holds one lock per session around each call, so a
session never has two calls in flight, and a pipeline never holds two writes of
one session: batching cannot reorder a session's writes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from shared.batching import Wait, run_many

_Call = tuple[list[str], list[Any], "asyncio.Future[Any]"]


class ScriptPipeline:
    """Sends EVALSHA calls of one script alone when idle, pipelined when busy."""

    def __init__(self, redis: Any, script: Any, wait: Wait | None = None) -> None:
        self._redis = redis
        self._script = script  # a redis-py Script: its sha and source
        self._wait = wait
        self._queue: list[_Call] = []
        self._in_flight = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.round_trips = 0
        """Round trips made so far: one per lone call, one per pipeline."""

    async def call(self, keys: list[str], args: list[Any]) -> Any:
        """Run the script with `keys` and `args`; its reply, or the error it raised."""
        if not self._in_flight:
            self._in_flight = True
            self.round_trips += 1
            try:
                if self._wait is None:
                    return await self._script(keys=keys, args=args)
                (reply,) = await run_many(self._redis, self._script, [(keys, args)], self._wait)
                if isinstance(reply, Exception):
                    raise reply
                return reply
            finally:
                self._in_flight = False
                self._send_queued()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((keys, args, future))
        return await future

    def _send_queued(self) -> None:
        if self._in_flight or not self._queue:
            return
        self._in_flight = True
        batch, self._queue = self._queue, []
        task = asyncio.create_task(self._send(batch), name="cypherstream-submit-pipeline")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[_Call]) -> None:
        try:
            self.round_trips += 1
            calls = [(keys, args) for keys, args, _ in batch]
            replies = await run_many(self._redis, self._script, calls, self._wait)
            for (_, _, future), reply in zip(batch, replies, strict=True):
                if future.done():
                    continue
                if isinstance(reply, Exception):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)
        except BaseException as exc:  # each caller sees why its call failed
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            self._in_flight = False
            self._send_queued()
