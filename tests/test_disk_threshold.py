"""Free-space floor and data-dir quota: 452 4.3.1 at MAIL before the disk is full, then back."""

from __future__ import annotations

import os
import smtplib
import subprocess
import time
from pathlib import Path

from conftest import need_root

BODY = b"Subject: filler\r\n\r\n" + os.urandom(300_000).hex().encode() + b"\r\n"


def _fill_until_452(port: int, limit: int = 200) -> list[tuple[int, bytes]]:
    """Send messages until MAIL itself is answered 452; returns the MAIL replies."""
    replies = []
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        for _ in range(limit):
            code, text = client.mail("a@spam.example")
            replies.append((code, text))
            if code != 250:
                break
            client.rcpt("v@example.org")
            client.data(BODY)
            time.sleep(0.2)  # a few housekeeping ticks pass before the floor is crossed
    return replies


def _mail_accepted_within(port: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            if client.mail("a@spam.example")[0] == 250:
                return True
        time.sleep(0.25)
    return False


def _storage_events(sensor, state: str) -> list[dict]:
    events = sensor.wait_events(
        lambda ev: any(
            e["eventid"] == "spampot.sensor.storage" and e["state"] == state for e in ev
        ),
        timeout=30,
    )
    return [e for e in events if e["eventid"] == "spampot.sensor.storage" and e["state"] == state]


def _check_rejected_then_recovered(sensor, spool: Path, why: str) -> None:
    replies = _fill_until_452(sensor.smtp_port)
    assert replies[-1] == (452, b"4.3.1 Insufficient system storage"), replies[-3:]
    assert len(replies) > 1  # it took mail until the limit
    low = _storage_events(sensor, "low")
    assert low and why in low[0]["why"]

    def storage_reject(events: list[dict]) -> bool:
        return any(
            e["eventid"] == "spampot.smtp.reject"
            and (e["stage"], e["code"], e["why"]) == ("mail", 452, "storage")
            for e in events
        )

    # The event reaches the log within the flush interval of the 452, not before it.
    assert storage_reject(sensor.wait_events(storage_reject, timeout=30))
    # The proxies keep serving meanwhile: their requests are only events.
    import socket

    with socket.create_connection(("127.0.0.1", sensor.ports["socks"]), timeout=5) as s:
        s.sendall(b"\x05\x01\x00")
        assert s.recv(2) == b"\x05\x00"
    # The collector takes the files: mail is accepted again, by itself.
    for path in spool.rglob("*.eml.gz"):
        path.unlink()
    assert _mail_accepted_within(sensor.smtp_port, 30)  # loaded machines are slow
    assert _storage_events(sensor, "ok")


def test_free_space_floor_answers_452_and_recovers(sensor_factory, tmp_path):
    need_root()
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(mnt)], check=True)
    try:
        sensor = sensor_factory(
            f"[spool]\nmin_free_bytes = {32 * 1024 * 1024}\nmin_free_inodes = 0\n", start=False
        )
        text = sensor.config_path.read_text().replace(
            f'data_dir = "{sensor.data_dir}"', f'data_dir = "{mnt / "data"}"'
        )
        sensor.config_path.write_text(text)
        sensor.data_dir = mnt / "data"
        sensor.start()
        _check_rejected_then_recovered(sensor, mnt / "data" / "spool", "min_free_bytes")
        assert sensor.stop() == 0
    finally:
        deadline = time.monotonic() + 10
        while subprocess.run(["umount", str(mnt)], check=False).returncode != 0:
            if time.monotonic() > deadline:
                subprocess.run(["umount", "-l", str(mnt)], check=False)
                break
            time.sleep(0.2)


def test_quota_answers_452_and_recovers(sensor_factory):
    sensor = sensor_factory(
        f"[spool]\nmin_free_bytes = 0\nmin_free_inodes = 0\nquota_bytes = {3 * 1024 * 1024}\n"
    )
    _check_rejected_then_recovered(sensor, sensor.data_dir / "spool", "quota_bytes")
    assert sensor.stop() == 0
