"""SOCKS4/4a/5 machine as Dante: exact reply bytes for every path, any split of the stream.

The expected bytes are what danted 1.4.2 (Debian 12) sent for the same requests in a network
namespace (see tests/differential for the automated comparison).
"""

from __future__ import annotations

import dataclasses

import pytest

from conftest import feed
from spampot.protocols.proxy import (
    TUNNEL_HOLD,
    ProxyAuth,
    ProxyPolicy,
    ProxyRequest,
    ephemeral_port,
)
from spampot.protocols.socks import MAX_HELD_BYTES, SocksServer, load_dialect

WEB = ProxyPolicy(non_smtp="web")
SENSOR = "203.0.113.7"  # the address clients connect to
SENSOR4 = bytes([203, 0, 113, 7])
DANTE = load_dialect()
NO_4A = dataclasses.replace(DANTE, socks4a=False)  # a server that reads no SOCKS4a name


def run(chunks: list[bytes], policy: ProxyPolicy | None = None, **kw) -> tuple:
    """Feed chunks like an adapter would; returns (events, output, machine)."""
    kw.setdefault("local_address", SENSOR)
    machine = SocksServer(policy, kw.pop("dialect", None), **kw)
    events, out = feed(machine, chunks)
    return events, out, machine


def one(stream: bytes, policy: ProxyPolicy | None = None, **kw) -> tuple:
    events, out, machine = run([stream], policy, **kw)
    assert len(events) == 1
    return events[0], out, machine


def socks4(cd: int, port: int, ip: bytes, userid: bytes = b"bob", host: bytes | None = None):
    req = bytes([4, cd]) + port.to_bytes(2, "big") + ip + userid + b"\0"
    return req + (host + b"\0" if host is not None else b"")


def socks5_req(cmd: int, atyp: int, addr: bytes, port: int, rsv: int = 0) -> bytes:
    return bytes([5, cmd, rsv, atyp]) + addr + port.to_bytes(2, "big")


def bound_port(request: bytes, seed: bytes = b"") -> bytes:
    return ephemeral_port(seed + request).to_bytes(2, "big")


# -- SOCKS4 ----------------------------------------------------------------------------------


def test_socks4_connect_smtp_granted_with_the_bound_address_and_handed_over():
    request = socks4(1, 25, b"\x01\x02\x03\x04")
    ev, out, m = one(request + b"EHLO spammer\r\n")
    # Dante answers DSTPORT/DSTIP of its outgoing socket, not the request's.
    assert out == b"\x00\x5a" + bound_port(request) + SENSOR4
    assert ev == ProxyRequest(
        protocol="socks4",
        version="4",
        method="CONNECT",
        target_host="1.2.3.4",
        target_port=25,
        auth=ProxyAuth("userid", "bob", None),
        outcome="smtp",
        reply="SOCKS4 0x5A granted",
        tunnel="smtp",
        leftover=b"EHLO spammer\r\n",
        module="socks",
    )
    assert m.done and not m.closing and m.buffered == 0


def test_socks4_other_port_refused_as_a_failed_connection():
    request = socks4(1, 80, b"\x0a\x00\x00\x01")
    ev, out, m = one(request)
    assert out == b"\x00\x5b" + bound_port(request) + SENSOR4
    assert (ev.outcome, ev.tunnel, ev.reply, ev.target_port) == (
        "other",
        None,
        "SOCKS4 0x5B rejected",
        80,
    )
    assert m.closing


def test_socks4_web_port_granted_under_web_policy():
    ev, out, m = one(socks4(1, 8080, b"\x0a\x00\x00\x01"), WEB)
    assert out[:2] == b"\x00\x5a"
    assert (ev.outcome, ev.tunnel) == ("other", "web")
    assert not m.closing


def test_socks4_extra_smtp_ports():
    ev, out, _ = one(socks4(1, 587, b"\x0a\x00\x00\x01"), ProxyPolicy(smtp_ports=frozenset({587})))
    assert out[:2] == b"\x00\x5a"
    assert ev.outcome == "smtp"


