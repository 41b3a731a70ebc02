"""The message spool: gzip files written in ``tmp/`` and renamed into ``spool/``.

Whatever is under ``spool/`` is complete (DESIGN.md data contract): the rename is atomic on one
filesystem, and the collector may take any file it sees. Only the writer process touches files.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

from isal import isal_zlib

from spampot.layout import MESSAGE_RELPATH, SensorLayout

_LIBC = ctypes.CDLL(None, use_errno=True)


def syncfs(fd: int) -> None:
    """Flush the whole filesystem holding ``fd``: one call commits a batch of files.

    syncfs(2) costs one journal commit for the batch, where an fsync per file costs one each.
    """
    if _LIBC.syncfs(fd) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


# zlib's levels (what spool.compress_level is given in) as ISA-L's 1-3. ISA-L's level 2 makes
# what zlib's 6 makes of a 3 KB message within 1 %, in a fifth of the CPU (zlib spends most of
# it setting up its state, per message), and of a 58 MB event file a tenth more, in a sixteenth.
_ISAL_LEVEL = (0, 1, 1, 1, 2, 2, 2, 3, 3, 3)


def gzip_bytes(data: bytes, level: int) -> bytes:
    """A gzip member (RFC 1952) that ``zcat`` reads (wbits=31 writes the gzip wrapper).

    Level 0 stores (zlib's stored blocks); any other is ISA-L's deflate.
    """
    if level:
        return isal_zlib.compress(data, _ISAL_LEVEL[level], 31)
    comp = zlib.compressobj(level, zlib.DEFLATED, 31)
    return comp.compress(data) + comp.flush()


@dataclass(frozen=True, slots=True)
class SpoolItem:
    """A message to store; ``relpath`` is relative to the spool dir, already made safe."""

    relpath: str
    data: bytes


# What the writer names a message: <date>/<port>/<ip>/<HHMMSS>-<queue id>.eml.gz. Staged files
# carry the same path with "+" for "/", so that a start after a crash can finish their rename.


def staged_name(relpath: str) -> str:
    return relpath.replace("/", "+")


def is_complete_gzip(path: str | os.PathLike[str]) -> bool:
    """True when the file is one whole gzip member: its CRC-32 and length check out."""
    decomp = zlib.decompressobj(31)
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 16):
                decomp.decompress(chunk, 1 << 16)
                while decomp.unconsumed_tail:
                    decomp.decompress(decomp.unconsumed_tail, 1 << 16)
    except (OSError, zlib.error):
        return False
    return decomp.eof and not decomp.unused_data


class Spool:
    """Layout: ``<data_dir>/spool/<relpath>``, staged in ``<data_dir>/tmp/``."""

    def __init__(self, data_dir: Path, compress_level: int = 6) -> None:
        self.data_dir = data_dir
        self.layout = SensorLayout(data_dir)
        self.spool_dir = self.layout.spool
        self.tmp_dir = self.layout.tmp
        self.compress_level = compress_level
        self._made: set[str] = set()

    def prepare(self) -> tuple[int, int]:
        """Create the directories and settle what a crash left in ``tmp/``.

        A staged message that is a whole gzip file was synced before its rename may have been
        acknowledged (the rename is made durable by the next batch's sync, or here): it is
        published. Anything else in ``tmp/`` was in flight and is removed. Returns
        (published, removed).
        """
        for d in (self.spool_dir, self.tmp_dir, self.layout.spool_events):
            d.mkdir(parents=True, exist_ok=True)
        published = removed = 0
        for leftover in self.tmp_dir.iterdir():
            relpath = leftover.name.replace("+", "/")
            if (
                leftover.is_file()
                and not leftover.is_symlink()
                and MESSAGE_RELPATH.fullmatch(relpath)
                and is_complete_gzip(leftover)
            ):
                self.publish(str(leftover), relpath)
                published += 1
            elif leftover.is_file() or leftover.is_symlink():
                leftover.unlink()
                removed += 1
        return published, removed

    def stage(self, item: SpoolItem) -> str:
        """Write the compressed message under ``tmp/``; returns the temporary path."""
        tmp = os.path.join(self.tmp_dir, staged_name(item.relpath))
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

    def make_parent(self, relpath: str) -> None:
        """Create the message's directory (before the batch's sync, so it is durable too)."""
        parent = os.path.dirname(os.path.join(self.spool_dir, relpath))
        if parent not in self._made:
            if len(self._made) >= 10_000:  # bounded memory: a day's worth of client dirs
                self._made.clear()
            os.makedirs(parent, exist_ok=True)
            self._made.add(parent)

    def publish(self, tmp: str, relpath: str) -> None:
        """Rename a staged file into ``spool/``: from here on the collector may take it."""
        final = os.path.join(self.spool_dir, relpath)
        self.make_parent(relpath)
        try:
            os.rename(tmp, final)
        except FileNotFoundError:
            # The collector prunes emptied directories (rsync --remove-source-files), so a
            # directory made earlier may be gone: make it again.
            os.makedirs(os.path.dirname(final), exist_ok=True)
            os.rename(tmp, final)

    def discard(self, tmp: str) -> None:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
