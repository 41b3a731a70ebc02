"""Collection throughput: `spampot collect` against a bare `rsync -a` over the same SSH.

One sensor's spool of --files gzip messages (about 3 KB each, in the sensor's layout) behind a
real sshd on 127.0.0.1. Each run puts the same tree back in the spool (hard links of a template)
and times, in turn:

- `rsync -a` over ssh with the same options and key type, without the forced command (baseline);
- `spampot collect --once` through the gate: the copy, and beside it the finish request that
  deletes on the sensor what the centre holds (synced) as rsync itemises it, then prunes and
  writes the marker (the default, durable = true);
- the same with durable = false (one rsync pass with --remove-source-files).

Every transfer writes into a destination of its own, and nothing is deleted until the end:
ext4 allocates inodes slowly right after tens of thousands were freed (it reads every recently
freed inode; `recently_deleted` in perf), so deleting the previous run's copy just before the
next transfer made whichever ran into those inode groups pay for it, unevenly. A central
server does not delete under raw/ while it collects.

It also runs a real sensor, sends it --sizes messages over SMTP, and reports what a message
costs the sensor's disk (file size, blocks, events), for the README's retention figures.

    python bench/collect_bench.py                # 100,000 files, 3 runs
    python bench/collect_bench.py --files 20000 --runs 5
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import shlex
import shutil
import signal
import smtplib
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from fleet import gate_command, sensor_config, spam  # noqa: E402 - the tests' fleet helpers
from spampot.central.collect import Collector  # noqa: E402
from spampot.central.inventory import load_inventory  # noqa: E402
from spampot.central.progress import LogReporter  # noqa: E402
from sshd import SshServer, free_port  # noqa: E402 - the tests' real sshd


def make_template(root: Path, files: int, seed: int = 1) -> tuple[int, float]:
    """``files`` gzip messages under root/<day>/<port>/<ip>/; returns (bytes, seconds)."""
    rng = random.Random(seed)
    t0 = time.monotonic()
    total = 0
    bodies = [spam(rng, 6000) for _ in range(64)]
    for i in range(files):
        day = ("2026-11-26", "2026-11-27")[i * 2 // files]
        port = (25, 1080, 3128, 8080)[i % 4]
        # About 50 messages per client directory: a spammer sends many through one sensor.
        ip = f"198.51.100.{i % 250 + 1}"
        d = root / day / str(port) / ip
        d.mkdir(parents=True, exist_ok=True)
        # A per-message header line makes every file distinct, as real spam is.
        data = f"X-Seq: {i} {rng.random()}\r\n".encode() + bodies[i % len(bodies)]
        comp = zlib.compressobj(6, zlib.DEFLATED, 31)
        blob = comp.compress(data) + comp.flush()
        (d / f"{i % 86400:06d}-{i:010X}.eml.gz").write_bytes(blob)
        total += len(blob)
    return total, time.monotonic() - t0


def refill(template: Path, spool: Path) -> None:
    if spool.exists():
        shutil.rmtree(spool)
    subprocess.run(["cp", "-al", str(template), str(spool)], check=True)
    (spool / "events").mkdir(exist_ok=True)


def count_files(root: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(root))


def timed(argv: list[str]) -> float:
    t0 = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True)
    elapsed = time.monotonic() - t0
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(argv[:6])}…\n{done.stderr[-2000:]}")
    return elapsed


def message_costs(work: Path, messages: int) -> dict:
    """A real sensor stores ``messages`` spam messages: what each costs its disk."""
    data_dir = work / "sizes"
    ports = {"smtp": free_port(), "http": free_port(), "socks": free_port()}
    config = work / "sizes.toml"
    config.write_text(
        f"""
