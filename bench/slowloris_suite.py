#!/usr/bin/env python3
"""Slow and idle floods against a fresh sensor per run: memory per connection and a probe.

For each mode (idle SMTP after the banner, SOCKS5 greeting only, HTTP CONNECT head trickling
one byte per connection every --trickle seconds), starts a new sensor on loopback high ports
(default limits, so the flood comes from --sources client addresses 127.0.1.x to stay under
the per-address limit), holds --count connections with idle_conns.py, times one full SMTP
session through SOCKS5 while they are held, and stops the sensor. A fresh sensor each run
because a Python heap does not shrink back: a second flood on the same process reuses it.
Medians of --runs; human summary on stderr, JSON on stdout or --json-out.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PORTS = {"smtp": free_port(), "socks": free_port(), "http": free_port()}
MODES = {"smtp": "smtp", "socks5": "socks", "http": "http"}


def sensor_config(tmp: Path) -> Path:
    path = tmp / "sensor.toml"
    running_as_root = os.geteuid() == 0
    path.write_text(
        f"""
[sensor]
name = "slowloris"
data_dir = "{tmp / "data"}"
bind = ["127.0.0.1"]
{'user = "nobody"' if running_as_root else ""}
[ports]
smtp = [{PORTS["smtp"]}]
http = [{PORTS["http"]}]
socks = [{PORTS["socks"]}]
"""
    )
    return path


def wait_port(port: int, timeout: float = 20.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"sensor did not listen on {port}")


def one_run(mode: str, args: argparse.Namespace, tmp: Path) -> dict:
    config = sensor_config(tmp)
    proc = subprocess.Popen(
        [sys.executable, "-m", "spampot", "sensor", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp / f"sensor-{mode}.log", "ab"),  # noqa: SIM115 - the child keeps it
        start_new_session=True,
    )
    try:
        wait_port(PORTS["smtp"])
        time.sleep(0.5)
        out = tmp / f"{mode}.json"
        cmd = [
            sys.executable,
            str(HERE / "idle_conns.py"),
            "--port",
            str(PORTS[MODES[mode]]),
            "--mode",
            mode,
            "--count",
            str(args.count),
            "--sources",
            str(args.sources),
            "--pid",
            str(proc.pid),
            "--probe",
            "--probe-via",
            "socks5",
            "--probe-port",
            str(PORTS["socks"]),
            "--timeout",
            "300",
            "--json-out",
            str(out),
        ]
        if mode == "http" and args.trickle:
            cmd += ["--trickle", str(args.trickle)]
        subprocess.run(cmd, check=False, timeout=360, stderr=subprocess.DEVNULL)
        return json.loads(out.read_text())
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=10000)
    p.add_argument("--sources", type=int, default=50, help="client addresses 127.0.1.x")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--trickle", type=float, default=10.0, help="HTTP mode: a byte every T s")
    p.add_argument("--modes", default="smtp,socks5,http")
    p.add_argument("--json-out")
    args = p.parse_args()
    if not (1 <= args.runs <= 9 and 1 <= args.count <= 50_000):
        p.error("need 1 <= runs <= 9 and count <= 50000")
    summary: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="spampot-slowloris-") as d:
        os.chmod(d, 0o755)  # the sensor runs as nobody when started as root
        tmp = Path(d)
        for mode in args.modes.split(","):
            runs = [one_run(mode, args, tmp) for _ in range(args.runs)]
            held = [r["alive_at_measure"] for r in runs]
            rss = [r["rss_kib_per_conn"] for r in runs if r["rss_kib_per_conn"] is not None]
            probe = [r["probe"]["latency_ms"] for r in runs if r["probe"] and r["probe"]["ok"]]
            summary[mode] = {
                "held_min": min(held),
                "rss_kib_per_conn_median": statistics.median(rss) if rss else None,
                "probe_ms_median": statistics.median(probe) if probe else None,
                "probe_ms_max": max(probe) if probe else None,
                "probes_ok": len(probe),
                "runs": runs,
            }
            s = summary[mode]
            print(
                f"{mode}: held {s['held_min']}/{args.count}, "
                f"{s['rss_kib_per_conn_median']} KiB/conn (median of {len(rss)}), "
                f"SMTP via SOCKS5 meanwhile: median {s['probe_ms_median']} ms, "
                f"max {s['probe_ms_max']} ms ({s['probes_ok']}/{args.runs} ok)",
                file=sys.stderr,
            )
    text = json.dumps(summary, indent=2)
    if args.json_out:
        Path(args.json_out).write_text(text)
    else:
        print(text)
    ok = all(
        s["held_min"] == args.count and s["probes_ok"] == args.runs and s["probe_ms_max"] < 1000
        for s in summary.values()
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
