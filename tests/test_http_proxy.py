"""The HTTP proxy machine as Squid 5.7: every answer, every refusal, keep-alive, any split.

The expected pages and headers are what the real squid 5.7 (Debian 12) sent for the same
requests in a network namespace (tests/differential compares the two automatically).
"""

from __future__ import annotations

import re

import pytest

from conftest import feed
from spampot.protocols.http_proxy import ESTABLISHED, MAX_REQUESTS, HttpProxyServer
from spampot.protocols.proxy import ProxyAuth, ProxyPolicy, ProxyRequest
from spampot.protocols.squid import SquidPersona, load_dialect

DATE = "Sun, 06 Nov 1994 08:49:37 GMT"
SENSOR = "203.0.113.7"
CLIENT = "198.51.100.9"
PERSONA = SquidPersona(load_dialect(), "proxy7", 3128)
WEB = ProxyPolicy(non_smtp="web")


def machine(policy: ProxyPolicy | None = None, **kw) -> HttpProxyServer:
    kw.setdefault("local_address", SENSOR)
    kw.setdefault("client_address", CLIENT)
    kw.setdefault("http_date", DATE)
    return HttpProxyServer(policy, kw.pop("persona", PERSONA), **kw)


def run(chunks: list[bytes], m: HttpProxyServer | None = None) -> tuple:
    m = m if m is not None else machine()
    events, out = feed(m, chunks)
    return events, out, m


def one(stream: bytes, m: HttpProxyServer | None = None) -> tuple:
    events, out, m = run([stream], m)
    assert len(events) == 1, events
    return events[0], out, m


def responses(out: bytes) -> list[tuple[str, dict[str, str], bytes]]:
    """Split a stream of answers by their Content-Length."""
    found = []
    while out:
        head, _, rest = out.partition(b"\r\n\r\n")
        status, *lines = head.decode().split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines)
        length = int(headers.get("Content-Length", "0"))
        found.append((status, headers, rest[:length]))
        out = rest[length:]
    return found


def parse(out: bytes) -> tuple[str, dict[str, str], bytes]:
    [answer] = responses(out)
    return answer


def page_headers(page: str, errno: int = 0, language: str = "en") -> list[str]:
    return [
        "Server",
        "Mime-Version",
        "Date",
        "Content-Type",
        "Content-Length",
        "X-Squid-Error",
        "Vary",
        "Content-Language",
    ]


SQUID_HEADERS = [
    "Server",
    "Mime-Version",
    "Date",
    "Content-Type",
    "Content-Length",
    "X-Squid-Error",
    "Vary",
    "Content-Language",
    "X-Cache",
    "X-Cache-Lookup",
    "Via",
    "Connection",
]


# -- refusals: Squid's pages and headers, then the connection closes ------------------------


