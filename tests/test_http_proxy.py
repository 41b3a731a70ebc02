"""HTTP proxy and web server machines: every answer, every error, any split of the stream."""

from __future__ import annotations

import base64

import pytest

from conftest import feed
from spampot.protocols.http_proxy import ESTABLISHED, HttpProxyServer, WebServer
from spampot.protocols.proxy import ProxyAuth, ProxyPolicy, ProxyRequest, WebRequest

DATE = "Sun, 06 Nov 1994 08:49:37 GMT"
WEB = ProxyPolicy(non_smtp="web")
PLAIN = ProxyPolicy(page_title="Hi", page_template="<p>$title $host $path</p>")


def run(chunks: list[bytes], machine: HttpProxyServer | WebServer | None = None) -> tuple:
    """Feed chunks like an adapter; bytes it would no longer feed are folded into leftover."""
    machine = machine if machine is not None else HttpProxyServer()
    events, out = feed(machine, chunks)
    return events, out, machine


def one(stream: bytes, machine: HttpProxyServer | WebServer | None = None) -> tuple:
    events, out, machine = run([stream], machine)
    assert len(events) == 1
    return events[0], out, machine


def parse(response: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    status, *lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return status, headers, body


# -- CONNECT ---------------------------------------------------------------------------------


def test_connect_smtp_is_established_and_handed_over():
    stream = (
        b"CONNECT mx.example.com:25 HTTP/1.0\r\nUser-Agent: x\r\n\r\nEHLO a\r\nMAIL FROM:<>\r\n"
    )
    ev, out, m = one(stream)
    # Squid 4 answers exactly this, HTTP/1.1 even to an HTTP/1.0 request.
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
    )
    assert m.done and not m.closing


def test_connect_ipv6_literal():
    ev, out, _ = one(b"CONNECT [2001:DB8:0::1]:25 HTTP/1.1\r\n\r\n")
    assert out == ESTABLISHED
    assert (ev.target_host, ev.target_port) == ("2001:db8::1", 25)


def test_connect_other_port_is_squid_access_denied():
    ev, out, m = one(b"CONNECT www.example.com:443 HTTP/1.1\r\nHost: www.example.com:443\r\n\r\n")
    status, headers, body = parse(out)
    assert status == "HTTP/1.1 403 Forbidden"
    assert headers == {
        "Server": "squid/4.13",
        "Mime-Version": "1.0",
        "Content-Type": "text/html;charset=utf-8",
        "Content-Length": str(len(body)),
        "X-Squid-Error": "ERR_ACCESS_DENIED 0",
        "Vary": "Accept-Language",
        "Content-Language": "en",
        "Connection": "close",
    }
    assert b"<b>Access Denied.</b>" in body
    assert b'<a href="www.example.com:443">www.example.com:443</a>' in body
    assert b"by localhost (squid/4.13)" in body
    assert (ev.outcome, ev.reply, ev.tunnel, ev.target_port) == (
        "other",
        "HTTP/1.1 403 Forbidden",
        None,
        443,
    )
    assert m.closing


def test_date_and_persona_come_from_the_adapter_and_policy():
    policy = ProxyPolicy(server_software="squid/3.5.27")
    m = HttpProxyServer(policy, http_date=DATE)
    _, out, _ = one(b"CONNECT a:80 HTTP/1.1\r\n\r\n", m)
    _status, headers, body = parse(out)
    assert headers["Date"] == DATE
    assert headers["Server"] == "squid/3.5.27"
    assert f"Generated {DATE} by localhost (squid/3.5.27)".encode() in body


def test_connect_web_port_under_web_policy():
    ev, out, m = one(
        b"CONNECT www.example.com:80 HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n", HttpProxyServer(WEB)
    )
    assert out == ESTABLISHED
    assert (ev.outcome, ev.tunnel, ev.leftover) == ("other", "web", b"GET / HTTP/1.1\r\n")
    assert not m.closing


