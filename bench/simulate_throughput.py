"""How fast ``spampot simulate offline`` writes datasets: messages per minute, events only and
with every message body, medians of several runs.

Each run is a fresh ``spampot simulate offline`` process writing to a new directory; wall time,
the child's CPU time (user + sys, robust to other load on a shared machine) and its peak RSS
are measured. Beside it, in the same run, the baseline: compressing the same event bytes with
zlib alone at the same level, one thread (the floor any writer of these files pays).

    python bench/simulate_throughput.py --messages 1000000 --runs 3 --json-out sim.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

from benchlib import host_busy_seconds


def run_once(out: Path, messages: int, days: int, jobs: int, bodies: str, level: int) -> dict:
    if out.exists():
        shutil.rmtree(out)
    busy = host_busy_seconds()
    began = time.perf_counter()
    cmd = [sys.executable, "-m", "spampot", "simulate", "offline", str(out),
           "--messages", str(messages), "--days", str(days), "--jobs", str(jobs),
           "--bodies", bodies, "--compress-level", str(level)]  # fmt: skip
    with tempfile.TemporaryFile() as stdout:
        proc = subprocess.Popen(cmd, stdout=stdout)
        # wait4: this child's own resource use (its worker processes included), not that of
        # every child so far, so each run's CPU time and peak RSS are its own.
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - began
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} exited with {proc.returncode}")
        stdout.seek(0)
        counts = json.loads(stdout.read())
    cpu = usage.ru_utime + usage.ru_stime
    assert counts["messages"] == messages
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "host_busy_s": host_busy_seconds() - busy,
        "msg_per_min": messages / wall * 60,
        "msg_per_cpu_s": messages / cpu,
        "events": counts["events"],
        "message_files": counts["message_files"],
        "peak_rss_mib": usage.ru_maxrss / 1024,  # the largest process of the run
        "bytes": sum(p.stat().st_size for p in out.rglob("*") if p.is_file()),
    }


def compress_floor(out: Path, level: int) -> dict:
    """zlib alone over the dataset's event bytes (decompressed first, not timed)."""
    blobs = [gzip.decompress(p.read_bytes()) for p in out.rglob("*.jsonl.gz")]
    size = sum(len(b) for b in blobs)
    began = time.process_time()
    for blob in blobs:
        c = zlib.compressobj(level, zlib.DEFLATED, 31)
        c.compress(blob)
        c.flush()
    cpu = time.process_time() - began
    return {"event_bytes": size, "cpu_s": cpu}


def median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--jobs", default="1,2", help="comma-separated --jobs values to compare")
    ap.add_argument("--level", type=int, default=1, help="gzip level (the simulator's default)")
    ap.add_argument(
        "--bodies-messages",
        type=int,
        default=100_000,
        help="messages for the --bodies all runs (0 skips them)",
    )
    ap.add_argument("--dir", type=Path, help="where to write (default: a temporary directory)")
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()
    base = args.dir or Path(tempfile.mkdtemp(prefix="simbench-"))
    base.mkdir(parents=True, exist_ok=True)
    results: dict = {
        "messages": args.messages,
        "days": args.days,
        "level": args.level,
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
        "configs": {},
    }
    try:
        configs = [("events", int(j), "none", args.messages) for j in args.jobs.split(",")]
        if args.bodies_messages:
            configs += [
                ("bodies", int(j), "all", args.bodies_messages) for j in args.jobs.split(",")
            ]
        for name, jobs, bodies, messages in configs:
            runs = []
            for i in range(args.runs):
                runs.append(run_once(base / "out", messages, args.days, jobs, bodies, args.level))
                print(
                    f"{name} jobs={jobs} run {i + 1}: {runs[-1]['msg_per_min']:,.0f} msg/min "
                    f"({runs[-1]['wall_s']:.1f} s wall, {runs[-1]['cpu_s']:.1f} s CPU)",
                    file=sys.stderr,
                )
            summary = {k: median(runs, k) for k in runs[0]}
            summary["runs"] = runs
            summary["messages"] = messages
            results["configs"][f"{name}-jobs{jobs}"] = summary
        # The baseline last, so that its gigabyte of buffers is not inherited by any run.
        simulate_offline_once = results["configs"].get("events-jobs1")
        if simulate_offline_once is not None:
            run_once(base / "out", args.messages, args.days, 1, "none", args.level)
            floor = compress_floor(base / "out", args.level)
            simulate_offline_once["zlib_floor_cpu_s"] = floor["cpu_s"]
            simulate_offline_once["event_bytes"] = floor["event_bytes"]
            simulate_offline_once["cpu_ratio_to_zlib"] = (
                simulate_offline_once["cpu_s"] / floor["cpu_s"]
            )
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)
    results["loadavg_end"] = os.getloadavg()
    for key, s in results["configs"].items():
        extra = ""
        if "cpu_ratio_to_zlib" in s:
            extra = f", {s['cpu_ratio_to_zlib']:.1f} x zlib alone"
        print(
            f"{key}: median {s['msg_per_min']:,.0f} msg/min wall, "
            f"{s['msg_per_cpu_s'] * 60:,.0f} msg per CPU-minute, "
            f"peak RSS {s['peak_rss_mib']:.0f} MiB{extra}",
            file=sys.stderr,
        )
    text = json.dumps(results, indent=2)
    if args.json_out:
        args.json_out.write_text(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    main()
