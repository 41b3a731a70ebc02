"""Stops lose nothing: whatever stops the sensor, every event ends up in ``spool/events/``.

SIGTERM at random moments just after a start (while it is still binding, forking, opening its
files) and under a flood of mail; SIGKILL of every process at once, or of the main process
alone; one worker and two. After each stop no event file is left in ``events/`` (where the
collector does not look), every file under ``spool/events/`` is a whole gzip of whole JSON
lines, every ``sensor.start`` has its ``sensor.stop`` (a clean stop), and every acknowledged
message is in the spool with its ``smtp.message`` event. The last test takes the events to the
centre through ``spampot collect`` over a real sshd.
"""

from __future__ import annotations

import gzip
import json
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from spampot.sensor.spool import is_complete_gzip
from test_crash import flood

QUICK_STOPS = 12  # per worker count in the default suite; the slow test runs many more
SLOW_STOPS = 60


def spooled_events(data_dir: Path) -> list[dict]:
    """Every event in ``spool/events/``; each file must be a whole gzip of whole lines."""
    events = []
    for path in sorted((data_dir / "spool" / "events").glob("*.jsonl.gz")):
        assert is_complete_gzip(path), path
        data = gzip.decompress(path.read_bytes())
        assert data.endswith(b"\n"), path
        events += [json.loads(line) for line in data.splitlines()]
    return events


def assert_closed(data_dir: Path, killed: int = 0) -> list[dict]:
    """What a stopped sensor must have left: nothing in events/ or tmp/, and a stop logged
    for every start of every worker but those of the ``killed`` runs."""
    assert sorted(p.name for p in (data_dir / "events").glob("*.jsonl")) == []
    assert list((data_dir / "tmp").iterdir()) == []
    events = spooled_events(data_dir)
    starts = Counter(e["worker"] for e in events if e["eventid"] == "spampot.sensor.start")
    stops = Counter(e["worker"] for e in events if e["eventid"] == "spampot.sensor.stop")
    assert starts - stops == Counter(dict.fromkeys(starts, killed))
    return events


def with_workers(sensor_factory, workers: int, extra: str = ""):
    sensor = sensor_factory(extra, start=False)
    sensor.config_path.write_text(
        sensor.config_path.read_text().replace("[ports]", f"workers = {workers}\n\n[ports]")
    )
    return sensor


def start_time(sensor) -> float:
    """Seconds from the command to the banner, for this machine and its load now."""
    began = time.monotonic()
    sensor.start()
    took = time.monotonic() - began
    assert sensor.stop() == 0
    return took


def stop_soon_after_start(sensor, rng: random.Random, stops: int) -> int:
    """SIGTERM ``stops`` times, each at a random moment from 0.6 to 1.4 x the start-up time
    (most of which is the interpreter importing: the sensor's own start-up is the end of it).

    Returns how many runs got as far as logging their start. A SIGTERM that lands while the
    interpreter is still importing (before the sensor's code runs) kills it by the signal's
    default action, before it has touched any file: that is allowed, and nothing is lost.
    """
    took = start_time(sensor)
    started = 1
    for _ in range(stops):
        before = len(spooled_events(sensor.data_dir))
        sensor.start(wait=False)
        time.sleep(rng.uniform(0.6 * took, 1.4 * took))
        code = sensor.stop(signal.SIGTERM, timeout=60)
        assert code in (0, -signal.SIGTERM), sensor.stderr()[-2000:]
        assert_closed(sensor.data_dir)
        logged = len(spooled_events(sensor.data_dir)) > before
        assert logged or code == -signal.SIGTERM
        started += logged
    return started


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_at_random_moments_just_after_start(sensor_factory, workers):
    sensor = with_workers(sensor_factory, workers)
    rng = random.Random(20270115 + workers)
    started = stop_soon_after_start(sensor, rng, QUICK_STOPS)
    events = assert_closed(sensor.data_dir)
    runs = sum(e["eventid"] == "spampot.sensor.start" for e in events) // workers
    assert runs == started >= 3


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_at_random_moments_just_after_start_many(sensor_factory, workers):
    sensor = with_workers(sensor_factory, workers)
    stop_soon_after_start(sensor, random.Random(workers), SLOW_STOPS)
    assert_closed(sensor.data_dir)


class Flood:
    """Clients sending mail as fast as they can; ``acked`` holds what got its 250."""

    def __init__(self, port: int, clients: int, tag: int) -> None:
        self.acked: dict[str, bytes] = {}
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=flood, args=(port, self.acked, self.stop, tag * 100 + i))
            for i in range(clients)
        ]
        for t in self.threads:
            t.start()

    def wait(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < count and time.monotonic() < deadline:
            time.sleep(0.02)

    def end(self) -> dict[str, bytes]:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)
        return dict(self.acked)


