"""Small helpers shared by the benchmark scripts (loopback guard, rlimits, /proc readers)."""

from __future__ import annotations

import ipaddress
import math
import os
import resource
import sys
from collections.abc import Iterable, Sequence

CLK_TCK = os.sysconf("SC_CLK_TCK")


def require_loopback(host: str) -> str:
    """Return `host` if it is a loopback IP literal, else exit: benches never leave the box."""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        sys.exit(f"error: {host!r} is not an IP literal; use 127.0.0.1 or ::1")
    if not addr.is_loopback:
        sys.exit(f"error: refusing non-loopback target {host}")
    return str(addr)


def raise_nofile(needed: int = 0) -> int:
    """Raise RLIMIT_NOFILE soft limit to the hard limit; exit if below `needed`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if needed and soft != resource.RLIM_INFINITY and soft < needed:
        sys.exit(f"error: RLIMIT_NOFILE is {soft}, need at least {needed} (raise the hard limit)")
    return soft


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the `(comm)` field, or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return raw[raw.rfind(")") + 2 :].split()


def descendants(roots: Iterable[int]) -> set[int]:
    """All live descendants of `roots` (scans /proc for ppid links), roots included."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (fields := _stat_fields(int(name))):
            children.setdefault(int(fields[1]), []).append(int(name))
    found: set[int] = set()
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, ()))
    return found


def cpu_seconds(pids: Sequence[int], tree: bool = False) -> dict[int, float]:
    """utime+stime+cutime+cstime per pid (seconds); with `tree`, also every descendant."""
    targets = descendants(pids) if tree else set(pids)
    out: dict[int, float] = {}
    for pid in targets:
        fields = _stat_fields(pid)
        if fields:  # fields[11:15] = utime stime cutime cstime (stat fields 14..17)
            out[pid] = sum(int(x) for x in fields[11:15]) / CLK_TCK
    return out


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds consumed between two cpu_seconds() snapshots (new pids count in full)."""
    return sum(t - before.get(pid, 0.0) for pid, t in after.items())


def host_busy_seconds() -> float:
    """Machine-wide non-idle CPU seconds so far (/proc/stat), to spot outside interference."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / CLK_TCK  # minus idle and iowait


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (from /proc/PID/status) and Pss (from /proc/PID/smaps_rollup), in KiB."""
    out: dict[str, int] = {}
    sources = (
        ("rss", f"/proc/{pid}/status", "VmRSS:"),
        ("pss", f"/proc/{pid}/smaps_rollup", "Pss:"),
    )
    for name, path, key in sources:
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith(key):
                        out[name] = int(line.split()[1])
                        break
        except OSError:
            pass
    return out


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (0.0 if empty)."""
    if not sorted_values:
        return 0.0
    rank = math.ceil(q / 100 * len(sorted_values)) - 1
    return sorted_values[max(0, min(len(sorted_values) - 1, rank))]
