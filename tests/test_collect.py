"""spampot collect against real sshd + rsync: sensors behind loopback SSH, a central data dir."""

from __future__ import annotations

import gzip
import hashlib
import json
import signal
import smtplib
import subprocess
import time

import pytest

from fleet import (
    add_sensor,
    check_centre,
    collect_cmd,
    fill_spool,
    run_collect,
    write_inventory,
)
from spampot.central.cli import parse_duration
from spampot.sensor.spool import is_complete_gzip


def state(central, name: str) -> dict:
    return json.loads((central / "state" / "collect" / f"{name}.json").read_text())


def test_collect_three_sensors_behind_two_sshd(sshd_factory, tmp_path):
    one = sshd_factory("sshd-a")
    two = sshd_factory("sshd-b")
    a = add_sensor(one, "br-01")
    b = add_sensor(one, "br-02")  # two sensors behind one sshd ...
    c = add_sensor(two, "br-03")  # ... and one behind another
    fill_spool(a, 120, seed=1)
    fill_spool(b, 80, seed=2)
    fill_spool(c, 50, seed=3, days=("2026-11-27",))
    central = tmp_path / "central"
    inventory = write_inventory(
        tmp_path / "inventory.toml", central, [a, b, c], known_hosts=("br-03",)
    )
    done = run_collect(inventory, "--once")
    assert done.returncode == 0, done.stderr
    for s in (a, b, c):
        check_centre(central / "raw", s)
        assert s.spool_files() == []
        # Emptied directories are pruned, except the newest day's (the sensor writes there).
        dirs = {str(p.relative_to(s.spool)) for p in s.spool.rglob("*")}
        assert "events" in dirs
        assert not any(d.startswith("2026-11-26") for d in dirs)
        assert any(d.startswith("2026-11-27/") for d in dirs)
        files = len(s.events) + len(list((central / "raw" / s.name / "events").iterdir()))
        marker = json.loads((s.data_dir / "state" / "last-collection.json").read_text())
        assert marker["files"] == files and marker["bytes"] > 0
        assert marker["time"].endswith("Z")
        st = state(central, s.name)
        assert st["ok"] is True and st["error"] is None
        assert (st["files"], st["bytes"]) == (marker["files"], marker["bytes"])
        assert st["last_success"] == st["last_attempt"]
        assert st["total_files"] == files
        assert f"{s.name}: ok, {files} files" in done.stderr
    # The next collection finds nothing, moves nothing, and still succeeds.
    again = run_collect(inventory, "--once", "--sensor", "br-02")
    assert again.returncode == 0 and "br-02: ok, 0 files" in again.stderr
    assert "br-01" not in again.stderr
    st = state(central, "br-02")
    assert st["files"] == 0 and st["total_files"] == len(b.events) + 2  # + 2 event files


def test_a_failing_sensor_does_not_stop_the_others(sshd, tmp_path):
    good = add_sensor(sshd, "good")
    wrong_key = add_sensor(sshd, "wrong-host-key")
    down = add_sensor(sshd, "down")
    for i, s in enumerate((good, wrong_key, down)):
        fill_spool(s, 20, seed=i + 1)
    central = tmp_path / "central"
    inventory = write_inventory(tmp_path / "inventory.toml", central, [good, wrong_key, down])
    text = inventory.read_text()
    other_key = sshd.client_key("other").public.rsplit(" ", 1)[0]
    # Pin a wrong host key for one sensor, and a closed port for another.
    blocks = text.split("[[sensor]]")
    blocks[2] = blocks[2].replace(sshd.host_key, other_key)
    blocks[3] = blocks[3].replace(f"port = {sshd.port}", "port = 1")
    inventory.write_text("[[sensor]]".join(blocks))
    done = run_collect(inventory, "--once")
    assert done.returncode == 1
    check_centre(central / "raw", good)
    assert good.spool_files() == []
    assert len(wrong_key.spool_files()) == len(down.spool_files()) == 22  # untouched
    for name, why in (("wrong-host-key", "host key"), ("down", "refused")):
        st = state(central, name)
        assert st["ok"] is False and st["last_success"] is None
        assert why in st["error"].lower(), st["error"]
        # ssh's failure, or rsync's (12) when it noticed first
        assert st["error"].startswith(("copy: exit 12", "copy: exit 255")), st["error"]
        assert f"{name}: FAILED" in done.stderr
    assert state(central, "good")["ok"] is True
    # Fixed: the next run collects it and records the success.
    inventory.write_text(inventory.read_text().replace(other_key, sshd.host_key))
    again = run_collect(inventory, "--once", "--sensor", "wrong-host-key")
    assert again.returncode == 0, again.stderr
    check_centre(central / "raw", wrong_key)
    st = state(central, "wrong-host-key")
    assert st["ok"] is True and st["error"] is None and st["last_success"] == st["last_attempt"]


def test_finish_failures_are_explained_in_their_own_terms(sshd, tmp_path):
    """Finding 8 of issue 14: the finish step's exit status was explained with rsync's
    meanings ("exit 2 (protocol incompatibility)"), though it is the gate's command."""
    sensor = add_sensor(sshd, "br-01")
    fill_spool(sensor, 5)
    state_dir = sensor.data_dir / "state"
    state_dir.rmdir()
    state_dir.write_text("not a directory")  # the gate cannot write last-collection.json
    central = tmp_path / "central"
    inventory = write_inventory(tmp_path / "inventory.toml", central, [sensor])
    done = run_collect(inventory, "--once")
    assert done.returncode == 1
    error = state(central, "br-01")["error"]
    assert error.startswith("finish: exit 1 (the sensor's gate refused the request"), error
    assert "usage error" not in error
    check_centre(central / "raw", sensor)  # the captures themselves were collected