def test_socks4_bind_granted_and_held_open():
    request = socks4(2, 80, b"\x0a\x01\x02\x03")
    ev, out, m = one(request)
    assert out == b"\x00\x5a" + bound_port(request) + SENSOR4
    assert (ev.method, ev.outcome, ev.tunnel, ev.error) == ("BIND", "other", TUNNEL_HOLD, None)
    assert m.done and not m.closing


def test_socks4_unknown_command_rejected_with_the_request_echoed():
    ev, out, m = one(socks4(3, 25, b"\x01\x02\x03\x04") + b"rest")
    assert out == b"\x00\x5b\x00\x19\x01\x02\x03\x04"
    assert (ev.method, ev.outcome) == ("", "error")
    assert "0x03" in ev.error
    assert ev.leftover == b"rest"
    assert m.closing


def test_socks4_destination_0_0_0_0_rejected_with_the_request_echoed():
    ev, out, _ = one(socks4(1, 25, b"\x00\x00\x00\x00", b""))
    assert out == b"\x00\x5b\x00\x19\x00\x00\x00\x00"
    assert (ev.protocol, ev.target_host, ev.outcome) == ("socks4", "0.0.0.0", "error")


def test_socks4a_name_connected_as_dante_does():
    request = socks4(1, 25, b"\x00\x00\x00\x07", b"", b"mx.example.com")
    ev, out, m = one(request + b"HELO")
    assert out == b"\x00\x5a" + bound_port(request) + SENSOR4
    assert (ev.protocol, ev.version, ev.target_host, ev.leftover) == (
        "socks4a",
        "4",
        "mx.example.com",
        b"HELO",
    )
    assert ev.auth == ProxyAuth("userid", "", None)
    assert m.protocol == "socks4a" and not m.closing


def test_a_server_without_socks4a_connects_to_0_0_0_x_which_fails():
    request = socks4(1, 25, b"\x00\x00\x00\x07", b"", b"mx.example.com")
    ev, out, m = one(request + b"HELO", dialect=NO_4A)
    assert out == b"\x00\x5b" + bound_port(request) + SENSOR4
    assert (ev.protocol, ev.target_host, ev.outcome) == ("socks4a", "mx.example.com", "error")
    assert "SOCKS4a" in ev.error and m.closing


@pytest.mark.parametrize("name", [b"mx.nowhere.invalid", b"mail.test", b"intranet.local."])
def test_names_that_cannot_resolve_fail_even_to_port_25(name):
    request = socks4(1, 25, b"\x00\x00\x00\x07", b"", name)
    ev, out, _ = one(request)
    assert out[:2] == b"\x00\x5b" and (ev.outcome, ev.tunnel) == ("other", None)
    request = socks5_req(1, 3, bytes([len(name)]) + name, 25)
    ev, out, _ = one(b"\x05\x01\x00" + request)
    assert out == b"\x05\x00\x05\x04\x00" + request[3:]
    assert (ev.outcome, ev.tunnel) == ("other", None)


def test_socks4a_empty_host_is_error():
    ev, out, _ = one(socks4(1, 25, b"\x00\x00\x00\x01", b"u", b""))
    assert out == b"\x00\x5b\x00\x19\x00\x00\x00\x01"
    assert ev.outcome == "error" and "empty host" in ev.error


def test_socks4_userid_is_decoded_never_dropped():
    ev, _, _ = one(socks4(1, 25, b"\x01\x02\x03\x04", "jo\u00e3o\xff".encode("latin-1")))
    assert ev.auth.username == "jo\\xe3o\\xff"


def test_socks4_userid_at_limit_accepted():
    ev, out, _ = one(socks4(1, 25, b"\x01\x02\x03\x04", b"u" * 255))
    assert out[:2] == b"\x00\x5a"
    assert ev.auth.username == "u" * 255


def test_socks4_userid_over_limit_rejected():
    ev, out, m = one(socks4(1, 25, b"\x01\x02\x03\x04", b"u" * 256))
    assert out == b"\x00\x5b\x00\x19\x01\x02\x03\x04"
    assert ev.outcome == "error" and "USERID longer than 255" in ev.error
    assert (ev.method, ev.target_port) == ("CONNECT", 25)
    assert m.closing and m.buffered == 0