def assert_stored(spool: Path, acked: dict[str, bytes], events: list[dict]) -> None:
    """Every acknowledged message is in ``spool`` byte for byte, with its event."""
    logged = {e["queue_id"]: e for e in events if e["eventid"] == "spampot.smtp.message"}
    for queue_id, body in acked.items():
        assert queue_id in logged, f"acknowledged {queue_id} has no event in spool/events/"
        path = spool / logged[queue_id]["file"]
        assert gzip.decompress(path.read_bytes()) == body


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_under_load_loses_no_event(sensor_factory, workers):
    sensor = with_workers(sensor_factory, workers, "[events]\nrotate_bytes = 32768\n")
    rng = random.Random(7 + workers)
    acked: dict[str, bytes] = {}
    for cycle in range(3):
        sensor.start()
        load = Flood(sensor.smtp_port, 6, cycle)
        load.wait(rng.randrange(1, 200))
        assert sensor.stop(signal.SIGTERM, timeout=60) == 0
        acked |= load.end()
        assert_stored(sensor.data_dir / "spool", acked, assert_closed(sensor.data_dir))
    assert len(acked) > 30


@pytest.mark.parametrize("workers", [1, 2])
def test_sigkill_of_every_process_then_the_start_closes_what_it_left(sensor_factory, workers):
    sensor = with_workers(sensor_factory, workers)
    sensor.start()
    load = Flood(sensor.smtp_port, 6, 1)
    load.wait(150)
    sensor.kill()  # every process at once: the live event files stay in events/
    acked = load.end()
    assert len(acked) >= 150
    assert list((sensor.data_dir / "events").glob("current*.jsonl"))
    sensor.start()  # ... and this start closes them into spool/events/ before it serves
    events = spooled_events(sensor.data_dir)
    assert_stored(sensor.data_dir / "spool", acked, events)
    now = sensor.wait_events(
        lambda ev: sum(e["eventid"] == "spampot.sensor.start" for e in ev) == 2 * workers
    )
    starts = [e for e in now if e["eventid"] == "spampot.sensor.start"]
    assert f"closed {workers} event file(s)" in starts[-1]["detail"]
    assert sensor.stop() == 0
    assert_stored(sensor.data_dir / "spool", acked, assert_closed(sensor.data_dir, killed=1))


@pytest.mark.parametrize("workers", [1, 2])
def test_sigkill_of_the_main_process_alone(sensor_factory, workers):
    """With one worker its writer closes the event log on losing the event loop; with two the
    workers get SIGTERM when their supervisor is gone, and drain and stop as on a stop."""
    sensor = with_workers(sensor_factory, workers)
    sensor.start()
    load = Flood(sensor.smtp_port, 6, 2)
    load.wait(100)
    sensor.kill(everything=False)  # waits until every process of the sensor is gone
    acked = load.end()
    events = spooled_events(sensor.data_dir)
    assert_stored(sensor.data_dir / "spool", acked, events)
    assert sorted(p.name for p in (sensor.data_dir / "events").glob("*.jsonl")) == []
    stops = [e for e in events if e["eventid"] == "spampot.sensor.stop"]
    assert len(stops) == (0 if workers == 1 else workers)
    sensor.start()  # the next start finds nothing to finish
    assert sensor.stop() == 0
    assert_closed(sensor.data_dir, killed=1 if workers == 1 else 0)


def test_every_event_reaches_the_centre_through_stops_and_a_crash(sensor_factory, sshd, tmp_path):
    """Random stops just after start and under load, a SIGKILL, restarts; then one collection
    over real sshd and rsync brings every event and message to the centre, and the sensor's
    spool is empty."""
    from fleet import add_sensor, run_collect, write_inventory

    sensor = with_workers(sensor_factory, 2)
    rng = random.Random(99)
    stop_soon_after_start(sensor, rng, 4)
    acked: dict[str, bytes] = {}
    for cycle, kill in enumerate((False, True, False)):
        sensor.start()
        load = Flood(sensor.smtp_port, 4, 10 + cycle)
        load.wait(rng.randrange(20, 120))
        if kill:
            sensor.kill()
        else:
            assert sensor.stop(signal.SIGTERM, timeout=60) == 0
        acked |= load.end()
    sensor.start()
    assert sensor.stop() == 0
    local = assert_closed(sensor.data_dir, killed=1)

    fleet_sensor = add_sensor(sshd, "br-stops", data_dir=sensor.data_dir)
    central = tmp_path / "central"
    inventory = write_inventory(tmp_path / "inventory.toml", central, [fleet_sensor])
    done = run_collect(inventory, "--once")
    assert done.returncode == 0, done.stderr
    raw = central / "raw" / "br-stops"
    centre: list[dict] = []
    for path in sorted((raw / "events").glob("*.jsonl.gz")):
        assert is_complete_gzip(path)
        centre += [json.loads(x) for x in gzip.decompress(path.read_bytes()).splitlines()]
    assert sorted(map(json.dumps, centre)) == sorted(map(json.dumps, local))
    assert_stored(raw, acked, centre)
    assert [p for p in (sensor.data_dir / "spool").rglob("*") if p.is_file()] == []
