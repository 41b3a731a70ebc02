"""Hypothesis: hostile bytes, split anywhere, never break the proxy machines.

``SPAMPOT_FUZZ_EXAMPLES`` sets the examples per property (default 300 keeps CI short; a soak
run can set 100000).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Callable
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spampot.protocols.detect import ROLE_HTTP, ROLE_SOCKS, ProxyServer
from spampot.protocols.http_proxy import HttpProxyServer
from spampot.protocols.proxy import (
    MODULES,
    OUTCOMES,
    TUNNEL_HOLD,
    ProxyPolicy,
    ProxyRequest,
    WebRequest,
)
from spampot.protocols.socks import SocksServer
from spampot.protocols.socks import load_dialect as load_dante
from spampot.protocols.web import WebServer

FUZZ = settings(
    max_examples=int(os.environ.get("SPAMPOT_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

HEADER_LIMIT = 512  # small limits so the fuzzer actually reaches them
POLICIES = [
    ProxyPolicy(),
    ProxyPolicy(non_smtp="web", smtp_ports=frozenset({25, 587}), public_address="192.0.2.1"),
]
NO_4A = dataclasses.replace(load_dante(), socks4a=False)
DATE = "Sun, 06 Nov 1994 08:49:37 GMT"

Machine = ProxyServer | SocksServer | HttpProxyServer | WebServer
FACTORIES: list[Callable[[ProxyPolicy], Machine]] = [
    lambda p: ProxyServer(p, max_header_bytes=HEADER_LIMIT, max_userid=16, max_hostname=16),
    lambda p: ProxyServer(p, http_date=DATE, local_address="203.0.113.7"),
    lambda p: SocksServer(p, max_userid=16, max_hostname=16, local_address="::1"),
    lambda p: SocksServer(p, NO_4A, local_address="203.0.113.7"),
    lambda p: HttpProxyServer(p, max_header_bytes=HEADER_LIMIT, max_body_bytes=64),
    lambda p: WebServer(p, max_header_bytes=HEADER_LIMIT),
    lambda p: ProxyServer(p, ROLE_HTTP, max_header_bytes=HEADER_LIMIT, http_date=DATE),
    lambda p: ProxyServer(p, ROLE_SOCKS, max_userid=16, max_hostname=16),
]


def output_bound(machine: Machine) -> int:
    """Worst answer to one request: a page (or judge echo) showing a whole head where every
    byte became a 6-character ``&#NNN;``, plus page boilerplate and Squid's logo."""
    return 6 * machine.max_buffered + 16384


def drive(machine: Machine, chunks: list[bytes]) -> tuple[list, bytes]:
    """Feed like an adapter, checking every invariant on the way; normalised result."""
    events: list[ProxyRequest | WebRequest] = []
    out = b""
    fed = b""
    tail = b""
    for chunk in chunks:
        if machine.done:
            tail += chunk
            continue
        fed += chunk
        new = machine.receive_data(chunk)
        sent = machine.data_to_send()
        assert len(sent) <= output_bound(machine) * max(1, len(new))
        assert machine.buffered <= machine.max_buffered
        if new and isinstance(new[-1], ProxyRequest):
            assert fed.endswith(new[-1].leftover)
        events += new
        out += sent
    lost = machine.connection_lost()
    assert machine.data_to_send() == b""  # the peer is gone: nothing more to say
    events += lost
    assert len(out) <= output_bound(machine) * max(1, len(events))
    if fed.strip(b"\r\n") and not events:
        raise AssertionError("bytes received, connection lost, and nothing logged")
    if not isinstance(machine, HttpProxyServer) and not (
        isinstance(machine, ProxyServer) and isinstance(machine.machine, HttpProxyServer)
    ):
        assert len(events) <= 1  # SOCKS and the tunnelled web server: one request
    for i, event in enumerate(events):
        check(event, machine, last=i == len(events) - 1)
    if events and tail and isinstance(events[-1], ProxyRequest):
        events[-1] = replace(events[-1], leftover=events[-1].leftover + tail)
    return events, out


def check(event: ProxyRequest | WebRequest, machine: Machine, *, last: bool = True) -> None:
    if isinstance(event, WebRequest):
        assert machine.done and machine.closing
        return
    if last and (event.tunnel is not None or event.outcome == "error"):
        assert machine.done  # handed over, held, or refused: no further request is read
    assert event.outcome in OUTCOMES
    assert event.protocol in ("http", "socks4", "socks4a", "socks5", "unknown")
    assert event.module in (*MODULES, "unknown")
    assert (event.outcome == "error") == bool(event.error)
    assert event.tunnel in (None, "smtp", "web", TUNNEL_HOLD)
    if not last:
        assert event.tunnel is None  # a tunnel ends the requests on a connection
    elif event.tunnel not in (None, TUNNEL_HOLD):
        assert not machine.closing
    if event.tunnel == "smtp":
        assert event.outcome == "smtp"
    if event.tunnel in ("web", TUNNEL_HOLD):
        assert event.outcome == "other"
    if event.outcome == "smtp":
        assert event.tunnel == "smtp"
    for value in (event.method, event.target_host, event.reply, event.error):
        assert value is None or isinstance(value, str)
    for name, value in event.headers:
        assert isinstance(name, str) and isinstance(value, str)


