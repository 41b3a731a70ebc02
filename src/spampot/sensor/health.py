"""``spampot health``: one report of everything the central server's checks need (paper §4.1.4).

It runs apart from the daemon (locally, or over SSH by the centre's forced command) and reads:
the kernel (boot time, uptime, load, the capture interface's counters), the data dir's file
system, the state files the daemon's workers keep (counters and their recent samples), the
collector's ``last-collection.json``, and the spool. It asks the configured NTP servers for the
clock offset and the local clock daemon whether it is synchronised, and connects to every
configured listener on loopback. It judges nothing: thresholds live on the central server.

Each listener probe is a real connection, so it appears in the event log as a short session
from loopback.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import socket
import statistics
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from spampot import __version__
from spampot.config import Config, split_server
from spampot.layout import SensorLayout
from spampot.sensor import metrics as state

SCHEMA = 1
COMMAND_TIMEOUT = 3.0  # chronyc / timedatectl
LISTENER_BUDGET = 30.0  # seconds for all listener probes together


def rfc3339(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_rfc3339(text: object) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def health_report(config: Config, *, live: bool = True, now: float | None = None) -> dict:
    """The report; ``live=False`` skips what talks to the network (NTP, listener probes)."""
    now = time.time() if now is None else now
    procfs = Path(config.health.procfs)
    workers = state.read_worker_files(config.data_dir)
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "sensor": config.sensor_name,
        "version": __version__,
        "time": rfc3339(now),
        "system": system_figures(procfs, now),
        "disk": disk_usage(config.data_dir),
        "processes": processes(config, workers, now, probe=live),
        "traffic": traffic(config, workers, procfs, now),
        "spool": spool_backlog(config.layout.spool, config.health.spool_scan_limit),
        "collection": last_collection(config.data_dir, now),
    }
    if live:
        report["clock"] = clock(config)
    return report


# --- system ---------------------------------------------------------------------------------


def system_figures(procfs: Path, now: float) -> dict[str, Any]:
    boot = boot_time(procfs)
    uptime: float | None = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        uptime = float((procfs / "uptime").read_text().split()[0])
    load: list[float] | None = None
    with contextlib.suppress(OSError, ValueError):
        load = [float(x) for x in (procfs / "loadavg").read_text().split()[:3]]
    return {
        "boot_time": rfc3339(boot),
        "uptime_s": uptime,
        "load": load,
        "cpus": os.cpu_count() or 1,
    }


def boot_time(procfs: Path) -> float | None:
    """``btime`` of stat: the boot as seconds since the epoch (proc_stat(5))."""
    try:
        for line in (procfs / "stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def disk_usage(path: Path) -> dict[str, Any]:
    try:
        st = os.statvfs(path)
    except OSError as exc:
        return {"path": str(path), "error": exc.strerror or str(exc)}
    total = st.f_blocks * st.f_frsize
    free = st.f_bfree * st.f_frsize
    avail = st.f_bavail * st.f_frsize
    used = total - free
    # As df(1): the share of what an unprivileged user could have, so 100 % means full.
    usable = used + avail
    inodes_used = st.f_files - st.f_ffree
    return {
        "path": str(path),
        "total_bytes": total,
        "used_bytes": used,
        "avail_bytes": avail,
        "used_percent": round(100.0 * used / usable, 2) if usable else 0.0,
        "inodes_total": st.f_files,
        "inodes_used": inodes_used,
        "inodes_used_percent": round(100.0 * inodes_used / st.f_files, 2) if st.f_files else 0.0,
    }


# --- clock ----------------------------------------------------------------------------------


def ntp_offsets(servers: tuple[str, ...], timeout: float) -> list[dict[str, Any]]:
    import ntplib

    client = ntplib.NTPClient()
    results = []
    for server in servers:
        entry: dict[str, Any] = {"server": server}
        try:
            host, port = split_server(server)
            reply = client.request(host, version=4, port=port, timeout=timeout)
        except (ntplib.NTPException, OSError, ValueError) as exc:
            entry["error"] = str(exc) or type(exc).__name__
        else:
            entry.update(
                offset_s=round(reply.offset, 6),
                delay_s=round(reply.delay, 6),
                stratum=reply.stratum,
                leap=reply.leap,
            )
        results.append(entry)
    return results


def local_clock(chrony_socket: str) -> dict[str, Any]:
    """What the local clock daemon says: ``synchronised`` (None if unknown), ``offset_s``
    (NTP time minus this clock, as ntplib counts it), ``source`` (which tool said), and
    ``error`` (why nothing could be said).

    Asked in turn: chronyc (chronyd, Debian's and Ubuntu's NTP daemon), ntpq (ntpd, ntpsec),
    timedatectl (systemd-timesyncd, the default of a Debian 12 install). None of them needs
    DNS: they ask the daemon on this machine, which keeps its own servers.
    """
    tried = []
    chronyc = shutil.which("chronyc")
    if chronyc is not None:
        args = [chronyc, "-n"] + (["-h", chrony_socket] if chrony_socket else [])
        out = _run([*args, "tracking"])
        if out is not None:
            return _chrony_tracking(out)
        tried.append("chronyc: no answer from chronyd")
    ntpq = shutil.which("ntpq")
    if ntpq is not None:
        out = _run([ntpq, "-n", "-c", "rv 0 leap,offset"])
        if out is not None and "leap=" in out:
            return _ntpq_variables(out)
        tried.append("ntpq: no answer from ntpd")
    timedatectl = shutil.which("timedatectl")
    if timedatectl is not None:
        synced = _run([timedatectl, "show", "--property=NTPSynchronized", "--value"])
        if synced is not None and synced.strip() in ("yes", "no"):
            status = _run([timedatectl, "timesync-status"]) or ""
            found = re.search(r"^\s*Offset:\s*([+-]?[0-9.]+)(us|ms|s)\s*$", status, re.M)
            scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
            return {
                "synchronised": synced.strip() == "yes",
                # timesyncd's offset is this clock minus the server's: the opposite sign.
                "offset_s": -float(found.group(1)) * scale[found.group(2)] if found else None,
                "source": "timedatectl",
                "error": None if found else "timedatectl gives no offset (timesyncd not used)",
            }
        tried.append("timedatectl: no answer")
    if not tried:
        tried.append("none of chronyc, ntpq, timedatectl is installed")
    return {"synchronised": None, "offset_s": None, "source": None, "error": "; ".join(tried)}


def _chrony_tracking(out: str) -> dict[str, Any]:
    fields = {}
    for line in out.splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    synced = fields.get("Leap status", "") != "Not synchronised"
    offset = None
    found = re.fullmatch(
        r"([0-9.]+) seconds (fast|slow) of NTP time", fields.get("System time", "")
    )
    if synced and found:
        # "fast": this clock is ahead of NTP time, so NTP minus local is negative.
        offset = float(found.group(1)) * (-1 if found.group(2) == "fast" else 1)
    return {
        "synchronised": synced,
        "offset_s": offset,
        "source": "chronyc",
        "error": None if synced else "chronyd is not synchronised to any server",
    }


def _ntpq_variables(out: str) -> dict[str, Any]:
    values = dict(re.findall(r"(\w+)=([^,\s]+)", out))
    synced = values.get("leap") != "11"  # 11: alarm, not synchronised (RFC 5905 §7.3)
    offset = None
    with contextlib.suppress(KeyError, ValueError):
        offset = float(values["offset"]) / 1000.0 if synced else None  # ntpq says ms
    return {
        "synchronised": synced,
        "offset_s": offset,
        "source": "ntpq",
        "error": None if synced else "ntpd is not synchronised to any server",
    }


def _run(args: list[str]) -> str | None:
    try:
        done = subprocess.run(
            args, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def clock(config: Config) -> dict[str, Any]:
    """The clock's offset from NTP time: the median of ``[health] ntp_servers`` that answered,
    else what the local clock daemon says; ``error`` says why there is none."""
    h = config.health
    servers = ntp_offsets(h.ntp_servers, h.ntp_timeout) if h.ntp_servers else []
    offsets = [s["offset_s"] for s in servers if "offset_s" in s]
    local = local_clock(h.chrony_socket)
    offset, source, error = None, None, None
    if offsets:
        offset, source = round(statistics.median(offsets), 6), "ntp"
    elif local["offset_s"] is not None:
        offset, source = round(local["offset_s"], 6), local["source"]
    elif servers:
        error = f"no NTP server of [health] ntp_servers answered; local daemon: {local['error']}"
    else:
        error = f"no [health] ntp_servers, and the local daemon gave no offset: {local['error']}"
    return {
        "offset_s": offset,
        "offset_source": source,
        "servers": servers,
        "synchronised": local["synchronised"],
        "sync_source": local["source"],
        "error": error,
    }


# --- processes ------------------------------------------------------------------------------


def pid_alive(pid: object) -> bool:
    if not isinstance(pid, int) or isinstance(pid, bool) or not 0 < pid < 2**22:
        return False  # Linux's pid_max is at most 2^22 (proc(5))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


def probe_address(bind: str) -> str:
    """Where to reach a listener bound to ``bind`` from this machine."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(bind, bind)


