"""The spool and the event log, on real files, with the clock passed in."""

from __future__ import annotations

import gzip
import json
import subprocess
import time
from pathlib import Path

import pytest

from spampot.config import ConfigError, load_config
from spampot.sensor.events import (
    Clock,
    EventBuffer,
    EventFile,
    RotationPolicy,
    recover_event_files,
)
from spampot.sensor.paths import ip_component, name_component
from spampot.sensor.spool import Spool, SpoolItem, gzip_bytes, is_complete_gzip

HOUR = 3600.0
T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def lines(n: int, start: int = 0) -> list[bytes]:
    return [json.dumps({"n": i, "timestamp": "2027-01-15T08:00:00.000000Z"}).encode() + b"\n"
            for i in range(start, start + n)]  # fmt: skip


def rotated(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "spool" / "events").glob("*.jsonl.gz"))


def all_numbers(tmp_path: Path) -> list[int]:
    out = []
    for path in rotated(tmp_path):
        out += [json.loads(x)["n"] for x in gzip.decompress(path.read_bytes()).splitlines()]
    live = tmp_path / "events" / "current.jsonl"
    if live.exists():
        out += [json.loads(x)["n"] for x in live.read_bytes().splitlines()]
    return sorted(out)


def make_file(tmp_path: Path, max_bytes: int = 1 << 20) -> EventFile:
    Spool(tmp_path).prepare()
    ef = EventFile(tmp_path, "sensor-a", RotationPolicy(max_bytes=max_bytes))
    ef.open(T0)
    return ef


def test_hourly_rotation_names_the_hour_and_loses_nothing(tmp_path):
    ef = make_file(tmp_path)
    ef.append(lines(10), T0)
    ef.append(lines(5, 10), T0 + HOUR + 1)  # next hour: the first ten go to a rotated file
    ef.settle()
    assert [p.name for p in rotated(tmp_path)] == ["sensor-a-20270115T08.jsonl.gz"]
    ef.close()  # the stop closes the second hour's file too
    assert [p.name for p in rotated(tmp_path)] == [
        "sensor-a-20270115T08.jsonl.gz",
        "sensor-a-20270115T09.jsonl.gz",
    ]
    assert all_numbers(tmp_path) == list(range(15))


def test_size_rotation_numbers_files_and_never_reuses_a_collected_name(tmp_path):
    ef = make_file(tmp_path, max_bytes=300)
    for i in range(20):
        ef.append(lines(1, i), T0 + i)
    ef.settle()
    names = [p.name for p in rotated(tmp_path)]
    assert "sensor-a-20270115T08.jsonl.gz" in names
    assert "sensor-a-20270115T08-1.jsonl.gz" in names
    before = all_numbers(tmp_path)
    # The collector takes the rotated files away; later rotations must not reuse their names.
    taken = set(names)
    for path in rotated(tmp_path):
        path.unlink()
    for i in range(20, 30):
        ef.append(lines(1, i), T0 + i)
    ef.close()
    assert not taken & {p.name for p in rotated(tmp_path)}
    assert before == list(range(20))
    assert all_numbers(tmp_path)[-10:] == list(range(20, 30))


def test_close_rotates_the_live_file_into_the_spool(tmp_path):
    """A stop leaves no event in events/: the collector gets the last events of a run."""
    ef = make_file(tmp_path)
    ef.append(lines(4), T0)
    ef.close()
    assert [p.name for p in rotated(tmp_path)] == ["sensor-a-20270115T08.jsonl.gz"]
    assert list((tmp_path / "events").glob("*.jsonl")) == []
    assert all_numbers(tmp_path) == [0, 1, 2, 3]
    ef = make_file(tmp_path)  # a run that logged nothing leaves nothing
    ef.close()
    assert len(rotated(tmp_path)) == 1
    assert list((tmp_path / "events").glob("*.jsonl")) == []


def test_torn_last_line_is_dropped_and_what_a_kill_left_closed_at_open(tmp_path):
    ef = make_file(tmp_path)
    ef.append(lines(3), T0)  # then killed: no close
    live = tmp_path / "events" / "current.jsonl"
    with open(live, "ab") as f:
        f.write(b'{"n": 99, "timest')  # a kill in the middle of a write
    aside = tmp_path / "events" / "rotating-20270115T07.jsonl"
    aside.write_bytes(b"".join(lines(2, 100)))  # a kill in the middle of a rotation
    ef = EventFile(tmp_path, "sensor-a", RotationPolicy())
    ef.open(T0 + 10)
    assert not aside.exists()
    assert [p.name for p in rotated(tmp_path)] == [
        "sensor-a-20270115T07.jsonl.gz",
        "sensor-a-20270115T08.jsonl.gz",
    ]
    assert all_numbers(tmp_path) == [0, 1, 2, 100, 101]
    assert live.read_bytes() == b""  # a new live file, for this run
    ef.close()
    assert not live.exists()


