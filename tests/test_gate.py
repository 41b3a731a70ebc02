"""The forced command on the sensor: exactly the collector's commands pass, nothing else."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleet import add_sensor, fill_spool, sensor_config
from spampot.central.gate import (
    Collected,
    CollectedStream,
    Health,
    Refused,
    RsyncSender,
    parse_held,
    parse_request,
    prune_spool,
    remove_held,
    remove_streamed,
    write_last_collection,
)
from spampot.layout import spool_file

DATA = "/var/lib/spampot"
EXAMPLES = int(os.environ.get("SPAMPOT_FUZZ_EXAMPLES", "300"))


@pytest.mark.parametrize(
    "command",
    [
        "rsync --server --sender -trze.iLsfxCIvu --timeout=120 . /var/lib/spampot/spool/",
        "rsync --server --sender -trze.iLsfxCIvu --timeout=60 --bwlimit=100 "
        ". /var/lib/spampot/spool/",
        "rsync --server --sender -tre.iLsfxCIvu --timeout=60 --remove-source-files "
        ". /var/lib/spampot/spool/",
        "rsync --server --sender -logDtpre.iLsfxCIvu . /var/lib/spampot/spool/",
    ],
)
def test_rsync_sender_of_the_spool_passes(command):
    request = parse_request(command, DATA)
    assert isinstance(request, RsyncSender)
    assert request.argv == tuple(command.split())


def test_other_allowed_commands():
    assert parse_request("spampot health --json", DATA) == Health()
    assert parse_request("spampot collected --files 3 --bytes 1024", DATA) == Collected(3, 1024)
    assert parse_request("spampot collected --stream", DATA) == CollectedStream()
    for bad in ("--stream --stream", "--stream x", "--streams", "--stream --remove"):
        with pytest.raises(Refused):
            parse_request(f"spampot collected {bad}", DATA)


@pytest.mark.parametrize(
    "command",
    [
        None,
        "",
        "sh",
        "cat /etc/shadow",
        "spampot health",
        "spampot health --json; rm -rf /",
        "spampot health --json --config /etc/other.toml",
        "spampot collected --files -1 --bytes 3",
        "spampot collected --files 3",
        "spampot sensor",
        # rsync receiving (a push from the centre: would write on the sensor)
        "rsync --server -trze.iLsfxCIvu . /var/lib/spampot/spool/",
        # another directory, a parent, two sources, a relative path
        "rsync --server --sender -trze.iLsfxCIvu . /etc/",
        "rsync --server --sender -trze.iLsfxCIvu . /var/lib/spampot/spool/../../../etc/",
        "rsync --server --sender -trze.iLsfxCIvu . /var/lib/spampot/spool/ /etc/",
        "rsync --server --sender -trze.iLsfxCIvu . spool/",
        # follow symlinks, files-from, log to a file, remove without --sender
        "rsync --server --sender -Ltrze.iLsfxCIvu . /var/lib/spampot/spool/",
        "rsync --server --sender -trze.iLsfxCIvu --files-from=- . /var/lib/spampot/spool/",
        "rsync --server --sender -trze.iLsfxCIvu --log-file=/tmp/x . /var/lib/spampot/spool/",
        "rsync --server --sender -trze.iLsfxCIvu --rsync-path=sh . /var/lib/spampot/spool/",
        "rsync --server --sender --timeout=5 . /var/lib/spampot/spool/",
        "rsync --server --remove-source-files -trze.iLsfxCIvu . /var/lib/spampot/spool/",
        "rsync --server --sender -trze.iLsfxCIvu . /var/lib/spampot/spool/ ; id",
        "rsync --server --sender -trze.iLsfxCIvu . '/var/lib/spampot/spool/",
        "x" * 5000,
    ],
)
def test_everything_else_is_refused(command):
    with pytest.raises(Refused):
        parse_request(command, DATA)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.text(max_size=300),
        st.lists(
            st.sampled_from(
                [
                    "rsync",
                    "--server",
                    "--sender",
                    "-trze.iLsfxCIvu",
                    "-L",
                    ".",
                    "/var/lib/spampot/spool/",
                    "/etc/",
                    "--remove-source-files",
                    "--timeout=5",
                    "--log-file=x",
                    "spampot",
                    "health",
                    "--json",
                    "collected",
                    "--files",
                    "--bytes",
                    "7",
                    ";",
                    "'",
                    "\\",
                    "$(id)",
                ]
            ),
            max_size=10,
        ).map(" ".join),
    )
)
def test_fuzz_only_the_three_forms_pass(command):
    try:
        request = parse_request(command, DATA)
    except Refused:
        return
    if isinstance(request, RsyncSender):
        argv = request.argv
        assert argv[:3] == ("rsync", "--server", "--sender")
        assert argv[-2:] == (".", "/var/lib/spampot/spool/")
        assert not any(
            a.startswith("--")
            and a not in {"--server", "--sender"}
            and not a.startswith(("--timeout=", "--bwlimit=", "--remove-source-files"))
            for a in argv
        )
    else:
        assert isinstance(request, Health | Collected | CollectedStream)


def test_prune_keeps_newest_day_and_events(tmp_path):
    spool = tmp_path / "spool"
    for d in (
        "2026-11-25/25/1.2.3.4",
        "2026-11-26/25/1.2.3.4",
        "2026-11-26/80/5.6.7.8",
        "2026-11-27/25/1.2.3.4",
        "events",
    ):
        (spool / d).mkdir(parents=True)
    (spool / "2026-11-26/80/5.6.7.8/000000-ABCDEF.eml.gz").write_bytes(b"x")
    assert prune_spool(spool) == 5  # 11-25 (3 levels), 11-26/25/1.2.3.4 (2 levels)
    left = sorted(str(p.relative_to(spool)) for p in spool.rglob("*"))
    assert left == [
        "2026-11-26",
        "2026-11-26/80",
        "2026-11-26/80/5.6.7.8",
        "2026-11-26/80/5.6.7.8/000000-ABCDEF.eml.gz",
        "2026-11-27",
        "2026-11-27/25",
        "2026-11-27/25/1.2.3.4",
        "events",
    ]
    assert prune_spool(tmp_path / "missing") == 0


def test_marker_is_replaced_whole(tmp_path):
    now = dt.datetime(2026, 11, 28, 1, 2, 3, 456789, tzinfo=dt.UTC)
    path = write_last_collection(tmp_path, 12, 3456, now)
    assert json.loads(path.read_text()) == {
        "time": "2026-11-28T01:02:03.456789Z",
        "files": 12,
        "bytes": 3456,
    }
    write_last_collection(tmp_path, 1, 2, now)
    assert [p.name for p in path.parent.iterdir()] == ["last-collection.json"]


# -- through a real sshd -----------------------------------------------------------------------


def _ssh(sensor, command: str) -> subprocess.CompletedProcess:
    return sensor.server.ssh(sensor.key, command)


def test_real_sshd_refuses_shell_push_and_other_dirs(sshd, tmp_path):
    sensor = add_sensor(sshd, "br-01")
    fill_spool(sensor, 3)
    for command in ("id", "cat /etc/passwd", "rsync --server --sender -tre.iLsfxCIvu . /etc/"):
        done = _ssh(sensor, command)
        assert done.returncode == 1, (command, done)
        assert b"spampot gate: refused" in done.stderr
        assert done.stdout == b""
    ssh = " ".join(sshd.ssh_args(sensor.key))
    # Pushing a file into the spool: rsync runs the server as a receiver, which is refused.
    payload = tmp_path / "payload.eml.gz"
    payload.write_bytes(b"x")
    push = subprocess.run(
        ["rsync", "-e", ssh, str(payload), f"127.0.0.1:{sensor.spool}/"],
        capture_output=True,
        timeout=60,
    )
    assert push.returncode != 0 and not (sensor.spool / "payload.eml.gz").exists()
    # Pulling the sensor's whole data dir (or /etc) is refused too.
    for source in (f"{sensor.data_dir}/", "/etc/"):
        pull = subprocess.run(
            ["rsync", "-rt", "-e", ssh, f"127.0.0.1:{source}", str(tmp_path / "stolen")],
            capture_output=True,
            timeout=60,
        )
        assert pull.returncode != 0 and not (tmp_path / "stolen").exists()
    # An interactive login gets nothing either (no command: refused; restrict: no pty).
    login = subprocess.run(
        [*sshd.ssh_args(sensor.key), "127.0.0.1"], capture_output=True, timeout=60, input=b"id\n"
    )
    assert login.returncode == 1 and b"refused" in login.stderr


def test_real_sshd_lets_health_and_collected_through(sshd):
    sensor = add_sensor(sshd, "br-01")
    done = _ssh(sensor, "spampot collected --files 5 --bytes 100")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"pruned": 0}
    marker = json.loads((sensor.data_dir / "state/last-collection.json").read_text())
    assert marker["files"] == 5 and marker["bytes"] == 100
    health = _ssh(sensor, "spampot health --json")
    assert health.returncode == 0, health.stderr
    report = json.loads(health.stdout)
    # The sensor's own configuration, not the built-in one (finding 6 of issue 14).
    assert report["sensor"] == "br-01"
    assert report["disk"]["path"] == str(sensor.data_dir)
    assert report["collection"]["files"] == 5


def _gate(env_command: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "spampot", "gate", *args],
        env={**os.environ, "SSH_ORIGINAL_COMMAND": env_command},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_gate_without_the_sensor_configuration_is_refused(tmp_path):
    """Finding 6 of issue 14: ``gate --data-dir DIR`` answered health for the built-in
    configuration (another name, data dir, listeners, pool.ntp.org)."""
    done = _gate("spampot health --json", "--data-dir", str(tmp_path))
    assert done.returncode == 1 and done.stdout == ""
    assert "refused: no --config" in done.stderr


def test_gate_passes_the_configuration_and_data_dir_to_health(tmp_path):
    config = sensor_config(tmp_path / "s.toml", "br-09", tmp_path / "configured")
    other = tmp_path / "elsewhere"
    other.mkdir()
    done = _gate("spampot health --json", "--config", str(config), "--data-dir", str(other))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["sensor"] == "br-09" and report["disk"]["path"] == str(other)
    bad = tmp_path / "bad.toml"
    bad.write_text("[sensor]\nnmae = 1\n")
    refused = _gate("spampot health --json", "--config", str(bad))
    assert refused.returncode == 1 and "refused" in refused.stderr and refused.stdout == ""


# -- the removal list of `spampot collected --remove` -------------------------------------------


def test_collected_with_removal():
    assert parse_request("spampot collected --files 3 --bytes 9 --remove", DATA) == Collected(
        3, 9, remove=True
    )
    for bad in ("--removes", "--remove x", "--remove --remove"):
        with pytest.raises(Refused):
            parse_request(f"spampot collected --files 3 --bytes 9 {bad}", DATA)


def _message(spool, relpath: str, data: bytes = b"x" * 10, mtime: int = 1_790_000_000):
    path = spool / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))
    return path


def test_removal_deletes_only_what_the_centre_holds(tmp_path):
    spool = tmp_path / "spool"
    a = "2026-11-26/25/198.51.100.7/120000-ABCDEF01.eml.gz"
    b = "2026-11-26/25/198.51.100.7/120001-ABCDEF02.eml.gz"
    c = "2026-11-26/25/198.51.100.8/120002-ABCDEF03.eml.gz"
    e = "events/br-01-20261126T12.jsonl.gz"
    for rel in (a, b, c, e):
        _message(spool, rel)
    listing = io.BytesIO(
        f"10 1790000000 {a}\n"  # held: removed
        f"11 1790000000 {b}\n"  # another size at the centre: kept
        f"10 1790000001 {c}\n"  # another mtime: kept
        f"10 1790000000 {e}\n"  # a rotated event file: removed
        f"10 1790000000 2026-11-26/25/198.51.100.9/120003-ABCDEF04.eml.gz\n".encode()  # gone
    )
    held = parse_held(listing)
    assert remove_held(spool, held) == (2, 3)
    assert not (spool / a).exists() and not (spool / e).exists()
    assert (spool / b).exists() and (spool / c).exists()


def test_removal_never_follows_a_symbolic_link(tmp_path):
    spool = tmp_path / "spool"
    outside = tmp_path / "outside"
    victim = _message(outside, "25/198.51.100.7/120000-ABCDEF01.eml.gz")
    spool.mkdir()
    (spool / "2026-11-26").symlink_to(outside)
    held = parse_held(
        io.BytesIO(b"10 1790000000 2026-11-26/25/198.51.100.7/120000-ABCDEF01.eml.gz\n")
    )
    assert remove_held(spool, held) == (0, 1)
    assert victim.exists()
    link = spool / "events"
    link.mkdir()
    (link / "x.jsonl.gz").symlink_to(victim)  # a symlink as the file: not a regular file
    assert remove_held(spool, parse_held(io.BytesIO(b"10 1790000000 events/x.jsonl.gz\n"))) == (
        0,
        1,
    )
    assert victim.exists()


@pytest.mark.parametrize(
    "line",
    [
        b"10 1 ../state/last-collection.json",
        b"10 1 /etc/passwd",
        b"10 1 2026-11-26/25/198.51.100.7/../../../../etc/x.eml.gz",
        b"10 1 events/../../x.jsonl.gz",
        b"10 1 events/.hidden.jsonl.gz",
        b"-1 1 events/a.jsonl.gz",
        b"10 events/a.jsonl.gz",
        b"10 1 events/a.jsonl.gz extra",
        b"10 1 " + b"events/" + b"a" * 600 + b".jsonl.gz",
    ],
)
def test_a_bad_removal_list_is_refused_whole(tmp_path, line):
    spool = tmp_path / "spool"
    keep = _message(spool, "events/a.jsonl.gz")
    with pytest.raises(Refused):
        parse_held(io.BytesIO(b"10 1790000000 events/a.jsonl.gz\n" + line + b"\n"))
    assert keep.exists()


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.binary(max_size=2000))
def test_removal_list_from_arbitrary_bytes(data):
    try:
        held = parse_held(io.BytesIO(data))
    except Refused:
        return
    for item in held:
        assert spool_file(item.relpath) and ".." not in item.relpath.split("/")


# -- the streamed removal list of `spampot collected --stream` ----------------------------------


def test_streamed_removal_deletes_each_file_as_its_line_arrives(tmp_path):
    """The centre lists what it holds while its copy runs: a file goes as soon as its line
    is read, long before the list ends."""
    import threading

    spool = tmp_path / "spool"
    a = "2026-11-26/25/198.51.100.7/120000-ABCDEF01.eml.gz"
    b = "2026-11-26/25/198.51.100.8/120002-ABCDEF03.eml.gz"
    for rel in (a, b):
        _message(spool, rel)
    read_fd, write_fd = os.pipe()
    result: list = []
    reader = threading.Thread(
        target=lambda: result.append(remove_streamed(spool, os.fdopen(read_fd, "rb", 0)))
    )
    reader.start()
    with os.fdopen(write_fd, "wb", 0) as writer:
        writer.write(f"10 1790000000 {a}\n".encode())
        deadline = time.monotonic() + 10
        while (spool / a).exists():
            assert time.monotonic() < deadline, "not deleted before the list ended"
            time.sleep(0.01)
        assert reader.is_alive() and (spool / b).exists()
        writer.write(f"11 1790000000 {b}\nend 2 20\n".encode())  # b: another size, kept
    reader.join(timeout=10)
    assert result == [(1, 1, (2, 20))]
    assert (spool / b).exists()


def test_streamed_removal_without_its_closing_line_records_nothing(tmp_path):
    config = sensor_config(tmp_path / "s.toml", "br-09", tmp_path / "data")
    spool = tmp_path / "data" / "spool"
    a = "2026-11-26/25/198.51.100.7/120000-ABCDEF01.eml.gz"
    _message(spool, a)
    marker = tmp_path / "data" / "state" / "last-collection.json"

    def gate(stdin: bytes) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "spampot", "gate", "--config", str(config)],
            env={**os.environ, "SSH_ORIGINAL_COMMAND": "spampot collected --stream"},
            input=stdin,
            capture_output=True,
            timeout=60,
        )

    # The copy failed: what was listed is held at the centre and goes; nothing is recorded.
    cut = gate(f"10 1790000000 {a}\n".encode())
    assert cut.returncode == 1 and b"before its closing line" in cut.stderr, cut.stderr
    assert not (spool / a).exists() and not marker.exists()
    # A line that is not one stops the request, and records nothing either.
    _message(spool, a)
    bad = gate(f"10 1 ../state/x\n10 1790000000 {a}\nend 1 10\n".encode())
    assert bad.returncode == 1 and b"refused" in bad.stderr and (spool / a).exists()
    assert not marker.exists()
    done = gate(f"10 1790000000 {a}\nend 1 10\n".encode())
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"removed": 1, "kept": 0, "pruned": 0}
    assert json.loads(marker.read_text())["files"] == 1 and not (spool / a).exists()


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_streamed_removal_from_arbitrary_bytes(data):
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        spool = Path(tmp) / "spool"
        keep = _message(Path(tmp), "outside/a.jsonl.gz")
        (spool / "events").mkdir(parents=True)
        with contextlib.suppress(Refused):
            remove_streamed(spool, io.BytesIO(data))
        assert keep.exists()