def test_socks4_userid_limit_is_configurable_and_bounds_the_buffer():
    m = SocksServer(max_userid=4)
    assert m.receive_data(b"\x04\x01\x00\x19\x01\x02\x03\x04abcd") == []
    assert m.buffered == 12
    [ev] = m.receive_data(b"e")
    assert ev.outcome == "error"
    assert m.data_to_send() == b"\x00\x5b\x00\x19\x01\x02\x03\x04"


def test_socks4a_host_over_limit_rejected():
    ev, out, _ = one(socks4(1, 25, b"\x00\x00\x00\x01", b"", b"h" * 256))
    assert out[:2] == b"\x00\x5b"
    assert ev.outcome == "error" and "host name longer than 255" in ev.error


def test_socks4a_host_at_limit_accepted():
    ev, _, _ = one(socks4(1, 25, b"\x00\x00\x00\x01", b"", b"h" * 251 + b".com"))
    assert ev.outcome == "smtp" and ev.target_host == "h" * 251 + ".com"


# -- SOCKS5: method negotiation ----------------------------------------------------------------


def test_socks5_no_auth_connect_ipv4_smtp():
    request = socks5_req(1, 1, b"\x01\x02\x03\x04", 25)
    ev, out, m = one(b"\x05\x01\x00" + request + b"EHLO x\r\n")
    port = ephemeral_port(request)
    assert 32768 <= port <= 60999
    assert out == b"\x05\x00" + b"\x05\x00\x00\x01" + SENSOR4 + port.to_bytes(2, "big")
    assert ev == ProxyRequest(
        protocol="socks5",
        version="5",
        method="CONNECT",
        target_host="1.2.3.4",
        target_port=25,
        auth=ProxyAuth("none", None, None),
        outcome="smtp",
        reply="SOCKS5 0x00 succeeded",
        tunnel="smtp",
        leftover=b"EHLO x\r\n",
        module="socks",
    )
    assert not m.closing


@pytest.mark.parametrize(
    "greeting", [b"\x05\x02\x00\x02", b"\x05\x02\x02\x00", b"\x05\x03\x01\x02\x00"]
)
def test_socks5_no_auth_chosen_whenever_offered(greeting):
    m = SocksServer()
    assert m.receive_data(greeting) == []
    assert m.data_to_send() == b"\x05\x00"


def test_socks5_userpass_only_when_it_is_the_only_method_and_any_credentials_pass():
    auth = b"\x01\x05alice\x06s3cr\xffx"
    request = socks5_req(1, 3, b"\x0emx.example.com", 25)
    ev, out, _ = one(b"\x05\x01\x02" + auth + request)
    port = bound_port(request)
    assert out == b"\x05\x02" + b"\x01\x00" + b"\x05\x00\x00\x01" + SENSOR4 + port
    assert ev.auth == ProxyAuth("userpass", "alice", "s3cr\\xffx")
    assert ev.outcome == "smtp"


def test_socks5_empty_credentials_accepted():
    ev, out, _ = one(b"\x05\x01\x02\x01\x00\x00" + socks5_req(1, 1, b"\x01\x02\x03\x04", 25))
    assert out.startswith(b"\x05\x02\x01\x00\x05\x00")
    assert ev.auth == ProxyAuth("userpass", "", "")


def test_socks5_no_acceptable_method():
    ev, out, m = one(b"\x05\x02\x01\x03junk")
    assert out == b"\x05\xff"
    assert (ev.outcome, ev.reply, ev.auth) == (
        "error",
        "SOCKS5 method 0xFF no acceptable methods",
        None,
    )
    assert "01 03" in ev.error
    assert ev.leftover == b"junk"
    assert m.closing


def test_socks5_zero_methods():
    ev, out, _ = one(b"\x05\x00")
    assert out == b"\x05\xff"
    assert ev.outcome == "error" and "NMETHODS=0" in ev.error


