"""Protocol detection on proxy ports and the ProxyServer wrapper the adapter runs."""

from __future__ import annotations

import pytest

from spampot.protocols.detect import ROLE_BOTH, ROLE_HTTP, ROLE_SOCKS, ProxyServer
from spampot.protocols.http_proxy import ESTABLISHED, HttpProxyServer
from spampot.protocols.proxy import detect
from spampot.protocols.socks import SocksServer
from spampot.protocols.squid import SquidPersona
from spampot.protocols.squid import load_dialect as load_squid


@pytest.mark.parametrize(
    ("first", "kind"),
    [
        (b"", None),
        (b"\x04", "socks4"),
        (b"\x04\x01\x00\x19", "socks4"),
        (b"\x05", "socks5"),
        (b"G", "http"),
        (b"CONNECT", "http"),
        (b"p", "http"),
        (b"z", "http"),
        (b"Z", "http"),
        (b"A", "http"),
        (b"\x00", "unknown"),
        (b"\x16\x03\x01", "unknown"),
        (b"\r\n", "unknown"),
        (b"1", "unknown"),
        (b"@", "unknown"),
        (b"[", "unknown"),
        (b"\xff", "unknown"),
    ],
)
def test_detect(first, kind):
    assert detect(first) == kind


def test_waits_for_the_first_byte():
    m = ProxyServer()
    assert m.receive_data(b"") == []
    assert m.protocol is None and m.machine is None
    assert not m.done and not m.closing and m.buffered == 0
    assert m.data_to_send() == b"" and m.connection_lost() == []


def test_socks4_delegation_and_socks4a_protocol():
    m = ProxyServer(local_address="203.0.113.7")
    assert m.receive_data(b"\x04") == []
    assert isinstance(m.machine, SocksServer) and m.protocol == "socks4"
    assert m.receive_data(b"\x01\x00\x19\x00\x00\x00\x01\x00mx.example.com") == []
    assert m.buffered == 23
    [ev] = m.receive_data(b"\x00EHLO")
    assert m.protocol == "socks4a" and ev.protocol == "socks4a"
    assert m.data_to_send()[:2] == b"\x00\x5a"
    assert (ev.outcome, ev.tunnel, ev.module, ev.leftover) == ("smtp", "smtp", "socks", b"EHLO")
    assert m.done and not m.closing


def test_socks5_delegation():
    m = ProxyServer()
    m.receive_data(b"\x05\x01\x00")
    assert m.protocol == "socks5" and m.data_to_send() == b"\x05\x00"
    [ev] = m.connection_lost()
    assert ev.outcome == "error" and ev.error.startswith("truncated")


def test_http_delegation_with_settings():
    persona = SquidPersona(load_squid(version="6.13"), "proxy7", 8080)
    m = ProxyServer(squid=persona, http_date="D", max_header_bytes=64)
    [ev] = m.receive_data(b"CONNECT mx.example.org:25 HTTP/1.1\r\n\r\nHELO x\r\n")
    assert isinstance(m.machine, HttpProxyServer) and m.protocol == "http"
    assert m.data_to_send() == ESTABLISHED
    assert ev.leftover == b"HELO x\r\n"
    m = ProxyServer(squid=persona, http_date="D", max_header_bytes=64)
    [ev] = m.receive_data(b"GET http://a/ HTTP/1.1\r\nX: " + b"y" * 64 + b"\r\n\r\n")
    out = m.data_to_send()
    assert b"Server: squid/6.13\r\n" in out and b"Date: D\r\n" in out
    assert b"X-Cache-Lookup: NONE from proxy7:8080\r\n" in out
    assert b"431 Request Header Fields Too Large" in out
    assert ev.outcome == "error" and m.closing


# -- port roles ------------------------------------------------------------------------------


def test_a_socks_only_port_answers_http_as_dante_does():
    m = ProxyServer(role=ROLE_SOCKS)
    [ev] = m.receive_data(b"GET http://www.example.com/ HTTP/1.1\r\n\r\n")
    assert m.data_to_send() == b"" and m.closing
    assert (ev.protocol, ev.module, ev.outcome) == ("http", "socks", "error")
    assert ev.leftover.startswith(b"GET http://")


def test_an_http_only_port_answers_socks_as_squid_does():
    """Squid waits for a line end that a SOCKS greeting never sends, then the client leaves."""
    m = ProxyServer(role=ROLE_HTTP)
    assert m.receive_data(b"\x05\x01\x00") == []
    assert m.data_to_send() == b"" and not m.closing
    [ev] = m.connection_lost()
    assert (ev.protocol, ev.module, ev.outcome) == ("socks5", "http", "error")
    # With a line end in it, Squid calls it another protocol.
    m = ProxyServer(role=ROLE_HTTP)
    [ev] = m.receive_data(b"\x04\x01\x00\x19\x7f\x00\x00\x01\x00\n")
    assert b"X-Squid-Error: ERR_PROTOCOL_UNKNOWN 0" in m.data_to_send()
    assert (ev.protocol, ev.module, ev.outcome) == ("socks4", "http", "error")


def test_a_port_in_both_lists_detects_per_client():
    for first, module in ((b"\x05\x01\x00", "socks"), (b"GET / HTTP/1.0\r\n\r\n", "http")):
        m = ProxyServer(role=ROLE_BOTH)
        [ev] = m.receive_data(first) or m.connection_lost()
        assert ev.module == module


def test_unknown_role_is_refused():
    with pytest.raises(ValueError, match="role"):
        ProxyServer(role="ftp")


def test_port_seed_is_passed_on():
    request = b"\x05\x01\x00\x05\x01\x00\x01\x01\x02\x03\x04\x00\x19"
    outs = set()
    for seed in (b"", b"x"):
        m = ProxyServer(port_seed=seed)
        m.receive_data(request)
        outs.add(m.data_to_send())
    assert len(outs) == 2


def test_socks_limits_are_passed_on():
    m = ProxyServer(max_userid=3)
    [ev] = m.receive_data(b"\x04\x01\x00\x19\x01\x02\x03\x04abcd")
    assert ev.outcome == "error" and m.data_to_send()[:2] == b"\x00\x5b"
    assert m.max_buffered == 64 * 1024


def test_unknown_first_byte():
    m = ProxyServer()
    [ev] = m.receive_data(b"\x16\x03\x01\x02\x00")
    assert (ev.protocol, ev.version, ev.method, ev.outcome, ev.reply) == (
        "unknown",
        "",
        "",
        "error",
        "",
    )
    assert ev.error == "unknown protocol: first byte 0x16" and ev.module == "unknown"
    assert ev.leftover == b"\x16\x03\x01\x02\x00"
    assert m.protocol == "unknown" and m.done and m.closing
    assert m.data_to_send() == b""
    assert m.receive_data(b"more") == [] and m.connection_lost() == []
