"""A real sensor process on loopback, driven by real SMTP clients: smtplib, curl, swaks."""

from __future__ import annotations

import gzip
import hashlib
import smtplib
import socket
import subprocess

import pytest

from conftest import need_tool

MESSAGE = (
    b"From: Sender <s@spam.example>\r\n"
    b"To: victim@example.org\r\n"
    b"Subject: =?utf-8?q?caf=C3=A9?= offer\r\n"
    b"\r\n"
    b".a line starting with a dot\r\n"
    b"..two dots\r\n"
    b"8-bit \xc3\xa9 \xff bytes\r\n"
    b".\t\r\n"
    b"last line\r\n"
)

COMMON = ("eventid", "timestamp", "sensor", "session", "src_ip", "src_port", "dst_ip",
          "dst_port", "message")  # fmt: skip
MESSAGE_FIELDS = ("via", "target_host", "target_port", "helo", "mail_from", "rcpt_to", "size",
                  "sha256", "queue_id", "file")  # fmt: skip


def messages(sensor) -> list[dict]:
    return [e for e in sensor.events() if e["eventid"] == "spampot.smtp.message"]


def stored(sensor, event: dict) -> bytes:
    return gzip.decompress((sensor.data_dir / "spool" / event["file"]).read_bytes())


def wait_messages(sensor, n: int) -> list[dict]:
    sensor.wait_events(lambda ev: sum(e["eventid"] == "spampot.smtp.message" for e in ev) >= n)
    return messages(sensor)


def test_smtplib_message_is_stored_byte_exact_with_envelope(sensor):
    with smtplib.SMTP("127.0.0.1", sensor.smtp_port, timeout=10) as client:
        code, banner = client.ehlo("client.example")
        assert code == 250 and banner.startswith(b"mx.sensor.example\n")
        client.mail("<@hop1,@hop2:route@spam.example>", ["BODY=8BITMIME"])
        for rcpt in ("a@example.org", '"john doe"@example.org', "user%host@relay.example",
                     "host!user", "u@[192.0.2.1]"):  # fmt: skip
            assert client.rcpt(rcpt)[0] == 250
        code, reply = client.data(MESSAGE)
        assert code == 250 and reply.startswith(b"2.0.0 Ok: queued as ")
    queue_id = reply.split()[-1].decode()
    (event,) = wait_messages(sensor, 1)
    assert event["queue_id"] == queue_id
    assert all(key in event for key in COMMON + MESSAGE_FIELDS)
    assert event["mail_from"] == "@hop1,@hop2:route@spam.example"
    assert event["rcpt_to"] == [
        "a@example.org",
        '"john doe"@example.org',
        "user%host@relay.example",
        "host!user",
        "u@[192.0.2.1]",
    ]
    assert event["via"] == "smtp" and event["target_host"] is None
    assert event["helo"] == "client.example"
    assert event["dst_port"] == sensor.smtp_port and event["src_ip"] == "127.0.0.1"
    data = stored(sensor, event)
    assert data == MESSAGE
    assert event["sha256"] == hashlib.sha256(MESSAGE).hexdigest() and event["size"] == len(MESSAGE)
    # DESIGN.md layout: spool/<date>/<port>/<ip>/<HHMMSS>-<queue id>.eml.gz
    day, port, ip, name = event["file"].split("/")
    assert event["timestamp"].startswith(day) and port == str(sensor.smtp_port)
    assert (
        ip == "127.0.0.1"
        and name.endswith(f"-{queue_id}.eml.gz")
        and len(name) == 6 + 1 + len(queue_id) + len(".eml.gz")
    )


def test_many_messages_on_one_connection_and_ipv6(sensor):
    with smtplib.SMTP("::1", sensor.smtp_port, timeout=10) as client:
        for i in range(5):
            client.sendmail("", [f"r{i}@example.org"], MESSAGE + b"n=%d\r\n" % i)
    events = wait_messages(sensor, 5)
    assert [e["rcpt_to"] for e in events] == [[f"r{i}@example.org"] for i in range(5)]
    assert {e["mail_from"] for e in events} == {""}
    assert {e["src_ip"] for e in events} == {"::1"}
    assert {e["file"].split("/")[2] for e in events} == {"--1"}  # "::1" made path-safe
    assert len({e["session"] for e in events}) == 1
    for i, event in enumerate(events):
        assert stored(sensor, event) == MESSAGE + b"n=%d\r\n" % i


def test_curl_two_recipients_and_upload(sensor, tmp_path):
    curl = need_tool("curl")
    body = tmp_path / "mail.txt"
    body.write_bytes(MESSAGE)
    subprocess.run(
        [curl, "-sS", f"smtp://127.0.0.1:{sensor.smtp_port}/curl.example",
         "--mail-from", "curl@spam.example", "--mail-rcpt", "one@example.org",
         "--mail-rcpt", "two@example.org", "-T", str(body)],
        check=True, timeout=30,
    )  # fmt: skip
    (event,) = wait_messages(sensor, 1)
    assert event["mail_from"] == "curl@spam.example"
    assert event["rcpt_to"] == ["one@example.org", "two@example.org"]
    assert event["helo"] == "curl.example"
    assert stored(sensor, event) == MESSAGE


