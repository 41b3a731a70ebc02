"""The origin inside a web tunnel (proxy.non_smtp = "web"): one request, one answer, closed."""

from __future__ import annotations

from conftest import feed
from spampot.protocols.proxy import ProxyPolicy, WebRequest
from spampot.protocols.web import WebServer, judge_page

DATE = "Sun, 06 Nov 1994 08:49:37 GMT"
PLAIN = ProxyPolicy(page_title="Hi", page_template="<p>$title $host $path</p>")


def one(stream: bytes, m: WebServer | None = None) -> tuple:
    m = m if m is not None else WebServer(remote_addr="203.0.113.7")
    events, out = feed(m, [stream])
    assert len(events) == 1
    return events[0], out, m


def parse(response: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    status, *lines = head.decode().split("\r\n")
    return status, dict(line.split(": ", 1) for line in lines), body


def test_the_generic_page():
    m = WebServer(PLAIN, http_date=DATE)
    ev, out, _ = one(b"GET /index.html HTTP/1.1\r\nHost: www.example.com\r\n\r\n", m)
    status, headers, body = parse(out)
    assert (status, headers["Date"], headers["Connection"], body) == (
        "HTTP/1.1 200 OK",
        DATE,
        "close",
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


def test_a_judge_gets_the_echo_with_the_sensors_address():
    ev, out, _ = one(b"GET /azenv.php HTTP/1.1\r\nHost: a\r\nUser-Agent: u\r\n\r\n")
    body = parse(out)[2].decode()
    assert "HTTP_HOST = a\nHTTP_USER_AGENT = u\nREMOTE_ADDR = 203.0.113.7\n" in body
    assert ev.path == "/azenv.php"


def test_absolute_form_inside_the_tunnel():
    ev, out, _ = one(b"GET http://judge.example/x HTTP/1.1\r\n\r\n")
    assert b"REQUEST_URI = /x\n" in out
    assert (ev.host, ev.path, ev.error) == ("judge.example", "/x", None)


def test_other_methods_get_405():
    ev, out, _ = one(b"DELETE / HTTP/1.1\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n")
    assert ev.error == "method DELETE" and ev.reply == "HTTP/1.1 405 Method Not Allowed"


def test_malformed_is_400():
    ev, out, m = one(b"\x16\x03\x01junk\r\n\r\n")
    status, headers, body = parse(out)
    assert status == "HTTP/1.1 400 Bad Request" and headers["Server"] == "Apache"
    assert b"Your browser sent a request that this server could not understand." in body
    assert (ev.method, ev.reply) == ("", "HTTP/1.1 400 Bad Request") and ev.error
    assert m.closing


def test_truncated():
    m = WebServer()
    m.receive_data(b"GET / HT")
    [ev] = m.connection_lost()
    assert ev.error.startswith("truncated") and ev.reply == ""


def test_judge_page_escapes_what_would_be_markup():
    page = judge_page("192.0.2.1", 40000, "GET", "/<x>", [("X", "<b>&")])
    assert "HTTP_X = &lt;b&gt;&amp;" in page and "REQUEST_URI = /&lt;x&gt;" in page


def test_every_split_gives_the_same_result():
    stream = b"GET /azenv.php HTTP/1.1\r\nHost: a\r\n\r\nextra"
    whole = feed(WebServer(), [stream])
    assert feed(WebServer(), [bytes([b]) for b in stream]) == whole
