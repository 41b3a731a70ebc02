"""Hostile bytes end to end through a real sensor: every client string that reaches the event
log or a path (HELO, MAIL FROM, RCPT TO, AUTH, SOCKS user ids, host names and credentials, HTTP
targets and headers, PROXY-header addresses) leaves one valid JSON line per event, nothing
outside the data dir, and only paths made of safe components."""

from __future__ import annotations

import base64
import gzip
import json
import re
import socket
import struct
from pathlib import Path

import pytest

from conftest import Sensor

HOSTILE: list[bytes] = [
    b"../../../../../../tmp/spampot-escaped",
    b"..\\..\\..\\windows\\system32",
    b"nul\x00inside",
    b"\x1b[2J\x1b]0;owned\x07\x1b[31mred",
    b"bad\xff\xfeutf8\xc3(\xed\xa0\x80\xc0\xaf",
    "line\u2028sep\u2029para\x85nel\x9bcsi".encode(),
    "\u202egnp.exe\u200b\ufeff".encode(),
    b'"},{"eventid":"spampot.forged","src_ip":"6.6.6.6',
    b"%2e%2e%2f%00%0d%0a",
    b"cr\rinside",
    b"A" * 1500,
]

# Characters that must never appear raw in an event line (events.py: JSON escapes the rest).
RAW_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ud800-\udfff]"
)
SPOOL_MESSAGE = re.compile(
    r"\d{4}-\d{2}-\d{2}/\d{1,5}/[0-9a-f.\-]{1,45}/\d{6}-[0-9A-F]{10}\.eml\.gz"
)
SPOOL_EVENTS = re.compile(r"events/[A-Za-z0-9._-]+-\d{8}T\d{2}(-\d+)?\.jsonl\.gz")


def utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def text(raw: bytes) -> str:
    """What the event log keeps of a client string (protocols/common.py decode_client)."""
    return raw.decode("utf-8", "backslashreplace")


