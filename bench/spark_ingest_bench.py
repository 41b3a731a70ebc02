"""``spampot ingest`` on DuckDB and on a local Spark, over the same simulated raw/ tree.

Each run is a fresh ``spampot ingest`` process into a fresh warehouse (``--no-content`` for
DuckDB, which the Spark engine implies), the engines alternating; wall time, and the CPU time
of the process and all its descendants (Spark's JVM and its Python workers included),
sampled from /proc while it runs. Medians of ``--runs``; the load average beside them.

    python3 bench/spark_ingest_bench.py --messages 200000 --runs 3 --json-out spark.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _tree_cpu(root: int, seen: dict[int, float]) -> None:
    """Record the CPU seconds so far of ``root`` and every process descended from it (read
    from /proc: Spark's JVM is started by the driver but not waited for, so the kernel's
    children accounting never sees it)."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        times[pid] = (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime
    for pid, cpu in times.items():
        ancestor = pid
        while ancestor not in (0, 1, root) and ancestor in parents:
            ancestor = parents[ancestor]
        if ancestor == root or pid in seen:  # a JVM orphaned at the driver's exit included
            seen[pid] = max(seen.get(pid, 0.0), cpu)


def _run(args: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process tree, sampled every 0.2 s) of one command."""
    started = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen: dict[int, float] = {}
    deadline = started + 3600
    while proc.poll() is None and time.perf_counter() < deadline:
        _tree_cpu(proc.pid, seen)
        time.sleep(0.2)
    wall = time.perf_counter() - started
    for _ in range(50):  # the JVM outlives its driver by a moment
        alive = [p for p in seen if p != proc.pid and os.path.exists(f"/proc/{p}")]
        if not alive:
            break
        _tree_cpu(proc.pid, seen)
        time.sleep(0.2)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode not in (0, 3):
        raise SystemExit(f"{args[3:6]} failed ({proc.returncode}): {err[-2000:]}")
    return wall, sum(seen.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--json-out", type=Path)
    opts = parser.parse_args()
    spampot = [sys.executable, "-m", "spampot"]
    with tempfile.TemporaryDirectory(prefix="spark-ingest-bench-") as tmp:
        root = Path(tmp)
        subprocess.run(
            [*spampot, "simulate", "offline", str(root / "sim"), "--messages",
             str(opts.messages), "--days", str(opts.days)],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        raw = root / "sim" / "raw"
        files = sum(1 for _ in raw.glob("*/events/*.jsonl.gz"))
        size = sum(p.stat().st_size for p in raw.glob("*/events/*.jsonl.gz"))
        engines = {
            "duckdb": ["--no-content"],
            "spark": ["--engine", "spark", "--spark-master", opts.master],
        }
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in engines}
        loads = []
        for _ in range(opts.runs):
            for name, extra in engines.items():
                warehouse = root / f"wh-{name}"
                shutil.rmtree(warehouse, ignore_errors=True)
                args = [*spampot, "ingest", "--raw", str(raw), "--warehouse", str(warehouse)]
                times[name].append(_run([*args, *extra]))
                loads.append(os.getloadavg()[0])
        result = {
            "messages": opts.messages,
            "event_files": files,
            "gzip_mb": round(size / 1e6, 1),
            "master": opts.master,
            "load_average": [min(loads), max(loads)],
        }
        for name, runs in times.items():
            result[name] = {
                "wall_s": round(statistics.median(w for w, _ in runs), 2),
                "cpu_s": round(statistics.median(c for _, c in runs), 2),
                "runs": [[round(w, 2), round(c, 2)] for w, c in runs],
            }
        result["spark_over_duckdb_wall"] = round(
            result["spark"]["wall_s"] / result["duckdb"]["wall_s"], 2
        )
        print(json.dumps(result, indent=1))
        if opts.json_out:
            opts.json_out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