def test_swaks_pipelining_and_auth_login(sensor_factory):
    # AUTH offered in plain text too (smtp.auth = "always"); refused as Postfix refuses a wrong
    # password, and the relay takes the mail all the same (swaks --auth-optional goes on).
    sensor = sensor_factory('[smtp]\nauth = "always"\n')
    swaks = need_tool("swaks")
    result = subprocess.run(
        [swaks, "--server", f"127.0.0.1:{sensor.smtp_port}", "--pipeline",
         "--auth-optional", "LOGIN", "--auth-user", "spammer", "--auth-password", "s3cret",
         "--from", "bulk@spam.example", "--to", "a@example.org,b@example.org",
         "--ehlo", "swaks.example", "--body", "cheap pills\n.\n..dots\n"],
        capture_output=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert b"PIPELINING" in result.stdout
    assert b"535 5.7.8 Error: authentication failed: authentication failure" in result.stdout
    (event,) = wait_messages(sensor, 1)
    assert event["rcpt_to"] == ["a@example.org", "b@example.org"]
    auth = [e for e in sensor.events() if e["eventid"] == "spampot.smtp.auth"]
    assert [(a["mechanism"], a["username"], a["password"]) for a in auth] == [
        ("LOGIN", "spammer", "s3cret")
    ]
    data = stored(sensor, event)
    assert hashlib.sha256(data).hexdigest() == event["sha256"]
    # swaks dot-stuffs the lone "." and "..dots"; the spool holds them unstuffed.
    assert b"\r\n.\r\n..dots\r\n" in data


def test_session_events_and_bad_commands_are_logged(sensor):
    with socket.create_connection(("127.0.0.1", sensor.smtp_port), timeout=5) as s:
        our_port = s.getsockname()[1]
        f = s.makefile("rwb")
        assert f.readline().startswith(b"220 mx.sensor.example ESMTP")
        sent = b"HELO x\r\nFOO\x00\xff bar\r\nRCPT TO:<a@b>\r\nQUIT\r\n"
        f.write(sent)
        f.flush()
        replies = [f.readline() for _ in range(4)]
    # "FOO\0..." is cut at the NUL (Postfix reads C strings): an unknown command, 500.
    assert [r[:3] for r in replies] == [b"250", b"500", b"503", b"221"]

    def ours(ev):
        return [e for e in ev if e["src_port"] == our_port]

    events = ours(
        sensor.wait_events(
            lambda ev: any(e["eventid"] == "spampot.session.close" for e in ours(ev))
        )
    )
    kinds = [e["eventid"] for e in events]
    assert kinds == ["spampot.session.open", "spampot.smtp.error", "spampot.smtp.error",
                     "spampot.session.close"]  # fmt: skip
    bad = events[[e["eventid"] for e in events].index("spampot.smtp.error")]
    assert bad["input"] == "FOO\\x00\\xff bar"
    close = events[-1]
    assert close["reason"] == "quit" and close["bytes_in"] == len(sent) and close["duration_s"] >= 0


def test_sigterm_writes_sensor_stop(sensor):
    assert sensor.stop() == 0
    kinds = [e["eventid"] for e in sensor.events()]
    assert kinds[0] == "spampot.sensor.start" and kinds[-1] == "spampot.sensor.stop"


@pytest.mark.parametrize("partial", [False, True])
def test_port_in_use_is_a_clear_error(sensor_factory, partial):
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    busy = blocker.getsockname()[1]
    try:
        s = sensor_factory(start=False)
        text = s.config_path.read_text().replace(
            f"smtp = [{s.smtp_port}]", f"smtp = [{s.smtp_port}, {busy}]"
        )
        if partial:
            text = text.replace("[sensor]", "[sensor]\nallow_partial_bind = true")
        s.config_path.write_text(text)
        s.start(wait=partial)
        if partial:
            start = s.wait_events(lambda ev: bool(ev))[0]
            assert f"port {busy}" in start["detail"]
            assert s.stop() == 0
        else:
            assert s.proc.wait(timeout=20) == 2
            assert f"cannot listen on 127.0.0.1 port {busy}: Address already in use" in s.stderr()
    finally:
        blocker.close()


def test_sighup_reopens_the_event_log(sensor):
    """A log shipper may move current.jsonl away; SIGHUP makes the sensor start a new one."""
    import signal
    import time

    live = sensor.data_dir / "events" / "current.jsonl"
    sensor.wait_events(lambda ev: bool(ev))
    moved = live.with_name("moved.jsonl")
    live.rename(moved)
    sensor.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    with smtplib.SMTP("127.0.0.1", sensor.smtp_port, timeout=10) as client:
        client.sendmail("a@spam.example", ["v@example.org"], MESSAGE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and b"smtp.message" not in (
        live.read_bytes() if live.exists() else b""
    ):
        time.sleep(0.1)
    assert b"spampot.smtp.message" in live.read_bytes()
    assert b"spampot.smtp.message" not in moved.read_bytes()


def test_every_configuration_key_is_documented():
    import dataclasses
    from pathlib import Path

    from spampot.config import Config

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for section in dataclasses.fields(Config):
        assert f"### `[{section.name}]`" in readme
        for key in dataclasses.fields(getattr(Config(), section.name)):
            assert f"| `{key.name}` |" in readme, f"[{section.name}] {key.name} not in README"
