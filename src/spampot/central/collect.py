"""Pull every sensor's ``spool/`` into ``raw/<sensor>/`` with rsync over SSH (paper §4.1.3).

One collection of one sensor:

1. **copy**: ``rsync -rt`` from ``<data_dir>/spool/`` into ``raw/<sensor>/``. rsync writes each
   file as ``.<name>.XXXXXX`` in its final directory and renames it to its name when it is
   whole and its checksum matched, so every file under ``raw/`` whose name does not start with
   a dot is complete, and the ingest may read at any time (it reads ``*.jsonl.gz`` and the
   files the events name, never a dot-file). An rsync interrupted by a signal it can handle
   removes its temporary file; one killed outright (SIGKILL, a crash) leaves it, and the next
   collection of that sensor sweeps such files first (a marker beside the sensor's state says
   the last copy did not end cleanly).

   Why not ``--temp-dir``: rsync (3.2.8 on) opens every component of the temporary
   directory's path for every file it writes, to refuse symbolic links; with the central
   data dir's depth that tripled the copy's system time (measured: 8 s against 2.7 s of sys
   time for 20,000 files), which on a busy server made the copy two to three times slower
   than a bare ``rsync -a``.
2. **finish**, beside the copy: one request to the sensor's gate, ``spampot collected
   --stream``, started with the copy over a second SSH session. rsync itemises every file of
   the spool it received or found already up to date; in batches, each of those that raw/
   holds by its final name is listed with its size and mtime, after one ``syncfs`` of raw/'s
   filesystem (the batch is on disk before the sensor deletes anything: a power cut at the
   centre loses nothing). The gate deletes each listed file that is still that file (rsync's
   own "up to date" test) as the lines arrive. When the copy has ended well, a closing line
   with the counts makes the gate prune the emptied directories and record the collection
   in ``state/last-collection.json`` (read by ``spampot health``). Files that arrived on the
   sensor after the copy's file list are in no list, so neither copied nor deleted.

This used to be a second rsync pass (``--existing --remove-source-files``), then a request
after the copy with the whole list: the deletions now run while the copy does.

Whatever is interrupted, the next run finishes it: a file is deleted on the sensor only once it
is whole and durable at the centre, and a file copied but not yet deleted is "up to date" the
next time, so it is listed for removal without being copied twice. ``[collect] durable =
false`` copies with ``--remove-source-files`` instead, in one pass (a power cut at the centre
in the seconds after a collection can then lose what the page cache held).

Per sensor the outcome (last attempt, last success, files, bytes, duration, error) is kept in
``state/collect/<sensor>.json``. A sensor that fails does not stop the others; each is
collected by at most one process at a time (a lock file beside its state).
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import fcntl
import json
import os
import re
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from spampot.central import deathsig
from spampot.central.inventory import CollectSection, Inventory, SensorEntry
from spampot.layout import CentralLayout
from spampot.sensor.spool import syncfs

# rsync(1) EXIT VALUES, for error messages a person can act on.
RSYNC_EXIT = {
    1: "syntax or usage error",
    2: "protocol incompatibility",
    3: "errors selecting input/output files, dirs",
    5: "error starting client-server protocol (refused by the sensor's gate?)",
    10: "error in socket I/O",
    11: "error in file I/O",
    12: "error in rsync protocol data stream: the connection failed or was cut",
    13: "errors with program diagnostics",
    14: "error in IPC code",
    20: "received SIGUSR1 or SIGINT",
    22: "error allocating core memory buffers",
    23: "partial transfer due to error",
    24: "partial transfer due to vanished source files",
    25: "the --max-delete limit stopped deletions",
    30: "timeout in data send/receive",
    35: "timeout waiting for daemon connection",
    255: "ssh failed (connection, authentication or host key)",
}
# The finish step is not rsync: ``spampot collected`` through the sensor's gate, over ssh.
FINISH_EXIT = {
    1: "the sensor's gate refused the request, or could not prune or write state/ there",
    2: "the sensor's spampot did not understand the request (another version?)",
    126: "the forced command's program is not executable by the sensor's login user",
    127: "the forced command's program was not found (check the path in authorized_keys)",
    255: RSYNC_EXIT[255],
}
_STDERR_LINES = 20  # kept per command for the error text
_PROGRESS_EVERY = 0.25  # seconds between progress callbacks


def utc_rfc3339(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Outcome:
    """One collection of one sensor."""

    sensor: str
    ok: bool
    started: float  # epoch seconds
    duration_s: float
    files: int  # files copied to the centre
    bytes: int  # their size
    error: str | None = None
    steps: tuple[tuple[str, float], ...] = ()  # seconds per step: copy, sync, finish


@dataclass
class _Tally:
    """What one collection has done so far (filled in by its steps)."""

    files: int = 0
    bytes: int = 0
    steps: dict[str, float] = field(default_factory=dict)

    def outcome(self, sensor: str, started: float, t0: float, error: str | None) -> Outcome:
        return Outcome(
            sensor=sensor,
            ok=error is None,
            started=started,
            duration_s=time.monotonic() - t0,
            files=self.files,
            bytes=self.bytes,
            error=error,
            steps=tuple(self.steps.items()),
        )


class Reporter(Protocol):
    """Where progress goes: a live display on a terminal, log lines otherwise."""

    def started(self, sensor: str) -> None: ...

    def progress(self, sensor: str, files: int, nbytes: int) -> None: ...

    def finished(self, outcome: Outcome) -> None: ...


class CollectError(Exception):
    """One step of one sensor's collection failed; the message says which and why."""


