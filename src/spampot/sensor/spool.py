"""The message spool: gzip files written in ``tmp/`` and renamed into ``spool/``.

Whatever is under ``spool/`` is complete (DESIGN.md data contract): the rename is atomic on one
filesystem, and the collector may take any file it sees. Only the writer thread touches files.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

_LIBC = ctypes.CDLL(None, use_errno=True)


def syncfs(fd: int) -> None:
    """Flush the whole filesystem holding ``fd``: one call commits a batch of files.

    syncfs(2) costs one journal commit for the batch, where an fsync per file costs one each.
    """
    if _LIBC.syncfs(fd) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def gzip_bytes(data: bytes, level: int) -> bytes:
    """A gzip member (RFC 1952) that ``zcat`` reads; zlib's wbits=31 writes the gzip wrapper."""
    comp = zlib.compressobj(level, zlib.DEFLATED, 31)
    return comp.compress(data) + comp.flush()


@dataclass(frozen=True, slots=True)
class SpoolItem:
    """A message to store; ``relpath`` is relative to the spool dir, already made safe."""

    relpath: str
    tmpname: str
    data: bytes


class Spool:
    """Layout: ``<data_dir>/spool/<relpath>``, staged in ``<data_dir>/tmp/``."""

    def __init__(self, data_dir: Path, compress_level: int = 6) -> None:
        self.data_dir = data_dir
        self.spool_dir = data_dir / "spool"
        self.tmp_dir = data_dir / "tmp"
        self.compress_level = compress_level
        self._made: set[str] = set()

    def prepare(self) -> int:
        """Create the directories and remove what a crash left in ``tmp/``; returns how many."""
        for d in (self.spool_dir, self.tmp_dir, self.spool_dir / "events"):
            d.mkdir(parents=True, exist_ok=True)
        removed = 0
        for leftover in self.tmp_dir.iterdir():
            if leftover.is_file() or leftover.is_symlink():
                leftover.unlink()
                removed += 1
        return removed

    def stage(self, item: SpoolItem) -> str:
        """Write the compressed message under ``tmp/``; returns the temporary path."""
        tmp = os.path.join(self.tmp_dir, item.tmpname)
        blob = gzip_bytes(item.data, self.compress_level)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            view = memoryview(blob)
            while view:
                view = view[os.write(fd, view) :]
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        os.close(fd)
        return tmp

    def publish(self, tmp: str, relpath: str) -> None:
        """Rename a staged file into ``spool/``: from here on the collector may take it."""
        final = os.path.join(self.spool_dir, relpath)
        parent = os.path.dirname(final)
        if parent not in self._made:
            if len(self._made) >= 10_000:  # bounded memory: a day's worth of client dirs
                self._made.clear()
            os.makedirs(parent, exist_ok=True)
            self._made.add(parent)
        try:
            os.rename(tmp, final)
        except FileNotFoundError:
            # The collector prunes emptied directories (rsync --remove-source-files), so a
            # directory made earlier may be gone: make it again.
            os.makedirs(parent, exist_ok=True)
            os.rename(tmp, final)

    def discard(self, tmp: str) -> None:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
