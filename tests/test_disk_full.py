"""A full disk: Postfix's temporary error (the spammer retries), the sensor carries on and
recovers by itself."""

from __future__ import annotations

import gzip
import os
import smtplib
import subprocess
import time

from conftest import need_root

BODY = b"Subject: filler\r\n\r\n" + os.urandom(48_000).hex().encode() + b"\r\n"


def test_full_disk_gets_452_and_recovers(sensor_factory, tmp_path):
    need_root()
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], check=True)
    try:
        # No floors: this test is about the disk really filling up (ENOSPC at DATA).
        sensor = sensor_factory("[spool]\nmin_free_bytes = 0\nmin_free_inodes = 0\n", start=False)
        text = sensor.config_path.read_text().replace(
            f'data_dir = "{sensor.data_dir}"', f'data_dir = "{mnt / "data"}"'
        )
        sensor.config_path.write_text(text)
        sensor.data_dir = mnt / "data"
        sensor.start()
        codes = []
        with smtplib.SMTP("127.0.0.1", sensor.smtp_port, timeout=10) as client:
            for _ in range(80):  # 80 x ~70 KB compressed: far more than 3 MB
                client.mail("a@spam.example")
                client.rcpt("v@example.org")
                code, reply = client.data(BODY)
                codes.append((code, reply))
                if code // 100 == 4:
                    break
            # What Postfix says when cleanup cannot write the queue file.
            assert codes[-1] == (451, b"4.3.0 Error: queue file write error"), codes[-3:]
            # Space comes back (the collector took the files): the same session goes on.
            for path in (mnt / "data" / "spool").rglob("*.eml.gz"):
                path.unlink()
            client.mail("a@spam.example")
            client.rcpt("v@example.org")
            code, reply = client.data(b"Subject: after\r\n\r\nsmall\r\n")
            assert code == 250, reply
        events = sensor.wait_events(
            lambda ev: (
                any(e.get("why") == "storage" for e in ev)
                and any(e["eventid"] == "spampot.sensor.error" for e in ev)
            )
        )
        assert any(e["eventid"] == "spampot.smtp.reject" and e["code"] == 451 for e in events)
        last = [e for e in events if e["eventid"] == "spampot.smtp.message"][-1]
        stored = mnt / "data" / "spool" / last["file"]
        assert gzip.decompress(stored.read_bytes()) == b"Subject: after\r\n\r\nsmall\r\n"
        assert not any((mnt / "data" / "tmp").glob("*.eml.gz"))
        assert sensor.stop() == 0
    finally:
        deadline = time.monotonic() + 10
        while subprocess.run(["umount", str(mnt)], check=False).returncode != 0:
            if time.monotonic() > deadline:
                subprocess.run(["umount", "-l", str(mnt)], check=False)
                break
            time.sleep(0.2)