def test_socks5_rfc1929_bad_version_closes_without_a_status():
    ev, out, m = one(b"\x05\x01\x02\x05\x01a\x01b")
    assert out == b"\x05\x02"
    assert (ev.outcome, ev.reply) == ("error", "")
    assert "version 0x05" in ev.error
    assert m.closing


# -- SOCKS5: requests --------------------------------------------------------------------------


def test_socks5_domain_and_ipv6_targets_to_smtp():
    ev, _, _ = one(b"\x05\x01\x00" + socks5_req(1, 3, b"\x0bexample.com", 25))
    assert (ev.target_host, ev.outcome) == ("example.com", "smtp")
    v6 = bytes.fromhex("20010db8000000000000000000000001")
    ev, _, _ = one(b"\x05\x01\x00" + socks5_req(1, 4, v6, 25))
    assert (ev.target_host, ev.outcome) == ("2001:db8::1", "smtp")


def test_socks5_domain_decoded_never_dropped():
    ev, _, _ = one(b"\x05\x01\x00" + socks5_req(1, 3, b"\x03a\xffb", 25))
    assert ev.target_host == "a\\xffb"


def test_socks5_other_port_by_address_connection_refused():
    request = socks5_req(1, 1, b"\x01\x02\x03\x04", 80)
    ev, out, m = one(b"\x05\x01\x00" + request)
    assert out == b"\x05\x00" + b"\x05\x05\x00\x01" + SENSOR4 + bound_port(request)
    assert (ev.outcome, ev.reply, ev.tunnel) == ("other", "SOCKS5 0x05 connection refused", None)
    assert m.closing


def test_socks5_other_port_by_name_host_unreachable_with_the_request_echoed():
    request = socks5_req(1, 3, b"\x0bexample.com", 80)
    ev, out, m = one(b"\x05\x01\x00" + request)
    assert out == b"\x05\x00" + b"\x05\x04\x00" + request[3:]
    assert (ev.outcome, ev.reply) == ("other", "SOCKS5 0x04 host unreachable")
    assert m.closing


def test_socks5_ipv6_destination_unreachable_from_an_ipv4_sensor():
    request = socks5_req(1, 4, bytes.fromhex("20010db8000000000000000000000001"), 443)
    ev, out, _ = one(b"\x05\x01\x00" + request)
    assert out == b"\x05\x00" + b"\x05\x08\x00" + request[3:]
    assert ev.outcome == "other"


@pytest.mark.parametrize(
    "request_",
    [socks5_req(1, 1, bytes(4), 25), socks5_req(1, 1, b"\x7f\x00\x00\x01", 0)],
    ids=["0.0.0.0", "port 0"],
)
def test_socks5_unusable_destination(request_):
    ev, out, _ = one(b"\x05\x01\x00" + request_)
    assert out == b"\x05\x00" + b"\x05\x08\x00" + request_[3:]
    assert ev.outcome == "error" and "unspecified" in ev.error


def test_socks5_web_port_under_web_policy():
    request = socks5_req(1, 3, b"\x0bexample.com", 80)
    ev, out, m = one(b"\x05\x01\x00" + request + b"GET / HTTP/1.1\r\n", WEB)
    assert out == b"\x05\x00\x05\x00\x00\x01" + SENSOR4 + bound_port(request)
    assert (ev.outcome, ev.tunnel, ev.leftover) == ("other", "web", b"GET / HTTP/1.1\r\n")
    assert not m.closing


def test_socks5_bound_address_ipv6():
    request = socks5_req(1, 1, b"\x01\x02\x03\x04", 25)
    _, out, _ = one(b"\x05\x01\x00" + request, local_address="2001:db8::10")
    v6 = bytes.fromhex("20010db8000000000000000000000010")
    assert out == b"\x05\x00\x05\x00\x00\x04" + v6 + bound_port(request)


def test_public_address_overrides_the_connected_address():
    request = socks5_req(1, 1, b"\x01\x02\x03\x04", 25)
    _, out, _ = one(b"\x05\x01\x00" + request, ProxyPolicy(public_address="198.51.100.1"))
    assert out[6:10] == bytes([198, 51, 100, 1])