def probe_listener(address: str, port: int, timeout: float) -> str | None:
    """None when the listener accepts a connection, else why not."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return None
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__


def processes(
    config: Config, workers: list[dict[str, Any]], now: float, *, probe: bool
) -> dict[str, Any]:
    pid_data: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        pid_data = json.loads(config.layout.pid_file.read_text())
    pid = pid_data.get("pid")
    stale_after = 3 * config.health.sample_interval + 5
    worker_list = []
    for w in workers:
        age = now - float(w.get("updated") or 0)
        worker_list.append(
            {
                "worker": w.get("worker"),
                "pid": w.get("pid"),
                "alive": pid_alive(w.get("pid")),
                "updated_age_s": round(age, 3),
                "fresh": age <= stale_after,
            }
        )
    result: dict[str, Any] = {
        "daemon": {
            "pid": pid,
            "alive": pid_alive(pid),
            "started": rfc3339(pid_data.get("started")),
            "workers_expected": config.sensor.workers,
        },
        "workers": worker_list,
    }
    if probe:
        listeners = []
        deadline = time.monotonic() + LISTENER_BUDGET
        for port, role in config.listeners():
            for bind in config.sensor.bind:
                address = probe_address(bind)
                if time.monotonic() > deadline:
                    error: str | None = "not probed: time budget spent"
                else:
                    error = probe_listener(address, port, config.health.connect_timeout)
                listeners.append(
                    {
                        "address": address,
                        "port": port,
                        "role": role,
                        "accepting": error is None,
                        "error": error,
                    }
                )
        result["listeners"] = listeners
    return result


# --- traffic and captures -------------------------------------------------------------------


def _baseline(samples: list[list[Any]], since: float) -> list[Any] | None:
    """The newest sample at or before ``since``, else the oldest (a window shorter than 15')."""
    chosen = None
    for sample in samples:
        if sample[0] <= since:
            chosen = sample
        else:
            break
    if chosen is None and samples:
        chosen = samples[0]
    return chosen


def traffic(
    config: Config, workers: list[dict[str, Any]], procfs: Path, now: float
) -> dict[str, Any]:
    since = now - state.WINDOW_SECONDS
    totals: dict[str, Any] = {
        "sessions": 0,
        "messages": 0,
        "bytes_in": 0,
        "bytes_out": 0,
        "proxy_requests": {},
        "rejects": {},
    }
    window_messages = 0
    window_start: float | None = None
    last_message: float | None = None
    for w in workers:
        c = w["counters"]
        for key in ("sessions", "messages", "bytes_in", "bytes_out"):
            totals[key] += int(c.get(key, 0))
        for entry in c.get("proxy_requests", []):
            key = f"{entry['protocol']}/{entry['outcome']}"
            totals["proxy_requests"][key] = totals["proxy_requests"].get(key, 0) + entry["count"]
        for why, n in c.get("rejects", {}).items():
            totals["rejects"][why] = totals["rejects"].get(why, 0) + n
        base = _baseline(w.get("history", []), since)
        if base is not None:
            window_messages += int(c.get("messages", 0)) - int(base[1])
            window_start = base[0] if window_start is None else min(window_start, base[0])
        lm = w.get("last_message")
        if lm is not None:
            last_message = lm if last_message is None else max(last_message, lm)
    started = [float(w["started"]) for w in workers if w.get("started")]
    # Across restarts (state/previous-runs.json): the last capture, and the first start.
    previous = state.previous_runs(config.data_dir)
    if "last_message" in previous:
        last_message = max(last_message or 0.0, previous["last_message"])
    first_start = min([*started, previous.get("first_start", math.inf)])
    result: dict[str, Any] = {
        "since": rfc3339(min(started)) if started else None,
        "first_start": rfc3339(first_start) if math.isfinite(first_start) else None,
        "totals": totals,
        "last_message": rfc3339(last_message),
        "window_s": round(now - window_start, 3) if window_start is not None else None,
        "messages": window_messages,
    }
    result["interface"] = interface_rates(config, workers, procfs, now, since)
    return result


def interface_rates(
    config: Config, workers: list[dict[str, Any]], procfs: Path, now: float, since: float
) -> dict[str, Any]:
    name = state.capture_interface(config.health.interface, procfs)
    out: dict[str, Any] = {"name": name}
    if name is None:
        out["error"] = "no interface configured and no default route"
        return out
    samples: list[list[Any]] = []
    for w in workers:
        iface = w.get("interface")
        if isinstance(iface, dict) and iface.get("name") == name:
            samples = iface.get("samples") or []
    current = state.read_interface(procfs, name, now)
    if current is None:
        out["error"] = f"interface {name} not found"
        return out
    out.update(
        rx_bytes=current.rx_bytes,
        rx_packets=current.rx_packets,
        tx_bytes=current.tx_bytes,
        tx_packets=current.tx_packets,
    )
    base = _baseline(samples, since)
    if base is None or now - base[0] <= 0:
        out["window_s"] = None
        return out
    dt = now - base[0]
    rates = {
        "rx_bytes_per_s": (current.rx_bytes - base[1]) / dt,
        "rx_packets_per_s": (current.rx_packets - base[2]) / dt,
        "tx_bytes_per_s": (current.tx_bytes - base[3]) / dt,
        "tx_packets_per_s": (current.tx_packets - base[4]) / dt,
    }
    if any(v < 0 for v in rates.values()):
        out["window_s"] = None  # counters reset (interface re-created): no honest rate
        return out
    out["window_s"] = round(dt, 3)
    out.update({k: round(v, 3) for k, v in rates.items()})
    return out


# --- spool and collection -------------------------------------------------------------------


def spool_backlog(spool: Path, limit: int) -> dict[str, Any]:
    """Files and bytes under spool/ (all not yet collected: collection removes what it took)."""
    files = size = seen = 0
    stack = [spool]
    truncated = False
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as it:
                for entry in it:
                    seen += 1
                    if seen > limit:
                        truncated = True
                        break
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(Path(entry.path))
                        elif entry.is_file(follow_symlinks=False):
                            files += 1
                            size += entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue
        except OSError:
            continue
        if truncated:
            break
    return {"files": files, "bytes": size, "truncated": truncated}


def last_collection(data_dir: Path, now: float) -> dict[str, Any]:
    path = SensorLayout(data_dir).last_collection
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"time": None, "age_s": None}
    if not isinstance(data, dict):
        return {"time": None, "age_s": None}
    t = parse_rfc3339(data.get("time"))
    return {
        "time": rfc3339(t),
        "age_s": round(now - t, 3) if t is not None else None,
        "files": data.get("files"),
        "bytes": data.get("bytes"),
    }