def splits(data: st.DataObject, stream: bytes) -> list[bytes]:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    edges = [0, *cuts, len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(edges)]


def check_stream(data: st.DataObject, stream: bytes) -> None:
    factory = data.draw(st.sampled_from(FACTORIES))
    policy = data.draw(st.sampled_from(POLICIES))
    whole = drive(factory(policy), [stream])
    assert drive(factory(policy), splits(data, stream)) == whole


# -- unstructured ----------------------------------------------------------------------------


@FUZZ
@given(stream=st.binary(max_size=2048), data=st.data())
def test_arbitrary_bytes(stream, data):
    check_stream(data, stream)


@FUZZ
@given(first=st.sampled_from([b"\x04", b"\x05", b"G", b"C", b"P"]), rest=st.binary(max_size=600))
def test_arbitrary_bytes_after_a_valid_first_byte(first, rest):
    for factory in FACTORIES:
        for policy in POLICIES:
            drive(factory(policy), [first + rest])
            drive(factory(policy), [bytes([b]) for b in first + rest[:200]])


# -- structured, then mutated, to reach the deep states --------------------------------------

PORTS = st.one_of(st.sampled_from([25, 80, 443, 587, 8080, 0]), st.integers(0, 65535))


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(0, 3))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "keep"]))
        if op == "flip":
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        elif op == "truncate":
            del data[at:]
    return bytes(data)


@st.composite
def socks4_streams(draw: st.DrawFn) -> bytes:
    cd = draw(st.sampled_from([1, 1, 2, 3]))
    socks4a = draw(st.booleans())
    ip = (
        bytes([0, 0, 0, draw(st.integers(1, 255))])
        if socks4a
        else draw(st.binary(min_size=4, max_size=4))
    )
    userid = draw(st.binary(max_size=20).filter(lambda b: b"\0" not in b))
    stream = bytes([4, cd]) + draw(PORTS).to_bytes(2, "big") + ip + userid + b"\0"
    if socks4a:
        stream += draw(st.sampled_from([b"mx.example.com", b"", b"h" * 20])) + b"\0"
    return stream + draw(st.binary(max_size=16))


@st.composite
def socks5_streams(draw: st.DrawFn) -> bytes:
    methods = draw(st.lists(st.sampled_from([0, 1, 2, 3, 0x80, 0xFF]), min_size=1, max_size=5))
    stream = bytes([5, len(methods), *methods])
    if 0 not in methods and 2 in methods:
        user = draw(st.binary(max_size=255))
        password = draw(st.binary(max_size=255))
        stream += bytes([1, len(user)]) + user + bytes([len(password)]) + password
    atyp = draw(st.sampled_from([1, 3, 4, 2]))
    if atyp == 1:
        addr = draw(st.binary(min_size=4, max_size=4))
    elif atyp == 4:
        addr = draw(st.binary(min_size=16, max_size=16))
    else:
        name = draw(st.sampled_from([b"example.com", b"", b"a" * 255, b"\xff\xfe"]))
        addr = bytes([len(name)]) + name
    cmd = draw(st.sampled_from([1, 1, 2, 3, 9]))
    stream += bytes([5, cmd, draw(st.sampled_from([0, 0, 1])), atyp]) + addr
    return stream + draw(PORTS).to_bytes(2, "big") + draw(st.binary(max_size=16))


TOKENS = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-!",
    min_size=1,
    max_size=10,
)


