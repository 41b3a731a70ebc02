"""Once a second, per worker: time limits, disk shortage, and reports of refused connections.

A sweep over the live sessions costs well under a millisecond per thousand sessions, far
cheaper than a timer per connection re-armed on every read (each read would cost a heap
operation; see bench/idle_conns.py for the memory side).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from spampot.config import SpoolSection
from spampot.sensor.events import EventBuffer
from spampot.sensor.heap import HeapTrimmer
from spampot.sensor.session import SensorContext
from spampot.sensor.storage import DiskReading, read_disk, shortage, tree_size

TICK_SECONDS = 1.0
LIMIT_REPORT_SECONDS = 10.0  # at most one sensor.limit event per interval
QUOTA_WALK_SECONDS = 30.0  # the data dir's size is re-measured this often when a quota is set
QUOTA_WALK_LOW_SECONDS = 3.0  # ... and this often while over it, to see the collector's work


class Housekeeper:
    def __init__(
        self,
        ctx: SensorContext,
        buffer: EventBuffer,
        data_dir: Path,
        spool: SpoolSection,
        sensor_base: dict[str, Any],
    ) -> None:
        self.ctx = ctx
        self.buffer = buffer
        self.data_dir = data_dir
        self.spool = spool  # replaced on a configuration reload
        self.base = sensor_base
        self.why_low = ""
        self._used: int | None = None  # from the last walk
        self._used_stored = 0  # ctx.stored_bytes when the walk that measured _used began
        self._walk_stored = 0  # the same, for the walk under way
        self._walk: asyncio.Future[int] | None = None
        self._last_walk = -QUOTA_WALK_SECONDS
        self._next_report = 0.0
        self.heap = HeapTrimmer()  # what a burst freed goes back to the system

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(TICK_SECONDS)
            self.tick(loop, time.monotonic())

    def tick(self, loop: asyncio.AbstractEventLoop, now: float) -> None:
        self.ctx.sweep(now)
        self.heap.maybe_trim()
        self._check_storage(loop, now)
        if now >= self._next_report and self.ctx.refused:
            self._report_refused()
            self._next_report = now + LIMIT_REPORT_SECONDS

    def _check_storage(self, loop: asyncio.AbstractEventLoop, now: float) -> None:
        used = None
        if self.spool.quota_bytes:
            if self._walk is not None and self._walk.done():
                self._used = None if self._walk.exception() else self._walk.result()
                self._used_stored = self._walk_stored
                self._walk = None
            over = self.why_low.startswith("data dir")
            interval = QUOTA_WALK_LOW_SECONDS if over else QUOTA_WALK_SECONDS
            if self._walk is None and now >= self._last_walk + interval:
                self._walk_stored = self.ctx.stored_bytes
                self._walk = loop.run_in_executor(None, tree_size, self.data_dir)
                self._last_walk = now
            if self._used is not None:
                # Stored since the walk began, uncompressed: an upper bound until the next.
                used = self._used + self.ctx.stored_bytes - self._used_stored
        reading: DiskReading | None = None
        try:
            reading = read_disk(self.data_dir, used)
        except OSError as exc:
            why = f"cannot read the data dir's filesystem: {exc.strerror}"
        else:
            why = shortage(self.spool, reading)
        changed = bool(why) != bool(self.why_low)
        self.why_low = why
        if not changed:
            return
        self.ctx.set_storage_low(bool(why))
        state = "low" if why else "ok"
        self.buffer.emit(
            "sensor.storage",
            self.base,
            f"Storage {state}: {why}" if why else "Storage ok: accepting mail again",
            state=state,
            why=why or None,
            free_bytes=reading.free_bytes if reading else None,
            free_inodes=reading.free_inodes if reading else None,
            used_bytes=reading.used_bytes if reading else None,
        )

    def _report_refused(self) -> None:
        ctx = self.ctx
        total = sum(ctx.refused.values())
        self.buffer.emit(
            "sensor.limit",
            self.base,
            f"Refused {total} connection(s) over the limits",
            refused=dict(ctx.refused),
            top_sources=[[ip, n] for ip, n in ctx.refused_from.most_common(10)],
        )
        ctx.refused.clear()
        ctx.refused_from.clear()
