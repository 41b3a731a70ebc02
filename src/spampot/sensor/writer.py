"""The writer: a process of its own that alone writes the spool and the event log, in batches.

Why a process: the event loop holds the GIL almost all the time under load, and a writer
*thread* needs it back after every open, write and rename, so staging a message cost ten times
its work. In its own process the writer has a core to itself.

The event loop sends frames over a socket pair; the writer reads whatever has arrived and
commits it as one batch (group commit): stage every message in ``tmp/``, sync, rename into
``spool/``, append the event lines in order, sync; then it answers which messages are stored.
Only then do the sessions answer ``250 ... queued`` (invariant 2).

What goes over the socket pair are the typed records of :mod:`spampot.sensor.frames`
(msgspec structs in MessagePack frames; nothing is pickled).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import select
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from spampot.sensor.events import EventBuffer, EventFile
from spampot.sensor.frames import (
    Acks,
    Answer,
    Close,
    Lines,
    Message,
    Reopen,
    Request,
    Sync,
    Synced,
    answer_reader,
    encode,
    request_reader,
)
from spampot.sensor.heap import HeapTrimmer
from spampot.sensor.spool import Spool, SpoolItem, syncfs

StoredCallback = Callable[[bool], None]
MAX_BYTES_KEPT = 64 * 1024 * 1024  # event lines held while the disk refuses them; oldest dropped
IDLE_TICK = 1.0  # seconds: the writer wakes at least this often to rotate the log on the hour


# --- event-loop side ------------------------------------------------------------------------


class Writer(asyncio.Protocol):
    """The event loop's handle on the writer process."""

    def __init__(
        self,
        buffer: EventBuffer,
        pid: int,
        *,
        on_error: Callable[[str], None] | None = None,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self.buffer = buffer
        self.pid = pid
        self.on_error = on_error
        self.on_lost = on_lost
        self.lost = False
        self._closing = False
        self._transport: asyncio.Transport | None = None
        self._reader = answer_reader()
        self._next_id = 0
        self._waiting: dict[int, StoredCallback] = {}
        self._queue: list[Request] = []
        self._scheduled = False
        # The loop, once connected: asyncio.get_running_loop() costs a getpid() system call
        # (its check against a fork), and the writer schedules a send per loop turn.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._syncs: dict[int, asyncio.Future[None]] = {}

    @classmethod
    async def start(
        cls,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        buffer: EventBuffer,
        pid: int,
        **kwargs: Any,
    ) -> Writer:
        _, writer = await loop.connect_accepted_socket(lambda: cls(buffer, pid, **kwargs), sock)
        return writer

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._loop = asyncio.get_running_loop()

    def data_received(self, data: bytes) -> None:
        for record in self._reader.feed(data):
            if isinstance(record, Acks):
                if record.error is not None and self.on_error is not None:
                    self.on_error(record.error)
                for msg_id, ok in zip(record.ids, record.stored, strict=True):
                    self._waiting.pop(msg_id)(ok)
            elif isinstance(record, Synced):
                fut = self._syncs.pop(record.token, None)
                if fut is not None and not fut.done():
                    fut.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        # The writer died: nothing pending can be acknowledged.
        self.lost = True
        self._transport = None
        waiting, self._waiting = self._waiting, {}
        for done in waiting.values():
            done(False)
        for fut in self._syncs.values():
            if not fut.done():
                fut.set_result(None)
        if self.on_lost is not None and not self._closing:
            self.on_lost()

    # the sessions' interface

    def store(self, item: SpoolItem, event_line: bytes, done: StoredCallback) -> None:
        """Queue a message; ``done(True)`` once it and its event line are on disk."""
        if self.lost:
            done(False)
            return
        self._next_id += 1
        self._waiting[self._next_id] = done
        self._take_lines()
        self._queue.append(Message(self._next_id, item.relpath, item.data, event_line))
        self._schedule()

    def flush_soon(self) -> None:
        """Send the buffered event lines (the periodic flush, a closed session)."""
        if len(self.buffer):
            self._schedule()

    async def drain(self) -> None:
        """Wait until everything sent so far is written."""
        if self.lost:
            return
        self._send()
        self._next_id += 1
        fut = asyncio.get_running_loop().create_future()
        self._syncs[self._next_id] = fut
        self._write([Sync(self._next_id)])
        await fut

    def reopen(self) -> None:
        """SIGHUP: the writer closes and reopens the live event file."""
        self._send()
        self._write([Reopen()])

    async def close(self, timeout: float = 30.0) -> None:
        await self.drain()
        self._closing = True
        self._write([Close()])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, _ = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return
            await asyncio.sleep(0.02)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)

    # sending

    def _take_lines(self) -> None:
        lines = self.buffer.take()
        if lines:
            # msgspec writes a bytearray as it writes bytes (the writer decodes bytes).
            self._queue.append(Lines(cast(bytes, lines)))

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            # call_soon: every session readable in this loop turn joins one frame.
            (self._loop or asyncio.get_running_loop()).call_soon(self._send)

    def _send(self) -> None:
        self._scheduled = False
        self._take_lines()
        if self._queue:
            queue, self._queue = self._queue, []
            self._write(queue)

    def _write(self, records: list[Request]) -> None:
        if self._transport is not None:
            self._transport.write(encode(records))


