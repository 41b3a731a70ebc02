"""The eight status checks of paper §4.1.4, judged on the central server.

Each sensor answers ``spampot health --json`` over SSH (its forced command lets exactly that
through); :func:`evaluate` turns the report, the SSH outcome, the sensor's previous record and
the thresholds of the inventory's ``[status]`` into one state per check: OK, WARN, CRIT or
UNKNOWN, as monitoring plugins use them (exit codes 0, 1, 2, 3). Judging is pure (no I/O) so
every rule is tested with plain values; the report comes from a machine on a residential line
and is treated as untrusted: anything missing or malformed makes that check UNKNOWN, never a
traceback.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path
from typing import Any

from spampot.central.collect import ssh_command
from spampot.central.inventory import Inventory, SensorEntry, StatusSection
from spampot.protocols.common import printable

HEALTH_COMMAND = "spampot health --json"
MAX_REPORT_BYTES = 4 * 1024 * 1024  # a health report is a few KB; 1 listener line ~ 100 B


class State(IntEnum):
    """Monitoring-plugin states; the value is the exit code (Nagios plugin guidelines)."""

    OK = 0
    WARN = 1
    CRIT = 2
    UNKNOWN = 3

    @property
    def severity(self) -> int:
        """Order for "the worst": OK < UNKNOWN < WARN < CRIT (UNKNOWN is not better news)."""
        return {0: 0, 3: 1, 1: 2, 2: 3}[self.value]


def worst(states: list[State]) -> State:
    return max(states, key=lambda s: s.severity, default=State.OK)


CHECKS = ("connectivity", "uptime", "load", "disk", "clock", "processes", "capture", "sync")


@dataclass(frozen=True, slots=True)
class CheckResult:
    state: State
    summary: str


@dataclass(frozen=True, slots=True)
class SshResult:
    """What came back from ``ssh sensor spampot health --json``."""

    returncode: int | None  # None: timed out
    stdout: bytes
    stderr: bytes
    seconds: float


@dataclass
class SensorStatus:
    sensor: str
    time: float
    checks: dict[str, CheckResult]
    boot_time: float | None = None
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def state(self) -> State:
        return worst([c.state for c in self.checks.values()])

    def as_json(self) -> dict[str, Any]:
        return {
            "sensor": self.sensor,
            "time": rfc3339(self.time),
            "state": self.state.name,
            "checks": {
                name: {"state": c.state.name, "summary": c.summary}
                for name, c in self.checks.items()
            },
            "boot_time": rfc3339(self.boot_time),
            "figures": self.figures,
        }


def rfc3339(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: object) -> float | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


class Malformed(ValueError):
    """A figure the check needs is missing or of the wrong type."""


def _path(report: object, *keys: str) -> Any:
    value = report
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            raise Malformed(f"no {'.'.join(keys)}")
        value = value[key]
    return value


def _number(report: object, *keys: str) -> float:
    value = _path(report, *keys)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Malformed(f"{'.'.join(keys)} is not a number")
    return float(value)


def _maybe(report: object, *keys: str) -> float | None:
    """A number that may be null (not measured)."""
    return None if _path(report, *keys) is None else _number(report, *keys)


def _duration(seconds: float) -> str:
    seconds = abs(seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _level(value: float, warn: float, crit: float) -> State:
    if value >= crit:
        return State.CRIT
    if value >= warn:
        return State.WARN
    return State.OK


# --- the checks -----------------------------------------------------------------------------


def check_connectivity(ssh: SshResult, th: StatusSection) -> CheckResult:
    if ssh.returncode is None:
        return CheckResult(State.CRIT, f"no answer over SSH within {th.timeout} s")
    if ssh.returncode == 255:  # ssh's own failure (ssh(1) EXIT STATUS)
        return CheckResult(State.CRIT, "SSH failed: " + _last_line(ssh.stderr))
    return CheckResult(State.OK, f"SSH answered in {ssh.seconds:.1f} s")


def check_uptime(report: dict, previous: dict | None, th: StatusSection) -> CheckResult:
    boot = parse_time(_path(report, "system", "boot_time"))
    if boot is None:
        raise Malformed("no system.boot_time")
    uptime = _maybe(report, "system", "uptime_s")
    up = f"up {_duration(uptime)}" if uptime is not None else "uptime unknown"
    last_boot = previous.get("boot_time") if isinstance(previous, dict) else None
    if isinstance(last_boot, int | float) and abs(boot - last_boot) > th.boot_tolerance:
        return CheckResult(
            State.WARN,
            f"rebooted since the last check: booted {rfc3339(boot)}, was {rfc3339(last_boot)}",
        )
    return CheckResult(State.OK, f"{up}, booted {rfc3339(boot)}")


def check_load(report: dict, th: StatusSection) -> CheckResult:
    load = _path(report, "system", "load")
    if not isinstance(load, list) or len(load) != 3:
        raise Malformed("system.load is not three numbers")
    values = [_number({"v": v}, "v") for v in load]
    cpus = _number(report, "system", "cpus")
    per_cpu = values[1] / max(cpus, 1.0)
    text = "load " + " ".join(f"{v:.2f}" for v in values)
    return CheckResult(
        _level(per_cpu, th.load_warn, th.load_crit),
        f"{text} ({per_cpu:.2f} per CPU over 5 min, {cpus:.0f} CPU)",
    )


def check_disk(report: dict, th: StatusSection) -> CheckResult:
    error = _path(report, "disk").get("error") if isinstance(report.get("disk"), dict) else None
    if isinstance(error, str):
        return CheckResult(State.UNKNOWN, f"data dir: {error[:200]}")
    used = _number(report, "disk", "used_percent")
    inodes = _number(report, "disk", "inodes_used_percent")
    avail = _number(report, "disk", "avail_bytes")
    state = worst(
        [_level(used, th.disk_warn, th.disk_crit), _level(inodes, th.disk_warn, th.disk_crit)]
    )
    return CheckResult(
        state, f"{used:.0f}% used, {avail / 2**30:.1f} GiB free, inodes {inodes:.0f}% used"
    )


def check_clock(report: dict, th: StatusSection) -> CheckResult:
    clock = _path(report, "clock")
    offset = _maybe(report, "clock", "offset_s")
    synced = clock.get("synchronised") if isinstance(clock, dict) else None
    source = clock.get("sync_source") if isinstance(clock, dict) else None
    daemon = (
        f"{source} says {'synchronised' if synced else 'not synchronised'}"
        if isinstance(synced, bool) and isinstance(source, str)
        else "clock daemon unknown"
    )
    if offset is None:
        why = clock.get("error") if isinstance(clock, dict) else None
        # The report is untrusted: its reason is shown printable and bounded.
        why = printable(why.encode(), 300) if isinstance(why, str) and why else "no offset"
        return CheckResult(State.WARN if synced is False else State.UNKNOWN, f"{why}; {daemon}")
    state = _level(abs(offset), th.clock_warn, th.clock_crit)
    if synced is False:
        state = worst([state, State.WARN])
    return CheckResult(state, f"offset {offset:+.3f} s; {daemon}")


def check_processes(report: dict) -> CheckResult:
    daemon = _path(report, "processes", "daemon")
    alive = _path(report, "processes", "daemon", "alive")
    if alive is not True:
        return CheckResult(State.CRIT, "the sensor daemon is not running")
    listeners = _path(report, "processes", "listeners")
    if not isinstance(listeners, list):
        raise Malformed("processes.listeners is not a list")
    down = []
    for entry in listeners:
        if not isinstance(entry, dict):
            raise Malformed("a listener is not an object")
        if entry.get("accepting") is not True:
            down.append(f"{entry.get('address')}:{entry.get('port')}")
    workers = _path(report, "processes", "workers")
    if not isinstance(workers, list):
        raise Malformed("processes.workers is not a list")
    expected = daemon.get("workers_expected") if isinstance(daemon, dict) else None
    stuck = [w for w in workers if not (isinstance(w, dict) and w.get("fresh") is True)]
    if down:
        shown = ", ".join(str(d)[:60] for d in down[:5]) + (" …" if len(down) > 5 else "")
        return CheckResult(
            State.CRIT, f"{len(down)} of {len(listeners)} listener(s) not accepting: {shown}"
        )
    if stuck or (isinstance(expected, int) and len(workers) < expected):
        return CheckResult(State.WARN, f"{len(workers) - len(stuck)} worker(s) reporting")
    return CheckResult(State.OK, f"daemon running, {len(listeners)} listener(s) accepting")


def check_capture(report: dict, th: StatusSection, now: float) -> CheckResult:
    """Bandwidth and capture rate over 15 minutes; silence longer than the threshold warns."""
    messages = _number(report, "traffic", "messages")
    window = _maybe(report, "traffic", "window_s")
    iface = _path(report, "traffic", "interface")
    rates = ""
    if isinstance(iface, dict) and "rx_packets_per_s" in iface:
        rx_p = _number(iface, "rx_packets_per_s")
        rx_b = _number(iface, "rx_bytes_per_s")
        tx_p = _number(iface, "tx_packets_per_s")
        tx_b = _number(iface, "tx_bytes_per_s")
        rates = (
            f"; {iface.get('name')!s:.20}: in {rx_p:.0f} pkt/s {rx_b / 1000:.1f} kB/s,"
            f" out {tx_p:.0f} pkt/s {tx_b / 1000:.1f} kB/s"
        )
    minutes = (window or 0) / 60
    text = f"{messages:.0f} email(s) in {minutes:.0f} min{rates}"
    last = parse_time(_path(report, "traffic", "last_message"))
    # The first start of the daemon's runs when the report has it: a daemon that restarts
    # again and again must not look freshly started.
    traffic = _path(report, "traffic")
    since = parse_time(traffic.get("first_start")) or parse_time(traffic.get("since"))
    quiet_from = last if last is not None else since
    if quiet_from is None:
        return CheckResult(State.UNKNOWN, "the sensor keeps no counters (daemon never ran?)")
    # Both times from the sensor's clock (its offset is the clock check's business), taken when
    # it wrote the report: neither SSH latency nor the centre's clock enter the figure.
    reported = parse_time(report.get("time"))
    quiet = (reported if reported is not None else now) - quiet_from
    if quiet > th.silence_warn:
        what = "last email" if last is not None else "no email since the start"
        return CheckResult(State.WARN, f"silent for {_duration(quiet)} ({what}); {text}")
    return CheckResult(State.OK, text)


def check_sync(report: dict, th: StatusSection) -> CheckResult:
    age = _maybe(report, "collection", "age_s")
    files = _number(report, "spool", "files")
    size = _number(report, "spool", "bytes")
    backlog = f"backlog {files:.0f} file(s), {size / 2**20:.1f} MiB"
    if age is None:
        return CheckResult(State.WARN, f"never collected; {backlog}")
    return CheckResult(
        _level(age, th.sync_warn, th.sync_crit), f"collected {_duration(age)} ago; {backlog}"
    )


def evaluate(
    sensor: str,
    ssh: SshResult,
    previous: dict | None,
    th: StatusSection,
    now: float,
) -> SensorStatus:
    """One sensor's eight checks from what SSH returned and its previous record."""
    checks: dict[str, CheckResult] = {"connectivity": check_connectivity(ssh, th)}
    report: Any = None
    why = ""
    if checks["connectivity"].state is not State.OK:
        why = "sensor unreachable"
    elif ssh.returncode != 0:
        why = f"spampot health failed ({ssh.returncode}): {_last_line(ssh.stderr)}"
    else:
        try:
            report = json.loads(ssh.stdout)
        except ValueError:
            why = "the health report is not JSON"
        else:
            if not isinstance(report, dict):
                why, report = "the health report is not an object", None
    rules: dict[str, Callable[[dict], CheckResult]] = {
        "uptime": lambda r: check_uptime(r, previous, th),
        "load": lambda r: check_load(r, th),
        "disk": lambda r: check_disk(r, th),
        "clock": lambda r: check_clock(r, th),
        "processes": check_processes,
        "capture": lambda r: check_capture(r, th, now),
        "sync": lambda r: check_sync(r, th),
    }
    for name, rule in rules.items():
        if report is None:
            checks[name] = CheckResult(State.UNKNOWN, why)
            continue
        try:
            checks[name] = rule(report)
        except (Malformed, TypeError, ValueError, AttributeError, OverflowError) as exc:
            checks[name] = CheckResult(State.UNKNOWN, f"malformed report: {str(exc)[:100]}")
    status = SensorStatus(sensor, now, checks)
    if report is not None:
        status.boot_time = parse_time(_get(report, "system", "boot_time"))
        status.figures = _figures(report)
    elif isinstance(previous, dict) and isinstance(previous.get("boot_time"), int | float):
        status.boot_time = float(previous["boot_time"])  # carried: a reboot shows when it answers
    return status


