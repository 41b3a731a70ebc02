"""The event log: JSON Lines in ``events/current.jsonl``, rotated into ``spool/events/``.

Field names follow Cowrie's JSON log (dotted ``eventid``), so existing ELK/Splunk pipelines
read it as it is. Lines are built on the event loop (:class:`EventBuffer`) and written by the
writer process (:class:`EventFile`), which alone touches the files.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spampot.contract import BY_NAME, ENCODER, EXTRA_FIELDS, FIELD_ORDER, PREFIX, REQUIRED
from spampot.layout import (
    CURRENT_EVENTS_NAME,
    ROTATING_EVENTS_NAME,
    SensorLayout,
    worker_suffix,
)
from spampot.sensor.spool import gzip_bytes, syncfs

# msgspec's encoder writes what the standard library's compact encoder with ensure_ascii=False
# writes (the same escapes of U+0000-U+001F, '"' and '\\', keys in insertion order), ten
# times faster; only a lone surrogate, which UTF-8 cannot hold, takes the slower path.
_encode = ENCODER.encode
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

# Characters JSON may leave raw (RFC 8259 §7 escapes only U+0000-U+001F) that still break or
# disguise a line for the readers of a log: DEL and the C1 controls (U+0085 ends a line for
# Python's str.splitlines, U+009B is a terminal's CSI), U+2028/U+2029 (line ends to JavaScript
# before ES2019), bidirectional marks and overrides and zero-width characters (they reorder or
# hide what a terminal shows), the BOM, lone surrogates. Only client strings can hold them, and
# only inside JSON strings, where a \uXXXX escape decodes to the same character.
_DISGUISING = re.compile(
    "[\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ud800-\udfff]"
)


def _escape_disguising(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def encode_line(record: dict[str, Any]) -> bytes:
    """One event as one line of JSON that every line-oriented reader sees as one line."""
    try:
        data = _encode(record)
    except UnicodeEncodeError:  # a lone surrogate (only a client string can hold one)
        text = _DISGUISING.sub(_escape_disguising, _dumps(record))
        return text.encode("utf-8", "backslashreplace") + b"\n"
    return _line(data)


def _line(data: bytes) -> bytes:
    if not data.isascii():
        text = data.decode("utf-8")
        if _DISGUISING.search(text) is not None:
            data = _DISGUISING.sub(_escape_disguising, text).encode("utf-8")
    return data + b"\n"


def spelt_line(eventid: str, given: dict[str, Any]) -> bytes:
    """The line of one event built field by field in the contract's order, every field present
    (its default where none was given): one spelling per event, the one the ingest checks
    fastest. A required field left out stays out (the ingest quarantines the line: nothing is
    made up)."""
    record: dict[str, Any] = {"eventid": PREFIX + eventid}
    for name, default in FIELD_ORDER[eventid]:
        value = given.get(name, default)
        if value is not REQUIRED:
            record[name] = value
    return encode_line(record)


class UndeclaredEvent(ValueError):
    """An event id or a field that the event contract (spampot.contract) does not declare."""


class Clock:
    """UTC time for events (RFC 3339, microseconds) and for protocol banners.

    The machines have no clock (sans-I/O), so the adapter hands them these strings. Formatting
    is cached per second: thousands of sessions a second share one strftime.
    """

    __slots__ = ("_http", "_mail", "_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = self._http = self._mail = ""

    def _tick(self, second: int) -> None:
        self._second = second
        tm = time.gmtime(second)
        self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", tm)
        # RFC 9110 §5.6.7 IMF-fixdate, and the RFC 5322 §3.3 date MTAs print in banners.
        # Day and month names are fixed English in both, whatever the locale.
        day = _DAYS[tm.tm_wday]
        date = f"{tm.tm_mday:02d} {_MONTHS[tm.tm_mon - 1]} {tm.tm_year} {tm.tm_hour:02d}:"
        date += f"{tm.tm_min:02d}:{tm.tm_sec:02d}"
        self._http = f"{day}, {date} GMT"
        self._mail = f"{day}, {date} +0000"

    def now(self) -> tuple[float, str]:
        t = time.time()
        second = int(t)
        if second != self._second:
            self._tick(second)
        return t, f"{self._prefix}.{int((t - second) * 1_000_000):06d}Z"

    def _this_second(self) -> None:
        """The second's texts brought up to date (the dates below need no microseconds)."""
        second = int(time.time())
        if second != self._second:
            self._tick(second)

    def http_date(self) -> str:
        self._this_second()
        return self._http

    def mail_date(self) -> str:
        self._this_second()
        return self._mail

    def spool_stamp(self) -> tuple[str, str]:
        """(``YYYY-MM-DD``, ``HHMMSS``) of this second, for a message's spool path."""
        self._this_second()
        prefix = self._prefix
        return prefix[:10], prefix[11:13] + prefix[14:16] + prefix[17:19]


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class EventBuffer:
    """Encodes events to lines and holds them until they are sent to the writer."""

    __slots__ = ("_pending", "clock", "sensor")

    def __init__(self, sensor: str, clock: Clock) -> None:
        self.sensor = sensor
        self.clock = clock
        # The lines themselves, appended to one buffer: each line's own bytes object is freed
        # as soon as it is copied. Kept as objects until the flush, a burst's lines were
        # scattered among the long-lived objects of the sessions that made them, and the
        # allocator's pools they emptied stayed in the process (a delayed SMTP connection,
        # which logs a dozen errors at once, cost kilobytes more). Taken by the writer every
        # loop turn that produced a line, so it stays small; the writer process bounds what
        # it holds while the disk refuses writes.
        self._pending = bytearray()

    def encode(self, eventid: str, base: dict[str, Any], message: str, **fields: Any) -> bytes:
        """One JSON line; ``base`` holds the session fields (session, src_ip, ...).

        ``eventid`` (without ``spampot.``) and every field must be declared in the event
        contract (:mod:`spampot.contract`): an undeclared one raises :class:`UndeclaredEvent`,
        so a new field cannot reach the event files before the ingest knows it.
        """
        _, ts = self.clock.now()
        struct = BY_NAME.get(eventid)
        if struct is not None:
            try:
                # The contract's struct writes the contract's spelling (fields in order, every
                # default), in half the time of a dict built field by field. The timestamp
                # goes in as the string the sensor writes (always microseconds, "Z"), not a
                # datetime.
                event = struct(
                    timestamp=ts,  # type: ignore[arg-type]
                    sensor=self.sensor,
                    message=message,
                    **base,
                    **fields,
                )
                return _line(_encode(event))
            except (TypeError, UnicodeEncodeError):
                # An undeclared field (refused below), a required field not given (it stays
                # out: the ingest quarantines the line, nothing is made up), or a lone
                # surrogate: spelt field by field.
                pass
        # Checked here, off the common path: a struct takes its declared fields only.
        allowed = EXTRA_FIELDS.get(eventid)
        if allowed is None or not fields.keys() <= allowed:
            undeclared = sorted(fields.keys() - (allowed or frozenset()))
            raise UndeclaredEvent(
                f"event {eventid!r} is not in spampot.contract"
                if allowed is None
                else f"fields {undeclared} of {eventid!r} are not in spampot.contract"
            )
        given = {"timestamp": ts, "sensor": self.sensor, **base, "message": message, **fields}
        return spelt_line(eventid, given)

    def emit(self, eventid: str, base: dict[str, Any], message: str, **fields: Any) -> None:
        self._pending += self.encode(eventid, base, message, **fields)

    def take(self) -> bytearray:
        """The lines emitted since the last take, whole and in order (empty: none)."""
        lines, self._pending = self._pending, bytearray()
        return lines

    def __len__(self) -> int:
        """Bytes of lines waiting for the writer."""
        return len(self._pending)