def test_start_closes_every_workers_leftovers_also_of_workers_gone(tmp_path):
    """recover_event_files at start: worker k's files keep worker k's names, and a worker the
    new configuration no longer has (here w3) is closed all the same."""
    Spool(tmp_path).prepare()
    events = tmp_path / "events"
    events.mkdir()
    (events / "current.jsonl").write_bytes(b"".join(lines(2)))
    (events / "rotating-w1-20270115T07.jsonl").write_bytes(b"".join(lines(2, 10)))
    (events / "rotating-w1-20270115T07.1.jsonl").write_bytes(b"".join(lines(2, 12)))
    (events / "current-w1.jsonl").write_bytes(b"".join(lines(1, 20)) + b'{"n": 2')
    (events / "current-w3.jsonl").write_bytes(b"".join(lines(3, 30)))
    (events / "notes.jsonl").write_bytes(b"a person's file\n")
    closed = recover_event_files(tmp_path, "sensor-a", RotationPolicy())
    assert closed == 5
    assert [p.name for p in rotated(tmp_path)] == [
        "sensor-a-20270115T08.jsonl.gz",
        "sensor-a.w1-20270115T07-1.jsonl.gz",
        "sensor-a.w1-20270115T07.jsonl.gz",
        "sensor-a.w1-20270115T08.jsonl.gz",
        "sensor-a.w3-20270115T08.jsonl.gz",
    ]
    first = gzip.decompress(
        (tmp_path / "spool/events/sensor-a.w1-20270115T07.jsonl.gz").read_bytes()
    )
    assert [json.loads(x)["n"] for x in first.splitlines()] == [10, 11]  # the older aside first
    assert all_numbers(tmp_path) == [0, 1, 10, 11, 12, 13, 20, 30, 31, 32]
    assert sorted(p.name for p in events.glob("*.jsonl")) == ["notes.jsonl"]
    assert recover_event_files(tmp_path, "sensor-a", RotationPolicy()) == 0


def test_event_buffer_lines_are_single_json_lines_whatever_the_client_sent():
    buffer = EventBuffer("s", Clock())
    nasty = "line\nbreak\r\x00\u2028" + "\\xff"
    buffer.emit("smtp.auth", {"session": "x"}, "m", username=nasty)
    (line,) = buffer.take().splitlines(keepends=True)
    assert line.count(b"\n") == 1 and line.endswith(b"\n")
    record = json.loads(line)
    assert record["username"] == nasty and record["eventid"] == "spampot.smtp.auth"
    assert record["timestamp"].endswith("Z") and len(record["timestamp"]) == 27


def test_spool_stage_publish_and_crash_leftovers(tmp_path):
    spool = Spool(tmp_path)
    (tmp_path / "tmp").mkdir(parents=True)
    (tmp_path / "tmp" / "half-written.eml.gz").write_bytes(b"\x1f\x8b")
    whole = "2027-01-15/25/192.0.2.9/075959-AAAAAAAAAA.eml.gz"
    staged_whole = spool.stage(SpoolItem(whole, b"acked before the crash\r\n"))
    cut = "2027-01-15/25/192.0.2.9/075959-BBBBBBBBBB.eml.gz"
    Path(spool.stage(SpoolItem(cut, b"x" * 5000))).write_bytes(b"\x1f\x8b\x08\x00trunc")
    assert Path(staged_whole).name == whole.replace("/", "+")
    # A whole staged message is finished (it may have been acknowledged); the rest removed.
    assert spool.prepare() == (1, 2)
    assert not any((tmp_path / "tmp").iterdir())
    published = tmp_path / "spool" / whole
    assert gzip.decompress(published.read_bytes()) == b"acked before the crash\r\n"
    published.unlink()

    relpath = "2027-01-15/25/192.0.2.1/080000-ABC123.eml.gz"
    tmp = spool.stage(SpoolItem(relpath, b"hi\r\n"))
    assert not list((tmp_path / "spool").rglob("*.eml.gz"))  # nothing visible before publish
    spool.publish(tmp, relpath)
    (path,) = (tmp_path / "spool").rglob("*.eml.gz")
    assert gzip.decompress(path.read_bytes()) == b"hi\r\n"
    # The collector prunes emptied directories; the next message re-creates them.
    path.unlink()
    for d in (path.parent, path.parent.parent, path.parent.parent.parent):
        if d.exists() and not any(d.iterdir()):
            d.rmdir()
    relpath = "2027-01-15/25/192.0.2.1/080001-ABD123.eml.gz"
    spool.publish(spool.stage(SpoolItem(relpath, b"x")), relpath)
    assert len(list((tmp_path / "spool").rglob("*.eml.gz"))) == 1


