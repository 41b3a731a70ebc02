"""Started as root, the sensor binds and then runs as an unprivileged user."""

from __future__ import annotations

import os
import pwd
import smtplib
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import free_port, need_root, wait_banner


def _uids(pid: int) -> set[int]:
    """Real, effective, saved and filesystem uids of pid and of every descendant."""
    out: set[int] = set()
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            tasks = list(Path(f"/proc/{current}/task").iterdir())
        except FileNotFoundError:
            continue  # gone meanwhile
        for line in status.splitlines():
            if line.startswith("Uid:"):
                out.update(int(v) for v in line.split()[1:])
        for task in tasks:
            try:
                children = (task / "children").read_text().split()
            except FileNotFoundError:
                continue  # a thread that ended meanwhile
            todo += [int(c) for c in children]
    return out


@pytest.fixture
def open_dir():
    """A data dir's parent that an unprivileged user can reach (pytest's tmp is root-only)."""
    with tempfile.TemporaryDirectory(prefix="spampot-priv-") as d:
        os.chmod(d, 0o755)
        yield Path(d)


def _config(path: Path, data_dir: Path, port: int, sensor_lines: str) -> None:
    path.write_text(
        f"""
[sensor]
name = "priv"
data_dir = "{data_dir}"
bind = ["127.0.0.1"]
workers = 2
{sensor_lines}
[ports]
smtp = [{port}]
proxies = false
"""
    )


def _refused(config: Path) -> bytes:
    """Start a sensor that must refuse to start (status 2); returns its stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "spampot", "sensor", "--config", str(config)],
        capture_output=True,
        timeout=30,
    )
    assert done.returncode == 2
    return done.stderr


def test_root_drops_to_the_configured_user(open_dir, tmp_path):
    """And hands that user only what the sensor owns (finding 2 of issue 14: it handed every
    directory of the data dir over, the collector's ``.ssh/`` included, and sshd's StrictModes
    then refused the key)."""
    need_root()
    nobody = pwd.getpwnam("nobody")
    port = free_port()
    data_dir = open_dir / "data"
    ssh = data_dir / ".ssh"
    ssh.mkdir(parents=True, mode=0o700)
    (ssh / "authorized_keys").write_text("ssh-ed25519 AAAA test\n")
    (data_dir / "notes.txt").write_text("a person's file\n")
    config = tmp_path / "priv.toml"
    _config(config, data_dir, port, 'user = "nobody"')
    proc = subprocess.Popen(
        [sys.executable, "-m", "spampot", "sensor", "--config", str(config)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_banner(port, timeout=30)
        assert _uids(proc.pid) == {nobody.pw_uid}
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("a@spam.example", ["v@example.org"], b"Subject: x\r\n\r\nhi\r\n")
        stored = list((data_dir / "spool").rglob("*.eml.gz"))
        assert len(stored) == 1
        assert stored[0].stat().st_uid == nobody.pw_uid
        for owned in ("spool", "events", "state", "tmp", "spool/events"):
            assert (data_dir / owned).stat().st_uid == nobody.pw_uid, owned
        for foreign in (data_dir, ssh, ssh / "authorized_keys", data_dir / "notes.txt"):
            assert foreign.stat().st_uid == 0, foreign
        assert (data_dir / "events").stat().st_uid == nobody.pw_uid
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert b"running as nobody" in err


def test_root_without_a_user_is_refused(open_dir, tmp_path):
    need_root()
    port = free_port()
    config = tmp_path / "root.toml"
    _config(config, open_dir / "data", port, 'user = ""')
    assert b"refusing to run as root" in _refused(config)


def test_unreachable_data_dir_is_refused_before_serving(tmp_path):
    """pytest's tmp dir is root-only: a drop to nobody could not write there."""
    need_root()
    port = free_port()
    config = tmp_path / "unreachable.toml"
    _config(config, tmp_path / "data", port, 'user = "nobody"')
    assert b"not searchable" in _refused(config)
