"""The writer: a process of its own that alone writes the spool and the event log, in batches.

Why a process: the event loop holds the GIL almost all the time under load, and a writer
*thread* needs it back after every open, write and rename, so staging a message cost ten times
its work. In its own process the writer has a core to itself.

The event loop sends frames over a socket pair; the writer reads whatever has arrived and
commits it as one batch (group commit): stage every message in ``tmp/``, sync, rename into
``spool/``, append the event lines in order, sync; then it answers which messages are stored.
Only then do the sessions answer ``250 ... queued`` (invariant 2).

Frames are a 4-byte length and a pickle. Both ends are this module, in processes of one
sensor: nothing from a client is ever unpickled, only bytes the event loop packed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import queue
import select
import signal
import socket
import struct
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from spampot.sensor.events import EventBuffer, EventFile
from spampot.sensor.spool import Spool, SpoolItem, syncfs

StoredCallback = Callable[[bool], None]
_HEADER = struct.Struct("!I")
MAX_LINES_KEPT = 200_000  # event lines held while the disk refuses them; oldest dropped first
IDLE_TICK = 1.0  # seconds: the writer wakes at least this often to rotate the log on the hour


def _frame(obj: Any) -> bytes:
    payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(payload)) + payload


class _FrameReader:
    """Splits a byte stream into unpickled frames."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        self._buf += data
        frames = []
        while len(self._buf) >= 4:
            (size,) = _HEADER.unpack_from(self._buf)
            if len(self._buf) < 4 + size:
                break
            frames.append(pickle.loads(self._buf[4 : 4 + size]))
            del self._buf[: 4 + size]
        return frames


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
        self._reader = _FrameReader()
        self._next_id = 0
        self._waiting: dict[int, StoredCallback] = {}
        self._queue: list[tuple] = []  # ("msg", id, relpath, data, line) | ("lines", [...])
        self._scheduled = False
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

    def data_received(self, data: bytes) -> None:
        for kind, *rest in self._reader.feed(data):
            if kind == "acks":
                stored, error = rest
                if error is not None and self.on_error is not None:
                    self.on_error(error)
                for msg_id, ok in stored:
                    self._waiting.pop(msg_id)(ok)
            elif kind == "synced":
                fut = self._syncs.pop(rest[0], None)
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
        self._queue.append(("msg", self._next_id, item.relpath, item.data, event_line))
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
        self._write([("sync", self._next_id)])
        await fut

    def reopen(self) -> None:
        """SIGHUP: the writer closes and reopens the live event file."""
        self._send()
        self._write([("reopen",)])

    async def close(self, timeout: float = 30.0) -> None:
        await self.drain()
        self._closing = True
        self._write([("close",)])
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
            self._queue.append(("lines", lines))

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            # call_soon: every session readable in this loop turn joins one frame.
            asyncio.get_running_loop().call_soon(self._send)

    def _send(self) -> None:
        self._scheduled = False
        self._take_lines()
        if self._queue:
            queue, self._queue = self._queue, []
            self._write(queue)

    def _write(self, records: list[tuple]) -> None:
        if self._transport is not None:
            self._transport.write(_frame(records))


# --- writer-process side --------------------------------------------------------------------


@dataclass(slots=True)
class _Batch:
    """What the staging stage hands the sync stage."""

    messages: list[tuple]  # ("msg", id, relpath, data, line) records
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
        self._reader = _FrameReader()
        self._unwritten: list[bytes] = []
        self._sync_fd = os.open(spool.data_dir, os.O_RDONLY)
        self._batches: queue.SimpleQueue[_Batch | None] = queue.SimpleQueue()

    def run(self) -> None:
        self.sock.setblocking(False)
        syncer = threading.Thread(target=self._sync_stage, name="spampot-sync")
        syncer.start()
        try:
            closing = False
            while not closing:
                ready, _, _ = select.select([self.sock], [], [], IDLE_TICK)
                records: list[tuple] = []
                eof = False
                if ready:
                    eof = self._read_available(records)
                closing = eof or any(r[0] == "close" for r in records)
                self._stage(records)
        finally:
            self._batches.put(None)
            syncer.join()
            self.event_file.close()
            os.close(self._sync_fd)

    def _read_available(self, records: list[tuple]) -> bool:
        """Append every frame already sent; True at end of stream (the event loop is gone)."""
        while True:
            try:
                data = self.sock.recv(1 << 20)
            except BlockingIOError:
                return False
            if not data:
                return True
            for frame in self._reader.feed(data):
                records.extend(frame)

    def _stage(self, records: list[tuple]) -> None:
        messages = [r for r in records if r[0] == "msg"]
        error: str | None = None
        staged: dict[int, str] = {}
        for _, msg_id, relpath, data, _line in messages:
            try:
                self.spool.make_parent(relpath)
                staged[msg_id] = self.spool.stage(SpoolItem(relpath, data))
            except OSError as exc:
                error = f"staging {relpath}: {exc}"
        # Event lines in the order the event loop produced them; a message's line only if
        # the message is staged.
        out = self._unwritten
        for record in records:
            if record[0] == "lines":
                out.extend(record[1])
            elif record[0] == "msg" and record[1] in staged:
                out.append(record[4])
        try:
            self.event_file.append(out, time.time())
            self._unwritten = []
        except OSError as exc:
            error = f"event log: {exc}"
            # Kept for the next batch: the log will hold every line once space returns.
            self._unwritten = out[-MAX_LINES_KEPT:]
        for record in records:
            if record[0] == "reopen":
                with contextlib.suppress(OSError):
                    self.event_file.reopen(time.time())
        syncs = [r[1] for r in records if r[0] == "sync"]
        if messages or syncs or error is not None:
            self._batches.put(_Batch(messages, staged, syncs, error))

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
        stored: list[tuple[int, bool]] = []
        for batch in batches:
            for _, msg_id, relpath, _data, _line in batch.messages:
                tmp = batch.staged.get(msg_id)
                ok = False
                if tmp is not None and sync_failed:
                    self.spool.discard(tmp)
                elif tmp is not None:
                    try:
                        self.spool.publish(tmp, relpath)
                        ok = True
                    except OSError as exc:
                        # Left in tmp/ as a whole file: the next start publishes it.
                        error = f"publishing {relpath}: {exc}"
                stored.append((msg_id, ok))
        answers: list[tuple] = []
        if stored or error is not None:
            answers.append(("acks", stored, error))
        answers += [("synced", token) for b in batches for token in b.syncs]
        self._send(b"".join(_frame(a) for a in answers))

    def _send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[self.sock.send(view) :]
            except BlockingIOError:
                select.select([], [self.sock], [], IDLE_TICK)
            except (BrokenPipeError, ConnectionResetError):
                return  # the event loop is gone; what is stored stays stored


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