@st.composite
def http_streams(draw: st.DrawFn, bodies: bool = True) -> bytes:
    host = draw(st.sampled_from(["mx.example.com", "1.2.3.4", "[::1]", "azenv.net", "[bad]", ""]))
    port = draw(
        st.one_of(
            st.sampled_from(["25", "80", "8080", "443", "587"]),
            st.none(),
            PORTS.map(str),
            st.sampled_from(["", "x", "99999"]),
        )
    )
    authority = host if port is None else f"{host}:{port}"
    path = draw(st.sampled_from(["/", "/azenv.php", "", "/x?y", "/headers"]))
    methods = st.sampled_from(["GET", "HEAD", "POST", "PUT"])
    form = draw(st.sampled_from(["connect", "absolute", "origin", "anything"]))
    if form == "connect":
        method, target = "CONNECT", authority
    elif form == "absolute":
        scheme = draw(st.sampled_from(["http://", "https://u:p@", "ftp://"]))
        method, target = draw(methods), f"{scheme}{authority}{path}"
    elif form == "origin":
        method, target = draw(methods), path or "*"
    else:
        method = draw(st.one_of(methods, st.just("CONNECT"), TOKENS))
        target = draw(st.one_of(st.sampled_from([authority, path]), TOKENS))
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/1.1", "HTTP/2.0", "FOO"]))
    eol = draw(st.sampled_from(["\r\n", "\n"]))
    names = st.sampled_from(
        ["Host", "Proxy-Authorization", "Transfer-Encoding", "Expect", "X-A"]
        + (["Content-Length"] if bodies else [])
    )
    values = st.one_of(
        st.sampled_from(
            ["5", "0", "70", "5, 6", "chunked", "100-continue", "Basic YTpi", "Basic", ""]
        ),
        st.text(max_size=30).filter(lambda t: "\n" not in t and "\r" not in t),
    )
    headers = draw(st.lists(st.tuples(names, values), max_size=6))
    head = f"{method} {target} {version}{eol}" + "".join(f"{n}: {v}{eol}" for n, v in headers)
    return (head + eol).encode("utf-8", "surrogatepass") + draw(st.binary(max_size=80))


STRUCTURED = st.one_of(
    mutated(socks4_streams()), mutated(socks5_streams()), mutated(http_streams())
)


@FUZZ
@given(stream=STRUCTURED, data=st.data())
def test_near_valid_requests(stream, data):
    check_stream(data, stream)


@FUZZ
@given(
    stream=st.one_of(socks4_streams(), socks5_streams(), http_streams(bodies=False)),
    data=st.data(),
)
def test_well_formed_requests_reach_a_verdict(stream, data):
    """Unmutated requests are complete: each machine that speaks them answers at once."""
    policy = data.draw(st.sampled_from(POLICIES))
    machine = ProxyServer(policy)
    events = machine.receive_data(stream)
    assert events
    for i, event in enumerate(events):
        check(event, machine, last=i == len(events) - 1)
    assert drive(ProxyServer(policy), splits(data, stream)) == drive(ProxyServer(policy), [stream])


# -- one property per parser, so a long run can report examples per parser ---------------------
# (bench/fuzz_long.py runs these with a large max_examples.)

PARSERS: dict[str, tuple[list[Callable[[ProxyPolicy], Machine]], st.SearchStrategy[bytes]]] = {
    # The first-byte detection in front of every proxy port, with what it hands over to.
    "detect": (FACTORIES[0:2], st.one_of(st.binary(max_size=2048), STRUCTURED)),
    "socks": (
        FACTORIES[2:4],
        st.one_of(
            st.binary(max_size=600).map(lambda b: b"\x04" + b),
            st.binary(max_size=600).map(lambda b: b"\x05" + b),
            mutated(socks4_streams()),
            mutated(socks5_streams()),
        ),
    ),
    "http_proxy": (
        [FACTORIES[4], lambda p: HttpProxyServer(p)],
        st.one_of(st.binary(max_size=2048), mutated(http_streams())),
    ),
    "web": (
        [FACTORIES[5], lambda p: WebServer(p)],
        st.one_of(st.binary(max_size=2048), mutated(http_streams())),
    ),
    # The port roles: a Squid-only port fed SOCKS and HTTP, a Dante-only port fed both.
    "roles": (
        FACTORIES[6:8],
        st.one_of(mutated(socks5_streams()), mutated(http_streams()), st.binary(max_size=600)),
    ),
}


@FUZZ
@pytest.mark.parametrize("parser", sorted(PARSERS))
@given(data=st.data())
def test_each_parser_on_hostile_streams_split_anywhere(parser, data):
    factories, streams = PARSERS[parser]
    stream = data.draw(streams)
    factory = data.draw(st.sampled_from(factories))
    policy = data.draw(st.sampled_from(POLICIES))
    whole = drive(factory(policy), [stream])
    assert drive(factory(policy), splits(data, stream)) == whole


def test_worst_case_page_stays_within_the_output_bound():
    """A maximal head of 8-bit header bytes, refused with the page that shows it (%R): every
    byte becomes a 6-character ``&#NNN;``."""
    limit = 4096
    head = b"GET http://a/ HTTP/1.1\r\nExpect: x\r\n"
    line = b"A:" + b"\xff" * 60 + b"\r\n"
    head += line * ((limit - len(head) - 64) // len(line)) + b"\r\n"
    machine = HttpProxyServer(max_header_bytes=limit)
    [event] = machine.receive_data(head)
    out = machine.data_to_send()
    assert event.outcome == "error" and len(head) <= limit
    assert 5 * limit < len(out) <= output_bound(machine)