@pytest.mark.parametrize(("cmd", "method"), [(2, "BIND"), (3, "UDP_ASSOCIATE")])
def test_socks5_bind_and_udp_granted_and_held_open(cmd, method):
    request = socks5_req(cmd, 1, bytes(4), 0)
    ev, out, m = one(b"\x05\x01\x00" + request)
    assert out == b"\x05\x00\x05\x00\x00\x01" + SENSOR4 + bound_port(request)
    assert (ev.method, ev.outcome, ev.reply, ev.tunnel) == (
        method,
        "other",
        "SOCKS5 0x00 succeeded",
        TUNNEL_HOLD,
    )
    assert m.done and not m.closing
    # Whatever follows is swallowed, and a flood is cut.
    assert m.receive_data(b"x" * 100) == [] and m.data_to_send() == b"" and not m.closing
    m.receive_data(b"x" * MAX_HELD_BYTES)
    assert m.closing
    assert m.connection_lost() == []


def test_socks5_bind_to_a_name_fails_as_the_name_does_not_resolve():
    request = socks5_req(2, 3, b"\x0bexample.com", 80)
    ev, out, m = one(b"\x05\x01\x00" + request)
    assert out == b"\x05\x00\x05\x04\x00" + request[3:]
    assert (ev.method, ev.outcome, ev.tunnel) == ("BIND", "other", None)
    assert m.closing


def test_socks5_unknown_command_closes_without_a_reply():
    ev, out, m = one(b"\x05\x01\x00" + socks5_req(9, 1, b"\x01\x02\x03\x04", 25))
    assert out == b"\x05\x00"
    assert (ev.method, ev.outcome, ev.reply) == ("", "error", "")
    assert "0x09" in ev.error and m.closing


def test_socks5_bad_address_type_closes_without_a_reply():
    ev, out, m = one(b"\x05\x01\x00\x05\x01\x00\x02abcdef")
    assert out == b"\x05\x00"
    assert (ev.outcome, ev.reply, ev.method) == ("error", "", "CONNECT")
    assert m.closing


def test_socks5_negotiation_then_a_socks4_request_is_answered_in_socks4():
    request = socks4(1, 25, b"\x01\x02\x03\x04", b"")
    ev, out, _ = one(b"\x05\x01\x00" + request)
    assert out == b"\x05\x00" + b"\x00\x5a" + bound_port(request) + SENSOR4
    assert (ev.protocol, ev.outcome) == ("socks4", "smtp")


def test_socks5_bad_request_version_closes():
    ev, out, _ = one(b"\x05\x01\x00\x06\x01\x00\x01")
    assert out == b"\x05\x00"
    assert ev.outcome == "error" and "version 0x06" in ev.error


def test_socks5_empty_domain_is_error():
    request = socks5_req(1, 3, b"\x00", 25)
    ev, out, _ = one(b"\x05\x01\x00" + request)
    assert out == b"\x05\x00\x05\x04\x00" + request[3:]
    assert ev.outcome == "error" and "empty domain" in ev.error


def test_socks5_nonzero_rsv_tolerated():
    ev, _, _ = one(b"\x05\x01\x00" + socks5_req(1, 1, b"\x01\x02\x03\x04", 25, rsv=0x7F))
    assert ev.outcome == "smtp"


@pytest.mark.parametrize(
    ("stream", "protocol"), [(b"GET / HTTP/1.1\r\n\r\n", "http"), (b"\x16\x03\x01", "unknown")]
)
def test_not_socks_closes_without_a_word_and_logs_what_was_tried(stream, protocol):
    ev, out, m = one(stream)
    assert out == b""
    assert (ev.protocol, ev.version, ev.outcome, ev.module) == (protocol, "", "error", "socks")
    assert ev.error == f"not SOCKS: first byte 0x{stream[0]:02x}"
    assert ev.leftover == stream
    assert m.closing


# -- life cycle ------------------------------------------------------------------------------


def test_input_after_done_is_ignored():
    m = SocksServer()
    [ev] = m.receive_data(socks4(1, 25, b"\x01\x02\x03\x04") + b"A")
    m.data_to_send()
    assert ev.leftover == b"A"
    assert m.receive_data(b"MAIL FROM:<x@y>\r\n") == []
    assert m.data_to_send() == b"" and m.buffered == 0
    assert m.connection_lost() == []