def _get(report: object, *keys: str) -> Any:
    try:
        return _path(report, *keys)
    except Malformed:
        return None


def _figures(report: dict) -> dict[str, Any]:
    """The numbers kept in history, for trends."""
    wanted = {
        "load5": ("system", "load"),
        "disk_used_percent": ("disk", "used_percent"),
        "clock_offset_s": ("clock", "offset_s"),
        "messages_15min": ("traffic", "messages"),
        "rx_packets_per_s": ("traffic", "interface", "rx_packets_per_s"),
        "rx_bytes_per_s": ("traffic", "interface", "rx_bytes_per_s"),
        "tx_packets_per_s": ("traffic", "interface", "tx_packets_per_s"),
        "tx_bytes_per_s": ("traffic", "interface", "tx_bytes_per_s"),
        "spool_files": ("spool", "files"),
        "spool_bytes": ("spool", "bytes"),
        "collection_age_s": ("collection", "age_s"),
    }
    figures: dict[str, Any] = {}
    for name, keys in wanted.items():
        value = _get(report, *keys)
        if name == "load5":
            value = value[1] if isinstance(value, list) and len(value) == 3 else None
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            figures[name] = value
    return figures


def _last_line(data: bytes) -> str:
    lines = [line for line in data.decode("utf-8", "replace").splitlines() if line.strip()]
    return (lines[-1] if lines else "no message")[:200]


