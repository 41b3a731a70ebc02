"""The event contract (spampot.contract): one real sensor writes every kind of event it
declares, each validates, and the ingest and its SQL know every field the warehouse keeps."""

from __future__ import annotations

import gzip
import json
import re
import signal
import smtplib
import socket
import ssl

import msgspec
import pytest

from spampot import contract
from spampot.analysis.ingest import EVENT_COLUMNS, TABLES
from spampot.analysis.sql import load_sql
from spampot.sensor.events import Clock, EventBuffer, UndeclaredEvent, spelt_line

BASE = {
    "session": "abc",
    "src_ip": "198.51.100.7",
    "src_port": 4000,
    "dst_ip": "192.0.2.1",
    "dst_port": 25,
}


def _recv_all(sock: socket.socket) -> bytes:
    out = b""
    sock.settimeout(10)
    while chunk := sock.recv(65536):
        out += chunk
    return out


def test_a_real_sensor_writes_every_declared_event_and_each_matches_the_contract(
    sensor_factory,
):
    sensor = sensor_factory(
        '[proxy]\nnon_smtp = "web"\n[limits]\nmax_connections_per_ip = 4\n', start=False
    )
    text = sensor.config_path.read_text().replace(
        "[sensor]", '[sensor]\nproxy_protocol = true\nproxy_protocol_from = ["127.0.0.2/32"]'
    )
    sensor.config_path.write_text(text)
    sensor.start()
    smtp, http, socks = sensor.smtp_port, sensor.ports["http"], sensor.ports["socks"]
    # smtp.message, smtp.auth, smtp.reject, smtp.error; session.open / close
    with smtplib.SMTP("127.0.0.1", smtp, timeout=10) as client:
        client.ehlo("client.example")
        # smtp.tls, then smtp.auth (AUTH is offered after STARTTLS, as Postfix does)
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        client.starttls(context=insecure)
        client.ehlo("client.example")
        client.docmd("AUTH", "PLAIN AGFsaWNlAHNlY3JldA==")
        client.docmd("BOGUS")
        client.sendmail(
            "a@spam.example", ["v@example.org", "w@example.net"], b"Subject: x\r\n\r\nhi\r\n"
        )
        client.docmd("MAIL FROM:<b@spam.example> SIZE=999999999999")
    # proxy.request (http, socks5, unknown first byte) and web.request in a tunnel
    with socket.create_connection(("127.0.0.1", http), timeout=10) as s:
        s.sendall(
            b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"
        )
        assert _recv_all(s).startswith(b"HTTP/1.")
    with socket.create_connection(("127.0.0.1", socks), timeout=10) as s:
        s.sendall(b"\x05\x01\x00")
        assert s.recv(2) == b"\x05\x00"
        s.sendall(b"\x05\x01\x00\x03\x0bexample.com\x00\x50")
        s.recv(10)
        s.sendall(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
        assert b"HTTP/1." in _recv_all(s)
    with socket.create_connection(("127.0.0.1", socks), timeout=10) as s:
        s.sendall(b"\x16\x03\x01junk\r\n\r\n")
        _recv_all(s)
    # session.error: a bad PROXY header from the trusted front end
    with socket.create_connection(("127.0.0.1", smtp), source_address=("127.0.0.2", 0)) as s:
        s.sendall(b"PROXY TCP4 nonsense\r\n")
        _recv_all(s)
    # sensor.limit: more connections from one address than allowed
    held = [socket.create_connection(("127.0.0.1", smtp), timeout=10) for _ in range(6)]
    # sensor.reload, then sensor.storage (a quota already exceeded), then sensor.error (a
    # configuration that does not load)
    sensor.config_path.write_text(text + "\n[spool]\nquota_bytes = 1\n")
    assert sensor.proc is not None
    sensor.proc.send_signal(signal.SIGHUP)
    sensor.wait_events(
        lambda ev: {"spampot.sensor.storage", "spampot.sensor.limit"} <= {e["eventid"] for e in ev},
        timeout=30,
    )
    for sock in held:
        sock.close()
    sensor.config_path.write_text(text + "\n[spool]\nquota_bytes = -5\n")
    sensor.proc.send_signal(signal.SIGHUP)
    sensor.wait_events(lambda ev: any(e["eventid"] == "spampot.sensor.error" for e in ev))
    assert sensor.stop() == 0
    events = sensor.events()  # each line is validated against the contract on reading
    seen = {e["eventid"] for e in events}
    declared = {contract.eventid(cls) for cls in contract.EVENTS}
    assert seen == declared, (declared - seen, seen - declared)
    # Decoding gives each its own class, with the types the warehouse expects.
    lines = b"".join(  # the stop closed the event log into spool/events/
        gzip.decompress(p.read_bytes())
        for p in sorted((sensor.data_dir / "spool" / "events").glob("*.jsonl.gz"))
    )
    # Each line (written from the contract's struct) is the field-by-field spelling exactly.
    for line in lines.splitlines(keepends=True):
        given = json.loads(line)
        name = given.pop("eventid").removeprefix(contract.PREFIX)
        assert spelt_line(name, given) == line
    decoded = contract.DECODER.decode_lines(lines)
    (message,) = [e for e in decoded if isinstance(e, contract.SmtpMessage)]
    assert message.rcpt_to == ["v@example.org", "w@example.net"]
    assert message.timestamp.utcoffset() is not None and message.timestamp.utcoffset().seconds == 0


def test_the_encoder_refuses_an_undeclared_event_or_field():
    buffer = EventBuffer("s", Clock())
    line = buffer.encode("session.open", BASE, "hello")
    assert isinstance(contract.DECODER.decode(line), contract.SessionOpen)
    with pytest.raises(UndeclaredEvent, match=r"not in spampot\.contract"):
        buffer.encode("session.opened", BASE, "hello")
    with pytest.raises(UndeclaredEvent, match="colour"):
        buffer.encode("session.close", BASE, "bye", reason="quit", colour="red")


def test_the_encoder_keeps_escaping_disguising_characters():
    buffer = EventBuffer("s", Clock())
    for text, escaped in [
        ("a\u2028b", b"a\\u2028b"),
        ("\u202eevil", b"\\u202eevil"),
        ("\x85", b"\\u0085"),
    ]:
        line = buffer.encode("smtp.error", BASE, "m", error=text, reply="500", input="x")
        assert escaped in line and line.count(b"\n") == 1
        assert contract.DECODER.decode(line).error == text  # type: ignore[union-attr]
    # A lone surrogate (no sensor string holds one: client bytes are escaped as \xNN) is
    # still written as an escape, on one line, that the standard library reads back.
    line = buffer.encode("smtp.error", BASE, "m", error="bad \udcff", reply="500", input="x")
    assert b"bad \\udcff" in line and line.count(b"\n") == 1
    assert json.loads(line)["error"] == "bad \udcff"


def test_every_stored_field_is_a_column_the_ingest_reads():
    assert EVENT_COLUMNS == contract.COLUMNS
    sql = " ".join(load_sql(f"ingest_{table}") for table in TABLES)
    for name in contract.STORED - {"timestamp", "eventid"}:
        assert re.search(rf"\be\.{name}\b", sql), f"no ingest SQL reads the field {name!r}"
    every_field = set(contract.COMMON_FIELDS)
    for cls in contract.EVENTS:
        every_field |= set(cls.__struct_fields__)
    assert every_field >= contract.STORED


def test_every_declared_field_is_either_stored_or_declared_for_the_files_only():
    """A new field fails here until someone decides whether the warehouse keeps it."""
    for cls in contract.EVENTS:
        for name in cls.__struct_fields__:
            assert (name in contract.STORED) != (name in contract.FILES_ONLY), (cls, name)
    assert contract.STORED.isdisjoint(contract.FILES_ONLY)


def test_the_simulator_builds_its_lines_with_the_contract_fields():
    from spampot.simulate import offline

    assert contract.extra_fields("smtp.message") == offline._MESSAGE_FIELDS
    assert contract.extra_fields("session.close") == offline._CLOSE_FIELDS


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda d: d.pop("timestamp"), "timestamp"),
        (lambda d: d.pop("sensor"), "sensor"),
        (lambda d: d.update(dst_port=None), "dst_port"),
        (lambda d: d.update(dst_port=70000), "dst_port"),
        (lambda d: d.update(eventid="spampot.smtp.mesage"), "eventid"),
        (lambda d: d.update(rcpt_to=[{"a": 1}]), "rcpt_to"),
        (lambda d: d.update(timestamp="yesterday"), "timestamp"),
        (lambda d: d.update(size=-1), "size"),
    ],
)
def test_the_decoder_says_why_a_line_breaks_the_contract(change, reason):
    record = msgspec.json.decode(
        EventBuffer("s", Clock()).encode(
            "smtp.message",
            BASE,
            "m",
            via="smtp",
            target_host=None,
            target_port=None,
            helo="h",
            mail_from="a@b",
            mail_params="",
            rcpt_to=["c@d"],
            size=3,
            sha256="0" * 64,
            queue_id="Q",
            file="f",
        )
    )
    change(record)
    with pytest.raises(msgspec.ValidationError, match=reason):
        contract.DECODER.decode(msgspec.json.encode(record))


def test_timestamps_parse_the_same_in_every_rfc3339_spelling():
    stamps = ["2026-05-28T12:00:00Z", "2026-05-28T12:00:00.000000Z", "2026-05-28T12:00:00+00:00"]
    line = EventBuffer("s", Clock()).encode("session.open", BASE, "m")
    parsed = {
        contract.DECODER.decode(
            re.sub(rb'"timestamp":"[^"]+"', f'"timestamp":"{s}"'.encode(), line)
        ).timestamp
        for s in stamps
    }
    assert len(parsed) == 1
