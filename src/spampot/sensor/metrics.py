"""The sensor's counters, and the state files through which they add up across workers.

Each worker process counts in plain attributes (a session costs a few integer additions) and,
every ``[health] sample_interval`` seconds, replaces ``<data_dir>/state/worker-<k>.json``
atomically (write a temporary file, rename). ``spampot health`` and the Prometheus endpoint
sum these files. Why files rather than prometheus_client's multiprocess mode: that mode is
configured through an environment variable, keeps one mmap file per process id that someone
must clean up, and offers nothing to ``spampot health`` when the daemon is down; a file per
worker also carries the recent samples the 15-minute figures need and survives as the last
known state after a crash.

Worker 0 also samples the capture interface's counters from ``/proc/net/dev``, so that one
``spampot health`` call can answer "packets and bytes per second over the last 15 minutes".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spampot.layout import SensorLayout

WINDOW_SECONDS = 15 * 60  # the paper's "last 15 minutes" (§4.1.4)
MAX_SAMPLES = 2000  # history entries kept per worker file, whatever the interval


class SensorMetrics:
    """One worker's counters since it started; the sessions add to them directly."""

    __slots__ = (
        "bytes_in",
        "bytes_out",
        "last_message",
        "messages",
        "proxy_requests",
        "rejects",
        "sessions",
    )

    def __init__(self) -> None:
        self.sessions = 0
        self.messages = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.last_message: float | None = None
        # Label values come from the protocol machines' fixed sets (protocol, outcome, why),
        # never from client bytes, so these dicts stay small.
        self.proxy_requests: dict[tuple[str, str], int] = {}
        self.rejects: dict[str, int] = {}

    def message_stored(self) -> None:
        self.messages += 1
        self.last_message = time.time()

    def proxy_request(self, protocol: str, outcome: str) -> None:
        key = (protocol, outcome)
        self.proxy_requests[key] = self.proxy_requests.get(key, 0) + 1

    def reject(self, why: str) -> None:
        self.rejects[why] = self.rejects.get(why, 0) + 1

    def counters(self) -> dict[str, Any]:
        return {
            "sessions": self.sessions,
            "messages": self.messages,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "proxy_requests": [
                {"protocol": p, "outcome": o, "count": n}
                for (p, o), n in sorted(self.proxy_requests.items())
            ],
            "rejects": dict(sorted(self.rejects.items())),
        }


# --- the capture interface ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InterfaceSample:
    time: float
    rx_bytes: int
    rx_packets: int
    tx_bytes: int
    tx_packets: int

    def as_list(self) -> list[float | int]:
        return [self.time, self.rx_bytes, self.rx_packets, self.tx_bytes, self.tx_packets]


def default_interface(procfs: Path) -> str | None:
    """The interface holding the IPv4 default route (destination 0, mask 0), from net/route."""
    try:
        lines = (procfs / "net" / "route").read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) >= 8 and fields[1] == "00000000" and fields[7] == "00000000":
            return fields[0]
    return None


def capture_interface(configured: str, procfs: Path) -> str | None:
    return configured or default_interface(procfs)


def read_interface(procfs: Path, name: str, now: float | None = None) -> InterfaceSample | None:
    """One interface's cumulative counters from net/dev (see proc_net_dev(5))."""
    try:
        text = (procfs / "net" / "dev").read_text()
    except OSError:
        return None
    for line in text.splitlines()[2:]:
        iface, sep, rest = line.partition(":")
        if not sep or iface.strip() != name:
            continue
        f = rest.split()
        if len(f) < 10:
            return None
        return InterfaceSample(
            time.time() if now is None else now, int(f[0]), int(f[1]), int(f[8]), int(f[9])
        )
    return None


# --- the state files ------------------------------------------------------------------------