# --- writer-process side --------------------------------------------------------------------


@dataclass(slots=True)
class _Batch:
    """What the staging stage hands the sync stage."""

    messages: list[Message]
    staged: dict[int, str]  # message id -> staged path
    syncs: list[int]  # drain tokens to answer once everything before them is answered
    error: str | None


class WriterProcess:
    """The writer process: a two-stage pipeline.

    The staging stage (the main thread) reads frames, writes each message to ``tmp/`` and
    appends the event lines. The sync stage (a thread) syncs the filesystem once for every
    batch staged meanwhile, renames the messages into ``spool/`` and answers. While one
    batch is being synced the next is being staged, so a message waits for at most one sync
    besides its own staging. After the sync both the message and its event are durable; the
    rename is in the page cache, visible to any reader at once, and made durable by the next
    sync, or else finished by the next start (Spool.prepare publishes every whole staged
    message it finds).
    """

    def __init__(self, sock: socket.socket, spool: Spool, event_file: EventFile, fsync: bool):
        self.sock = sock
        self.spool = spool
        self.event_file = event_file
        self.fsync = fsync
        self._reader = request_reader()
        self._unwritten: list[bytes] = []  # event lines (whole, in chunks) the disk refused
        self._sync_fd = os.open(spool.data_dir, os.O_RDONLY)
        self._batches: queue.SimpleQueue[_Batch | None] = queue.SimpleQueue()

    def run(self) -> None:
        self.sock.setblocking(False)
        syncer = threading.Thread(target=self._sync_stage, name="spampot-sync")
        syncer.start()
        try:
            closing = False
            heap = HeapTrimmer()  # what a burst of lines and messages freed goes back
            next_trim = time.monotonic() + IDLE_TICK
            while not closing:
                ready, _, _ = select.select([self.sock], [], [], IDLE_TICK)
                records: list[Request] = []
                eof = False
                if ready:
                    eof = self._read_available(records)
                closing = self._stage(records) or eof
                if not ready or time.monotonic() >= next_trim:
                    heap.maybe_trim()
                    next_trim = time.monotonic() + IDLE_TICK
        finally:
            self._batches.put(None)
            syncer.join()
            self.event_file.close()
            os.close(self._sync_fd)

    def _read_available(self, records: list[Request]) -> bool:
        """Append every record already sent; True at end of stream (the event loop is gone)."""
        while True:
            try:
                data = self.sock.recv(1 << 20)
            except BlockingIOError:
                return False
            if not data:
                return True
            records += self._reader.feed(data)

    def _stage(self, records: list[Request]) -> bool:
        """Stage the messages and append the event lines; True when the loop said Close."""
        messages: list[Message] = []
        syncs: list[int] = []
        reopen = closing = False
        for record in records:
            match record:
                case Message():
                    messages.append(record)
                case Sync(token):
                    syncs.append(token)
                case Reopen():
                    reopen = True
                case Close():
                    closing = True
        error: str | None = None
        staged: dict[int, str] = {}
        for msg in messages:
            try:
                self.spool.make_parent(msg.relpath)
                staged[msg.id] = self.spool.stage(SpoolItem(msg.relpath, msg.data))
            except OSError as exc:
                error = f"staging {msg.relpath}: {exc}"
        # Event lines in the order the event loop produced them; a message's line only if
        # the message is staged.
        out = self._unwritten
        for record in records:
            if isinstance(record, Lines):
                out.append(record.blob)
            elif isinstance(record, Message) and record.id in staged:
                out.append(record.line)
        try:
            self.event_file.append(out, time.time())
            self._unwritten = []
        except OSError as exc:
            error = f"event log: {exc}"
            # Kept for the next batch: the log will hold every line once space returns.
            self._unwritten = _newest(out, MAX_BYTES_KEPT)
        if reopen:
            with contextlib.suppress(OSError):
                self.event_file.reopen(time.time())
        if messages or syncs or error is not None:
            self._batches.put(_Batch(messages, staged, syncs, error))
        return closing

    def _sync_stage(self) -> None:
        done = False
        while not done:
            batches: list[_Batch] = []
            item = self._batches.get()
            while item is not None:
                batches.append(item)
                try:
                    item = self._batches.get_nowait()
                except queue.Empty:
                    break
            done = item is None
            if batches:
                self._sync_and_publish(batches)

    def _sync_and_publish(self, batches: list[_Batch]) -> None:
        error = next((b.error for b in reversed(batches) if b.error is not None), None)
        sync_failed = False
        if self.fsync and any(b.staged for b in batches):
            try:
                syncfs(self._sync_fd)
            except OSError as exc:
                error, sync_failed = f"sync: {exc}", True
        ids: list[int] = []
        stored: list[bool] = []
        for batch in batches:
            for msg in batch.messages:
                tmp = batch.staged.get(msg.id)
                ok = False
                if tmp is not None and sync_failed:
                    self.spool.discard(tmp)
                elif tmp is not None:
                    try:
                        self.spool.publish(tmp, msg.relpath)
                        ok = True
                    except OSError as exc:
                        # Left in tmp/ as a whole file: the next start publishes it.
                        error = f"publishing {msg.relpath}: {exc}"
                ids.append(msg.id)
                stored.append(ok)
        answers: list[Answer] = []
        if ids or error is not None:
            answers.append(Acks(ids, stored, error))
        answers += [Synced(token) for b in batches for token in b.syncs]
        self._send(encode(answers))

    def _send(self, data: bytes | bytearray) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[self.sock.send(view) :]
            except BlockingIOError:
                select.select([], [self.sock], [], IDLE_TICK)
            except (BrokenPipeError, ConnectionResetError):
                return  # the event loop is gone; what is stored stays stored


def _newest(chunks: list[bytes], limit: int) -> list[bytes]:
    """The newest chunks that fit in ``limit`` bytes (each chunk is whole lines)."""
    kept: list[bytes] = []
    size = 0
    for chunk in reversed(chunks):
        size += len(chunk)
        if size > limit:
            break
        kept.append(chunk)
    return kept[::-1]


def fork_writer(
    spool: Spool, event_file: EventFile, fsync: bool, inherited: list[socket.socket]
) -> tuple[int, socket.socket]:
    """Start the writer process; returns its pid and the event loop's end of the socket.

    ``inherited`` are the listening sockets, which the writer closes: it never serves.
    """
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child (covered by the end-to-end tests)
        ours.close()
        for sock in inherited:
            sock.close()
        # Signals go to the sensor, which drains and then tells the writer to close.
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
        code = 1
        try:
            event_file.open(time.time())
            WriterProcess(theirs, spool, event_file, fsync).run()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    theirs.close()
    ours.setblocking(False)
    return pid, ours