def test_every_runs_rounds_and_stops_on_sigterm(sshd, tmp_path):
    sensor = add_sensor(sshd, "br-01")
    fill_spool(sensor, 10)
    central = tmp_path / "central"
    inventory = write_inventory(
        tmp_path / "inventory.toml", central, [sensor], collect="compress = true\n"
    )
    done = run_collect(inventory, "--every", "1s", "--rounds", "2")
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("br-01: ok") == 2 and "round 2" in done.stderr
    check_centre(central / "raw", sensor)
    # As a daemon: new captures are picked up by a later round; SIGTERM ends it promptly.
    daemon = subprocess.Popen(
        collect_cmd(inventory, "--every", "1s", "--no-progress"),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        fill_spool(sensor, 10, seed=7)
        deadline = time.monotonic() + 30
        while sensor.spool_files() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sensor.spool_files() == []
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=30)
    assert daemon.returncode in (0, 1), err
    assert "signal 15" in err
    check_centre(central / "raw", sensor)


def test_one_collection_per_sensor_at_a_time(sshd, tmp_path):
    sensor = add_sensor(sshd, "br-01")
    fill_spool(sensor, 50, big=1, big_size=300_000)
    central = tmp_path / "central"
    inventory = write_inventory(
        tmp_path / "inventory.toml", central, [sensor], collect="bwlimit = 100\n"
    )
    first = subprocess.Popen(
        collect_cmd(inventory, "--once", "--no-progress"), stderr=subprocess.PIPE, text=True
    )
    try:
        # raw/<sensor> is made once the first holds the sensor's lock.
        deadline = time.monotonic() + 30
        while not (central / "raw" / "br-01").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        second = run_collect(inventory, "--once")
        assert second.returncode == 1
        assert "another collection of this sensor is running" in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=30)
    write_inventory(inventory, central, [sensor])  # without the bandwidth limit
    assert run_collect(inventory, "--once").returncode == 0
    check_centre(central / "raw", sensor)


def test_live_sensor_collected_while_it_captures(sensor_factory, sshd, tmp_path):
    """A real sensor process keeps capturing while collections run; everything arrives."""
    live = sensor_factory(extra="[events]\nrotate_bytes = 4000\n[spool]\nfsync = false\n")
    fleet_sensor = add_sensor(sshd, "br-live", data_dir=live.data_dir)
    central = tmp_path / "central"
    inventory = write_inventory(tmp_path / "inventory.toml", central, [fleet_sensor])
    sent: dict[str, bytes] = {}
    for round_no in range(2):
        for i in range(15):
            body = f"Subject: round {round_no} message {i}\r\n\r\n{'spam ' * 200}\r\n".encode()
            with smtplib.SMTP("127.0.0.1", live.smtp_port, timeout=10) as client:
                client.sendmail("a@spam.example", ["v@example.org"], body)
            sent[hashlib.sha256(body).hexdigest()] = body
        done = run_collect(inventory, "--once")
        assert done.returncode == 0, done.stderr
    assert live.stop() == 0
    assert run_collect(inventory, "--once").returncode == 0
    raw = central / "raw" / "br-live"
    # Events as the analysis sees them: rotated files at the centre, plus the sensor's live log.
    lines: list[bytes] = []
    for path in sorted((raw / "events").glob("*.jsonl.gz")):
        lines += gzip.decompress(path.read_bytes()).splitlines()
    for path in (live.data_dir / "events").glob("current*.jsonl"):
        lines += path.read_bytes().splitlines()
    events = [json.loads(line) for line in lines]
    messages = [e for e in events if e["eventid"] == "spampot.smtp.message"]
    assert len(messages) == len(sent) == 30
    assert {e["sha256"] for e in messages} == set(sent)
    for event in messages:
        data = gzip.decompress((raw / event["file"]).read_bytes())
        assert hashlib.sha256(data).hexdigest() == event["sha256"]
    assert len(list((raw / "events").glob("*.jsonl.gz"))) >= 2
    assert all(is_complete_gzip(p) for p in raw.rglob("*.gz"))
    assert [p for p in (live.data_dir / "spool").rglob("*") if p.is_file()] == []


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("15m", 900), ("1h", 3600), ("1h30m", 5400), ("90s", 90), ("90", 90), ("2m5s", 125)],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "0m", "m", "15x", "-5", "1.5h", "15 m"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_cli_errors(tmp_path):
    bad = tmp_path / "inventory.toml"
    bad.write_text("[central]\nwrong = 1\n")
    done = run_collect(bad, "--once")
    assert done.returncode == 1 and "unknown key(s): wrong" in done.stderr
    good = tmp_path / "good.toml"
    good.write_text(f'[central]\ndata_dir = "{tmp_path / "c"}"\n')
    done = run_collect(good, "--sensor", "nope")
    assert done.returncode == 1 and "unknown sensor(s): nope" in done.stderr
    done = run_collect(good, "--once", "--every", "1m")
    assert done.returncode == 2
    done = run_collect(good, "--every", "soon")
    assert done.returncode == 2 and "not a duration" in done.stderr
    done = run_collect(good)  # no sensors: nothing to do, nothing failed
    assert done.returncode == 0
