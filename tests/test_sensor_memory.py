"""What a held connection costs: the worker's delay queue, the heap given back after a burst."""

from __future__ import annotations

import asyncio

import pytest

from conftest import rss_kib
from spampot.sensor.delays import DelayQueue
from spampot.sensor.heap import HeapTrimmer


class _Waiter:
    def __init__(self, name: str, log: list[tuple[str, float]], t0: float) -> None:
        self.name, self.log, self.t0 = name, log, t0

    def delay_over(self) -> None:
        self.log.append((self.name, asyncio.get_running_loop().time() - self.t0))


def test_delay_queue_releases_each_after_its_delay_in_order_with_one_timer():
    async def run() -> tuple[list[tuple[str, float]], int]:
        loop = asyncio.get_running_loop()
        queue = DelayQueue()
        log: list[tuple[str, float]] = []
        t0 = loop.time()
        for name, delay in (("b", 0.2), ("c", 0.2), ("a", 0.05), ("d", 0.3)):
            queue.add(delay, _Waiter(name, log, t0))
        waiting = len(queue)
        await asyncio.sleep(0.45)
        return log, waiting

    log, waiting = asyncio.run(run())
    assert waiting == 4
    assert [name for name, _ in log] == ["a", "b", "c", "d"]  # equal delays keep their order
    for (_, at), wanted in zip(log, (0.05, 0.2, 0.2, 0.3), strict=True):
        assert wanted <= at < wanted + 1.0  # a loaded machine runs timers late, never early


def test_delay_queue_takes_a_new_delay_from_inside_a_release():
    """A released connection may start its next delay at once (Postfix: one per error)."""

    async def run() -> list[float]:
        loop = asyncio.get_running_loop()
        queue = DelayQueue()
        times: list[float] = []
        t0 = loop.time()

        class Again:
            def delay_over(self) -> None:
                times.append(loop.time() - t0)
                if len(times) < 3:
                    queue.add(0.05, self)

        queue.add(0.05, Again())
        await asyncio.sleep(0.3)
        return times

    times = asyncio.run(run())
    assert len(times) == 3 and times[2] >= 0.15


def test_heap_trimmer_gives_back_what_a_burst_freed():
    heap = HeapTrimmer()
    if not heap.available:
        pytest.skip("not glibc >= 2.33: malloc_trim and mallinfo2 missing")
    heap.maybe_trim()
    # A burst: many C-heap chunks, each followed by a small one that stays, as the sessions
    # made during a burst stay while its event lines and frames are freed.
    burst = [bytearray(3000) for _ in range(10_000)]
    kept = [bytearray(600) for _ in range(10_000)]
    for chunk in burst:
        chunk[::512] = b"x" * len(chunk[::512])  # touched: resident
    del burst
    freed = rss_kib()
    assert heap.free_bytes() >= 20_000_000
    assert heap.maybe_trim()
    assert freed - rss_kib() > 15_000  # KiB given back
    assert not heap.maybe_trim()  # nothing new since: no second walk
    assert len(kept) == 10_000
