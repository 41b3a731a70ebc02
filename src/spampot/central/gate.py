"""The sensor's side of collection: the forced command behind the central server's SSH key.

The sensor's ``authorized_keys`` runs ``spampot gate --config <sensor config>`` whatever the
central server asks; sshd puts the request in ``SSH_ORIGINAL_COMMAND`` (sshd(8), "command=").
The gate lets through exactly what ``spampot collect`` and ``spampot status`` send, and refuses
everything else:

- ``rsync --server --sender <flags> [--timeout=N] [--bwlimit=N] [--remove-source-files]
  . <data_dir>/spool/``: rsync sending the spool (never receiving: nothing can be written on the
  sensor through it), with removal of the files the centre confirmed;
- ``spampot collected --stream``: delete each file listed on stdin (``<size> <mtime> <path
  under spool/>`` per line: what the centre holds durably), as the lines arrive (the centre
  sends them while its copy runs), each only if it is still that file; at the closing line
  ``end <files> <bytes>``, prune the directories the collection emptied and record the
  collection in ``state/last-collection.json`` for ``spampot health``. A list that stops
  before its closing line (the copy failed, the connection was cut) records nothing;
- ``spampot collected --files N --bytes N [--remove]``: the same with the counts given first
  and the whole list read before anything is deleted (the collectors before ``--stream``);
- ``spampot health --json``: the sensor's health report.

Why not Debian's ``rrsync``: it restricts rsync to a directory but runs nothing else, and its
read-only mode (``-ro``) refuses ``--remove-source-files``, without which the sensor's disk never
frees; a read-write rrsync would let the key *upload* into the spool. Parsing rsync's server
command line is done the same way rrsync does it: every token is checked against a list, and
rsync is then run directly (no shell) with those tokens.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shlex
import stat
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from spampot.layout import (
    DEFAULT_SENSOR_DATA_DIR,
    EVENTS,
    SensorLayout,
    remote_spool,
    spool_file,
)

MAX_COMMAND = 4096  # longer requests are refused unread

# rsync's server-side flag cluster: single-letter options our client sends (-t times, -r
# recursive, -z compress; l o g D p from -a, v verbose, c checksum) and the protocol extension
# "e<version>.<capabilities>" rsync appends (compat.c). No -L (follow symlinks: could read
# outside the spool), no -k/-K, no --files-from.
_FLAGS = re.compile(r"-[trzlogDpvc]+(?:e[0-9]*\.[A-Za-z]*)?")
_LONG = re.compile(
    r"--timeout=[0-9]{1,6}|--bwlimit=[0-9]{1,9}(?:\.[0-9]+)?[KkMmGg]?|--remove-source-files"
)
_COUNT = re.compile(r"[0-9]{1,15}")


class Refused(Exception):
    """The request is not one of the allowed commands."""


@dataclass(frozen=True, slots=True)
class RsyncSender:
    argv: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Collected:
    files: int
    bytes: int
    remove: bool = False  # stdin lists the files the centre holds: delete those first


@dataclass(frozen=True, slots=True)
class CollectedStream:
    """``collected --stream``: removal lines as the copy goes, then ``end <files> <bytes>``."""


@dataclass(frozen=True, slots=True)
class Health:
    pass


Request = RsyncSender | Collected | CollectedStream | Health


def parse_request(command: str | None, data_dir: str) -> Request:
    """What the central server may run, from ``SSH_ORIGINAL_COMMAND``; raises :class:`Refused`.

    ``data_dir`` is the sensor's data dir: the only rsync source allowed is its ``spool/``.
    """
    if not command:
        raise Refused("no command (interactive logins are not allowed)")
    if len(command) > MAX_COMMAND:
        raise Refused(f"command longer than {MAX_COMMAND} characters")
    try:
        words = shlex.split(command)
    except ValueError as exc:
        raise Refused(f"cannot parse the command: {exc}") from exc
    if words[:3] == ["rsync", "--server", "--sender"]:
        return _rsync(words, data_dir)
    if words == ["spampot", "health", "--json"]:
        return Health()
    if words == ["spampot", "collected", "--stream"]:
        return CollectedStream()
    if (
        len(words) in (6, 7)
        and words[:2] == ["spampot", "collected"]
        and words[2] == "--files"
        and words[4] == "--bytes"
        and _COUNT.fullmatch(words[3])
        and _COUNT.fullmatch(words[5])
        and words[6:] in ([], ["--remove"])
    ):
        return Collected(files=int(words[3]), bytes=int(words[5]), remove=len(words) == 7)
    raise Refused("not an allowed command")


def _rsync(words: list[str], data_dir: str) -> RsyncSender:
    spool = remote_spool(os.path.normpath(data_dir))
    rest = words[3:]
    if len(rest) < 3 or rest[-2] != "." or rest[-1] != spool:
        raise Refused(f"rsync may only send {spool}")
    flags, *options = rest[:-2]
    if not _FLAGS.fullmatch(flags):
        raise Refused(f"rsync flags not allowed: {flags[:80]!r}")
    for option in options:
        if not _LONG.fullmatch(option):
            raise Refused(f"rsync option not allowed: {option[:80]!r}")
    return RsyncSender(argv=tuple(words))


# -- what the allowed commands do on the sensor -------------------------------------------------

MAX_REMOVE_LINES = 5_000_000  # files in one removal list (a month of a busy sensor)
MAX_REMOVE_LINE = 512


@dataclass(frozen=True, slots=True)
class Held:
    """A file the centre holds, durably: its path under ``spool/``, size and mtime."""

    relpath: str
    size: int
    mtime: int  # whole seconds


def parse_held_line(number: int, line: bytes) -> Held:
    """One line ``<size> <mtime> <relpath>`` of a removal list; raises :class:`Refused`."""
    if number > MAX_REMOVE_LINES or len(line) > MAX_REMOVE_LINE:
        raise Refused(f"removal list: line {number} past the limits")
    fields = line.rstrip(b"\n").split(b" ", 2)
    size, mtime, relpath = (fields + [b""] * 3)[:3] if len(fields) < 3 else fields
    text = relpath.decode("ascii", "replace")
    numbers = (size.decode("ascii", "replace"), mtime.decode("ascii", "replace"))
    if not (all(_COUNT.fullmatch(n) for n in numbers) and spool_file(text)):
        raise Refused(f"removal list: line {number} is not <size> <mtime> <spool file>")
    return Held(text, int(size), int(mtime))


def parse_held(stream: IO[bytes]) -> list[Held]:
    """A whole removal list; raises :class:`Refused` on any line that is not one, or past
    the limits, before anything is deleted."""
    return [parse_held_line(number, line) for number, line in enumerate(stream, 1)]


def parse_end(line: bytes) -> tuple[int, int]:
    """The closing line of a streamed list, ``end <files> <bytes>``; raises Refused."""
    words = line.rstrip(b"\n").decode("ascii", "replace").split(" ")
    if len(words) != 3 or words[0] != "end" or not all(_COUNT.fullmatch(w) for w in words[1:]):
        raise Refused("removal list: the closing line is not end <files> <bytes>")
    return int(words[1]), int(words[2])


class Remover:
    """Deletes listed files under ``spool/`` that are still the ones the centre holds (a
    regular file of that size and mtime, as rsync's "up to date"), one at a time; counts
    ``removed`` and ``kept``. Use as a context manager (it holds directory descriptors).

    Paths are walked one directory at a time from ``spool/`` without following symbolic links
    (O_NOFOLLOW), so no listed name can reach outside the spool, whatever is on the disk; the
    directory of the last file stays open (the list comes in rsync's order, by directory).
    """

    def __init__(self, spool: Path) -> None:
        self.removed = self.kept = 0
        self._root = os.open(spool, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        self._current: tuple[str, int] | None = None

    def __enter__(self) -> Remover:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._current is not None:
            os.close(self._current[1])
            self._current = None
        os.close(self._root)

    def remove(self, item: Held) -> bool:
        directory, _, name = item.relpath.rpartition("/")
        if self._current is None or self._current[0] != directory:
            if self._current is not None:
                os.close(self._current[1])
                self._current = None
            fd = _open_under(self._root, directory)
            if fd is None:
                self.kept += 1
                return False
            self._current = (directory, fd)
        dir_fd = self._current[1]
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if stat.S_ISREG(st.st_mode) and (st.st_size, int(st.st_mtime)) == (
                item.size,
                item.mtime,
            ):
                os.unlink(name, dir_fd=dir_fd)
                self.removed += 1
                return True
        except FileNotFoundError:
            pass
        self.kept += 1
        return False


def remove_held(spool: Path, held: list[Held]) -> tuple[int, int]:
    """Delete each of ``held`` that is still that file (:class:`Remover`); (removed, kept)."""
    with Remover(spool) as remover:
        for item in held:
            remover.remove(item)
    return remover.removed, remover.kept


def remove_streamed(spool: Path, stream: IO[bytes]) -> tuple[int, int, tuple[int, int] | None]:
    """Delete as the lines of ``stream`` arrive; returns (removed, kept, the closing line's
    (files, bytes), or None if the list stopped before it). A line that is not one stops the
    request (:class:`Refused`); each line before it was checked and acted on by itself."""
    with Remover(spool) as remover:
        for number, line in enumerate(stream, 1):
            if line.startswith(b"end "):
                return remover.removed, remover.kept, parse_end(line)
            remover.remove(parse_held_line(number, line))
    return remover.removed, remover.kept, None


def _open_under(root: int, directory: str) -> int | None:
    """A descriptor of ``directory`` (relative, ``/``-separated) under ``root``, reached
    without following a symbolic link; None if it is not there or not a plain directory."""
    fd = os.dup(root)
    try:
        for part in directory.split("/"):
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except OSError:
        os.close(fd)
        return None
    return fd


def prune_spool(spool: Path) -> int:
    """Remove the empty directories under ``spool/`` that the collection left; returns how many.

    The newest day directory is left alone (the sensor is writing into it), and so are
    ``spool/`` and ``spool/events/`` themselves. rmdir(2) removes only empty directories, so a
    file the sensor publishes meanwhile is never lost: at worst the sensor's rename finds its
    directory gone and makes it again (Spool.publish).
    """
    try:
        days = sorted(e.name for e in os.scandir(spool) if e.is_dir(follow_symlinks=False))
    except FileNotFoundError:
        return 0
    keep = {EVENTS}
    day_dirs = [d for d in days if d not in keep]
    if day_dirs:
        keep.add(day_dirs[-1])
    removed = 0
    for day in day_dirs:
        if day in keep:
            continue
        for root, _dirs, _files in os.walk(spool / day, topdown=False):
            with contextlib.suppress(OSError):
                os.rmdir(root)
                removed += 1
    return removed


def write_last_collection(data_dir: Path, files: int, nbytes: int, now: dt.datetime) -> Path:
    """Replace ``state/last-collection.json`` whole (write aside, fsync, rename)."""
    path = SensorLayout(data_dir).last_collection
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "time": now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "files": files,
        "bytes": nbytes,
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


@dataclass(frozen=True, slots=True)
class GateSetup:
    """What the gate knows of the sensor it guards: its configuration, never defaults."""

    data_dir: Path  # the sensor's data dir (absolute, as configured)
    config_path: Path  # the sensor's configuration file, handed to ``spampot health``
    data_dir_override: bool = False  # the data dir came from --data-dir, not the file


def configured_data_dir(config_path: Path) -> str:
    """``[sensor] data_dir`` of the sensor's configuration file (the built-in default when the
    file does not set it, as for the sensor); raises :class:`Refused` if it cannot be read.

    The gate reads only this key for rsync and ``collected``: validating the whole file
    imports the protocol machines for their defaults, about 0.1 CPU-second at every SSH
    request (two per collection). ``health`` validates the whole file (:func:`run_gate`).
    """
    try:
        with open(config_path, "rb") as f:
            raw = tomllib.load(f)
    except OSError as exc:
        raise Refused(f"cannot read {config_path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise Refused(f"{config_path}: {exc}") from exc
    section = raw.get("sensor", {})
    value = section.get("data_dir", DEFAULT_SENSOR_DATA_DIR) if isinstance(section, dict) else None
    if not isinstance(value, str) or not value:
        raise Refused(f"{config_path}: sensor.data_dir must be a path")
    return value


def health_argv(setup: GateSetup) -> list[str]:
    """``spampot health --json`` for this sensor: its configuration and data dir."""
    argv = [sys.executable, "-m", "spampot", "health", "--json", "--config", str(setup.config_path)]
    if setup.data_dir_override:
        argv += ["--data-dir", str(setup.data_dir)]
    return argv


def run_gate(command: str | None, setup: GateSetup) -> int:
    """Serve one request from the central server; returns the exit status.

    rsync and ``spampot health`` replace this process (exec), so their exit status and output
    reach the central server unchanged.
    """
    data_dir = setup.data_dir
    try:
        request = parse_request(command, str(data_dir))
    except Refused as exc:
        shown = (command or "")[:200].encode("ascii", "backslashreplace").decode()
        print(f"spampot gate: refused: {exc}: {shown!r}", file=sys.stderr)
        return 1
    if isinstance(request, RsyncSender):
        os.chdir(data_dir)
        os.execvp("rsync", list(request.argv))
    if isinstance(request, Health):
        from spampot.config import ConfigError, load_config

        try:  # the whole file: health reports on every part of it
            load_config(setup.config_path)
        except ConfigError as exc:
            print(f"spampot gate: refused: {exc}", file=sys.stderr)
            return 1
        os.execv(sys.executable, health_argv(setup))
    layout = SensorLayout(data_dir)
    result: dict[str, int] = {}
    try:
        if isinstance(request, CollectedStream):
            result["removed"], result["kept"], counts = remove_streamed(
                layout.spool, sys.stdin.buffer
            )
            if counts is None:
                print(
                    f"spampot gate: the removal list ended before its closing line (the copy "
                    f"did not finish): {result['removed']} removed, nothing recorded",
                    file=sys.stderr,
                )
                return 1
            files, nbytes = counts
        else:
            files, nbytes = request.files, request.bytes
            if request.remove:
                held = parse_held(sys.stdin.buffer)
                result["removed"], result["kept"] = remove_held(layout.spool, held)
    except Refused as exc:
        print(f"spampot gate: refused: {exc}", file=sys.stderr)
        return 1
    result["pruned"] = prune_spool(layout.spool)
    try:
        write_last_collection(data_dir, files, nbytes, dt.datetime.now(dt.UTC))
    except OSError as exc:
        print(f"spampot gate: cannot record the collection: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0
