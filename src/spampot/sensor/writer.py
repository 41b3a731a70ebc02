"""The writer: one thread that alone writes the spool and the event log, in batches.

Messages submitted while a batch is being written wait for the next one (group commit), so a
burst costs one filesystem sync per batch rather than one per message. A batch is: stage every
message in ``tmp/``, sync, rename into ``spool/``, append the event lines, sync; only then are
the sessions told, and only then do they answer ``250 ... queued`` (invariant 2).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from spampot.sensor.events import EventBuffer, EventFile
from spampot.sensor.spool import Spool, SpoolItem, syncfs

StoredCallback = Callable[[bool], None]


@dataclass(slots=True)
class _Pending:
    item: SpoolItem
    event_line: bytes
    done: StoredCallback


@dataclass(slots=True)
class BatchResult:
    stored: list[bool]
    error: str | None
    unwritten: list[bytes]  # event lines the log refused (disk full): retried next batch


class Writer:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        spool: Spool,
        event_file: EventFile,
        buffer: EventBuffer,
        *,
        fsync: bool = True,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.loop = loop
        self.spool = spool
        self.event_file = event_file
        self.buffer = buffer
        self.fsync = fsync
        self.on_error = on_error
        self.stored = 0
        self.failed = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spampot-writer")
        self._pending: list[_Pending] = []
        self._busy = False
        self._scheduled = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._sync_fd = os.open(spool.data_dir, os.O_RDONLY)

    # --- event-loop side --------------------------------------------------------------------

    def store(self, item: SpoolItem, event_line: bytes, done: StoredCallback) -> None:
        """Queue a message; ``done(True)`` once it and its event line are on disk."""
        self._pending.append(_Pending(item, event_line, done))
        self._schedule()

    def flush_soon(self) -> None:
        """Write the buffered event lines (the periodic flush)."""
        if len(self.buffer):
            self._schedule()

    async def drain(self) -> None:
        """Wait until everything queued so far is written."""
        while self._pending or len(self.buffer) or self._busy:
            self._schedule()
            self._idle.clear()
            await self._idle.wait()

    def close(self) -> None:
        self._executor.submit(self.event_file.close).result()
        self._executor.shutdown(wait=True)
        os.close(self._sync_fd)

    def run_in_thread(self, fn: Callable[[], None]) -> asyncio.Future[None]:
        """Run file work (SIGHUP reopen) in the writer thread, ordered with the batches."""
        return self.loop.run_in_executor(self._executor, fn)

    def _schedule(self) -> None:
        if not self._scheduled and not self._busy:
            self._scheduled = True
            # call_soon, not now: every session readable in this loop iteration joins the batch.
            self.loop.call_soon(self._start)

    def _start(self) -> None:
        self._scheduled = False
        if self._busy or not (self._pending or len(self.buffer)):
            self._idle.set()
            return
        batch, self._pending = self._pending, []
        lines = self.buffer.take()
        self._busy = True
        fut = self.loop.run_in_executor(self._executor, self._commit, batch, lines)
        fut.add_done_callback(lambda f: self._finished(batch, lines, f))

    def _finished(self, batch: list[_Pending], lines: list[bytes], fut: asyncio.Future) -> None:
        self._busy = False
        exc = fut.exception()
        result = BatchResult([False] * len(batch), repr(exc), lines) if exc else fut.result()
        if result.unwritten:
            self.buffer.put_back(result.unwritten)
        if result.error is not None and self.on_error is not None:
            self.on_error(result.error)
        for pending, ok in zip(batch, result.stored, strict=True):
            if ok:
                self.stored += 1
            else:
                self.failed += 1
            pending.done(ok)
        if self._pending or len(self.buffer):
            self._schedule()
        else:
            self._idle.set()

    # --- writer-thread side -----------------------------------------------------------------

    def _commit(self, batch: list[_Pending], lines: list[bytes]) -> BatchResult:
        stored = [False] * len(batch)
        error: str | None = None
        staged: list[tuple[int, str]] = []
        for i, pending in enumerate(batch):
            try:
                staged.append((i, self.spool.stage(pending.item)))
            except OSError as exc:
                error = f"staging {pending.item.relpath}: {exc}"
        try:
            if staged and self.fsync:
                syncfs(self._sync_fd)
            for i, tmp in staged:
                self.spool.publish(tmp, batch[i].item.relpath)
                stored[i] = True
        except OSError as exc:
            error = f"publishing: {exc}"
        for i, tmp in staged:
            if not stored[i]:
                self.spool.discard(tmp)
        out = lines + [batch[i].event_line for i, ok in enumerate(stored) if ok]
        try:
            self.event_file.append(out, time.time())
            if self.fsync and batch:
                syncfs(self._sync_fd)
        except OSError as exc:
            # The messages are in the spool already; their event lines are retried.
            return BatchResult(stored, f"event log: {exc}", out)
        return BatchResult(stored, error, [])
