"""HAProxy PROXY protocol v1/v2: the parser alone, and a sensor that trusts loopback."""

from __future__ import annotations

import gzip
import ipaddress
import itertools
import os
import smtplib
import socket
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spampot.protocols.proxy_protocol import (
    V2_SIGNATURE,
    ProxiedAddress,
    ProxyHeaderError,
    ProxyHeaderParser,
)


def v2(src: str, dst: str, sport: int, dport: int, command: int = 1) -> bytes:
    if ":" in src:
        body = socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
        fam = 0x21
    else:
        body = socket.inet_aton(src) + socket.inet_aton(dst)
        fam = 0x11
    body += struct.pack("!HH", sport, dport)
    return V2_SIGNATURE + bytes([0x20 | command, fam]) + struct.pack("!H", len(body)) + body


def parse(data: bytes, step: int = 0) -> ProxyHeaderParser:
    parser = ProxyHeaderParser()
    chunks = [data[i : i + step] for i in range(0, len(data), step)] if step else [data]
    for i, chunk in enumerate(chunks):
        if parser.receive_data(chunk):
            # What the adapter feeds the next machine: the rest, then the later reads.
            parser.rest += b"".join(chunks[i + 1 :])
            return parser
    raise AssertionError("header never completed")


@pytest.mark.parametrize("step", [0, 1, 5])
def test_v1_and_v2_headers_give_the_real_client(step):
    line = b"PROXY TCP4 198.51.100.7 192.0.2.10 40000 25\r\nEHLO x\r\n"
    p = parse(line, step)
    assert p.result == ProxiedAddress("198.51.100.7", 40000, "192.0.2.10", 25, 1)
    assert p.rest.startswith(b"EHLO")
    p = parse(v2("2001:db8::7", "2001:db8::1", 5555, 1080) + b"\x05\x01\x00", step)
    assert p.result == ProxiedAddress("2001:db8::7", 5555, "2001:db8::1", 1080, 2)
    assert p.rest == b"\x05\x01\x00"
    assert parse(b"PROXY UNKNOWN\r\n").result == ProxiedAddress(None, None, None, None, 1)
    assert parse(v2("0.0.0.0", "0.0.0.0", 0, 0, command=0)).result.src_ip is None


@pytest.mark.parametrize(
    "bad",
    [
        b"PROXY TCP4 198.51.100.7 192.0.2.10 40000\r\n",
        b"PROXY TCP4 ::1 192.0.2.10 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n",
        b"PROXY TCP9 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY " + b"9" * 200,
        b"EHLO x\r\n",
        b"\r\n\r\n\x00\r\nQUIX\n\x21\x11\x00\x0c",
        V2_SIGNATURE + b"\x21\x11\xff\xff",
    ],
)
def test_bad_headers_are_refused(bad):
    with pytest.raises(ProxyHeaderError):
        ProxyHeaderParser().receive_data(bad)


FUZZ = settings(max_examples=int(os.environ.get("SPAMPOT_FUZZ_EXAMPLES", "300")), deadline=None)


def feed_header(data: bytes, cuts: list[int]) -> ProxyHeaderParser | None:
    """Feed split at ``cuts`` as an adapter does; the parser once complete, None if refused."""
    parser = ProxyHeaderParser()
    edges = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    try:
        for a, b in itertools.pairwise(edges):
            if parser.receive_data(data[a:b]):
                parser.rest += data[b:]
                return parser
            assert len(parser._buf) <= 16 + 2048
    except ProxyHeaderError:
        return None
    return None


def check_header(data: bytes, cuts: list[int]) -> None:
    parser = feed_header(data, cuts)
    whole = feed_header(data, [])
    if parser is None or whole is None:
        assert parser is whole is None  # where TCP cut the stream changes nothing
        return
    assert (parser.result, parser.rest) == (whole.result, whole.rest)
    real = parser.result
    assert real is not None and data.endswith(parser.rest)
    for address in (real.src_ip, real.dst_ip):
        if address is not None:  # an address, in the form a socket would give
            assert str(ipaddress.ip_address(address)) == address and "%" not in address


ADDRESSES = st.one_of(
    st.ip_addresses().map(str),
    st.sampled_from(["fe80::1%eth0", "::ffff:1.2.3.4", "1.2.3.04", "../x", "", "1.2.3.4\x00"]),
)