@dataclass(frozen=True, slots=True)
class RotationPolicy:
    max_bytes: int = 64 * 1024 * 1024
    compress_level: int = 6


class EventFile:
    """``events/current.jsonl`` with hourly and size rotation into ``spool/events/``.

    Rotation renames the live file aside, gzips it into ``tmp/`` and renames the result into
    ``spool/events/``: a crash at any step leaves either the aside file (finished at the next
    start) or a complete rotated file, never a torn one. A stop rotates too (:meth:`close`), and
    a start after a crash closes what the crash left (:meth:`recover`), so the collector never
    waits for the next hour, or the next start, to get the last events of a run.
    """

    def __init__(
        self, data_dir: Path, sensor: str, policy: RotationPolicy, worker: int = 0
    ) -> None:
        self.layout = SensorLayout(data_dir)
        self.events_dir = self.layout.events
        self.out_dir = self.layout.spool_events
        self.tmp_dir = self.layout.tmp
        self.sensor = sensor
        self.policy = policy
        self.worker = worker
        self.suffix = worker_suffix(worker)
        self.path = self.layout.current_events(worker)
        self._fd = -1
        self._size = 0
        self._hour = ""
        self._compressor: ThreadPoolExecutor | None = None
        self._pending: list[Future[None]] = []

    # --- start-up ---------------------------------------------------------------------------

    def open(self, now: float) -> None:
        self.recover(now)
        self._open_fd(now)

    def recover(self, now: float) -> int:
        """Close into ``spool/events/`` whatever a previous run of this worker left in
        ``events/`` (the live file of a killed run, files renamed aside for a rotation that a
        crash interrupted); returns how many files were closed. Synchronous: on return every
        one is a whole gzip in ``spool/events/``, or still in ``events/`` if the disk refused.
        """
        self.events_dir.mkdir(parents=True, exist_ok=True)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        closed = 0
        if self.path.exists():
            self._drop_torn_tail()
            if self.path.stat().st_size == 0:
                self.path.unlink()
            else:
                self._hour = self._first_hour() or _hour(now)
                os.rename(self.path, self._aside_path())
        for aside, hour in self._asides():
            self._compress(aside, hour)
            closed += 1
        self._hour = ""
        return closed

    def _asides(self) -> list[tuple[Path, str]]:
        """This worker's files renamed aside, oldest first, with the hour each holds."""
        found = []
        for path in self.events_dir.glob(self.layout.rotating_glob(self.worker)):
            match = ROTATING_EVENTS_NAME.fullmatch(path.name)
            if match and (match["worker"] or "") == self.suffix:
                found.append((match["hour"], int(match["n"] or 0), path))
        return [(path, hour) for hour, _, path in sorted(found)]

    def _drop_torn_tail(self) -> None:
        """A kill during a write can leave half a line at the end: that event was in flight."""
        with open(self.path, "r+b") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return
            pos = size
            while pos > 0:
                step = min(65536, pos)
                f.seek(pos - step)
                chunk = f.read(step)
                nl = chunk.rfind(b"\n")
                if nl >= 0:
                    end = pos - step + nl + 1
                    if end != size:
                        f.truncate(end)
                    return
                pos -= step
            f.truncate(0)

    def _first_hour(self) -> str | None:
        with open(self.path, "rb") as f:
            first = f.readline(65536)
        try:
            ts = json.loads(first)["timestamp"]
            return ts[0:4] + ts[5:7] + ts[8:10] + "T" + ts[11:13]
        except (ValueError, KeyError, TypeError, IndexError):
            return _hour(self.path.stat().st_mtime) if first else None

    def _open_fd(self, now: float) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        self._size = os.fstat(self._fd).st_size
        if not self._hour or self._size == 0:
            self._hour = _hour(now)

    # --- writing ----------------------------------------------------------------------------

    def append(self, lines: list[bytes], now: float) -> None:
        if _hour(now) != self._hour and self._size:
            self._rotate()
            self._open_fd(now)
        elif self._size == 0:
            self._hour = _hour(now)
        if not lines:
            return
        blob = b"".join(lines)
        view = memoryview(blob)
        while view:
            view = view[os.write(self._fd, view) :]
        self._size += len(blob)
        if self._size >= self.policy.max_bytes:
            self._rotate()
            self._open_fd(now)

    def close(self) -> None:
        """Stop: the live file is rotated into ``spool/events/`` (and every rotation still
        compressing finished), so a stopped sensor leaves no event where the collector does not
        look. An empty live file is removed."""
        self._close_fd()
        with contextlib.suppress(FileNotFoundError):
            if self.path.stat().st_size:
                self._rotate()
            else:
                self.path.unlink()
        if self._compressor is not None:
            self._compressor.shutdown(wait=True)
            self._compressor = None

    def _close_fd(self) -> None:
        if self._fd >= 0:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1

    def reopen(self, now: float) -> None:
        """SIGHUP: close and reopen the live file (someone may have moved it)."""
        self._close_fd()
        self._open_fd(now)

    # --- rotation ---------------------------------------------------------------------------

    def _rotate(self) -> None:
        self._close_fd()
        aside = self._aside_path()
        os.rename(self.path, aside)
        self._size = 0
        # Compressing 64 MB takes a second or two: off the path of the next batch. One thread,
        # so rotated files are named in the order they were rotated. A crash before it is done
        # leaves the aside file, which the next start compresses.
        if self._compressor is None:
            self._compressor = ThreadPoolExecutor(1, thread_name_prefix="spampot-rotate")
        self._pending.append(self._compressor.submit(self._compress_quietly, aside, self._hour))
        self._pending = [f for f in self._pending if not f.done()]

    def _aside_path(self) -> Path:
        aside = self.layout.rotating_events(self.worker, self._hour)
        n = 0
        while aside.exists():  # a size rotation in the same hour, not yet compressed
            n += 1
            aside = self.layout.rotating_events(self.worker, self._hour, n)
        return aside

    def settle(self) -> None:
        """Wait until every rotated file is compressed into ``spool/events/``."""
        for future in self._pending:
            future.result()
        self._pending = []

    def _compress_quietly(self, aside: Path, hour: str) -> None:
        with contextlib.suppress(OSError):  # e.g. disk full: the aside waits for the next start
            self._compress(aside, hour)

    def _compress(self, aside: Path, hour: str) -> None:
        name = self._next_name(hour)
        data = aside.read_bytes()
        tmp = self.tmp_dir / ("events-" + name)
        tmp.write_bytes(gzip_bytes(data, self.policy.compress_level))
        fd = os.open(self.tmp_dir, os.O_RDONLY)
        try:
            syncfs(fd)
        finally:
            os.close(fd)
        os.rename(tmp, self.out_dir / name)
        with contextlib.suppress(FileNotFoundError):
            aside.unlink()

    def _next_name(self, hour: str) -> str:
        """``<sensor>-<hour>[-n].jsonl.gz``, never reused.

        The collector removes rotated files from the sensor, so "the name is free here" does
        not mean "the name was never used": the last (hour, n) is kept in a state file.
        """
        state = self.layout.last_rotated(self.worker)
        last_hour, n = "", -1
        with contextlib.suppress(OSError, ValueError):
            last_hour, _, last_n = state.read_text().strip().partition(" ")
            n = int(last_n)
        n = n + 1 if last_hour == hour else 0
        base = f"{self.sensor}{self.suffix.replace('-', '.')}-{hour}"
        name = f"{base}-{n}.jsonl.gz" if n else f"{base}.jsonl.gz"
        while (self.out_dir / name).exists():
            n += 1
            name = f"{base}-{n}.jsonl.gz"
        tmp_state = self.tmp_dir / f"events-state{self.suffix}"
        tmp_state.write_text(f"{hour} {n}\n")
        os.rename(tmp_state, state)
        return name


def recover_event_files(data_dir: Path, sensor: str, policy: RotationPolicy) -> int:
    """At start, before any worker: close every event file a previous run left in ``events/``
    (of any worker, also of workers this run does not have) into ``spool/events/``."""
    events_dir = SensorLayout(data_dir).events
    workers: set[int] = set()
    for path in events_dir.glob("*.jsonl") if events_dir.is_dir() else ():
        live = CURRENT_EVENTS_NAME.fullmatch(path.name)
        aside = ROTATING_EVENTS_NAME.fullmatch(path.name)
        if live:
            workers.add(int(live["worker"] or 0))
        elif aside:
            workers.add(int((aside["worker"] or "-w0")[2:]))
    now = time.time()
    return sum(EventFile(data_dir, sensor, policy, k).recover(now) for k in sorted(workers))


def _hour(t: float) -> str:
    return time.strftime("%Y%m%dT%H", time.gmtime(t))