def test_get_slash_on_a_proxy_port_is_squids_invalid_url_page():
    ev, out, m = one(b"GET / HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
    status, headers, body = parse(out)
    assert status == "HTTP/1.1 400 Bad Request"
    assert list(headers) == SQUID_HEADERS
    assert headers == {
        "Server": "squid/5.7",
        "Mime-Version": "1.0",
        "Date": DATE,
        "Content-Type": "text/html;charset=utf-8",
        "Content-Length": "3214",
        "X-Squid-Error": "ERR_INVALID_URL 0",
        "Vary": "Accept-Language",
        "Content-Language": "en",
        "X-Cache": "MISS from proxy7",
        "X-Cache-Lookup": "NONE from proxy7:3128",
        "Via": "1.1 proxy7 (squid/5.7)",
        "Connection": "close",
    }
    # What squid 5.7 sent (3215 bytes as "sq-real"), with its stylesheet inline.
    assert len(body) == 3214
    assert b"</head><body id=ERR_INVALID_URL>" in body
    assert b"/* Page basics */" in body  # errorpage.css
    assert b'<a href="/">/</a>' in body
    assert b"<p>Generated Sun, 06 Nov 1994 08:49:37 GMT by proxy7 (squid/5.7)</p>" in body
    assert b"<!-- ERR_INVALID_URL -->" in body
    assert (ev.outcome, ev.reply, ev.module, ev.method) == (
        "error",
        "HTTP/1.1 400 Bad Request",
        "http",
        "GET",
    )
    assert "invalid URL" in ev.error
    assert m.closing and m.done


@pytest.mark.parametrize(
    ("request_", "status", "page"),
    [
        (b"GET http://www.example.com/ HTTP/9.9\r\n\r\n", "505 HTTP Version not supported",
         "ERR_UNSUP_HTTPVERSION"),
        (b"GET http://www.example.com/ HTTP/2.0\r\n\r\n", "505 HTTP Version not supported",
         "ERR_UNSUP_HTTPVERSION"),
        (b"GET ftp2://www.example.com/ HTTP/1.1\r\n\r\n", "400 Bad Request", "ERR_INVALID_URL"),
        (b"GET gopher://www.example.com/ HTTP/1.1\r\n\r\n", "400 Bad Request", "ERR_INVALID_URL"),
        (b"GET http://www.example.com:0/ HTTP/1.1\r\n\r\n", "400 Bad Request", "ERR_INVALID_URL"),
        (b"GET http://a..b/ HTTP/1.1\r\n\r\n", "400 Bad Request", "ERR_INVALID_URL"),
        (b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", "501 Not Implemented", "ERR_UNSUP_REQ"),
        (b"OPTIONS http://www.example.com/ HTTP/1.1\r\nMax-Forwards: 0\r\n\r\n",
         "501 Not Implemented", "ERR_UNSUP_REQ"),
        (b"POST ftp://www.example.com/ HTTP/1.1\r\n\r\n", "501 Not Implemented",
         "ERR_UNSUP_REQ"),
        (b"GET coap://www.example.com/ HTTP/1.1\r\n\r\n", "501 Not Implemented",
         "ERR_UNSUP_REQ"),
        (b"POST http://e/ HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", "501 Not Implemented",
         "ERR_UNSUP_REQ"),
        (b"POST http://e/ HTTP/1.1\r\nContent-Length: abc\r\n\r\n", "411 Length Required",
         "ERR_INVALID_REQ"),
        (b"POST http://e/ HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
         "411 Length Required", "ERR_INVALID_REQ"),
        (b"GET http://e/ HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", "411 Length Required",
         "ERR_INVALID_REQ"),
        (b"GET http://e/ HTTP/1.1\r\nExpect: bogus\r\n\r\n", "417 Expectation Failed",
         "ERR_INVALID_REQ"),
        (b"GET http://e/ HTTP/1.1\r\nHost : e\r\n\r\n", "400 Bad Request", "ERR_INVALID_REQ"),
        (b"GET http://e/ HTTP/1.1\r\nNo colon\r\n\r\n", "400 Bad Request", "ERR_INVALID_REQ"),
        (b"GET http://e/ HTTP/1.1\r\nX: a\x00b\r\n\r\n", "400 Bad Request", "ERR_INVALID_REQ"),
        (b"GET http://e/ HTTP/1.1\r\nX: 1\r\n\r\r\n\r\n", "400 Bad Request", "ERR_INVALID_REQ"),
        (b"GET http://e/\x01 HTTP/1.1\r\n\r\n", "400 Bad Request", "ERR_INVALID_REQ"),
        (b"FOO http://e/ BAR\r\n\r\n", "400 Bad Request", "ERR_PROTOCOL_UNKNOWN"),
        (b"\x16\x03\x01\x00\x05h\n", "400 Bad Request", "ERR_PROTOCOL_UNKNOWN"),
        (b"PRI * HTTP/1.1\r\n\r\n", "405 Method Not Allowed", "ERR_UNSUP_REQ"),
    ],
)  # fmt: skip
def test_refusals(request_, status, page):
    ev, out, m = one(request_)
    got_status, headers, body = parse(out)
    assert got_status == f"HTTP/1.1 {status}"
    assert headers["X-Squid-Error"] == f"{page} 0"
    assert headers["Connection"] == "close"
    assert f"<!-- {page} -->".encode() in body
    assert ev.outcome == "error" and ev.error and ev.reply == got_status
    assert m.closing


def test_over_long_heads():
    m = machine(max_header_bytes=512)
    _, out, _ = one(b"GET http://e/ HTTP/1.1\r\nX: " + b"a" * 600 + b"\r\n\r\n", m)
    status, headers, body = parse(out)
    assert status == "HTTP/1.1 431 Request Header Fields Too Large"
    assert headers["X-Squid-Error"] == "ERR_TOO_BIG 0"
    assert b'<a href="error:request-too-large">' in body
    _ev, out, _ = one(b"GET http://e/" + b"a" * 600, machine(max_header_bytes=512))
    assert parse(out)[0] == "HTTP/1.1 414 URI Too Long"


def test_invalid_request_page_shows_the_request_with_credentials_masked():
    _ev, out, _ = one(
        b"GET http://e/x HTTP/1.1\r\nHost: e\r\nAuthorization: Basic c2VjcmV0\r\n"
        b"Expect: nope\r\n\r\n"
    )
    body = parse(out)[2]
    assert (
        b"<pre>GET /x HTTP/1.1\r\nAuthorization: ** NOT DISPLAYED **\r\nExpect: nope\r\n"
        b"Host: e\r\n\r\n</pre>"
    ) in body
    assert b"secret" not in body and b"c2VjcmV0" not in body


def test_client_text_on_a_page_is_html_quoted():
    _, out, _ = one(b"GET http://e/<script>\"&'\xff HTTP/1.1\r\n\r\n")
    body = parse(out)[2]
    assert b"http://e/&lt;script&gt;&quot;&amp;&#39;&#255;" in body
    assert b"<script>" not in body


# -- destinations the proxy cannot reach ----------------------------------------------------


def test_a_name_fails_as_squid_57_fails_an_unresolvable_name():
    m = machine()
    [ev] = m.receive_data(
        b"GET http://www.example.com/x?q=1 HTTP/1.1\r\nHost: www.example.com\r\n\r\n"
    )
    out = m.data_to_send()
    status, headers, body = parse(out)
    assert status == "HTTP/1.1 502 Bad Gateway"
    assert headers["X-Squid-Error"] == "ERR_READ_ERROR 0"
    assert (headers["X-Cache-Lookup"], headers["Connection"]) == (
        "MISS from proxy7:3128",
        "keep-alive",
    )
    assert b"<i>[No Error]</i>" in body
    assert b'<a href="http://www.example.com/x?">' in body  # strip_query_terms
    assert (ev.outcome, ev.target_host, ev.target_port) == ("get", "www.example.com", 80)
    assert not m.closing and not m.done  # keep-alive: the next request may come


def test_an_address_refuses_the_connection():
    ev, out, _ = one(b"GET http://192.0.2.44:8080/ HTTP/1.1\r\n\r\n")
    status, headers, body = parse(out)
    assert status == "HTTP/1.1 503 Service Unavailable"
    assert headers["X-Squid-Error"] == "ERR_CONNECT_FAIL 111"
    assert b"<p><b>Connection to 192.0.2.44 failed.</b></p>" in body
    assert b"<i>(111) Connection refused</i>" in body
    assert ev.outcome == "get"


def test_every_url_gets_its_own_page():
    bodies = {
        parse(one(f"GET http://{host}/{path} HTTP/1.1\r\n\r\n".encode())[1])[2]
        for host, path in (
            ("a.example", ""),
            ("b.example", ""),
            ("a.example", "x"),
            ("10.1.1.1", ""),
        )
    }
    assert len(bodies) == 4


def test_connect_to_another_port_fails_without_proxy_headers_and_closes():
    ev, out, m = one(b"CONNECT www.example.com:443 HTTP/1.1\r\nHost: www.example.com:443\r\n\r\n")
    status, headers, body = parse(out)
    assert status == "HTTP/1.1 500 Internal Server Error"
    assert list(headers) == SQUID_HEADERS[:8]  # tunnel errors carry no X-Cache, Via
    assert headers["X-Squid-Error"] == "ERR_CANNOT_FORWARD 0"
    assert b'<a href="https://www.example.com/*">' in body
    assert (ev.outcome, ev.tunnel, ev.target_port) == ("other", None, 443)
    assert m.closing
    _, out, _ = one(b"CONNECT 192.0.2.44:22 HTTP/1.0\r\n\r\n")
    status, headers, body = parse(out)
    assert (status, headers["X-Squid-Error"]) == (
        "HTTP/1.1 503 Service Unavailable",
        "ERR_CONNECT_FAIL 111",
    )
    assert b'<a href="192.0.2.44:22">' in body


# -- tunnels ---------------------------------------------------------------------------------


def test_connect_smtp_is_established_and_handed_over():
    stream = (
        b"CONNECT mx.example.com:25 HTTP/1.0\r\nUser-Agent: x\r\n\r\nEHLO a\r\nMAIL FROM:<>\r\n"
    )
    ev, out, m = one(stream)
    # Squid answers exactly this, HTTP/1.1 even to an HTTP/1.0 request.
    assert out == ESTABLISHED == b"HTTP/1.1 200 Connection established\r\n\r\n"
    assert ev == ProxyRequest(
        protocol="http",
        version="HTTP/1.0",
        method="CONNECT",
        target_host="mx.example.com",
        target_port=25,
        auth=None,
        outcome="smtp",
        reply="HTTP/1.1 200 Connection established",
        tunnel="smtp",
        leftover=b"EHLO a\r\nMAIL FROM:<>\r\n",
        headers=(("User-Agent", "x"),),
        module="http",
    )
    assert m.done and not m.closing


def test_connect_variants_reach_the_smtp_port():
    for request, host in (
        (b"CONNECT [2001:DB8:0::1]:25 HTTP/1.1\r\n\r\n", "2001:db8:0::1"),
        (b"connect MX.Example.COM:25 HTTP/1.1\r\n\r\n", "mx.example.com"),
        (b"CONNECT 192.0.2.1:25\r\n\r\n", None),  # no version: not HTTP/0.9 for CONNECT
    ):
        ev, out, _ = one(request)
        if host is None:
            assert ev.outcome == "error"
            continue
        assert out == ESTABLISHED
        assert (ev.target_host, ev.target_port, ev.method) == (host, 25, "CONNECT")


def test_web_port_granted_under_web_policy():
    ev, out, _m = one(
        b"CONNECT www.example.com:80 HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n", machine(WEB)
    )
    assert out == ESTABLISHED
    assert (ev.outcome, ev.tunnel, ev.leftover) == ("other", "web", b"GET / HTTP/1.1\r\n\r\n")


# -- proxy judges: the request as Squid forwards it -------------------------------------------


def test_judge_page_shows_the_request_as_squid_forwards_it():
    m = machine()
    [ev] = m.receive_data(
        b"GET http://judge.example.org/azenv.php HTTP/1.1\r\nHost: judge.example.org\r\n"
        b"User-Agent: Mozilla/5.0\r\nAccept: */*\r\nProxy-Connection: Keep-Alive\r\n"
        b"Connection: X-Gone\r\nX-Gone: 1\r\nProxy-Authorization: Basic dTpw\r\n"
        b"X-Forwarded-For: 10.0.0.1\r\n\r\n"
    )
    status, headers, body = parse(m.data_to_send())
    assert status == "HTTP/1.1 200 OK"
    assert list(headers) == [
        "Date",
        "Content-Type",
        "Content-Length",
        "X-Cache",
        "X-Cache-Lookup",
        "Via",
        "Connection",
    ]
    assert headers["X-Cache-Lookup"] == "MISS from proxy7:3128"
    lines = body.decode().split("\n")[1:-3]
    assert lines[:-4] == [
        "HTTP_USER_AGENT = Mozilla/5.0",
        "HTTP_ACCEPT = */*",
        "HTTP_HOST = judge.example.org",
        "HTTP_VIA = 1.1 proxy7 (squid/5.7)",
        f"HTTP_X_FORWARDED_FOR = 10.0.0.1, {CLIENT}",
        "HTTP_CACHE_CONTROL = max-age=259200",
        "HTTP_CONNECTION = keep-alive",
    ]
    assert lines[-4] == f"REMOTE_ADDR = {SENSOR}"
    assert ev.auth == ProxyAuth("basic", "u", "p")
    assert (ev.outcome, ev.reply) == ("get", "HTTP/1.1 200 OK")
    assert not m.closing


def test_judge_remote_addr_is_the_public_address_when_set():
    _, out, _ = one(
        b"GET http://azenv.net/ HTTP/1.1\r\n\r\n", machine(ProxyPolicy(public_address="192.0.2.99"))
    )
    assert b"REMOTE_ADDR = 192.0.2.99\n" in out


def test_judge_via_names_the_clients_version_and_host_appears_when_absent():
    _, out, m = one(
        b"GET http://judge.example.org:8080/ HTTP/1.0\r\nCache-Control: private, max-age=0\r\n\r\n"
    )
    body = parse(out)[2].decode()
    assert "HTTP_VIA = 1.0 proxy7 (squid/5.7)\nHTTP_X_FORWARDED_FOR" in body
    assert "HTTP_HOST = judge.example.org:8080\n" in body
    assert "HTTP_CACHE_CONTROL = private, max-age=0\n" in body
    assert m.closing  # HTTP/1.0 without keep-alive


def test_head_of_a_judge_has_no_body():
    _, out, _ = one(b"HEAD http://azenv.net/ HTTP/1.1\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert body == b"" and b"Content-Length: " in head


def test_port_seed_varies_the_judge_remote_port():
    request = b"GET http://azenv.net/ HTTP/1.1\r\n\r\n"
    ports = {
        one(request, machine(port_seed=seed))[1].split(b"REMOTE_PORT = ")[1][:5]
        for seed in (b"", b"a", b"b")
    }
    assert len(ports) == 3


# -- what Squid answers itself ----------------------------------------------------------------


def test_trace_with_max_forwards_0_is_answered_by_squid():
    ev, out, _ = one(
        b"TRACE http://www.example.com/ HTTP/1.1\r\nHost: www.example.com\r\nMax-Forwards: 0\r\n"
        b"user-agent: t\r\n\r\n"
    )
    status, headers, body = parse(out)
    assert status == "HTTP/1.1 200 OK"
    assert list(headers) == [
        "Server",
        "Mime-Version",
        "Date",
        "Content-Type",
        "Content-Length",
        "Expires",
        "X-Cache",
        "X-Cache-Lookup",
        "Via",
        "Connection",
    ]
    assert headers["Content-Type"] == "message/http"
    assert headers["X-Cache-Lookup"] == "NONE from proxy7:3128"
    # Known header names in Squid's spelling, Host moved last.
    assert body == (
        b"TRACE / HTTP/1.1\r\nMax-Forwards: 0\r\nUser-Agent: t\r\nHost: www.example.com\r\n\r\n"
    )
    assert ev.outcome == "get"


def test_squids_logo():
    _ev, out, _ = one(b"GET /squid-internal-static/icons/SN.png HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, body = parse(out)
    assert status == "HTTP/1.1 200 OK"
    assert body.startswith(b"\x89PNG") and len(body) == 12716
    assert (headers["X-Cache"], headers["Cache-Control"]) == ("HIT from proxy7", "max-age=86400")
    _, out, _ = one(b"GET /squid-internal-static/nothing HTTP/1.1\r\n\r\n")
    assert parse(out)[0] == "HTTP/1.1 404 Not Found"


# -- languages ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "english", "language"),
    [
        ("en-US,en;q=0.9", True, "en-us"),
        ("de, en", True, "en"),  # no German pages: the tag is passed over
        ("en_GB", True, "en-gb"),
        ("*, en", False, "en"),
        ("xx", False, "en"),
        ("", False, "en"),
    ],
)
def test_accept_language(accept, english, language):
    _, out, _ = one(f"GET http://192.0.2.1/ HTTP/1.1\r\nAccept-Language: {accept}\r\n\r\n".encode())
    _, headers, body = parse(out)
    assert headers["Content-Language"] == language
    assert (b'<body id="ERR_CONNECT_FAIL">' in body) == english


# -- keep-alive, bodies, HTTP/0.9 ---------------------------------------------------------------


def test_keep_alive_answers_every_request_on_one_connection():
    events, out, m = run(
        [
            b"GET http://a.example/ HTTP/1.1\r\n\r\n"
            b"POST http://b.example/ HTTP/1.1\r\nContent-Length: 5\r\n\r\nhel",
            b"lo",
            b"GET http://azenv.net/ HTTP/1.1\r\nConnection: close\r\n\r\nignored",
        ]
    )
    assert [e.target_host for e in events] == ["a.example", "b.example", "azenv.net"]
    assert [r[0] for r in responses(out)] == [
        "HTTP/1.1 502 Bad Gateway",
        "HTTP/1.1 502 Bad Gateway",
        "HTTP/1.1 200 OK",
    ]
    assert [r[1]["Connection"] for r in responses(out)] == ["keep-alive", "keep-alive", "close"]
    assert m.closing and events[-1].leftover == b"ignored"


def test_chunked_body_is_read_before_the_next_request():
    m = machine()
    events = m.receive_data(
        b"POST http://a.example/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n"
    )
    events += m.receive_data(b"0\r\nTrailer: t\r\n\r\nGET http://b.example/ HTTP/1.1\r\n\r\n")
    assert [e.target_host for e in events] == ["a.example", "b.example"]
    assert not m.closing


def test_http_1_0_keeps_the_connection_only_when_asked():
    for request, closing in (
        (b"GET http://a.example/ HTTP/1.0\r\n\r\n", True),
        (b"GET http://a.example/ HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", False),
        (b"GET http://a.example/ HTTP/1.0\r\nProxy-Connection: keep-alive\r\n\r\n", False),
    ):
        m = machine()
        m.receive_data(request)
        assert m.closing == closing
        assert parse(m.data_to_send())[1]["Connection"] == ("close" if closing else "keep-alive")


def test_http_0_9_gets_a_full_answer_and_the_connection_closes():
    ev, out, m = one(b"GET http://a.example/\r\n")
    assert out.startswith(b"HTTP/1.1 502 Bad Gateway\r\nServer: squid/5.7\r\n")
    assert (ev.version, ev.outcome) == ("", "get") and m.closing
    # Words after the URL make it HTTP/0.9 too; Squid strips the spaces from the URL.
    ev, out, _ = one(b"GET http://azenv.net/ HTTP/1.1 extra\r\n\r\n")
    assert b"REQUEST_URI = /HTTP/1.1extra\n" in out and b"HTTP_VIA = 0.9 proxy7" in out


def test_methods_as_squid_spells_them():
    ev, out, _ = one(b"get http://azenv.net/ HTTP/1.1\r\n\r\n")
    assert ev.method == "GET" and b"REQUEST_METHOD = GET\n" in out
    ev, out, _ = one(b"Foo http://azenv.net/ HTTP/1.1\r\n\r\n")
    assert ev.method == "Foo" and b"REQUEST_METHOD = Foo\n" in out


def test_leading_empty_lines_are_skipped():
    ev, _, _ = one(b"\r\n\n\r\nGET http://a.example/ HTTP/1.1\r\n\r\n")
    assert ev.target_host == "a.example"


def test_request_count_is_bounded():
    stream = b"GET http://a.example/ HTTP/1.1\r\n\r\n" * (MAX_REQUESTS + 5)
    events, _, m = run([stream])
    assert len(events) == MAX_REQUESTS and m.closing


# -- what is logged ----------------------------------------------------------------------------


def test_basic_proxy_credentials_are_logged():
    ev, _, _ = one(b"GET http://a/ HTTP/1.1\r\nProxy-Authorization: Basic YWxpY2U6czNjcjN0\r\n\r\n")
    assert ev.auth == ProxyAuth("basic", "alice", "s3cr3t")
    ev, _, _ = one(b"GET http://a/ HTTP/1.1\r\nProxy-Authorization: NTLM abc\r\n\r\n")
    assert ev.auth == ProxyAuth("ntlm", None, None)


def test_headers_are_logged_as_sent_even_when_refused():
    ev, _, _ = one(b"GET / HTTP/1.1\r\nhost: x\r\nX-\xff: \xfe\r\n\r\n")
    assert ev.headers == (("host", "x"), ("X-\\xff", "\\xfe"))


def test_truncated_head_is_logged_on_connection_lost():
    m = machine()
    assert m.receive_data(b"GET http://a.example/ HT") == []
    [ev] = m.connection_lost()
    assert ev.outcome == "error" and ev.error.startswith("truncated") and ev.reply == ""
    assert m.done and m.closing and m.data_to_send() == b""


def test_a_client_that_leaves_between_requests_logs_nothing_more():
    events, _, m = run([b"GET http://a.example/ HTTP/1.1\r\n\r\n\r\n"])
    assert len(events) == 1 and m.connection_lost() == []


def test_input_after_done_is_ignored():
    m = machine()
    m.receive_data(b"CONNECT mx.example.org:25 HTTP/1.1\r\n\r\n")
    m.data_to_send()
    assert m.receive_data(b"EHLO x\r\n") == [] and m.data_to_send() == b""
    assert m.connection_lost() == []


# -- any split of the stream gives the same result --------------------------------------------

STREAMS = [
    b"CONNECT mx.example.com:25 HTTP/1.1\r\nHost: mx.example.com:25\r\n\r\nEHLO a\r\n",
    b"CONNECT [::1]:25 HTTP/1.0\n\nHELO",
    b"CONNECT www.example.com:443 HTTP/1.1\r\n\r\n",
    b"GET http://azenv.net/ HTTP/1.1\r\nUser-Agent: x\r\n\r\nGET http://a/ HTTP/1.1\r\n\r\n",
    b"POST http://e/ HTTP/1.1\r\nContent-Length: 5\r\n\r\nabcdeXYZ",
    b"POST http://e/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    b"GET http://f/ HTTP/1.0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"\r\nPUT http://e/ HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
    b"GET http://a/ HTTP/1.1\r\nX: " + b"y" * 150 + b"\r\n\r\n",
    b"GET http://a/\r\n",
    b"HELP\r\n",
    b"\x05\x01\x00",
]


@pytest.mark.parametrize("stream", STREAMS)
def test_every_split_gives_the_same_events_and_bytes(stream):
    def make():
        return machine(WEB, max_header_bytes=128)

    def dateless(result):
        return result[0], re.sub(rb"Date: [^\r]*", b"", result[1])

    whole = run([stream], make())[:2]
    assert run([bytes([b]) for b in stream], make())[:2] == whole
    for cut in range(len(stream) + 1):
        assert run([stream[:cut], b"", stream[cut:]], make())[:2] == whole
