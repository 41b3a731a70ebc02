#!/usr/bin/env python3
"""Compare a server under test against Postfix's smtp-sink with smtp_load.py.

Starts smtp-sink (and, with --server-cmd, the server under test), waits until each is ready,
then runs smtp_load.py against each for --duration seconds, --runs times, alternating the
order (ABBA), and prints per-target medians and the ratio ours / smtp-sink as a table
(stderr) and JSON (stdout or --json-out). Every process it starts is stopped on exit.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import benchlib

LOAD = Path(__file__).with_name("smtp_load.py")
METRICS = (
    "msgs_per_s",
    "p50_ms",
    "p99_ms",
    "max_ms",
    "ack_p50_ms",
    "server_cpu_s",
    "msgs_per_server_cpu_s",
)


@dataclass
class Target:
    name: str
    port: int
    via: str = "direct"
    pids: list[int] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)


def start(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start `cmd` in its own session (so its whole process group can be stopped)."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, SIGKILL it after 5 s."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            continue


def probe_ready(host: str, port: int, banner: bool) -> bool:
    """True if host:port accepts a connection (and, with `banner`, greets with 220)."""
    try:
        with socket.create_connection((host, port), timeout=1.0) as s:
            if not banner:
                return True
            data = b""
            while b"\n" not in data and len(data) < 4096:
                chunk = s.recv(4096)
                if not chunk:
                    return False
                data += chunk
            ok = data.startswith(b"220")
            if ok:
                s.sendall(b"QUIT\r\n")
            return ok
    except OSError:
        return False


def wait_ready(t: Target, host: str, timeout: float, log: Path | None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if t.proc is not None and t.proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log else ""
            sys.exit(f"error: {t.name} exited with {t.proc.returncode}:\n{tail}")
        if probe_ready(host, t.port, banner=t.via == "direct"):
            return
        time.sleep(0.1)
    sys.exit(f"error: {t.name} not ready on {host}:{t.port} after {timeout}s")


def run_load(t: Target, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    cmd = [sys.executable, str(LOAD), "--host", args.host, "--via", t.via]
    cmd += ["--port", str(t.port)] if t.via == "direct" else ["--proxy-port", str(t.port)]
    cmd += ["--duration", str(args.duration), "--concurrency", str(args.concurrency)]
    cmd += ["--procs", str(args.procs), "--body-size", str(args.body_size)]
    cmd += ["--rcpts", str(args.rcpts), "--json-out", str(out)]
    cmd += ["--pipeline"] * args.pipeline
    for pid in t.pids:
        cmd += ["--server-pid", str(pid)]
    cmd += ["--server-pid-children"] * bool(t.pids)
    print(f"[{t.name}] {shlex.join(cmd)}", file=sys.stderr, flush=True)
    subprocess.run(cmd, timeout=args.duration + 90, check=False)
    result = json.loads(out.read_text())
    lat = result["latency_ms"]
    result.update(p50_ms=lat["p50"], p99_ms=lat["p99"], max_ms=lat["max"])
    result.update(ack_p50_ms=result.get("ack_ms", {}).get("p50"))
    return result


def medians(t: Target) -> dict[str, Any]:
    out: dict[str, Any] = {"errors": sum(r["errors"] for r in t.runs)}
    for key in METRICS:
        values = [r[key] for r in t.runs if r.get(key) is not None]
        out[key] = round(statistics.median(values), 2) if values else None
    return out


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def table(rows: list[tuple[str, dict[str, Any]]]) -> str:
    head = ("target", "msg/s", "p50 ms", "p99 ms", "max ms", "dot ms", "errors", "srv cpu s")
    head += ("msg/cpu-s",)
    keys = ("msgs_per_s", "p50_ms", "p99_ms", "max_ms", "ack_p50_ms", "errors", "server_cpu_s")
    lines = [f"{head[0]:<14}" + "".join(f"{h:>11}" for h in head[1:])]
    for name, m in rows:
        cells = [*(m.get(k) for k in keys), m.get("msgs_per_server_cpu_s")]
        lines.append(f"{name:<14}" + "".join(f"{'-' if c is None else c:>11}" for c in cells))
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1", help="loopback address for every server")
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--procs", type=int, default=1, help="smtp_load.py generator processes")
    p.add_argument("--body-size", type=int, default=3072)
    p.add_argument("--rcpts", type=int, default=3)
    p.add_argument("--pipeline", action="store_true")
    p.add_argument("--pause", type=float, default=1.0, help="seconds between load runs")
    p.add_argument("--sink-bin", default="/usr/sbin/smtp-sink")
    p.add_argument("--sink-port", type=int, default=10025)
    p.add_argument("--sink-user", default="nobody", help="smtp-sink -u (only used as root)")
    p.add_argument("--sink-backlog", type=int, default=1000)
    p.add_argument("--sink-max-conns", type=int, help="smtp-sink -m (default 2 x concurrency)")
    p.add_argument("--server-cmd", help="command line of the server under test (no shell)")
    p.add_argument("--server-port", type=int, help="port of the server under test")
    p.add_argument("--server-via", choices=("direct", "socks5", "http"), default="direct")
    p.add_argument(
        "--server-pid", type=int, action="append", default=[], help="extra server pid (repeatable)"
    )
    p.add_argument("--server-name", default="ours")
    p.add_argument("--ready-timeout", type=float, default=20.0)
    p.add_argument("--json-out", help="write the JSON result here instead of stdout")
    args = p.parse_args(argv)
    args.host = benchlib.require_loopback(args.host)
    if args.server_cmd and not args.server_port:
        p.error("--server-cmd needs --server-port")
    if not (1 <= args.runs <= 20 and 0 < args.duration <= 600):
        p.error("need 1 <= runs <= 20 and 0 < duration <= 600")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="spampot-compare-"))
    host = f"[{args.host}]" if ":" in args.host else args.host  # Postfix's IPv6 syntax
    sink_addr = f"{host}:{args.sink_port}"
    max_conns = args.sink_max_conns or max(256, 2 * args.concurrency)
    sink_cmd = [args.sink_bin, "-m", str(max_conns)]
    sink_cmd += ["-u", args.sink_user] if os.geteuid() == 0 else []
    sink_cmd += [sink_addr, str(args.sink_backlog)]
    sink = Target("smtp-sink", args.sink_port)
    targets = [sink]
    ours: Target | None = None
    if args.server_port:
        ours = Target(args.server_name, args.server_port, args.server_via, list(args.server_pid))
        targets.append(ours)
    try:
        sink.proc = start(sink_cmd, workdir / "smtp-sink.log")
        sink.pids = [sink.proc.pid]
        wait_ready(sink, args.host, args.ready_timeout, workdir / "smtp-sink.log")
        if ours and args.server_cmd:
            log = workdir / "server.log"
            ours.proc = start(shlex.split(args.server_cmd), log)
            ours.pids = [ours.proc.pid, *args.server_pid]
            wait_ready(ours, args.host, args.ready_timeout, log)
        elif ours:
            wait_ready(ours, args.host, args.ready_timeout, None)
        for i in range(args.runs):
            for t in targets if i % 2 == 0 else targets[::-1]:
                time.sleep(args.pause)
                t.runs.append(run_load(t, args, workdir / f"{t.name}-{i}.json"))
    finally:
        for t in targets:
            if t.proc is not None:
                stop(t.proc)

    rows = [(t.name, medians(t)) for t in targets]
    result: dict[str, Any] = {
        "config": {k: v for k, v in vars(args).items() if k != "json_out"},
        "sink_cmd": sink_cmd,
        "medians": dict(rows),
        "runs": {t.name: t.runs for t in targets},
        "logs": str(workdir),
    }
    if ours:
        m_ours, m_sink = result["medians"][ours.name], result["medians"][sink.name]
        result["ratio"] = {k: ratio(m_ours[k], m_sink[k]) for k in METRICS}
        rows.append((f"{ours.name}/sink", result["ratio"]))
    print("\n" + table(rows), file=sys.stderr)
    note = (
        f"medians of {args.runs} runs x {args.duration}s, c={args.concurrency}, procs={args.procs}"
    )
    print(f"({note}; logs in {workdir})", file=sys.stderr)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2))
    else:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
