"""Replies held for a persona's delay, released by one loop timer per worker.

Postfix answers every error after the tenth a second late (``smtpd_error_sleep_time``),
Sendmail slows repeated commands down by up to four minutes: the machine holds the reply and
the session stops reading until the delay is over. A loop timer per held connection (uvloop's
handle, its libuv timer and the bound callback) cost about 600 bytes a connection; here a
connection waits as one entry of a heap (about 120 bytes) and the worker has a single timer,
armed for the earliest entry. Most delays are equal and arrive in order, so the timer is
rarely re-armed.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from typing import Protocol


class Delayed(Protocol):
    def delay_over(self) -> None: ...


class DelayQueue:
    """``add(delay, who)`` calls ``who.delay_over()`` once ``delay`` seconds have passed.

    There is no cancel: a connection that closes while it waits is called all the same and
    has nothing left to do (its entry is gone at most one delay later).
    """

    __slots__ = ("_heap", "_order", "_timer", "_timer_at")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Delayed]] = []
        self._order = itertools.count()  # equal times leave in the order they came
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, delay: float, who: Delayed) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + delay
        heapq.heappush(self._heap, (due, next(self._order), who))
        if self._timer is None or due < self._timer_at:
            self._arm(loop, due)

    def _arm(self, loop: asyncio.AbstractEventLoop, due: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = due
        self._timer = loop.call_at(due, self._release)

    def _release(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        heap = self._heap
        now = loop.time()
        while heap and heap[0][0] <= now:
            heapq.heappop(heap)[2].delay_over()
        if heap and self._timer is None:  # delay_over() may have added (and armed) already
            self._arm(loop, heap[0][0])