class Collector:
    """Collects the sensors of one inventory; thread-safe, one instance per process."""

    def __init__(self, inventory: Inventory, reporter: Reporter) -> None:
        self.inventory = inventory
        self.reporter = reporter
        self.central = inventory.central
        self.cfg = inventory.collect
        self.layout = self.central.layout
        self.state_dir = self.layout.collect_state
        self._procs: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    # -- the whole fleet -----------------------------------------------------------------------

    def prepare(self) -> None:
        """Create raw/ and state/."""
        for d in (self.layout.raw, self.state_dir):
            d.mkdir(parents=True, exist_ok=True)

    def collect(self, sensors: Sequence[SensorEntry]) -> list[Outcome]:
        """Collect ``sensors`` with at most ``collect.parallel`` at once; one outcome each."""
        self.prepare()
        if not sensors:
            return []
        workers = min(self.cfg.parallel, len(sensors))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="collect") as pool:
            return list(pool.map(self.collect_one, sensors))

    def stop(self) -> None:
        """Interrupt: terminate running rsync/ssh (they remove their temporary files)."""
        self._stopping.set()
        with self._lock:
            for proc in self._procs:
                _signal_group(proc, signal.SIGTERM)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    # -- one sensor ----------------------------------------------------------------------------

    def collect_one(self, entry: SensorEntry) -> Outcome:
        """Collect one sensor; never raises (the error goes into the outcome and state)."""
        started = time.time()
        t0 = time.monotonic()
        self.reporter.started(entry.name)
        tally = _Tally()
        try:
            if self.stopping:
                raise CollectError("interrupted before it started")
            with self._sensor_lock(entry):
                self._collect(entry, t0 + self.cfg.max_duration, tally)
            outcome = tally.outcome(entry.name, started, t0, None)
        except (CollectError, OSError) as exc:
            outcome = tally.outcome(entry.name, started, t0, str(exc) or type(exc).__name__)
        try:
            self._save_state(outcome)
        except OSError as exc:  # the state is a record; its failure must not hide the outcome
            outcome = Outcome(**{**asdict(outcome), "ok": False, "error": f"state: {exc}"})
        self.reporter.finished(outcome)
        return outcome

    def _collect(self, entry: SensorEntry, deadline: float, tally: _Tally) -> None:
        raw = self.layout.raw_for(entry.name)
        raw.mkdir(parents=True, exist_ok=True)
        unclean = self.layout.copy_marker(entry.name)
        if unclean.exists():  # the last copy was killed: its rsync may have left files in transfer
            sweep_transfers(raw)
        unclean.touch()
        ssh = self.ssh_command(entry)
        source = f"{_rsync_host(entry)}:{entry.remote_spool}"
        copy = [
            self.cfg.rsync,
            "-rt",
            f"--timeout={self.cfg.io_timeout}",
            "--rsh=" + shlex.join(ssh),
            "--out-format=%i %l %n",
        ]
        if self.cfg.compress:
            copy.append("--compress")  # [collect] compress: for slow uplinks only
        if self.cfg.bwlimit:
            copy.append(f"--bwlimit={self.cfg.bwlimit}")
        finish_host = [*ssh, _ssh_host(entry)]
        if not self.cfg.durable:
            copy.append("--remove-source-files")
            with _timed(tally, "copy"):
                self._run("copy", [*copy, source, f"{raw}/"], deadline, RSYNC_EXIT, tally, entry)
            unclean.unlink()
            counts = ["--files", str(tally.files), "--bytes", str(tally.bytes)]
            request = shlex.join(["spampot", "collected", *counts])
            with _timed(tally, "finish"):
                self._wait(self._start("finish", [*finish_host, request], deadline))
            return
        # Itemise unchanged files too (".f", -ii): a file copied by an interrupted run is here
        # already and must still be removed from the sensor. The finish request runs beside
        # the copy and deletes on the sensor what raw/ holds durably, as it comes.
        copy.append("-ii")
        finish_cmd = shlex.join(["spampot", "collected", "--stream"])
        finish = self._start("finish", [*finish_host, finish_cmd], deadline, stdin=True)
        assert finish.proc.stdin is not None
        feeder = _Feeder(raw, finish.proc.stdin)
        feeder.start()
        copy_error: CollectError | OSError | None = None
        try:
            with _timed(tally, "copy"):
                self._run(
                    "copy", [*copy, source, f"{raw}/"], deadline, RSYNC_EXIT, tally, entry, feeder
                )
            unclean.unlink()  # rsync ended by itself: it left no file in transfer
        except (CollectError, OSError) as exc:  # the finish request is still ended and waited
            copy_error = exc
        t0 = time.monotonic()
        feeder.end(None if copy_error else (tally.files, tally.bytes))
        feeder.join()
        tally.steps["sync"] = feeder.sync_s
        try:
            self._wait(finish)
        except CollectError:
            if copy_error is None:
                raise
        finally:
            tally.steps["finish"] = time.monotonic() - t0
        if copy_error is not None:
            raise copy_error

    def ssh_command(self, entry: SensorEntry) -> list[str]:
        return ssh_command(entry, self.cfg, self.layout)

    def _run(
        self,
        step: str,
        argv: list[str],
        deadline: float,
        meanings: dict[int, str],
        tally: _Tally,
        entry: SensorEntry,
        feeder: _Feeder | None = None,
    ) -> None:
        """The copy: rsync to its end or the deadline, its itemised lines counted (and handed
        to ``feeder``); raises CollectError when it failed."""

        def on_line(line: bytes) -> None:
            # "%i %l %n": the itemised changes (always 11 characters: ">f" = a file received,
            # ".f" = a file already here and up to date), its length, its name.
            if line.startswith((b">f", b".f")):
                length, _, name = line[12:].rstrip(b"\n").partition(b" ")
                if name and feeder is not None:
                    feeder.add(name.decode("utf-8", "surrogateescape"))
                if line.startswith(b">f"):
                    tally.files += 1
                    with contextlib.suppress(ValueError):
                        tally.bytes += int(length)

        def tick() -> None:
            self.reporter.progress(entry.name, tally.files, tally.bytes)

        self._wait(self._start(step, argv, deadline), meanings, on_line, tick)

    def _start(self, step: str, argv: list[str], deadline: float, stdin: bool = False) -> _Running:
        """Start one command of a step, killed at the deadline; its stderr kept."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise CollectError(f"{step}: collect.max_duration ({self.cfg.max_duration} s) reached")
        if self.stopping:
            raise CollectError(f"{step}: interrupted")
        proc = subprocess.Popen(
            deathsig.wrap(argv),  # ends with this process, even when it is killed alone
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # a terminal's Ctrl-C reaches us, not rsync half-way
        )
        with self._lock:
            self._procs.add(proc)
        timer = threading.Timer(remaining, _signal_group, (proc, signal.SIGKILL))
        timer.start()
        stderr: collections.deque[bytes] = collections.deque(maxlen=_STDERR_LINES)
        reader = threading.Thread(target=_drain, args=(proc.stderr, stderr), daemon=True)
        reader.start()
        return _Running(step, proc, deadline, timer, stderr, reader)

    def _wait(
        self,
        running: _Running,
        meanings: dict[int, str] = FINISH_EXIT,
        on_line: Callable[[bytes], None] | None = None,
        tick: Callable[[], None] | None = None,
    ) -> None:
        """Read a started command's output to its end; raises CollectError when it failed
        (``meanings``: what the command's exit statuses say, for the message)."""
        proc, deadline = running.proc, running.deadline
        try:
            assert proc.stdout is not None
            last = time.monotonic()
            for line in proc.stdout:
                if on_line is not None:
                    on_line(line)
                if tick is not None and time.monotonic() - last >= _PROGRESS_EVERY:
                    last = time.monotonic()
                    tick()
            code = proc.wait()
        finally:
            running.timer.cancel()
            running.reader.join(timeout=5)
            with self._lock:
                self._procs.discard(proc)
            if proc.poll() is None:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
        if tick is not None:
            tick()
        if code != 0:
            if time.monotonic() >= deadline:
                why = f"collect.max_duration ({self.cfg.max_duration} s) reached"
            elif self.stopping:
                why = "interrupted"
            elif code < 0:
                why = f"killed by signal {-code}"
            else:
                why = f"exit {code}" + (f" ({meanings[code]})" if code in meanings else "")
            # ssh's host key warning comes framed in lines of "@"; the last lines say most.
            detail = b" | ".join(line.strip() for line in running.stderr if line.strip(b"@ \r\n"))
            text = detail.decode("utf-8", "backslashreplace")[-1000:]
            raise CollectError(f"{running.step}: {why}" + (f": {text}" if text else ""))

    @contextlib.contextmanager
    def _sensor_lock(self, entry: SensorEntry) -> Iterator[None]:
        path = self.layout.collect_lock(entry.name)
        with open(path, "a") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise CollectError("another collection of this sensor is running") from None
            yield

    # -- state ---------------------------------------------------------------------------------

    def state_path(self, sensor: str) -> Path:
        return self.layout.collect_record(sensor)

    def _save_state(self, outcome: Outcome) -> None:
        previous = read_state(self.state_path(outcome.sensor)) or {}
        state: dict[str, Any] = {
            "sensor": outcome.sensor,
            "ok": outcome.ok,
            "last_attempt": utc_rfc3339(outcome.started),
            "last_success": (
                utc_rfc3339(outcome.started) if outcome.ok else previous.get("last_success")
            ),
            "files": outcome.files,
            "bytes": outcome.bytes,
            "duration_s": round(outcome.duration_s, 3),
            "error": outcome.error,
            "steps_s": {step: round(seconds, 3) for step, seconds in outcome.steps},
            "total_files": int(previous.get("total_files", 0)) + outcome.files,
            "total_bytes": int(previous.get("total_bytes", 0)) + outcome.bytes,
        }
        _write_atomic(self.state_path(outcome.sensor), json.dumps(state, indent=1) + "\n")


def read_state(path: Path) -> dict[str, Any] | None:
    """A sensor's collection state (``state/collect/<sensor>.json``), or None."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def ssh_command(entry: SensorEntry, cfg: CollectSection, layout: CentralLayout) -> list[str]:
    """ssh with the sensor's key, batch mode and its host key checked strictly (collect and
    status: one SSH policy). A pinned ``host_key`` is written beside the collection state."""
    argv = [
        cfg.ssh,
        "-p",
        str(entry.port),
        "-i",
        str(entry.key),
        "-l",
        entry.user,
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "UpdateHostKeys=no",
        "-o",
        f"ConnectTimeout={cfg.connect_timeout}",
        "-o",
        "ServerAliveInterval=15",
        "-o",
        "ServerAliveCountMax=4",
        "-o",
        "Compression=no",  # rsync compresses what is worth it; the rest is gzip already
        "-o",
        "ForwardAgent=no",
        "-o",
        "ClearAllForwardings=yes",
        "-o",
        "LogLevel=ERROR",
    ]
    if entry.host_key:
        known = layout.known_hosts(entry.name)
        alias = f"spampot-sensor.{entry.name}"
        _write_atomic(known, f"{alias} {entry.host_key}\n")
        argv += [
            "-o",
            f"UserKnownHostsFile={known}",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            f"HostKeyAlias={alias}",
        ]
    else:
        argv += ["-o", f"UserKnownHostsFile={entry.known_hosts}"]
    return argv


def _rsync_host(entry: SensorEntry) -> str:
    host = entry.host.strip("[]")
    return f"{entry.user}@[{host}]" if ":" in host else f"{entry.user}@{host}"


def _ssh_host(entry: SensorEntry) -> str:
    return entry.host.strip("[]")


@contextlib.contextmanager
def _timed(tally: _Tally, step: str) -> Iterator[None]:
    t0 = time.monotonic()
    try:
        yield
    finally:
        tally.steps[step] = time.monotonic() - t0


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Signal rsync and the ssh it started (one process group: start_new_session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


@dataclass(slots=True)
class _Running:
    """A started command of one step."""

    step: str
    proc: subprocess.Popen[bytes]
    deadline: float
    timer: threading.Timer
    stderr: collections.deque[bytes]
    reader: threading.Thread


class _Feeder(threading.Thread):
    """Feeds the finish request, while the copy runs, the files raw/ now holds durably.

    rsync itemises each file it received or found up to date. In batches (every
    ``BATCH_FILES`` names or ``BATCH_SECONDS``), each named file that is under raw/ by its
    final name (whole: rsync renames a file into place once complete) is stat()ed there, one
    ``syncfs`` puts the batch on disk, and then ``<size> <mtime> <path>`` lines go to the
    gate, which deletes each file that is still that one on the sensor. A name not there yet
    waits for the next batch; one still missing when the copy has ended is not listed (the
    sensor keeps it). :meth:`end` closes the list: with ``end <files> <bytes>`` after a copy
    that succeeded, without it after one that failed (the gate then records nothing).
    """

    BATCH_FILES = 2000
    BATCH_SECONDS = 0.5

    def __init__(self, raw: Path, stream: IO[bytes]) -> None:
        super().__init__(daemon=True, name="collect-feeder")
        self.raw = raw
        self.stream = stream
        self.sync_s = 0.0  # time in syncfs
        self._names: list[str] = []
        self._ended = False
        self._counts: tuple[int, int] | None = None
        self._cond = threading.Condition()
        self._broken = False  # the gate stopped reading (refused, or gone)

    def add(self, name: str) -> None:
        with self._cond:
            self._names.append(name)
            if len(self._names) >= self.BATCH_FILES:
                self._cond.notify()

    def end(self, counts: tuple[int, int] | None) -> None:
        """The copy ended: ``counts`` (files, bytes) if it succeeded, None if not."""
        with self._cond:
            self._ended, self._counts = True, counts
            self._cond.notify()

    def run(self) -> None:
        waiting: list[str] = []
        try:
            while True:
                with self._cond:
                    if not self._ended and len(self._names) < self.BATCH_FILES:
                        self._cond.wait(self.BATCH_SECONDS)
                    ended = self._ended
                    waiting += self._names
                    self._names = []
                waiting = self._send(waiting)
                if ended:
                    break
            if self._counts is not None:
                self._write(f"end {self._counts[0]} {self._counts[1]}\n".encode())
        finally:
            with contextlib.suppress(OSError):
                self.stream.close()

    def _send(self, names: list[str]) -> list[str]:
        """List those of ``names`` that raw/ holds, once synced; returns the others."""
        lines, missing = [], []
        for relpath in names:
            try:
                st = os.stat(self.raw / relpath, follow_symlinks=False)
            except OSError:
                missing.append(relpath)
                continue
            lines.append(f"{st.st_size} {int(st.st_mtime)} {relpath}\n")
        if lines and not self._broken:
            t0 = time.monotonic()
            fd = os.open(self.raw, os.O_RDONLY | os.O_DIRECTORY)
            try:
                syncfs(fd)  # what is listed is on disk before the sensor deletes it
            finally:
                os.close(fd)
            self.sync_s += time.monotonic() - t0
            self._write("".join(lines).encode("utf-8", "surrogateescape"))
        return missing

    def _write(self, data: bytes) -> None:
        if self._broken:
            return
        try:
            self.stream.write(data)
            self.stream.flush()
        except OSError:  # the gate refused or the connection failed: its exit status says why
            self._broken = True


def _drain(stream: IO[bytes] | None, into: collections.deque[bytes]) -> None:
    if stream is None:
        return
    for line in stream:
        into.append(line[:500])


# rsync's name for a file in transfer: "." + the name + "." + six random characters (receiver.c,
# get_tmpname()). No file the sensor writes starts with a dot (layout.spool_file).
IN_TRANSFER = re.compile(r"\..+\.[A-Za-z0-9]{6}")


def sweep_transfers(raw: Path) -> int:
    """Remove the files in transfer a killed rsync left under ``raw``; returns how many."""
    removed = 0
    for root, _dirs, files in os.walk(raw):
        for name in files:
            if IN_TRANSFER.fullmatch(name):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(root, name))
                    removed += 1
    return removed


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
