"""When is the disk too short to take more mail: free-space floors and a data-dir quota.

The answer drives the SMTP emulator's ``452 4.3.1`` at MAIL (see ``SpoolSection``); the
checks are cheap (one ``statvfs``) except the quota's tree walk, which the housekeeping runs
in a thread now and then and tops up in between with what was stored since.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from spampot.config import SpoolSection


@dataclass(frozen=True, slots=True)
class DiskReading:
    free_bytes: int  # available to an unprivileged user (f_bavail)
    free_inodes: (
        int | None
    )  # None where the filesystem has no inode count (btrfs, tmpfs -o nr_inodes=0)
    used_bytes: int | None  # the data dir's size, when a quota asks for it


def read_disk(path: Path, used_bytes: int | None = None) -> DiskReading:
    st = os.statvfs(path)
    inodes = st.f_favail if st.f_files else None
    return DiskReading(st.f_bavail * st.f_frsize, inodes, used_bytes)


def shortage(section: SpoolSection, reading: DiskReading) -> str:
    """Why the disk is too short ("" when it is not)."""
    if reading.free_bytes < section.min_free_bytes:
        return f"free space {reading.free_bytes} B under spool.min_free_bytes"
    if reading.free_inodes is not None and reading.free_inodes < section.min_free_inodes:
        return f"free inodes {reading.free_inodes} under spool.min_free_inodes"
    if section.quota_bytes and (reading.used_bytes or 0) >= section.quota_bytes:
        return f"data dir holds {reading.used_bytes} B, at spool.quota_bytes"
    return ""


def tree_size(root: Path, limit_entries: int = 10_000_000) -> int:
    """Bytes allocated under ``root`` (st_blocks, as du counts), without following links."""
    total = 0
    stack = [os.fspath(root)]
    seen = 0
    while stack and seen < limit_entries:
        top = stack.pop()
        try:
            with os.scandir(top) as entries:
                for entry in entries:
                    seen += 1
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue  # taken by the collector meanwhile
                    total += st.st_blocks * 512
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
        except OSError:
            continue
    return total