[sensor]
name = "bench"
hostname = "mx.bench.example"
data_dir = "{data_dir}"
bind = ["127.0.0.1"]
user = ""
allow_root = true
[ports]
smtp = [{ports["smtp"]}]
http = [{ports["http"]}]
socks = [{ports["socks"]}]
"""
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "spampot", "sensor", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=2).quit()
                break
            except OSError:
                if time.monotonic() > deadline:
                    sys.exit("the sensor did not start")
                time.sleep(0.1)

        def send(worker: int) -> int:
            rng = random.Random(worker)
            n = 0
            with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=30) as client:
                for _ in range(messages // 4):
                    rcpts = [f"user{rng.randrange(10**6)}@example.org" for _ in range(9)]
                    client.sendmail("offers@spam.example", rcpts, spam(rng, 6000))
                    n += 1
            return n

        with ThreadPoolExecutor(4) as pool:
            sent = sum(pool.map(send, range(4)))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    files = [p for p in (data_dir / "spool").rglob("*.eml.gz")]
    apparent = sum(p.stat().st_size for p in files)
    on_disk = sum(p.stat().st_blocks * 512 for p in files)
    dirs = [p for p in (data_dir / "spool").rglob("*") if p.is_dir()]
    # Events as the sensor keeps them: rotated and gzipped (level 6) in spool/events/.
    raw_events = b"".join(p.read_bytes() for p in (data_dir / "events").glob("*.jsonl"))
    raw_events += b"".join(
        gzip.decompress(p.read_bytes()) for p in (data_dir / "spool" / "events").glob("*.gz")
    )
    events_gz = len(gzip.compress(raw_events, 6))
    return {
        "messages_sent": sent,
        "message_files": len(files),
        "avg_message_bytes_gz": apparent / len(files),
        "avg_message_disk_bytes": on_disk / len(files),
        "directories": len(dirs),
        "avg_events_bytes_gz": events_gz / len(files),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", type=int, default=2000, help="messages for the size figures")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--one-pass", action="store_true", help="also time [collect] durable = false"
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("note: not root; sshd accepts only this user", file=sys.stderr)
    # SIGTERM unwinds like Ctrl-C, so that sshd is stopped and the work dir removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="collect-bench-", dir=args.workdir))
    server = SshServer.create(work / "sshd")
    server.start()
    try:
        result = run(args, work, server)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=1))


def run(args: argparse.Namespace, work: Path, server: SshServer) -> dict:
    sensor_dir = server.sensor_dir("bench")
    spool = sensor_dir / "spool"
    gate_key = server.client_key("central")
    config = sensor_config(work / "sensor.toml", "bench", sensor_dir)
    server.authorize(gate_key, command=gate_command(config), options="restrict")
    bare_key = server.client_key("bare")
    server.authorize(bare_key)

    print(f"measuring message costs on a real sensor ({args.sizes} messages)…", flush=True)
    costs = message_costs(work, args.sizes)
    for key, value in costs.items():
        print(f"  {key}: {value:,.1f}" if isinstance(value, float) else f"  {key}: {value:,}")

    template = work / "template"
    nbytes, secs = make_template(template, args.files)
    print(
        f"template: {args.files:,} files, {nbytes / args.files:,.0f} B average, "
        f"{nbytes / 1e6:,.1f} MB (made in {secs:.1f} s)",
        flush=True,
    )

    def inventory_for(variant: str, run_no: int) -> Path:
        """A central data dir of its own for every transfer (see the module docstring)."""
        durable = "false" if variant == "collect-1pass" else "true"
        path = work / f"{variant}-{run_no}.toml"
        path.write_text(
            f"""
[central]
data_dir = "{work / f"{variant}-{run_no}"}"
[collect]
durable = {durable}
[[sensor]]
name = "bench"
host = "127.0.0.1"
port = {server.port}
user = "{server.user}"
key = "{gate_key.path}"
host_key = "{server.host_key}"
data_dir = "{sensor_dir}"
"""
        )
        return path

    # The baseline uses the collector's own ssh command line with the bare key.
    inventory = load_inventory(inventory_for("collect", 0))
    collector = Collector(inventory, LogReporter())
    collector.prepare()
    ssh_argv = collector.ssh_command(inventory.sensors[0])
    ssh_argv[ssh_argv.index("-i") + 1] = str(bare_key.path)

    names = ["rsync -a", "collect"] + (["collect-1pass"] if args.one_pass else [])
    times: dict[str, list[float]] = {name: [] for name in names}
    steps: dict[str, list[dict[str, float]]] = {name: [] for name in names[1:]}
    for run_no in range(args.runs):
        for name in times:
            refill(template, spool)
            if name == "rsync -a":
                bare_dest = work / f"bare-{run_no}"
                argv = [
                    "rsync",
                    "-a",
                    "--rsh=" + shlex.join(ssh_argv),
                    f"{server.user}@127.0.0.1:{spool}/",
                    f"{bare_dest}/",
                ]
                elapsed = timed(argv)
                got = count_files(bare_dest)
            else:
                central = work / f"{name}-{run_no}"
                argv = [
                    sys.executable,
                    "-m",
                    "spampot",
                    "collect",
                    "--once",
                    "--no-progress",
                    "--inventory",
                    str(inventory_for(name, run_no)),
                ]
                elapsed = timed(argv)
                got = count_files(central / "raw" / "bench")
                state = json.loads((central / "state" / "collect" / "bench.json").read_text())
                steps[name].append(state["steps_s"])
                left = count_files(spool)
                if left:
                    sys.exit(f"{name}: {left} files left on the sensor")
            if got != args.files:
                sys.exit(f"{name}: {got} files arrived, expected {args.files}")
            times[name].append(elapsed)
            print(
                f"run {run_no + 1} {name:>14}: {elapsed:6.2f} s  "
                f"{args.files / elapsed:8,.0f} files/s  load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    medians = {name: statistics.median(t) for name, t in times.items()}
    rates = {name: args.files / m for name, m in medians.items()}
    print()
    print(f"medians of {args.runs} runs, {args.files:,} files:")
    for name in times:
        ratio = rates[name] / rates["rsync -a"]
        print(f"  {name:>14}: {rates[name]:8,.0f} files/s  ({ratio:.2f} x rsync -a)")
    per_run = [times["rsync -a"][i] / times["collect"][i] for i in range(args.runs)]
    print(f"  collect / rsync -a per run: {', '.join(f'{r:.2f}' for r in per_run)}")
    step_medians = {
        name: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        for name, runs in steps.items()
    }
    for name, medians_s in step_medians.items():
        shown = ", ".join(f"{k} {v:.2f} s" for k, v in medians_s.items())
        print(f"  {name} steps (medians): {shown}")
    return {
        "files": args.files,
        "average_gz_bytes": nbytes / args.files,
        "seconds": times,
        "files_per_s": rates,
        "ratio_collect": rates["collect"] / rates["rsync -a"],
        "ratio_collect_1pass": (
            rates["collect-1pass"] / rates["rsync -a"] if args.one_pass else None
        ),
        "steps_s": step_medians,
        "message_costs": costs,
        "loadavg": os.getloadavg(),
    }


if __name__ == "__main__":
    main()
