"""What fleet health costs: the counters on a session's path, the report, the spool walk.

Prints medians of ``--runs`` runs (JSON on stdout, a summary on stderr):
- the counting one session does (``sessions``, bytes, a proxy request, a stored message), in
  nanoseconds, beside an empty loop of the same count as the baseline of the same run;
- ``health_report(live=False)`` (what each Prometheus scrape and ``spampot health`` do apart
  from NTP and the listener probes) on a data dir with ``--files`` spool files;
- the spool walk alone, per file.
Nothing here opens a socket.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from spampot.config import load_config
from spampot.sensor.health import health_report, spool_backlog
from spampot.sensor.metrics import SensorMetrics, StateRecorder


def counting(n: int) -> tuple[float, float]:
    """(ns per session with the counters, ns per iteration of the empty loop)."""
    m = SensorMetrics()
    t0 = time.perf_counter_ns()
    for _ in range(n):
        m.sessions += 1
        m.proxy_request("socks5", "smtp")
        m.message_stored()
        m.bytes_in += 3000
        m.bytes_out += 400
    t1 = time.perf_counter_ns()
    for _ in range(n):
        pass
    t2 = time.perf_counter_ns()
    return (t1 - t0) / n, (t2 - t1) / n


def make_data_dir(root: Path, files: int) -> Path:
    body = gzip.compress(b"Subject: x\r\n\r\nbody\r\n" * 20)
    for k in range(files):
        d = root / "spool" / "2026-01-01" / "25" / f"198.51.100.{k % 250}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"000000-{k:010X}.eml.gz").write_bytes(body)
    return root


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--files", type=int, default=50_000)
    p.add_argument("--sessions", type=int, default=1_000_000)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        data = make_data_dir(Path(tmp), args.files)
        conf = Path(tmp) / "sensor.toml"
        conf.write_text(f'[sensor]\ndata_dir = "{data}"\n[health]\ninterface = "lo"\n')
        config = load_config(conf)
        for worker in range(2):  # two workers' state files, as a running sensor leaves them
            rec = StateRecorder(SensorMetrics(), data, worker, 10.0, "lo", Path("/proc"))
            for _ in range(91):
                rec.record()
        count, base, report, walk = [], [], [], []
        for _ in range(args.runs):
            c, b = counting(args.sessions)
            count.append(c)
            base.append(b)
            t = time.perf_counter()
            health_report(config, live=False)
            report.append(time.perf_counter() - t)
            t = time.perf_counter()
            spool_backlog(data / "spool", 10_000_000)
            walk.append(time.perf_counter() - t)
    result = {
        "runs": args.runs,
        "counting_ns_per_session": statistics.median(count),
        "empty_loop_ns": statistics.median(base),
        "report_s": statistics.median(report),
        "spool_walk_s": statistics.median(walk),
        "spool_files": args.files,
        "spool_walk_us_per_file": statistics.median(walk) / args.files * 1e6,
    }
    print(
        f"counters {result['counting_ns_per_session']:.0f} ns/session "
        f"(empty loop {result['empty_loop_ns']:.0f} ns); report {result['report_s'] * 1000:.0f} ms "
        f"with {args.files} spool files (walk {result['spool_walk_us_per_file']:.2f} µs/file)",
        file=sys.stderr,
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