def test_staged_names_that_are_not_messages_are_never_published(tmp_path):
    spool = Spool(tmp_path)
    (tmp_path / "tmp").mkdir(parents=True)
    evil = tmp_path / "tmp" / "..+..+etc+passwd"
    evil.write_bytes(gzip.compress(b"root"))
    assert spool.prepare() == (0, 1)
    assert not (tmp_path / "etc").exists() and not evil.exists()


def test_every_compress_level_writes_one_gzip_member_zcat_reads(tmp_path):
    # A spam message's shape: headers, text, base64; what zcat (the collector's readers, the
    # ingest) reads back must be the bytes given, at every level the configuration allows.
    message = (
        b"Received: from [198.51.100.7]\r\nSubject: =?UTF-8?B?5L2g5aW9?=\r\n\r\n"
        + b"Buy now http://shop.example/?id=42\r\n" * 40
        + bytes(range(256)) * 8
    )
    sizes = []
    for level in range(10):
        blob = gzip_bytes(message, level)
        path = tmp_path / f"{level}.eml.gz"
        path.write_bytes(blob)
        assert is_complete_gzip(path)
        zcat = subprocess.run(["zcat", str(path)], capture_output=True, check=True)
        assert zcat.stdout == message
        sizes.append(len(blob))
    assert sizes[0] > len(message)  # level 0 stores: nothing to compress on a slow box
    assert max(sizes[1:]) < len(message) // 2
    assert sizes[9] <= sizes[6] <= sizes[1]


@pytest.mark.parametrize(
    ("address", "component"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("2001:db8::1", "2001-db8--1"),
        ("fe80::1%eth0", "fe80--1"),
        ("../../etc/passwd", "invalid-_.._etc_passwd"),
        ("a/b\x00c", "invalid-a_b_c"),
    ],
)
def test_ip_component_cannot_escape(address, component):
    result = ip_component(address)
    assert result == component and "/" not in result and "\x00" not in result


def test_name_component():
    assert name_component("../sensor one") == "_sensor_one"
    assert name_component("") == "_"


def test_config_defaults_are_table_1(tmp_path):
    config = load_config(None)
    assert config.ports.smtp == (25,)
    assert len(config.ports.http) == 17 and len(config.ports.socks) == 36
    assert 57123 in config.ports.http and 57123 in config.ports.socks
    listeners = config.listeners()
    assert len(listeners) == 1 + 17 + 36 - 1  # 57123 is in both lists and listens once
    assert (25, "smtp") in listeners and (57123, "proxy") in listeners


def test_config_file_and_overrides(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[sensor]\nname = "br-01"\n[smtp]\nmax_recipients = 50\n')
    config = load_config(path, sensor__data_dir="/srv/x", sensor__bind=["::1"])
    assert config.sensor_name == "br-01" and config.smtp.limits.max_recipients == 50
    assert str(config.data_dir) == "/srv/x" and config.sensor.bind == ("::1",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[sensor]\nnmae = 'x'\n", "unknown key(s): nmae"),
        ("[sensr]\n", "unknown section(s): sensr"),
        ("[smtp]\nmax_line = 'big'\n", "smtp.max_line must be a non-negative integer"),
        ("[ports]\nsmtp = [70000]\n", "port outside"),
        ("[sensor]\nworkers = 0\n", "workers must be at least 1"),
        ('[metrics]\naddress = "localhost"\n', "metrics.address must be an IP address"),
        ("[sensor\n", "c.toml"),
    ],
)
def test_config_errors_are_clear(tmp_path, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(path)


def test_clock_format():
    clock = Clock()
    _, ts = clock.now()
    assert time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S") and ts[19] == "." and ts[-1] == "Z"
    day, hhmmss = clock.spool_stamp()
    assert time.strptime(day + hhmmss, "%Y-%m-%d%H%M%S") and len(hhmmss) == 6
