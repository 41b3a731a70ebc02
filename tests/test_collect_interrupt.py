"""Interrupted collections: rsync killed, SSH connection cut, collector crashed, then rerun.

Each ends with every message at the centre exactly once and byte-identical (the sha256 of its
smtp.message event), nothing left on the sensor, and — checked by a reader that keeps opening
every file under raw/ while collections run, as the ingest would — no partial file ever visible
under raw/. A bandwidth limit slows the transfers, and each cut comes when rsync has one of the
large files in transfer under raw/ (its dot-file is there, for a quarter of a second at the
limit: an observable state, not a delay that a loaded machine stretches), after one to three of
them, so that every cut lands in the middle of a file. Each run completes at most two large
files, so every run has one left to be cut in, and work is left for the rerun.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from fleet import add_sensor, check_centre, collect_cmd, fill_spool, run_collect, write_inventory
from spampot.central.collect import IN_TRANSFER
from spampot.sensor.spool import is_complete_gzip
from sshd import descendants, process_name


class RawReader(threading.Thread):
    """Opens every file under raw/ over and over; records any that is not a whole gzip."""

    def __init__(self, raw: Path) -> None:
        super().__init__(daemon=True)
        self.raw = raw
        self.stop = threading.Event()
        self.checked = 0
        self.bad: list[str] = []

    def run(self) -> None:
        deadline = time.monotonic() + 300
        while not self.stop.is_set() and time.monotonic() < deadline:
            for root, _dirs, files in os.walk(self.raw):
                for name in files:
                    if name.startswith("."):
                        continue  # rsync's file in transfer, a name no reader takes
                    path = os.path.join(root, name)
                    if not name.endswith(".gz") or not is_complete_gzip(path):
                        # A rename may replace nothing here: files under raw/ never change.
                        self.bad.append(path)
                    self.checked += 1
            time.sleep(0.01)


def in_transfer(raw: Path) -> set[str]:
    """The files rsync is writing under raw/ now (``.<name>.XXXXXX``)."""
    return {
        os.path.join(root, name)
        for root, _dirs, files in os.walk(raw)
        for name in files
        if IN_TRANSFER.fullmatch(name)
    }


def final_name(dot_file: str) -> str:
    """``.<name>.XXXXXX`` -> ``<name>``."""
    return os.path.basename(dot_file)[1:-7]


def wait_mid_file(
    raw: Path,
    collector: subprocess.Popen,
    files: int,
    large: set[str],
    stale: set[str],
    log: Path,
    timeout: float = 120,
) -> None:
    """Until rsync has had ``files`` distinct ``large`` files in transfer and one is in
    transfer now (dot-files in ``stale``, left by a killed rsync before this run, do not
    count); fails if the collector ends first (the cut would prove nothing)."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while True:
        if collector.poll() is not None:
            raise AssertionError(
                f"the collection ended ({collector.returncode}) before the cut, after "
                f"{len(seen)} large files seen in transfer: {log.name}: {log.read_text()[-2000:]}"
            )
        assert time.monotonic() < deadline, "no large file in transfer under raw/"
        now = {path for path in in_transfer(raw) - stale if final_name(path) in large}
        seen |= now
        if now and len(seen) >= files:
            return
        time.sleep(0.005)


def cut(how: str, collector: subprocess.Popen, sshd) -> None:
    if how == "kill-rsync":
        for pid in descendants(collector.pid):
            if process_name(pid) == "rsync":
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    elif how == "cut-ssh":
        sshd.kill_sessions()
    elif how == "crash-collector":
        pids = [collector.pid, *descendants(collector.pid)]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    else:  # pragma: no cover
        raise AssertionError(how)


@pytest.mark.parametrize(
    ("how", "durable"),
    [
        ("kill-rsync", True),
        ("cut-ssh", True),
        ("crash-collector", True),
        ("crash-collector", False),
    ],
)
def test_cut_collections_then_rerun_deliver_each_message_once(sshd, tmp_path, how, durable):
    sensor = add_sensor(sshd, "br-01")
    big_size = 250_000
    events = fill_spool(sensor, 250, big=8, big_size=big_size)  # 0.75 MB + 2 MB of random data
    large = {os.path.basename(e["file"]) for e in events if e["size"] == big_size}
    assert len(large) == 8
    central = tmp_path / "central"
    inventory = write_inventory(
        tmp_path / "inventory.toml",
        central,
        [sensor],
        collect=f"bwlimit = 1000\ndurable = {'true' if durable else 'false'}\n",
    )
    (central / "raw").mkdir(parents=True)
    reader = RawReader(central / "raw")
    reader.start()
    rng = random.Random(f"{how}-{durable}")
    failed = 0
    try:
        for attempt in range(3):
            log = tmp_path / f"collect-{attempt}.log"
            stale = in_transfer(central / "raw")
            with open(log, "wb") as err:
                collector = subprocess.Popen(
                    collect_cmd(inventory, "--once", "--no-progress"),
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                )
            wait_mid_file(central / "raw", collector, rng.randint(1, 3), large, stale, log)
            cut(how, collector, sshd)
            failed += collector.wait(timeout=60) != 0
        left_between = len(sensor.spool_files())
        final = run_collect(inventory, "--once")
        assert final.returncode == 0, final.stderr
    finally:
        reader.stop.set()
        reader.join(timeout=30)
    assert failed == 3, "a collection was not interrupted"
    assert left_between > 0
    check_centre(central / "raw", sensor)
    assert sensor.spool_files() == []
    assert reader.bad == [], "a reader saw partial or temporary files under raw/"
    assert reader.checked > 0


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_killing_the_collector_alone_stops_its_rsync(sshd, tmp_path):
    """Finding 8 of issue 14: rsync and ssh run in a session of their own, so a SIGKILL of the
    collector's process alone left them running beside the next collection (until rsync next
    wrote a line to the dead collector: in the middle of a large file, for as long as it takes).
    """
    sensor = add_sensor(sshd, "br-01")
    fill_spool(sensor, 0, big=2, big_size=2_000_000)  # random bytes: 10 s each at 200 KiB/s
    central = tmp_path / "central"
    inventory = write_inventory(
        tmp_path / "inventory.toml", central, [sensor], collect="bwlimit = 200\n"
    )
    collector = subprocess.Popen(
        collect_cmd(inventory, "--once", "--no-progress"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    children: list[int] = []
    while not children and time.monotonic() < deadline:
        children = [p for p in descendants(collector.pid) if process_name(p) in ("rsync", "ssh")]
        time.sleep(0.1)
    assert children, "no rsync was running: the test proved nothing"
    time.sleep(2)  # in the middle of the first file
    children = [p for p in descendants(collector.pid) if process_name(p) in ("rsync", "ssh")]
    collector.kill()  # the collector's process alone, as the OOM killer would
    collector.wait(timeout=30)
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [(p, process_name(p)) for p in children if _alive(p)]
    for pid, _ in left:  # the test's own clean-up of what it proved was left behind
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert left == [], f"still running 5 s after the collector was killed: {left}"
    final = run_collect(inventory, "--once", timeout=120)
    assert final.returncode == 0, final.stderr
    check_centre(central / "raw", sensor)