@pytest.mark.parametrize(
    "target",
    [
        b"mx.example.com",
        b"mx.example.com:",
        b"mx.example.com:0",
        b"mx.example.com:65536",
        b"mx.example.com:123456",
        b"mx.example.com:2x",
        b":25",
        b"[::1",
        b"[zz]:25",
        b"/",
        b"a@b:25",
    ],
)
def test_connect_bad_target_is_400(target):
    ev, out, m = one(b"CONNECT " + target + b" HTTP/1.1\r\n\r\n")
    status, headers, _body = parse(out)
    assert status == "HTTP/1.1 400 Bad Request"
    assert headers["X-Squid-Error"] == "ERR_INVALID_URL 0"
    assert (ev.method, ev.outcome, ev.reply) == ("CONNECT", "error", "HTTP/1.1 400 Bad Request")
    assert ev.error
    assert m.closing


def test_proxy_authorization_basic_is_logged():
    creds = base64.b64encode(b"spam:mer:x\xff").decode()
    ev, _, _ = one(f"CONNECT a:25 HTTP/1.1\r\nProxy-Authorization: Basic {creds}\r\n\r\n".encode())
    assert ev.auth == ProxyAuth("basic", "spam", "mer:x\\xff")


@pytest.mark.parametrize(
    ("value", "auth"),
    [
        ("Basic !!!notbase64", ProxyAuth("basic", None, None)),
        ("Basic " + base64.b64encode(b"nocolon").decode(), ProxyAuth("basic", "nocolon", None)),
        ("NTLM TlRMTVNTUAABAAAA", ProxyAuth("ntlm", None, None)),
        ("", None),
    ],
)
def test_proxy_authorization_other_forms(value, auth):
    ev, _, _ = one(f"CONNECT a:25 HTTP/1.1\r\nProxy-Authorization: {value}\r\n\r\n".encode())
    assert ev.auth == auth
    assert ("Proxy-Authorization", value) in ev.headers  # the raw value is kept for the log


# -- GET through the proxy -------------------------------------------------------------------


def test_absolute_get_answers_the_generic_page():
    m = HttpProxyServer(PLAIN, http_date=DATE)
    ev, out, _ = one(b"GET http://www.example.com/a<b>?q HTTP/1.1\r\nHost: x\r\n\r\n", m)
    body = b"<p>Hi www.example.com /a&lt;b&gt;?q</p>"
    assert out == (
        b"HTTP/1.1 200 OK\r\nDate: " + DATE.encode() + b"\r\nServer: Apache\r\n"
        b"Content-Length: 39\r\nConnection: close\r\nContent-Type: text/html; charset=UTF-8\r\n"
        b"\r\n" + body
    )
    assert len(body) == 39
    assert (ev.method, ev.target_host, ev.target_port, ev.outcome, ev.reply) == (
        "GET",
        "www.example.com",
        80,
        "get",
        "HTTP/1.1 200 OK",
    )
    assert ev.headers == (("Host", "x"),)
    assert m.closing


def test_default_page_is_html():
    _, out, _ = one(b"GET http://example.com/ HTTP/1.0\r\n\r\n")
    status, headers, body = parse(out)
    assert status == "HTTP/1.1 200 OK" and "Date" not in headers
    assert body.startswith(b"<!DOCTYPE html>") and b"<title>Welcome</title>" in body
    assert headers["Content-Length"] == str(len(body))


@pytest.mark.parametrize(
    ("url", "host", "port"),
    [
        (b"http://example.com:8080/x", "example.com", 8080),
        (b"HTTPS://example.com", "example.com", 443),
        (b"http://user:pw@example.com/", "example.com", 80),
        (b"http://[::1]:81/", "::1", 81),
        (b"http://example.com?x=1", "example.com", 80),
    ],
)
def test_absolute_urls(url, host, port):
    ev, out, _ = one(b"GET " + url + b" HTTP/1.1\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 OK\r\n")
    assert (ev.target_host, ev.target_port, ev.outcome) == (host, port, "get")


def test_head_gets_headers_only():
    ev, out, _ = one(b"HEAD http://example.com/ HTTP/1.1\r\n\r\n")
    status, headers, body = parse(out)
    assert status == "HTTP/1.1 200 OK" and body == b""
    assert int(headers["Content-Length"]) > 0
    assert ev.method == "HEAD" and ev.outcome == "get"