@st.composite
def near_valid_headers(draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):
        family = draw(st.sampled_from([b"TCP4", b"TCP6", b"UNKNOWN", b"UDP4"]))
        parts = [b"PROXY", family, *(draw(ADDRESSES).encode() for _ in range(2))]
        parts += [str(draw(st.integers(0, 70000))).encode() for _ in range(2)]
        line = b" ".join(parts) + draw(st.sampled_from([b"\r\n", b"\n", b""]))
    else:
        fam = draw(st.sampled_from([0x00, 0x11, 0x21, 0x12, 0x31]))
        body = draw(st.binary(max_size=64))
        length = draw(st.one_of(st.just(len(body)), st.integers(0, 0xFFFF)))
        command = draw(st.sampled_from([0x20, 0x21, 0x22, 0x11]))
        line = V2_SIGNATURE + bytes([command, fam]) + struct.pack("!H", length) + body
    mutation = draw(st.integers(0, 3))
    if mutation == 1 and line:
        at = draw(st.integers(0, len(line) - 1))
        line = line[:at] + bytes([draw(st.integers(0, 255))]) + line[at + 1 :]
    elif mutation == 2:
        line = line[: draw(st.integers(0, len(line)))]
    return line + draw(st.binary(max_size=32))


@FUZZ
@given(st.binary(max_size=300), st.lists(st.integers(0, 400), max_size=8))
def test_arbitrary_bytes_only_raise_the_protocol_error(data, cuts):
    check_header(data, cuts)


@FUZZ
@given(near_valid_headers(), st.lists(st.integers(0, 400), max_size=8))
def test_near_valid_headers_give_an_address_or_the_protocol_error(data, cuts):
    check_header(data, cuts)


def test_sensor_records_the_address_behind_a_trusted_front_end(sensor_factory):
    sensor = sensor_factory(extra="", start=False)
    text = sensor.config_path.read_text().replace(
        "[sensor]", '[sensor]\nproxy_protocol = true\nproxy_protocol_from = ["127.0.0.1/32"]'
    )
    sensor.config_path.write_text(text)
    sensor.start(wait=False)
    import time

    from conftest import wait_banner

    # With the protocol on, a connection that sends nothing gets nothing: probe on ::1, which
    # is not trusted here and so is served directly.
    wait_banner(sensor.smtp_port, host="::1")
    sock = socket.create_connection(("127.0.0.1", sensor.smtp_port), timeout=10)
    sock.sendall(b"PROXY TCP4 203.0.113.9 192.0.2.10 51000 25\r\n")
    client = smtplib.SMTP(timeout=10)
    client.sock = sock
    client.file = None
    assert client.getreply()[0] == 220
    client.sendmail("a@spam.example", ["v@example.org"], b"Subject: x\r\n\r\nhi\r\n")
    client.quit()
    # Through the proxy emulator too, with a v2 header.
    with socket.create_connection(("127.0.0.1", sensor.ports["socks"]), timeout=10) as s:
        s.sendall(v2("2001:db8::9", "2001:db8::1", 6000, 1080) + b"\x05\x01\x00")
        assert s.recv(2) == b"\x05\x00"
    # An untrusted client's PROXY line is just a bad SMTP command.
    with socket.create_connection(("::1", sensor.smtp_port), timeout=10) as s:
        s.recv(512)
        s.sendall(b"PROXY TCP4 6.6.6.6 192.0.2.10 1 25\r\n")
        assert s.recv(512).startswith(b"500 5.5.2 Error: command not recognized")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        events = sensor.events()
        if sum(e["eventid"] == "spampot.smtp.error" for e in events) and any(
            e["eventid"] == "spampot.session.close" and e["src_ip"] == "2001:db8::9" for e in events
        ):
            break
        time.sleep(0.1)
    (msg,) = [e for e in events if e["eventid"] == "spampot.smtp.message"]
    assert msg["src_ip"] == "203.0.113.9" and msg["src_port"] == 51000
    assert msg["proxied_by"] == "127.0.0.1" and msg["dst_ip"] == "192.0.2.10"
    assert msg["file"].split("/")[2] == "203.0.113.9"
    assert gzip.decompress((sensor.data_dir / "spool" / msg["file"]).read_bytes()).endswith(
        b"hi\r\n"
    )
    opened = {e["src_ip"] for e in events if e["eventid"] == "spampot.session.open"}
    assert {"203.0.113.9", "2001:db8::9", "::1"} <= opened
    assert "6.6.6.6" not in opened
