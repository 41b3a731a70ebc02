"""SIGKILL during a flood: nothing acknowledged is lost, nothing partial is under spool/."""

from __future__ import annotations

import gzip
import json
import smtplib
import threading
import time


def flood(port: int, acked: dict[str, bytes], stop: threading.Event, worker: int) -> None:
    n = 0
    while not stop.is_set():
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
                client.ehlo("flood.example")
                for _ in range(20):
                    if stop.is_set():
                        return
                    body = (
                        b"Subject: flood %d-%d\r\n\r\n" % (worker, n) + b"x" * (n % 3000) + b"\r\n"
                    )
                    n += 1
                    client.mail("f@spam.example")
                    client.rcpt("v@example.org")
                    code, reply = client.data(body)
                    if code == 250:
                        acked[reply.split()[-1].decode()] = body
        except (OSError, smtplib.SMTPException):
            if stop.is_set():
                return
            time.sleep(0.01)


def test_sigkill_during_flood_loses_nothing_acknowledged(sensor):
    acked: dict[str, bytes] = {}
    stop = threading.Event()
    threads = [
        threading.Thread(target=flood, args=(sensor.smtp_port, acked, stop, i)) for i in range(8)
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while len(acked) < 300 and time.monotonic() < deadline:
        time.sleep(0.05)
    sensor.kill()  # mid-flood, no warning, every process at once
    stop.set()
    for t in threads:
        t.join(timeout=30)
    snapshot = dict(acked)
    assert len(snapshot) >= 300

    spool = sensor.data_dir / "spool"
    files = {p.name.split("-", 1)[1].removesuffix(".eml.gz"): p for p in spool.rglob("*.eml.gz")}
    for path in files.values():
        gzip.decompress(path.read_bytes())  # raises on a partial file
    for queue_id, body in snapshot.items():
        assert queue_id in files, f"acknowledged {queue_id} missing"
        assert gzip.decompress(files[queue_id].read_bytes()) == body

    # Every acknowledged message had its event written before the 250 (a torn last line may
    # hold an event still in flight; the next start drops it).
    live = (sensor.data_dir / "events" / "current.jsonl").read_bytes()
    whole = live[: live.rfind(b"\n") + 1]
    logged = {
        e["queue_id"]
        for e in map(json.loads, whole.splitlines())
        if e["eventid"] == "spampot.smtp.message"
    }
    assert set(snapshot) <= logged

    sensor.start()
    assert not any((sensor.data_dir / "tmp").iterdir())
    events = sensor.wait_events(
        lambda ev: [e["eventid"] for e in ev].count("spampot.sensor.start") == 2
    )
    assert [e["eventid"] for e in events].count("spampot.sensor.start") == 2
    assert sensor.stop() == 0


def test_sigkill_at_random_moments_during_rotation_leaves_only_whole_files(sensor_factory):
    """Kill the sensor again and again while it rotates its event log every few KB: every
    rotated file is a whole gzip of whole JSON lines, every message file is whole, and tmp/
    is settled at each start."""
    import random

    sensor = sensor_factory("[events]\nrotate_bytes = 16384\n", start=False)
    rng = random.Random(20261128)
    acked: dict[str, bytes] = {}
    for cycle in range(6):
        sensor.start()
        stop = threading.Event()
        threads = [
            threading.Thread(target=flood, args=(sensor.smtp_port, acked, stop, 10 * cycle + i))
            for i in range(4)
        ]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.3, 1.5))
        sensor.kill(everything=cycle % 2 == 0)
        stop.set()
        for t in threads:
            t.join(timeout=30)
    sensor.start()  # the last start settles what the last kill left
    assert not any((sensor.data_dir / "tmp").iterdir())
    assert sensor.stop() == 0

    rotated = sorted((sensor.data_dir / "spool" / "events").glob("*.jsonl.gz"))
    assert len(rotated) >= 6
    logged = set()
    for path in rotated:
        for line in gzip.decompress(path.read_bytes()).splitlines():
            event = json.loads(line)  # a torn line would not parse
            if event["eventid"] == "spampot.smtp.message":
                logged.add(event["queue_id"])
    assert list((sensor.data_dir / "events").glob("*.jsonl")) == []  # the stop closed it
    spool = sensor.data_dir / "spool"
    files = {p.name.split("-", 1)[1].removesuffix(".eml.gz"): p for p in spool.rglob("*.eml.gz")}
    for path in files.values():
        gzip.decompress(path.read_bytes())
    assert len(acked) > 50
    for queue_id, body in acked.items():
        assert queue_id in logged, f"acknowledged {queue_id} has no event"
        assert gzip.decompress(files[queue_id].read_bytes()) == body