class Conn:
    """A raw client that reads replies until the sensor goes quiet or closes."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection((host, port), timeout=5)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> bytes:
        """One SMTP reply, all its lines."""
        got = b""
        while not re.search(rb"(^|\n)\d{3} [^\n]*\n$", got):
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            got += chunk
        return got

    def read_all(self) -> bytes:
        got = b""
        try:
            while len(got) < 1 << 20:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                got += chunk
        except TimeoutError:
            pass
        return got

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def one_line_replies(data: bytes) -> None:
    """Every reply line is printable ASCII: a client string cannot forge a line."""
    for line in data.split(b"\r\n"):
        assert all(32 <= b < 127 for b in line), line[:200]


def smtp_session(conn: Conn, hostile: bytes) -> None:
    one_line_replies(conn.reply())  # banner
    for command in (
        b"EHLO " + hostile,
        b"AUTH PLAIN " + base64.b64encode(hostile + b"\x00" + hostile + b"\x00" + hostile),
        b"MAIL FROM:<" + hostile + b">",
        b"RCPT TO:<" + hostile + b">",
        b"RCPT TO:<postmaster@" + hostile + b">",
        b"VRFY " + hostile,
        b"XHOSTILE " + hostile,
        b"DATA",
    ):
        conn.send(command + b"\r\n")
        reply = conn.reply()
        one_line_replies(reply)
        if reply.startswith(b"221 2.7.0 "):
            # Postfix's defence: a line that is no command (a non-letter after an injected
            # line end) ends the session, as smtpd_forbidden_commands does.
            return
    if reply.startswith(b"354 "):  # a recipient was taken (Postfix refuses some hostile ones)
        conn.send(b"Subject: " + hostile + b"\r\n\r\n" + hostile + b"\r\n.\r\n")
        assert conn.reply().startswith(b"250 ")
    conn.send(b"MAIL FROM:" + hostile.replace(b" ", b"") + b" " + hostile + b"\r\nQUIT\r\n")
    one_line_replies(conn.read_all())


def smtp_auth_login(conn: Conn, hostile: bytes) -> None:
    conn.reply()
    for line in (b"EHLO x", b"AUTH LOGIN", base64.b64encode(hostile), base64.b64encode(hostile)):
        conn.send(line + b"\r\n")
        one_line_replies(conn.reply())
    conn.send(b"QUIT\r\n")
    conn.read_all()


def socks4(port: int, hostile: bytes) -> None:
    userid = hostile.replace(b"\x00", b"")[:255]
    with Conn(port) as c:  # SOCKS4a: the host name is the client's string
        c.send(b"\x04\x01\x00\x19\x00\x00\x00\x01" + userid + b"\x00" + userid + b"\x00")
        reply = c.sock.recv(8)
        assert reply[:2] == b"\x00\x5a"
        banner = c.reply()
        assert banner.startswith(b"220 ")
        one_line_replies(banner)
        c.send(b"HELO " + hostile + b"\r\nQUIT\r\n")
        one_line_replies(c.read_all())


def socks5(port: int, hostile: bytes) -> None:
    field = hostile[:255]
    with Conn(port) as c:
        c.send(b"\x05\x01\x02")
        assert c.sock.recv(2) == b"\x05\x02"
        c.send(b"\x01" + bytes([len(field)]) + field + bytes([len(field)]) + field)
        assert c.sock.recv(2) == b"\x01\x00"
        c.send(b"\x05\x01\x00\x03" + bytes([len(field)]) + field + struct.pack("!H", 25))
        assert c.sock.recv(10)[:2] == b"\x05\x00"
        one_line_replies(c.reply())
        c.send(b"QUIT\r\n")
        c.read_all()
    with Conn(port) as c:  # another port: refused, logged
        c.send(b"\x05\x01\x00\x05\x01\x00\x03" + bytes([len(field)]) + field + b"\x01\xbb")
        c.read_all()


def http(port: int, hostile: bytes) -> None:
    token = hostile.replace(b" ", b"").replace(b"\r", b"").replace(b"\n", b"")
    auth = base64.b64encode(hostile + b":" + hostile)
    headers = (
        b"Host: " + token + b"\r\n"
        b"X-" + token.replace(b":", b"") + b": " + token + b"\r\n"
        b"Proxy-Authorization: Basic " + auth + b"\r\n"
        b"User-Agent: " + token + b"\r\n"
        b"Connection: close\r\n\r\n"  # Squid would keep the connection for another request
    )
    for request in (
        b"CONNECT " + token + b":25 HTTP/1.1\r\n" + headers + b"QUIT\r\n",
        b"CONNECT " + token + b":443 HTTP/1.1\r\n" + headers,
        b"GET http://" + token + b"/" + token + b"?azenv HTTP/1.1\r\n" + headers,
        b"GET http://judge.example/azenv.php?" + token + b" HTTP/1.0\r\n" + headers,
        b"GET /" + token + b" HTTP/1.1\r\n" + headers,
        b"POST http://x.example/ HTTP/1.1\r\nContent-Length: 5\r\n" + headers[:-2]
        + b"\r\n" + hostile[:5],
        token + b" " + token + b" " + token + b"\r\n\r\n",
    ):  # fmt: skip
        with Conn(port) as c:
            c.send(request)
            head = c.read_all().split(b"\r\n\r\n", 1)[0]
            for line in head.split(b"\r\n"):
                assert all(32 <= b < 127 or b == 9 for b in line), line[:200]


def files_outside(root: Path, data_dir: Path) -> set[Path]:
    return {p for p in root.rglob("*") if data_dir not in (p, *p.parents)}


def check_data_dir(sensor: Sensor, before_outside: set[Path], root: Path) -> list[dict]:
    """Every event line is one JSON object; every path is made of the safe components."""
    assert files_outside(root, sensor.data_dir) - before_outside <= {sensor.stderr_path}
    assert not Path("/tmp/spampot-escaped").exists()
    data_dir = sensor.data_dir.resolve()
    for path in data_dir.rglob("*"):
        assert path.resolve().is_relative_to(data_dir)
        assert not path.is_symlink()
        rel = path.relative_to(data_dir).as_posix()
        if path.is_file():
            if rel.startswith("spool/"):
                rel = rel.removeprefix("spool/")
                assert SPOOL_MESSAGE.fullmatch(rel) or SPOOL_EVENTS.fullmatch(rel), rel
            else:
                # The sensor's own files: names it makes, none from a client.
                assert re.fullmatch(
                    r"events/(current(-w\d+)?\.jsonl|last-rotated(-w\d+)?)"
                    r"|state/[a-z0-9-]+\.json|state/sensor\.lock|tls/snakeoil\.(pem|key)",
                    rel,
                ), rel
    records = []
    # The live logs, and the logs a stop (or a rotation) closed into spool/events/.
    logs = [p.read_bytes() for p in sorted((sensor.data_dir / "events").glob("current*.jsonl"))]
    for closed in sorted((sensor.data_dir / "spool" / "events").glob("*.jsonl.gz")):
        logs.append(gzip.decompress(closed.read_bytes()))
    assert logs
    for raw in logs:
        assert raw.endswith(b"\n")
        decoded = raw.decode("utf-8")  # strict: valid UTF-8 throughout
        lines = decoded.split("\n")[:-1]
        assert decoded.splitlines() == lines  # no other line end anywhere, for any reader
        for line in lines:
            assert not RAW_UNSAFE.search(line), line[:300]
            record = json.loads(line)
            assert isinstance(record, dict)
            assert record["eventid"].startswith("spampot.") and record["sensor"] == "test-sensor"
            records.append(record)
    assert not any(r["eventid"] == "spampot.forged" for r in records)
    return records


def test_hostile_strings_through_every_protocol(sensor_factory, tmp_path):
    # AUTH offered in plain text too, so the hostile credentials reach the AUTH parser.
    sensor = sensor_factory('[smtp]\nauth = "always"\n', start=False)
    before = files_outside(tmp_path, sensor.data_dir)
    sensor.start()
    for hostile in HOSTILE:
        with Conn(sensor.smtp_port) as conn:
            smtp_session(conn, hostile)
        with Conn(sensor.smtp_port) as conn:
            smtp_auth_login(conn, hostile)
        socks4(sensor.ports["socks"], hostile)
        socks5(sensor.ports["socks"], hostile)
        http(sensor.ports["http"], hostile)
    with Conn(sensor.smtp_port) as conn:  # an over-long line, and 1 MB without a line end
        conn.reply()
        conn.send(b"HELO " + b"\x00\x1b\xff../" * 2000 + b"\r\n")
        assert conn.reply().startswith(b"50")  # cut at the NUL, as Postfix does: 501
        conn.send(b"\xff" * (1 << 20) + b"\r\nQUIT\r\n")
        conn.read_all()
    assert sensor.stop() == 0
    records = check_data_dir(sensor, before, tmp_path)

    messages = [r for r in records if r["eventid"] == "spampot.smtp.message"]
    # The Postfix persona refuses what Postfix refuses: invalid UTF-8 (smtputf8_enable), and
    # a command cut at its NUL no longer parses; a bare name that is no local user is not a
    # recipient (routed forms with ! or % are). Everything else is taken and kept as sent.
    taken = [h for h in HOSTILE if b"\x00" not in h and utf8(h)]
    assert len(messages) == len(taken)
    for hostile, msg in zip(taken, messages, strict=True):
        assert msg["helo"] == text(hostile)  # kept as sent
        assert msg["mail_from"] == text(hostile)
        routed = any(c in hostile for c in b"@!%")
        assert msg["rcpt_to"] == [text(hostile)] * routed + ["postmaster@" + text(hostile)]
        assert msg["file"].split("/")[2] == "127.0.0.1"
    refused = [r for r in records if r["eventid"] == "spampot.smtp.error"]
    assert any(r["error"] == "bad UTF-8" for r in refused)
    auths = [r for r in records if r["eventid"] == "spampot.smtp.auth"]
    # PLAIN cannot carry a NUL inside a field (RFC 4616 §2), nor 3 x 1500 bytes in one line;
    # and it comes after an EHLO that invalid UTF-8 did not pass.
    plain_ok = [b"\x00" not in h and len(h) < 500 and utf8(h) for h in HOSTILE]
    expected = [
        (mechanism, text(h), text(h))
        for h, ok in zip(HOSTILE, plain_ok, strict=True)
        for mechanism in (("PLAIN", "LOGIN") if ok else ("LOGIN",))
    ]
    assert [(a["mechanism"], a["username"], a["password"]) for a in auths] == expected
    proxied = [r for r in records if r["eventid"] == "spampot.proxy.request"]
    socks5_hosts = {r["target_host"] for r in proxied if r["protocol"] == "socks5"}
    assert {text(h[:255]) for h in HOSTILE} <= socks5_hosts
    userids = {r["auth"]["username"] for r in proxied if r["protocol"] == "socks4a"}
    assert {text(h.replace(b"\x00", b"")[:255]) for h in HOSTILE} <= userids
    assert {r["outcome"] for r in proxied} == {"smtp", "other", "get", "error"}


@pytest.mark.parametrize(
    "header",
    [
        b"PROXY TCP6 fe80::1%\x1b[31m\x00 ::1 1000 25\r\n",
        b"PROXY TCP4 ../../../etc 192.0.2.10 1000 25\r\n",
        b"PROXY TCP4 192.0.2.9\x00/.. 192.0.2.10 1000 25\r\n",
        b"PROXY TCP4 192.0.2.9 192.0.2.10 1000 25 extra\r\n",
        b"PROXY \xff\xfe" + b"A" * 200 + b"\r\n",
        b"\r\n\r\n\x00\r\nQUIT\n" + b"\x00" * 20,
    ],
)
def test_hostile_proxy_headers_from_a_trusted_front_end(sensor_factory, tmp_path, header):
    sensor = sensor_factory(start=False)
    text_ = sensor.config_path.read_text().replace(
        "[sensor]", '[sensor]\nproxy_protocol = true\nproxy_protocol_from = ["127.0.0.1/32"]'
    )
    sensor.config_path.write_text(text_)
    before = files_outside(tmp_path, sensor.data_dir)
    sensor.start(wait=False)
    from conftest import wait_banner

    wait_banner(sensor.smtp_port, host="::1")
    with Conn(sensor.smtp_port) as c:
        c.send(header + b"HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nhi\r\n.\r\n")
        assert c.read_all() == b""  # refused before any protocol starts
    # A mapped IPv6 source in a good header: the IPv4 client, everywhere.
    with Conn(sensor.smtp_port) as c:
        c.send(b"PROXY TCP6 ::ffff:203.0.113.7 ::1 1000 25\r\n")
        c.send(b"HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n")
        assert b"queued" in c.read_all()
    assert sensor.stop() == 0
    records = check_data_dir(sensor, before, tmp_path)
    errors = [r for r in records if r["eventid"] == "spampot.session.error"]
    assert len(errors) == 1 and errors[0]["src_ip"] == "127.0.0.1"
    (msg,) = [r for r in records if r["eventid"] == "spampot.smtp.message"]
    assert msg["src_ip"] == "203.0.113.7" and msg["file"].split("/")[2] == "203.0.113.7"