def test_empty_data_is_nothing():
    m = SocksServer()
    assert m.receive_data(b"") == []
    assert m.connection_lost() == []
    assert not m.done and m.protocol is None


@pytest.mark.parametrize(
    ("stream", "stage"),
    [
        (b"\x04\x01\x00", "SOCKS4 request"),
        (b"\x04\x01\x00\x19\x01\x02\x03\x04bo", "SOCKS4 request"),
        (b"\x05", "SOCKS5 method negotiation"),
        (b"\x05\x02\x00", "SOCKS5 method negotiation"),
        (b"\x05\x01\x02\x01\x03bo", "RFC 1929 authentication"),
        (b"\x05\x01\x00", "SOCKS5 request"),
        (b"\x05\x01\x00\x05\x01\x00\x03\x0bexam", "SOCKS5 request"),
    ],
)
def test_truncated_request_is_logged_on_connection_lost(stream, stage):
    m = SocksServer()
    assert m.receive_data(stream) == []
    out = m.data_to_send()
    [ev] = m.connection_lost()
    assert ev.outcome == "error" and ev.reply == ""
    assert ev.error.startswith(f"truncated: connection closed during {stage}")
    assert m.done and m.closing and m.data_to_send() == b""
    assert out in (b"", b"\x05\x00", b"\x05\x02")


def test_truncated_after_auth_keeps_credentials():
    m = SocksServer()
    m.receive_data(b"\x05\x01\x02\x01\x01u\x01p")
    [ev] = m.connection_lost()
    assert ev.auth == ProxyAuth("userpass", "u", "p")


# -- any split of the stream gives the same result --------------------------------------------

STREAMS = [
    socks4(1, 25, b"\x01\x02\x03\x04") + b"EHLO a\r\nMAIL FROM:<a@b>\r\n",
    socks4(1, 25, b"\x00\x00\x00\x01", b"user", b"mx.example.org") + b"HELO",
    socks4(2, 25, b"\x01\x02\x03\x04") + b"more",
    socks4(1, 25, b"\x01\x02\x03\x04", b"u" * 300),
    b"\x05\x01\x00" + socks5_req(1, 3, b"\x0bexample.com", 25) + b"EHLO a\r\n",
    b"\x05\x02\x00\x02" + socks5_req(1, 4, bytes(16), 8080),
    b"\x05\x01\x02\x01\x03bob\x03pwd" + socks5_req(1, 1, b"\x01\x02\x03\x04", 25) + b"QUIT",
    b"\x05\x01\x00\x05\x09\x00\x01\x01\x02\x03\x04\x00\x19",
    b"\x05\x01\x00\x05\x01\x00\x07xyz",
    b"\x05\x01\x02\x01\x05alice\x00",
    b"\x05\x01\x00" + socks5_req(3, 1, bytes(4), 0) + b"held",
    b"\x07garbage",
]


@pytest.mark.parametrize("stream", STREAMS)
@pytest.mark.parametrize("policy", [None, WEB])
@pytest.mark.parametrize("dialect", [DANTE, NO_4A], ids=["dante", "no-socks4a"])
def test_every_split_gives_the_same_events_and_bytes(stream, policy, dialect):
    whole = run([stream], policy, dialect=dialect)[:2]
    assert run([bytes([b]) for b in stream], policy, dialect=dialect)[:2] == whole
    for cut in range(len(stream) + 1):
        assert run([stream[:cut], b"", stream[cut:]], policy, dialect=dialect)[:2] == whole


def test_port_seed_varies_the_bound_port():
    request = b"\x05\x01\x00" + socks5_req(1, 1, b"\x01\x02\x03\x04", 25)
    _, out, _ = one(request, port_seed=b"203.0.113.5:40000@1700000000")
    seeded = ephemeral_port(b"203.0.113.5:40000@1700000000" + request[3:])
    assert out[-2:] == seeded.to_bytes(2, "big")
    assert out[-2:] != one(request)[1][-2:]