def write_atomic(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` whole: readers see the old file or the new one, never a part."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, separators=(",", ":")))
    os.replace(tmp, path)


def clear_worker_files(data_dir: Path) -> None:
    """At start: a previous run with more workers must not add its counters to this one.

    What the silence check needs is carried over first (:func:`carry_over`), so that a daemon
    restarting again and again never looks like one that has just started.
    """
    layout = SensorLayout(data_dir)
    layout.state.mkdir(parents=True, exist_ok=True)
    carry_over(data_dir, read_worker_files(data_dir))
    for path in layout.worker_files():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def previous_runs(data_dir: Path) -> dict[str, float]:
    """``last_message`` and ``first_start`` of the runs before this one (either may be absent)."""
    try:
        data = json.loads(SensorLayout(data_dir).previous_runs.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: float(data[k]) for k in ("last_message", "first_start") if _time(data.get(k))}


def carry_over(data_dir: Path, workers: list[dict[str, Any]]) -> None:
    """Fold the ending run's last capture and start into ``state/previous-runs.json``."""
    carried = previous_runs(data_dir)
    messages = [w["last_message"] for w in workers if w.get("last_message") is not None]
    starts = [w["started"] for w in workers if w.get("started")]
    if messages:
        carried["last_message"] = max([*messages, carried.get("last_message", 0.0)])
    if starts:
        carried["first_start"] = min([*starts, carried.get("first_start", math.inf)])
    if carried:
        write_atomic(SensorLayout(data_dir).previous_runs, carried)


def write_pid_file(data_dir: Path) -> Path:
    path = SensorLayout(data_dir).pid_file
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, {"pid": os.getpid(), "started": time.time()})
    return path


def remove_pid_file(path: Path) -> None:
    with contextlib.suppress(OSError):
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()


def read_worker_files(data_dir: Path) -> list[dict[str, Any]]:
    """Every worker's last written state; unreadable or malformed files are skipped."""
    states = []
    for path in SensorLayout(data_dir).worker_files():
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if valid_worker_state(data):
            states.append(data)
    return states


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _time(value: object) -> bool:
    # Seconds since the epoch that datetime can show (up to the year 9999).
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 <= value < 253_402_300_000
    )


def valid_worker_state(data: object) -> bool:
    """Whether a worker file holds what readers use, with the types they expect.

    The daemon writes these files whole, but a reader must not fail on one edited by hand or
    left by another version: one bad file is skipped, the others still count.
    """
    if not isinstance(data, dict):
        return False
    c = data.get("counters")
    if not isinstance(c, dict):
        return False
    if not all(_count(c.get(k, 0)) for k in ("sessions", "messages", "bytes_in", "bytes_out")):
        return False
    requests = c.get("proxy_requests", [])
    if not isinstance(requests, list) or not all(
        isinstance(e, dict)
        and isinstance(e.get("protocol"), str)
        and isinstance(e.get("outcome"), str)
        and _count(e.get("count"))
        for e in requests
    ):
        return False
    rejects = c.get("rejects", {})
    if not isinstance(rejects, dict) or not all(_count(n) for n in rejects.values()):
        return False
    if not all(_time(data.get(k, 0)) for k in ("started", "updated")):
        return False
    if not all(_count(data.get(k, 0)) for k in ("pid", "worker")):
        return False
    if data.get("last_message") is not None and not _time(data["last_message"]):
        return False
    history = data.get("history", [])
    if not isinstance(history, list) or not all(
        isinstance(h, list) and len(h) == 2 and _time(h[0]) and _count(h[1]) for h in history
    ):
        return False
    iface = data.get("interface")
    if iface is None:
        return True
    return (
        isinstance(iface, dict)
        and isinstance(iface.get("name"), str)
        and isinstance(iface.get("samples"), list)
        and all(
            isinstance(x, list) and len(x) == 5 and _time(x[0]) and all(_count(v) for v in x[1:])
            for x in iface["samples"]
        )
    )


class StateRecorder:
    """Writes one worker's counters (and, for worker 0, interface samples) periodically."""

    def __init__(
        self,
        metrics: SensorMetrics,
        data_dir: Path,
        worker: int,
        interval: float,
        interface: str | None,
        procfs: Path,
    ) -> None:
        self.metrics = metrics
        self.path = SensorLayout(data_dir).worker_file(worker)
        self.worker = worker
        self.interval = interval
        self.interface = interface if worker == 0 else None
        self.procfs = procfs
        self.started = time.time()
        self.history: list[list[float | int]] = []  # [time, messages]
        self.interface_samples: list[list[float | int]] = []
        self._task: asyncio.Task[None] | None = None

    def record(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        m = self.metrics
        keep_after = now - WINDOW_SECONDS - 2 * self.interval
        self.history.append([round(now, 3), m.messages])
        _trim(self.history, keep_after)
        state: dict[str, Any] = {
            "pid": os.getpid(),
            "worker": self.worker,
            "started": self.started,
            "updated": now,
            "counters": m.counters(),
            "last_message": m.last_message,
            "history": self.history,
        }
        if self.interface is not None:
            sample = read_interface(self.procfs, self.interface, now)
            if sample is not None:
                self.interface_samples.append(sample.as_list())
                _trim(self.interface_samples, keep_after)
            state["interface"] = {"name": self.interface, "samples": self.interface_samples}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, state)
        except OSError:
            pass  # a full disk: the counters go on in memory, the next write may succeed

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def stop(self) -> None:
        """Cancel the periodic task and write the final counts."""
        if self._task is not None:
            self._task.cancel()
        self.record()

    async def _run(self) -> None:
        while True:
            self.record()
            await asyncio.sleep(self.interval)


def _trim(samples: list[list[float | int]], keep_after: float) -> None:
    # Keep one sample at or before the window's start, so the window has a baseline.
    drop = 0
    while drop + 1 < len(samples) and samples[drop + 1][0] <= keep_after:
        drop += 1
    drop = max(drop, len(samples) - MAX_SAMPLES)
    if drop:
        del samples[:drop]
