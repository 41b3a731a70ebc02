"""Dropping root once the ports are bound (the sensor never needs it again).

Run by the process that bound the listeners, before any worker, writer or thread exists, so
every process of the sensor runs as the configured user. The data dir is handed to that user
first: the directories (so it can create and rename files) and the few files it rewrites.
"""

from __future__ import annotations

import grp
import os
import pwd
from pathlib import Path

from spampot.config import SensorSection
from spampot.layout import SensorLayout


class PrivilegeError(RuntimeError):
    pass


def drop_privileges(section: SensorSection, data_dir: Path) -> str:
    """Become ``section.user``; returns a line for the log ("" when not started as root)."""
    if os.geteuid() != 0:
        return ""
    if not section.user:
        if section.allow_root:
            return "running as root (sensor.allow_root = true)"
        raise PrivilegeError(
            "refusing to run as root: set sensor.user to an unprivileged account "
            "(or sensor.allow_root = true)"
        )
    try:
        account = pwd.getpwnam(section.user)
    except KeyError:
        raise PrivilegeError(f"sensor.user: no such user {section.user!r}") from None
    try:
        gid = grp.getgrnam(section.group).gr_gid if section.group else account.pw_gid
    except KeyError:
        raise PrivilegeError(f"sensor.group: no such group {section.group!r}") from None
    uid = account.pw_uid
    if uid == 0 and not section.allow_root:
        raise PrivilegeError(f"sensor.user {section.user!r} is root; set sensor.allow_root")
    hand_over(data_dir, uid, gid)
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if uid != 0:
        try:
            os.setuid(0)
        except PermissionError:
            pass
        else:  # pragma: no cover - would mean the kernel kept a saved root uid
            raise PrivilegeError("root could be regained after dropping privileges")
    return f"running as {section.user} (uid {uid}, gid {gid})"


def hand_over(data_dir: Path, uid: int, gid: int) -> None:
    """Give what the sensor owns in the data dir to uid:gid, and nothing else.

    The sensor owns ``spool/``, ``events/``, ``state/`` and ``tmp/`` (spampot.layout); they are
    made here if missing. Their directories are handed over (so the user can create and
    rename files in them) and the files it rewrites (event logs, state, staged files).
    Published messages are left alone: they are only read and removed, which the directory's
    owner may do. Whatever else a person put in the data dir (the collector's ``.ssh/``, whose
    owner sshd's StrictModes checks) and the data dir itself are never touched.
    """
    layout = SensorLayout(data_dir)
    for path in [data_dir, *data_dir.resolve().parents]:
        if path.exists() and not _searchable(path.stat(), uid, gid):
            raise PrivilegeError(
                f"{path} is not searchable by the sensor's user: it cannot reach "
                f"{data_dir}; choose a data dir it can reach"
            )
    for top in layout.owned:
        top.mkdir(parents=True, exist_ok=True)
        own_files = top != layout.spool
        stack = [top]
        while stack:
            path = stack.pop()
            _chown(path, uid, gid)
            try:
                entries = list(os.scandir(path))
            except OSError:
                continue
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif own_files:
                    _chown(Path(entry.path), uid, gid)


def _searchable(st: os.stat_result, uid: int, gid: int) -> bool:
    if st.st_uid == uid:
        return bool(st.st_mode & 0o100)
    if st.st_gid == gid:
        return bool(st.st_mode & 0o010)
    return bool(st.st_mode & 0o001)


def _chown(path: Path, uid: int, gid: int) -> None:
    st = path.lstat()
    if (st.st_uid, st.st_gid) != (uid, gid):
        os.lchown(path, uid, gid)