def test_post_body_is_read_and_discarded_before_answering():
    m = HttpProxyServer()
    head = b"POST http://example.com/form HTTP/1.1\r\nContent-Length: 10\r\n\r\n"
    assert m.receive_data(head + b"12345") == []
    assert m.data_to_send() == b"" and not m.done and m.buffered == 0
    [ev] = m.receive_data(b"67890NEXT")
    assert m.data_to_send().startswith(b"HTTP/1.1 200 OK\r\n")
    assert (ev.method, ev.outcome, ev.leftover) == ("POST", "get", b"NEXT")
    assert m.closing


@pytest.mark.parametrize(
    "header",
    [
        b"Transfer-Encoding: chunked",
        b"Expect: 100-continue\r\nContent-Length: 5",
        b"Content-Length: 2000000",
        b"Content-Length: 99999999999999999999999",
    ],
)
def test_bodies_we_do_not_read_are_answered_at_once(header):
    ev, out, m = one(b"POST http://example.com/ HTTP/1.1\r\n" + header + b"\r\n\r\nbody")
    assert out.startswith(b"HTTP/1.1 200 OK\r\n")
    assert ev.outcome == "get" and ev.leftover == b"body"
    assert m.closing


@pytest.mark.parametrize("value", [b"abc", b"-1", b"5, 6", b"1e3", b""])
def test_invalid_content_length_is_400(value):
    ev, out, _ = one(b"POST http://example.com/ HTTP/1.1\r\nContent-Length: " + value + b"\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert (ev.method, ev.outcome, ev.error) == ("POST", "error", "invalid Content-Length")
    assert (ev.target_host, ev.target_port) == ("example.com", 80)


def test_repeated_identical_content_length_is_fine():
    ev, _, _ = one(
        b"POST http://e/ HTTP/1.1\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\nab"
    )
    assert ev.outcome == "get" and ev.leftover == b""


def test_other_methods_in_absolute_form_get_405_from_the_origin():
    ev, out, _ = one(b"PUT http://example.com/x HTTP/1.1\r\nContent-Length: 2\r\n\r\nab")
    status, headers, body = parse(out)
    assert status == "HTTP/1.1 405 Method Not Allowed"
    assert headers["Allow"] == "GET, HEAD, POST" and headers["Server"] == "Apache"
    assert b"The requested method PUT is not allowed" in body
    assert (ev.method, ev.outcome, ev.reply) == ("PUT", "get", "HTTP/1.1 405 Method Not Allowed")


def test_unsupported_scheme_is_400():
    ev, out, _ = one(b"GET ftp://example.com/ HTTP/1.1\r\n\r\n")
    assert parse(out)[1]["X-Squid-Error"] == "ERR_UNSUP_REQ 0"
    assert ev.outcome == "error"


# -- proxy judges ----------------------------------------------------------------------------


def test_judge_echo_is_azenv_like():
    stream = (
        b"GET http://www.example.org/azenv.php HTTP/1.1\r\n"
        b"Host: wrong.example\r\nUser-Agent: Mozilla/5.0\r\nX-Forwarded-For: 10.0.0.1\r\n"
        b"Proxy-Connection: keep-alive\r\nProxy-Authorization: Basic YTpi\r\n"
        b"Accept-Language: pt\r\n\r\n"
    )
    ev, out, _ = one(stream)
    status, _headers, body = parse(out)
    text = body.decode()
    assert status == "HTTP/1.1 200 OK"
    assert text.startswith("<html><head><title>AZ Environment variables 1.04</title></head>")
    pre = text.split("<pre>\n")[1].split("\n</pre>")[0].splitlines()
    remote_port = int(pre[5].split(" = ")[1])
    assert 32768 <= remote_port <= 60999
    assert pre == [
        "HTTP_HOST = www.example.org",  # the proxy sends the URL's authority (RFC 9112 §3.2.2)
        "HTTP_USER_AGENT = Mozilla/5.0",
        "HTTP_X_FORWARDED_FOR = 10.0.0.1",  # the client's own, passed on unchanged
        "HTTP_ACCEPT_LANGUAGE = pt",
        "REMOTE_ADDR = 192.0.2.10",
        f"REMOTE_PORT = {remote_port}",
        "SERVER_PROTOCOL = HTTP/1.1",
        "REQUEST_METHOD = GET",
        "REQUEST_URI = /azenv.php",
    ]
    assert "Via" not in text and "PROXY" not in text
    assert ev.outcome == "get" and ev.auth == ProxyAuth("basic", "a", "b")


def test_judge_without_host_header_gets_one():
    _, out, _ = one(b"GET http://proxyjudge.us/ HTTP/1.0\r\n\r\n")
    assert b"<pre>\nHTTP_HOST = proxyjudge.us\nREMOTE_ADDR = 192.0.2.10\n" in out


@pytest.mark.parametrize(
    "url",
    [
        b"http://a/azenv.php",
        b"http://judge.example/",
        b"http://a/cgi-bin/prxjdg.cgi",
        b"http://a/ENV.PHP",
        b"http://httpbin.org/headers",
        b"http://a/proxyjudge",
    ],
)
def test_judge_markers(url):
    _, out, _ = one(b"GET " + url + b" HTTP/1.1\r\n\r\n")
    assert b"AZ Environment variables" in out


def test_judge_remote_address_is_the_public_one():
    m = HttpProxyServer(ProxyPolicy(public_address="198.51.100.7"))
    _, out, _ = one(b"GET http://azenv.net/ HTTP/1.1\r\n\r\n", m)
    assert b"REMOTE_ADDR = 198.51.100.7\n" in out


# -- origin-form: the client takes us for a web server ---------------------------------------


def test_origin_form_get_is_a_page():
    ev, out, m = one(
        b"GET / HTTP/1.1\r\nHost: www.example.com:8080\r\n\r\n", HttpProxyServer(PLAIN)
    )
    assert parse(out)[2] == b"<p>Hi www.example.com /</p>"
    assert (ev.target_host, ev.target_port, ev.outcome) == ("www.example.com", None, "get")
    assert m.closing


def test_origin_form_without_host():
    ev, _, _ = one(b"GET /index.html HTTP/1.0\r\n\r\n")
    assert (ev.target_host, ev.outcome) == (None, "get")


def test_origin_form_judge():
    _, out, _ = one(b"GET /azenv.php HTTP/1.1\r\nHost: 192.0.2.10\r\n\r\n")
    assert b"HTTP_HOST = 192.0.2.10\n" in out and b"REQUEST_URI = /azenv.php\n" in out


def test_origin_form_other_method_is_405_and_an_error():
    ev, out, _ = one(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n")
    assert (ev.method, ev.outcome) == ("OPTIONS", "error")
    assert "OPTIONS" in ev.error


# -- malformed -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stream", "method", "version"),
    [
        (b"GET\r\n\r\n", "", ""),
        (b"GET /\r\n\r\n", "", ""),
        (b"GET / HTTP/1.1 extra\r\n\r\n", "", ""),
        (b"G(T / HTTP/1.1\r\n\r\n", "", "HTTP/1.1"),
        (b"GET / HTTP/2.0\r\n\r\n", "GET", "HTTP/2.0"),
        (b"GET / FOO\r\n\r\n", "GET", "FOO"),
        (b"GET / HTTP/1.1\r\nNoColon\r\n\r\n", "GET", "HTTP/1.1"),
        (b"GET / HTTP/1.1\r\nName : v\r\n\r\n", "GET", "HTTP/1.1"),
        (b"GET / HTTP/1.1\r\n folded\r\n\r\n", "GET", "HTTP/1.1"),
        (b"GET example.com:80 HTTP/1.1\r\n\r\n", "GET", "HTTP/1.1"),
        (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\n\n", "", ""),
    ],
)
def test_malformed_requests_get_squid_400(stream, method, version):
    ev, out, m = one(stream)
    status, headers, body = parse(out)
    assert status == "HTTP/1.1 400 Bad Request"
    assert headers["Server"] == "squid/4.13"
    assert headers["Content-Length"] == str(len(body))
    assert (ev.protocol, ev.method, ev.version, ev.outcome) == ("http", method, version, "error")
    assert ev.error and ev.reply == "HTTP/1.1 400 Bad Request"
    assert m.done and m.closing


def test_bare_lf_leading_empty_lines_and_folding_are_tolerated():
    ev, out, _ = one(b"\r\n\nGET http://a/ HTTP/1.1\nX-A: 1\n  more\nX-B:\tv \r\n\nrest")
    assert out.startswith(b"HTTP/1.1 200 OK")
    assert ev.headers == (("X-A", "1 more"), ("X-B", "v"))
    assert ev.leftover == b"rest"


def test_bare_cr_becomes_space():
    ev, _, _ = one(b"GET http://a/ HTTP/1.1\r\nX-A: a\rb\r\n\r\n")
    assert ev.headers == (("X-A", "a b"),)


def test_client_strings_are_decoded_never_dropped():
    ev, _, _ = one(b"GET http://h\xe9.example/\xff HTTP/1.1\r\nX-A: caf\xc3\xa9 \xff\r\n\r\n")
    assert ev.target_host == "h\\xe9.example"
    assert ev.headers == (("X-A", "caf\u00e9 \\xff"),)
    # A non-token header name is malformed, but still shows in the error.
    ev, _, _ = one(b"GET http://a/ HTTP/1.1\r\nX-\xc3\xa9: v\r\n\r\n")
    assert ev.outcome == "error" and "X-\u00e9: v" in ev.error


def test_oversized_head_is_400_too_big():
    m = HttpProxyServer(max_header_bytes=100)
    assert m.receive_data(b"GET http://a/ HTTP/1.1\r\nX-A: " + b"a" * 60) == []
    assert m.buffered == 89
    [ev] = m.receive_data(b"a" * 20)
    status, headers, _ = parse(m.data_to_send())
    assert status == "HTTP/1.1 400 Bad Request"
    assert headers["X-Squid-Error"] == "ERR_TOO_BIG 0"
    assert ev.outcome == "error" and "larger than 100" in ev.error
    assert m.buffered == 0 and m.closing


def test_head_exactly_at_limit_is_accepted():
    head = b"GET http://a/ HTTP/1.1\r\n\r\n"
    ev, _, _ = one(head, HttpProxyServer(max_header_bytes=len(head)))
    assert ev.outcome == "get"
    ev, _, _ = one(head, HttpProxyServer(max_header_bytes=len(head) - 1))
    assert ev.outcome == "error"


# -- life cycle ------------------------------------------------------------------------------


def test_truncated_head_is_logged_on_connection_lost():
    m = HttpProxyServer()
    assert m.receive_data(b"CONNECT mx.example.com:25 HTTP/1.1\r\nHost") == []
    [ev] = m.connection_lost()
    assert ev.outcome == "error" and ev.reply == ""
    assert ev.error.startswith("truncated: connection closed in request head")
    assert m.data_to_send() == b""


def test_truncated_body_is_logged_with_what_was_known():
    m = HttpProxyServer()
    m.receive_data(b"POST http://example.com/ HTTP/1.1\r\nContent-Length: 9\r\n\r\nabc")
    [ev] = m.connection_lost()
    assert (ev.method, ev.target_host, ev.outcome) == ("POST", "example.com", "error")
    assert ev.error == "truncated: connection closed in request body (3 of 9 bytes)"
    assert m.data_to_send() == b""


def test_nothing_received_nothing_logged():
    m = HttpProxyServer()
    assert m.receive_data(b"") == [] and m.connection_lost() == []


def test_input_after_done_is_ignored():
    m = HttpProxyServer()
    m.receive_data(b"CONNECT a:25 HTTP/1.1\r\n\r\n")
    m.data_to_send()
    assert m.receive_data(b"EHLO x\r\n") == [] and m.data_to_send() == b""
    assert m.connection_lost() == []


# -- WebServer -------------------------------------------------------------------------------


def test_web_server_answers_the_generic_page():
    m = WebServer(PLAIN, http_date=DATE)
    ev, out, _ = one(b"GET /index.html HTTP/1.1\r\nHost: www.example.com\r\n\r\n", m)
    status, headers, body = parse(out)
    assert (status, headers["Date"], body) == (
        "HTTP/1.1 200 OK",
        DATE,
        b"<p>Hi www.example.com /index.html</p>",
    )
    assert ev == WebRequest(
        method="GET",
        host="www.example.com",
        path="/index.html",
        version="HTTP/1.1",
        headers=(("Host", "www.example.com"),),
        reply="HTTP/1.1 200 OK",
    )
    assert m.done and m.closing


def test_web_server_judge_echo_matches_the_proxy_one():
    request = b"GET /azenv.php HTTP/1.1\r\nHost: a\r\nUser-Agent: u\r\n\r\n"
    _, web_out, _ = one(request, WebServer())
    _, proxy_out, _ = one(request, HttpProxyServer())
    assert web_out == proxy_out
    assert b"HTTP_USER_AGENT = u\n" in web_out


def test_web_server_tolerates_absolute_form():
    ev, out, _ = one(b"GET http://judge.example/x HTTP/1.1\r\n\r\n", WebServer())
    assert b"HTTP_HOST = judge.example\n" in out
    assert (ev.host, ev.path, ev.error) == ("judge.example", "/x", None)


def test_web_server_other_method_is_405():
    ev, out, _ = one(b"DELETE / HTTP/1.1\r\n\r\n", WebServer())
    assert out.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n")
    assert ev.error == "method DELETE" and ev.reply == "HTTP/1.1 405 Method Not Allowed"


def test_web_server_malformed_is_apache_400():
    ev, out, m = one(b"EHLO spammer\r\n\r\n", WebServer())
    status, headers, body = parse(out)
    assert status == "HTTP/1.1 400 Bad Request" and headers["Server"] == "Apache"
    assert b"Your browser sent a request that this server could not understand." in body
    assert (ev.method, ev.reply) == ("", "HTTP/1.1 400 Bad Request") and ev.error
    assert m.closing


def test_web_server_truncated():
    m = WebServer()
    m.receive_data(b"GET / HT")
    [ev] = m.connection_lost()
    assert ev.error.startswith("truncated") and ev.reply == ""


def test_web_server_post_body_discarded():
    m = WebServer()
    assert m.receive_data(b"POST /f HTTP/1.1\r\nContent-Length: 4\r\n\r\nab") == []
    [ev] = m.receive_data(b"cd")
    assert ev.method == "POST" and m.data_to_send().startswith(b"HTTP/1.1 200 OK")


# -- any split of the stream gives the same result --------------------------------------------

STREAMS = [
    b"CONNECT mx.example.com:25 HTTP/1.1\r\nHost: mx.example.com:25\r\n\r\nEHLO a\r\n",
    b"CONNECT [::1]:25 HTTP/1.0\n\nHELO",
    b"CONNECT www.example.com:443 HTTP/1.1\r\n\r\n",
    b"GET http://azenv.net/ HTTP/1.1\r\nUser-Agent: x\r\n\r\n",
    b"POST http://e/ HTTP/1.1\r\nContent-Length: 5\r\n\r\nabcdeXYZ",
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"\r\nPUT http://e/ HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
    b"GET http://a/ HTTP/1.1\r\nX: " + b"y" * 150 + b"\r\n\r\n",
    b"HELP\r\n",
]


@pytest.mark.parametrize("stream", STREAMS)
@pytest.mark.parametrize("kind", [HttpProxyServer, WebServer])
def test_every_split_gives_the_same_events_and_bytes(stream, kind):
    def make():
        return kind(WEB, max_header_bytes=128, http_date=DATE)

    whole = run([stream], make())[:2]
    assert run([bytes([b]) for b in stream], make())[:2] == whole
    for cut in range(len(stream) + 1):
        assert run([stream[:cut], b"", stream[cut:]], make())[:2] == whole


def test_port_seed_varies_the_judge_remote_port():
    request = b"GET http://azenv.net/ HTTP/1.1\r\n\r\n"
    ports = {
        one(request, HttpProxyServer(port_seed=seed))[1].split(b"REMOTE_PORT = ")[1][:5]
        for seed in (b"", b"a", b"b")
    }
    assert len(ports) == 3
