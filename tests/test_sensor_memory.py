"""What a held connection costs (the worker's delay queue, the heap given back after a
burst) and what a closed session's event lines cost on the way to the writer."""

from __future__ import annotations

import asyncio
import socket

import pytest

from spampot.sensor.delays import DelayQueue
from spampot.sensor.events import Clock, EventBuffer
from spampot.sensor.frames import Lines, Message, request_reader
from spampot.sensor.heap import HeapTrimmer
from spampot.sensor.spool import SpoolItem
from spampot.sensor.writer import FLUSH_LATER, Writer


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


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


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
    freed = _rss_kib()
    assert heap.free_bytes() >= 20_000_000
    assert heap.maybe_trim()
    assert freed - _rss_kib() > 15_000  # KiB given back
    assert not heap.maybe_trim()  # nothing new since: no second walk
    assert len(kept) == 10_000


def test_a_closed_sessions_lines_ride_with_the_next_frame_or_go_within_flush_later():
    """flush_later: no frame of its own when a message's frame goes meanwhile, and the lines
    reach the writer within FLUSH_LATER when none does."""

    async def run() -> list[list[object]]:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        theirs.setblocking(False)
        buffer = EventBuffer("s", Clock())
        writer = await Writer.start(loop, ours, buffer, pid=0)
        reader = request_reader()
        frames: list[list[object]] = []

        async def read_frames() -> None:
            await asyncio.sleep(0.01)
            try:
                data = theirs.recv(1 << 16)
            except BlockingIOError:
                frames.append([])
                return
            frames.append(list(reader.feed(data)))

        buffer.emit("session.close", {"session": "a"}, "closed", reason="quit")
        writer.flush_later()
        # a message in the same moment: the closed session's line goes in its frame
        writer.store(SpoolItem("x.eml.gz", b"m"), b"{}\n", lambda ok: None)
        await read_frames()
        buffer.emit("session.close", {"session": "b"}, "closed", reason="quit")
        writer.flush_later()
        await read_frames()  # nothing yet: no frame of its own at once
        await asyncio.sleep(FLUSH_LATER + 0.05)
        await read_frames()
        await asyncio.sleep(FLUSH_LATER + 0.05)
        await read_frames()  # and no second frame later
        ours.close()
        theirs.close()
        return frames

    first, early, late, after = asyncio.run(run())
    assert [type(r) for r in first] == [Lines, Message]
    assert b'"session":"a"' in first[0].blob  # type: ignore[attr-defined]
    assert early == []
    assert len(late) == 1 and b'"session":"b"' in late[0].blob  # type: ignore[attr-defined]
    assert after == []
