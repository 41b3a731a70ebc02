#!/usr/bin/env python3
"""The sensor's benchmark suite in one run: the figures in the README come from here.

1. Throughput: Postfix's smtp-sink (C, writes nothing) and the spampot sensor (stores and logs
   every message, fsync on), direct SMTP and tunnelled through SOCKS5 and HTTP CONNECT, the
   same load generator, runs alternated, medians reported, with the ratios
   sensor/smtp-sink and via-proxy/direct.
2. Memory: 10,000 idle SMTP connections, then 10,000 idle SOCKS5 connections, RSS per
   connection of the sensor's event-loop process, and a full SMTP session through SOCKS5
   timed while they are held.

Loopback only. As root, ``--fresh-fs`` puts the sensor's data dir on a new loop-mounted ext4
image (what a sensor's data partition looks like), away from the inode churn of a shared disk.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchlib import require_loopback
from compare import Target, medians, ratio, run_load, start, stop, table, wait_ready

HERE = Path(__file__).resolve().parent
IDLE = HERE / "idle_conns.py"


def commit() -> str | None:
    """The checkout's commit, if this is a git checkout."""
    try:
        out = subprocess.run(
            ["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


@contextlib.contextmanager
def fresh_fs(size: str, workdir: Path) -> Iterator[Path]:
    image = workdir / "fs.img"
    mnt = workdir / "mnt"
    mnt.mkdir()
    subprocess.run(["truncate", "-s", size, str(image)], check=True)
    # -i 4096: a spool is many small files; the default inode ratio runs out first.
    subprocess.run(["mkfs.ext4", "-q", "-F", "-i", "4096", str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
        image.unlink(missing_ok=True)


def sensor_config(path: Path, data_dir: Path, ports: dict[str, int], workers: int) -> None:
    path.write_text(
        f"""[sensor]
name = "bench"
hostname = "mx.bench.example"
data_dir = "{data_dir}"
bind = ["127.0.0.1"]
workers = {workers}

[ports]
smtp = [{ports["smtp"]}]
http = [{ports["http"]}]
socks = [{ports["socks"]}]
"""
    )


def idle_run(args: argparse.Namespace, mode: str, port: int, pid: int, out: Path) -> dict:
    cmd = [sys.executable, str(IDLE), "--host", args.host, "--port", str(port),
           "--pid", str(pid), "--count", str(args.idle), "--mode", mode, "--probe",
           "--probe-via", "socks5", "--probe-port", str(args.socks_port),
           "--sources", "50",  # under the default 256 connections per address
           "--json-out", str(out)]  # fmt: skip
    print("[idle] " + " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, timeout=300, check=False)
    return json.loads(out.read_text())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--procs", type=int, default=1)
    p.add_argument("--body-size", type=int, default=3072)
    p.add_argument("--rcpts", type=int, default=3)
    p.add_argument("--pipeline", action="store_true")
    p.add_argument("--workers", type=int, default=1, help="sensor worker processes")
    p.add_argument("--idle", type=int, default=10_000, help="idle connections (0: skip)")
    p.add_argument("--fresh-fs", metavar="SIZE", help="data dir on a new ext4 image (root)")
    p.add_argument("--sink-bin", default=shutil.which("smtp-sink") or "/usr/sbin/smtp-sink")
    p.add_argument("--smtp-port", type=int, default=12525)
    p.add_argument("--http-port", type=int, default=12580)
    p.add_argument("--socks-port", type=int, default=12581)
    p.add_argument("--sink-port", type=int, default=12526)
    p.add_argument(
        "--baseline",
        type=Path,
        metavar="SRC",
        help="the src/ directory of another spampot checkout (e.g. the code before a change):"
        " its sensor is one more direct target, spampot-baseline, in the same rounds",
    )
    p.add_argument("--baseline-port", type=int, default=13525, help="and the next two")
    p.add_argument("--json-out", type=Path)
    args = p.parse_args(argv)
    require_loopback(args.host)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # The machine is shared: what else ran is part of the figure.
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="spampot-suite-", dir="/var/tmp"))
    work.chmod(0o755)  # started as root, the sensor runs as nobody (its default sensor.user)
    ports = {"smtp": args.smtp_port, "http": args.http_port, "socks": args.socks_port}
    with contextlib.ExitStack() as stack:
        base = stack.enter_context(fresh_fs(args.fresh_fs, work)) if args.fresh_fs else work
        config = work / "sensor.toml"
        sensor_config(config, base / "data", ports, args.workers)
        log = work / "sensor.log"
        cmd = [sys.executable, "-m", "spampot", "sensor", "--config", str(config)]
        sensor = start(cmd, log)
        stack.callback(stop, sensor)
        targets = [
            Target("spampot", ports["smtp"], "direct", [sensor.pid], sensor),
            Target("spampot-socks5", ports["socks"], "socks5", [sensor.pid], sensor),
            Target("spampot-http", ports["http"], "http", [sensor.pid], sensor),
        ]
        wait_ready(targets[0], args.host, 30, log)
        if args.baseline:
            b = args.baseline_port
            b_config = work / "baseline.toml"
            sensor_config(b_config, base / "data-baseline", {"smtp": b, "http": b + 1,
                          "socks": b + 2}, args.workers)  # fmt: skip
            b_cmd = [sys.executable, "-m", "spampot", "sensor", "--config", str(b_config)]
            b_env = {**os.environ, "PYTHONPATH": str(args.baseline.resolve())}
            b_log = work / "baseline.log"
            b_proc = start(b_cmd, b_log, env=b_env)
            stack.callback(stop, b_proc)
            targets.append(Target("spampot-baseline", b, "direct", [b_proc.pid], b_proc))
            wait_ready(targets[-1], args.host, 30, b_log)
        if Path(args.sink_bin).exists():
            sink_cmd = [args.sink_bin, "-m", str(max(256, 2 * args.concurrency))]
            sink_cmd += ["-u", "nobody"] * (os.geteuid() == 0)
            sink_cmd += [f"{args.host}:{args.sink_port}", "1000"]
            sink = start(sink_cmd, work / "sink.log")
            stack.callback(stop, sink)
            targets.insert(0, Target("smtp-sink", args.sink_port, "direct", [sink.pid], sink))
            wait_ready(targets[0], args.host, 30, work / "sink.log")
        for run in range(args.runs):
            order = targets if run % 2 == 0 else targets[::-1]
            for t in order:
                t.runs.append(run_load(t, args, work / f"{t.name}-{run}.json"))
                time.sleep(1.0)
        result: dict[str, Any] = {
            "started": started,
            "commit": commit(),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
            "duration": args.duration,
            "runs": args.runs,
            "concurrency": args.concurrency,
            "workers": args.workers,
            "fresh_fs": args.fresh_fs,
            "baseline": str(args.baseline) if args.baseline else None,
            "medians": {t.name: medians(t) for t in targets},
        }
        m = result["medians"]
        direct = m["spampot"]["msgs_per_s"]
        sink_rate = m.get("smtp-sink", {}).get("msgs_per_s")
        result["ratios"] = {
            "spampot/smtp-sink": ratio(direct, sink_rate),
            "socks5/direct": ratio(m["spampot-socks5"]["msgs_per_s"], direct),
            "http/direct": ratio(m["spampot-http"]["msgs_per_s"], direct),
        }
        by_name = {t.name: t for t in targets}
        if "spampot-baseline" in m:
            theirs = m["spampot-baseline"]["msgs_per_s"]
            result["ratios"]["baseline/smtp-sink"] = ratio(theirs, sink_rate)
            result["ratios"]["spampot/baseline"] = ratio(direct, theirs)
        if "smtp-sink" in by_name:  # the same run's ratio, run by run

            def per_run(name: str) -> list[float | None]:
                pairs = zip(by_name["smtp-sink"].runs, by_name[name].runs, strict=True)
                return [ratio(run["msgs_per_s"], sink["msgs_per_s"]) for sink, run in pairs]

            result["per_run_ratios"] = per_run("spampot")
            if "spampot-baseline" in by_name:
                result["per_run_baseline_ratios"] = per_run("spampot-baseline")
        if args.idle:
            result["idle"] = {}
            for mode, port in (("smtp", "smtp"), ("socks5", "socks")):
                # A fresh sensor each time: one that served a load reuses the memory it freed.
                stop(sensor)
                sensor = start(cmd, log)
                stack.callback(stop, sensor)
                ready = Target("spampot", ports["smtp"], "direct", [], sensor)
                wait_ready(ready, args.host, 30, log)
                out = work / f"idle-{mode}.json"
                result["idle"][mode] = idle_run(args, mode, ports[port], sensor.pid, out)
    print(table([(name, row) for name, row in result["medians"].items()]))
    for name, value in result["ratios"].items():
        print(f"{name:<20} {value}")
    if "per_run_ratios" in result:
        print(f"{'per run':<20} {result['per_run_ratios']}")
    if "per_run_baseline_ratios" in result:
        print(f"{'baseline per run':<20} {result['per_run_baseline_ratios']}")
    print(f"load average {result['loadavg_before']} before, {result['loadavg_after']} after")
    for mode, r in result.get("idle", {}).items():
        probe = r.get("probe") or {}
        print(
            f"idle {mode:<7} held={r['alive_at_measure']}/{r['requested']}"
            f" rss/conn={r['rss_kib_per_conn']} KiB pss/conn={r['pss_kib_per_conn']} KiB"
            f" probe via {probe.get('via')}: {probe.get('latency_ms')} ms ok={probe.get('ok')}"
        )
    text = json.dumps(result, indent=2)
    if args.json_out:
        args.json_out.write_text(text)
    else:
        print(text)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
