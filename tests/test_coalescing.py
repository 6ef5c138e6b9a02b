"""The coalescer alone (a pure asyncio component): calls go at once when a slot is
free, together when not, in the order given, each with its own result or error."""

from __future__ import annotations

import asyncio

import pytest

from cypherstream.shared.coalescing import Coalescer


class Recorder:
    """A `send` that records each batch and holds it until released."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        self.in_flight = 0
        self.most_in_flight = 0

    async def send(self, items: list[int]) -> list[int | BaseException]:
        self.batches.append(items)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await self.release.wait()
        self.in_flight -= 1
        return [ValueError(item) if item < 0 else item * 10 for item in items]


async def test_a_lone_call_goes_at_once_in_a_batch_of_its_own() -> None:
    recorder = Recorder()
    recorder.release.set()

    assert await Coalescer(recorder.send).call(7) == 70
    assert recorder.batches == [[7]]


async def test_calls_arriving_while_busy_go_together_in_call_order() -> None:
    recorder = Recorder()
    coalescer = Coalescer(recorder.send)
    calls = [asyncio.create_task(coalescer.call(n)) for n in range(6)]
    await asyncio.sleep(0)  # every call has arrived; the first is in flight
    recorder.release.set()

    assert await asyncio.gather(*calls) == [0, 10, 20, 30, 40, 50]
    assert recorder.batches == [[0], [1, 2, 3, 4, 5]]
    assert coalescer.batches == 2


async def test_gathering_calls_of_one_loop_round_share_a_batch_though_slots_are_free() -> None:
    recorder = Recorder()
    recorder.release.set()
    coalescer = Coalescer(recorder.send, slots=2, gather=True)
    calls = [asyncio.create_task(coalescer.call(n)) for n in range(5)]  # one round

    assert await asyncio.gather(*calls) == [0, 10, 20, 30, 40]
    assert recorder.batches == [[0, 1, 2, 3, 4]]

    assert await coalescer.call(5) == 50  # alone, a round later
    assert recorder.batches[1:] == [[5]]


async def test_without_gathering_calls_of_one_loop_round_take_the_free_slots_alone() -> None:
    recorder = Recorder()
    coalescer = Coalescer(recorder.send, slots=2)
    calls = [asyncio.create_task(coalescer.call(n)) for n in range(5)]
    await asyncio.sleep(0)  # every call has arrived
    recorder.release.set()

    assert await asyncio.gather(*calls) == [0, 10, 20, 30, 40]
    assert recorder.batches == [[0], [1], [2, 3, 4]]


async def test_each_call_gets_its_own_error() -> None:
    recorder = Recorder()
    coalescer = Coalescer(recorder.send)
    calls = [asyncio.create_task(coalescer.call(n)) for n in (1, -2, 3)]
    await asyncio.sleep(0)
    recorder.release.set()

    results = await asyncio.gather(*calls, return_exceptions=True)

    assert results[0] == 10 and results[2] == 30
    assert isinstance(results[1], ValueError)


async def test_slots_bound_the_batches_in_flight() -> None:
    recorder = Recorder()
    coalescer = Coalescer(recorder.send, slots=2)
    calls = [asyncio.create_task(coalescer.call(n)) for n in range(5)]
    await asyncio.sleep(0)

    assert recorder.batches == [[0], [1]]  # two alone; the rest wait for a slot
    recorder.release.set()
    assert await asyncio.gather(*calls) == [0, 10, 20, 30, 40]
    assert recorder.most_in_flight == 2
    assert recorder.batches[2:] == [[2, 3, 4]]


async def test_a_failing_send_fails_every_call_of_its_batch() -> None:
    async def broken(items: list[int]) -> list[int | BaseException]:
        raise ConnectionError("gone")

    coalescer = Coalescer(broken)
    calls = [asyncio.create_task(coalescer.call(n)) for n in range(3)]

    for call in calls:
        with pytest.raises(ConnectionError):
            await call


async def test_a_weighed_batch_takes_waiting_calls_up_to_its_limit_and_leaves_the_rest() -> None:
    recorder = Recorder()
    coalescer = Coalescer(recorder.send, weight=lambda n: n, limit=5)
    calls = [asyncio.create_task(coalescer.call(n)) for n in (1, 2, 3, 4, 9)]
    await asyncio.sleep(0)  # every call has arrived; the first is in flight
    recorder.release.set()

    assert await asyncio.gather(*calls) == [10, 20, 30, 40, 90]
    # 2 + 3 fits in 5; 4 goes next; 9 alone, though heavier than the limit
    assert recorder.batches == [[1], [2, 3], [4], [9]]