# --- running the checks ---------------------------------------------------------------------


def health_command(inventory: Inventory, entry: SensorEntry) -> list[str]:
    """The collector's ssh (one SSH policy, one pinned host key) running the health report."""
    layout = inventory.central.layout
    layout.collect_state.mkdir(parents=True, exist_ok=True)
    argv = ssh_command(entry, inventory.collect, layout)
    return [*argv, entry.host.strip("[]"), HEALTH_COMMAND]


def run_ssh(argv: list[str], timeout: float) -> SshResult:
    started = time.monotonic()
    try:
        done = subprocess.run(argv, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return SshResult(None, b"", b"", time.monotonic() - started)
    except OSError as exc:  # no ssh program
        return SshResult(255, b"", str(exc).encode(), time.monotonic() - started)
    elapsed = time.monotonic() - started
    return SshResult(done.returncode, done.stdout[:MAX_REPORT_BYTES], done.stderr[-4096:], elapsed)


class History:
    """``<central state>/status/<sensor>.jsonl``: one line per check, the last ``keep`` kept."""

    def __init__(self, directory: Path, keep: int) -> None:
        self.directory = directory
        self.keep = keep

    def path(self, sensor: str) -> Path:
        return self.directory / f"{sensor}.jsonl"

    def entries(self, sensor: str) -> list[dict[str, Any]]:
        try:
            lines = self.path(sensor).read_text().splitlines()
        except OSError:
            return []
        out = []
        for line in lines[-self.keep :]:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                out.append(entry)
        return out

    def previous(self, sensor: str) -> dict[str, Any] | None:
        entries = self.entries(sensor)
        if not entries:
            return None
        last = dict(entries[-1])
        t = parse_time(last.get("boot_time"))
        last["boot_time"] = t
        return last

    def append(self, status: SensorStatus) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        record = status.as_json()
        record["checks"] = {k: v["state"] for k, v in record["checks"].items()}
        line = json.dumps(record, sort_keys=True)
        path = self.path(status.sensor)
        kept = [json.dumps(e, sort_keys=True) for e in self.entries(status.sensor)]
        if len(kept) + 1 > self.keep:
            _write_atomic(path, "".join(k + "\n" for k in [*kept, line][-self.keep :]))
        else:
            with path.open("a") as f:
                f.write(line + "\n")


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def check_sensors(inventory: Inventory, sensors: list[SensorEntry]) -> list[SensorStatus]:
    """Ask every sensor at once (bounded by ``[status] parallel``), judge, record history."""
    th = inventory.status
    directory = inventory.central.layout.status_history
    directory.mkdir(parents=True, exist_ok=True)
    history = History(directory, th.history_keep)

    def one(entry: SensorEntry) -> SensorStatus:
        previous = history.previous(entry.name)
        ssh = run_ssh(health_command(inventory, entry), th.timeout)
        status = evaluate(entry.name, ssh, previous, th, time.time())
        history.append(status)
        return status

    with ThreadPoolExecutor(max_workers=max(1, min(th.parallel, len(sensors) or 1))) as pool:
        return list(pool.map(one, sensors))
