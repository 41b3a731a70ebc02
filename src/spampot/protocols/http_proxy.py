"""HTTP proxy (Squid persona) and tiny web server, server side, sans-I/O.

The paper's HTTP proxy emulator (§3.1-3.2) implements GET and CONNECT: CONNECT to the SMTP
port is handed to the SMTP emulator, other ports refused, GET answered with a generic page.

One request per connection, then close (HTTP/1.0 semantics, ``Connection: close``).
How requests are classified (``ProxyRequest.outcome``, the paper's Table 6):

* ``CONNECT host:port`` (RFC 9110 §9.3.6, authority-form RFC 9112 §3.2.3): SMTP port ->
  ``HTTP/1.1 200 Connection established`` and ``tunnel="smtp"``; a web port under
  ``non_smtp="web"`` -> the same 200 and ``tunnel="web"`` (outcome "other"); any other port ->
  Squid's ``403`` ERR_ACCESS_DENIED page (outcome "other"); no or bad port -> ``400`` ("error").
* absolute-form (RFC 9112 §3.2.2) GET/HEAD/POST -> ``200`` generic page, or the azenv-style
  echo for proxy judges -> "get". Any other method in absolute-form -> ``405`` as the origin
  server would answer it, still "get": the client used us as a web proxy and got a page.
* origin-form (the client takes us for a web server) GET/HEAD/POST -> the same pages, "get";
  other methods -> ``405``, "error" (nothing a proxy was asked to do).
* Anything malformed or oversized -> Squid-like ``400`` page, "error".

Squid 4 answers every request with ``HTTP/1.1`` whatever the request's version, and its CONNECT
success is exactly ``HTTP/1.1 200 Connection established`` with no header
(``HttpReply::MakeConnectionEstablished``); both are mimicked. No Via or X-Forwarded-For is
ever added: we emulate a "high anonymity" proxy, the kind spammers look for.
"""

from __future__ import annotations

import base64
import binascii
import html
import ipaddress
import re
from dataclasses import dataclass, replace
from string import Template
from typing import Generic, TypeVar

from spampot.protocols.common import decode_client, printable
from spampot.protocols.proxy import (
    ProxyAuth,
    ProxyPolicy,
    ProxyRequest,
    WebRequest,
    ephemeral_port,
)

# Squid's request_header_max_size default (64 KB): request line plus headers.
MAX_HEADER_BYTES = 64 * 1024
# Bodies are read and discarded so closing does not reset the connection before the client
# reads the answer; beyond this (nginx's client_max_body_size default, 1 MiB) we answer
# without reading.
MAX_BODY_BYTES = 1024 * 1024
# Substrings of a URL (host and path) that betray a proxy judge: these get the echo page.
JUDGE_MARKERS = ("azenv", "judge", "proxyjudge", "env.php", "prxjdg", "headers")
PAGE_METHODS = ("GET", "HEAD", "POST")

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 §5.6.2 token
_VERSION = re.compile(rb"HTTP/1\.[0-9]")  # RFC 9112 §2.3; only HTTP/1.x is spoken here
_AUTHORITY = re.compile(r"(?:\[(?P<ip6>[^\]]*)\]|(?P<name>[^:\[\]@/?#]+))(?::(?P<port>[0-9]*))?")
_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://(?P<authority>[^/?#]*)(?P<path>.*)")
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Hop-by-hop headers a forwarding proxy consumes instead of passing to the origin.
_PROXY_ONLY = ("proxy-authorization", "proxy-connection")

ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"

_Event = TypeVar("_Event", ProxyRequest, WebRequest)


class _Bad(Exception):
    """A request we answer with 400 (and log as "error")."""

    def __init__(
        self, detail: str, code: str = "ERR_INVALID_REQ", head: _Head | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code  # Squid's error page name
        self.head = head


@dataclass(frozen=True, slots=True)
class _Head:
    method: str
    target: str
    version: str
    headers: tuple[tuple[str, str], ...]
    raw: bytes  # the head as received, to derive reply details without randomness

    def header(self, name: str) -> str | None:
        return next((v for n, v in self.headers if n.lower() == name), None)


class _HeadReader:
    """Collects the lines of one request head within ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._buf = bytearray()
        self._scan = 0  # start of the current line
        self._seek = 0  # where to look for its end: never rescan a partial line
        self._lines: list[bytes] = []
        self.raw = b""
        self.rest = b""

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def pending(self) -> bytes:
        return bytes(self._buf)

    def feed(self, data: bytes) -> list[bytes] | None:
        """The head's lines (without terminators) once complete; raises _Bad past the limit."""
        self._buf += data
        while (nl := self._buf.find(b"\n", self._seek)) >= 0 and nl < self.limit:
            line = bytes(self._buf[self._scan : nl])
            self._scan = self._seek = nl + 1
            # RFC 9112 §2.2: a bare LF may end a line, and a bare CR may be replaced by SP.
            line = line.removesuffix(b"\r").replace(b"\r", b" ")
            if line:
                self._lines.append(line)
            elif self._lines:
                self.raw = bytes(self._buf[: self._scan])
                self.rest = bytes(self._buf[self._scan :])
                self._buf.clear()
                return self._lines
            # else RFC 9112 §2.2: ignore empty lines received before the request-line.
        self._seek = len(self._buf)
        if len(self._buf) > self.limit:
            self.rest = self.pending()
            self._buf.clear()
            raise _Bad(f"request head larger than {self.limit} bytes", "ERR_TOO_BIG")
        return None


def _parse_head(lines: list[bytes], raw: bytes) -> _Head:
    parts = lines[0].split()  # RFC 9112 §3: MAY parse on whitespace-delimited words
    if len(parts) != 3:
        raise _Bad(f"malformed request line: {printable(lines[0], 120)}")
    method_raw, target_raw, version_raw = parts
    method = decode_client(method_raw) if _TOKEN.fullmatch(method_raw) else ""
    head = _Head(method, decode_client(target_raw), decode_client(version_raw), (), raw)
    if not method:
        raise _Bad(f"invalid method: {printable(method_raw, 60)}", head=head)
    if not _VERSION.fullmatch(version_raw):
        raise _Bad(f"unsupported HTTP version: {printable(version_raw, 60)}", head=head)
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):
            # RFC 9112 §5.2: obsolete line folding may be replaced by SP.
            if not headers:
                raise _Bad("continuation line before any header", head=head)
            name, value = headers[-1]
            headers[-1] = (name, value + " " + decode_client(line.strip(b" \t")))
            continue
        name_raw, colon, value_raw = line.partition(b":")
        # RFC 9112 §5.1: no whitespace is allowed between the field name and the colon.
        if not colon or not _TOKEN.fullmatch(name_raw):
            raise _Bad(f"malformed header line: {printable(line, 120)}", head=head)
        headers.append((decode_client(name_raw), decode_client(value_raw.strip(b" \t"))))
    return _Head(head.method, head.target, head.version, tuple(headers), raw)


def _parse_authority(text: str, default_port: int | None) -> tuple[str, int]:
    """``host[:port]`` or ``[v6]:port``; the port is required when ``default_port`` is None."""
    match = _AUTHORITY.fullmatch(text)
    if not match:
        raise _Bad(f"invalid host:port {printable(text.encode(), 120)}", "ERR_INVALID_URL")
    host = match["name"]
    if match["ip6"] is not None:
        try:
            host = ipaddress.IPv6Address(match["ip6"]).compressed
        except ValueError:
            raise _Bad(f"invalid IPv6 address [{match['ip6'][:60]}]", "ERR_INVALID_URL") from None
    port_text = match["port"]
    if not port_text:
        if default_port is None:
            raise _Bad(f"no port in {printable(text.encode(), 120)}", "ERR_INVALID_URL")
        return host, default_port
    port = int(port_text[:6])
    if not 0 < port < 65536 or len(port_text) > 5:
        raise _Bad(f"invalid port {port_text[:10]}", "ERR_INVALID_URL")
    return host, port


def _parse_url(target: str) -> tuple[str, str, int, str]:
    """Absolute-form target -> (authority, host, port, path)."""
    match = _URL.fullmatch(target)
    if not match:
        raise _Bad(f"invalid URL {printable(target.encode(), 120)}", "ERR_INVALID_URL")
    scheme = match["scheme"].lower()
    if scheme not in _DEFAULT_PORTS:
        raise _Bad(f"unsupported URL scheme {scheme[:20]}", "ERR_UNSUP_REQ")
    # RFC 9110 §4.2.4: userinfo is deprecated; drop it as a forwarding proxy would.
    authority = match["authority"].rpartition("@")[2]
    host, port = _parse_authority(authority, _DEFAULT_PORTS[scheme])
    path = match["path"]
    return authority, host, port, path if path.startswith("/") else "/" + path


def _proxy_auth(head: _Head) -> ProxyAuth | None:
    value = head.header("proxy-authorization")
    if value is None:
        return None
    scheme, _, credentials = value.strip().partition(" ")
    if not scheme:
        return None
    if scheme.lower() != "basic":
        return ProxyAuth(scheme.lower(), None, None)
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True)
    except (binascii.Error, ValueError):  # the raw value stays in ``headers``
        return ProxyAuth("basic", None, None)
    user, colon, password = decoded.partition(b":")  # RFC 7617 §2
    return ProxyAuth("basic", decode_client(user), decode_client(password) if colon else None)


def _body_length(head: _Head) -> int | None:
    """Body bytes to discard before answering; None: answer at once without reading."""
    if head.header("transfer-encoding") is not None:
        return None  # chunked bodies are not parsed: answer, then close
    expect = head.header("expect")
    if expect is not None and expect.lower() == "100-continue":
        return None  # RFC 9110 §10.1.1: a final status instead of 100; no body will follow
    values = {
        item.strip()
        for name, value in head.headers
        if name.lower() == "content-length"
        for item in value.split(",")
    }
    if not values:
        return 0
    value = values.pop()
    # RFC 9112 §6.3: an invalid or ambiguous Content-Length is unrecoverable -> 400.
    if values or not re.fullmatch(r"[0-9]+", value):
        raise _Bad("invalid Content-Length", head=head)
    return int(value) if len(value) <= 18 else None


# -- responses --------------------------------------------------------------------------------


def _response(
    status: str, headers: list[tuple[str, str]], body: bytes, *, head_only: bool = False
) -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{n}: {v}" for n, v in headers), "", ""]
    return "\r\n".join(lines).encode() + (b"" if head_only else body)


_SQUID_ERRORS = {
    "ERR_ACCESS_DENIED": (
        "Access Denied.",
        "Access control configuration prevents your request from being allowed at this "
        "time. Please contact your service provider if you feel this is incorrect.",
    ),
    "ERR_INVALID_REQ": (
        "Invalid Request",
        "Some aspect of the HTTP Request is invalid. Possible problems: missing or unknown "
        "request method, missing URL, missing HTTP identifier (HTTP/1.0), request is too "
        "large, Content-Length missing for POST or PUT requests.",
    ),
    "ERR_INVALID_URL": (
        "Invalid URL",
        "Some aspect of the requested URL is incorrect. Possible problems: missing or "
        "incorrect access protocol (should be http:// or similar), missing hostname, illegal "
        "double-escape in the URL-Path, illegal character in hostname.",
    ),
    "ERR_UNSUP_REQ": (
        "Unsupported Request Method and Protocol",
        "Squid does not support all request methods for all access protocols.",
    ),
    "ERR_TOO_BIG": (
        "The request or reply is too large.",
        "If you are making a POST or PUT request, then the item you are trying to upload is "
        "too large. These limits have been established by the Internet Service Provider who "
        "operates this cache.",
    ),
}

_SQUID_PAGE = """\
<!DOCTYPE html PUBLIC "-//W3C//DTD HTML 4.01//EN" "http://www.w3.org/TR/html4/strict.dtd">
<html><head>
<meta type="copyright" content="Copyright (C) 1996-2020 The Squid Software Foundation and \
contributors">
<meta http-equiv="Content-Type" content="text/html; charset=utf-8">
<title>ERROR: The requested URL could not be retrieved</title>
</head><body id="{code}">
<div id="titles">
<h1>ERROR</h1>
<h2>The requested URL could not be retrieved</h2>
</div>
<hr>

<div id="content">
<p>The following error was encountered while trying to retrieve the URL: \
<a href="{url}">{url}</a></p>

<blockquote id="error">
<p><b>{headline}</b></p>
</blockquote>

<p>{explain}</p>

<p>Your cache administrator is <a href="mailto:webmaster">webmaster</a>.</p>
<br>
</div>

<hr>
<div id="footer">
<p>Generated {date} by localhost ({software})</p>
<!-- {code} -->
</div>
</body></html>
"""


def _escaped(text: str, limit: int = 200) -> str:
    """Client text made safe and short for an HTML page."""
    return html.escape(printable(text.encode(), limit))


def _date_header(http_date: str) -> list[tuple[str, str]]:
    return [("Date", http_date)] if http_date else []


def _squid_error(
    policy: ProxyPolicy, status: str, code: str, url: str, http_date: str = ""
) -> bytes:
    """A Squid error response (status line, headers, ERR_* page)."""
    headline, explain = _SQUID_ERRORS[code]
    body = _SQUID_PAGE.format(
        code=code,
        url=_escaped(url),
        headline=headline,
        explain=explain,
        date=html.escape(http_date),
        software=html.escape(policy.server_software),
    ).encode()
    headers = [
        ("Server", policy.server_software),
        ("Mime-Version", "1.0"),
        *_date_header(http_date),
        ("Content-Type", "text/html;charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("X-Squid-Error", f"{code} 0"),
        ("Vary", "Accept-Language"),
        ("Content-Language", "en"),
        ("Connection", "close"),
    ]
    return _response(status, headers, body)


def _origin_response(
    policy: ProxyPolicy,
    status: str,
    body: str,
    http_date: str,
    *,
    head_only: bool = False,
    extra: tuple[tuple[str, str], ...] = (),
) -> bytes:
    data = body.encode()
    headers = [
        *_date_header(http_date),
        ("Server", policy.web_server_software),
        *extra,
        ("Content-Length", str(len(data))),
        ("Connection", "close"),
        ("Content-Type", "text/html; charset=UTF-8"),
    ]
    return _response(status, headers, data, head_only=head_only)


def _apache_page(title: str, message: str) -> str:
    return (
        '<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">\n<html><head>\n'
        f"<title>{title}</title>\n</head><body>\n<h1>{title.partition(' ')[2]}</h1>\n"
        f"<p>{message}</p>\n</body></html>\n"
    )


def _is_judge(url: str) -> bool:
    lowered = url.lower()
    return any(marker in lowered for marker in JUDGE_MARKERS)


def _judge_page(
    policy: ProxyPolicy, head: _Head, host_header: str | None, request_uri: str, remote_port: int
) -> str:
    """The azenv.php echo proxy judges parse: what the origin saw of the request.

    A forwarding proxy puts the URL's authority in Host (RFC 9112 §3.2.2) and consumes its own
    hop-by-hop headers; it adds nothing, so the client's address does not leak.
    """
    lines: list[str] = []
    headers = list(head.headers)
    if host_header is not None:
        host_at = next((i for i, (n, _) in enumerate(headers) if n.lower() == "host"), None)
        if host_at is None:
            headers.insert(0, ("Host", host_header))
        else:
            headers[host_at] = (headers[host_at][0], host_header)
    for name, value in headers:
        if name.lower() not in _PROXY_ONLY:
            lines.append(f"HTTP_{name.upper().replace('-', '_')} = {value}")
    lines += [
        f"REMOTE_ADDR = {policy.public_address}",
        f"REMOTE_PORT = {remote_port}",
        f"SERVER_PROTOCOL = {head.version}",
        f"REQUEST_METHOD = {head.method}",
        f"REQUEST_URI = {request_uri}",
    ]
    body = "\n".join(lines)
    return (
        "<html><head><title>AZ Environment variables 1.04</title></head><body><pre>\n"
        f"{body}\n</pre></body></html>\n"
    )


# -- machines ---------------------------------------------------------------------------------


class _OneRequest(Generic[_Event]):
    """Shared life of both machines: read a head, maybe discard a body, answer once, close."""

    def __init__(
        self,
        policy: ProxyPolicy | None = None,
        *,
        max_header_bytes: int = MAX_HEADER_BYTES,
        max_body_bytes: int = MAX_BODY_BYTES,
        http_date: str = "",
        port_seed: bytes = b"",
    ) -> None:
        self.policy = policy if policy is not None else ProxyPolicy()
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes
        self.http_date = http_date  # RFC 9110 §6.6.1: omitted, since we have no clock
        self.port_seed = port_seed  # varies REMOTE_PORT per connection (see ephemeral_port)
        self.closing = False
        self.done = False
        self._reader = _HeadReader(max_header_bytes)
        self._out = bytearray()
        self._received = 0
        self._head: _Head | None = None
        self._body_left = 0
        self._body_total = 0
        self._pending: tuple[bytes, _Event] | None = None

    @property
    def buffered(self) -> int:
        """Bytes held between calls; never more than ``max_header_bytes``."""
        return self._reader.buffered

    @property
    def max_buffered(self) -> int:
        return self.max_header_bytes

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: bytes) -> list[_Event]:
        if self.done:
            return []
        self._received += len(data)
        if self._pending is not None:
            return self._discard(data)
        try:
            lines = self._reader.feed(data)
            if lines is None:
                return []
            self._head = _parse_head(lines, self._reader.raw)
            return self._on_head(self._head, self._reader.rest)
        except _Bad as bad:
            if bad.head is not None:
                self._head = bad.head
            # Nothing is consumed past the head (or, for an oversized head, at all).
            return [self._finish(self._bad(bad), self._reader.rest)]

    def connection_lost(self) -> list[_Event]:
        """The peer went away: a request left half-sent is logged as a truncated error."""
        if self.done or not self._received:
            return []
        if self._pending is not None:
            got = self._body_total - self._body_left
            detail = f"request body ({got} of {self._body_total} bytes)"
        else:
            detail = f"request head ({self._reader.buffered} bytes pending)"
        event = self._error_event(f"truncated: connection closed in {detail}", "")
        return [self._finish(event, self._reader.pending())]

    def _answer_after_body(self, response: bytes, event: _Event, rest: bytes) -> list[_Event]:
        assert self._head is not None
        length = _body_length(self._head)
        if length is None or length > self.max_body_bytes:
            self._out += response
            return [self._finish(event, rest)]
        self._pending = (response, event)
        self._body_left = self._body_total = length
        return self._discard(rest)

    def _discard(self, data: bytes) -> list[_Event]:
        assert self._pending is not None
        used = min(len(data), self._body_left)
        self._body_left -= used
        if self._body_left:
            return []
        response, event = self._pending
        self._out += response
        return [self._finish(event, data[used:])]

    def _finish(self, event: _Event, leftover: bytes) -> _Event:
        self.done = True
        self._pending = None
        if isinstance(event, ProxyRequest):
            self.closing = event.tunnel is None
            return replace(event, leftover=leftover) if leftover != event.leftover else event
        self.closing = True
        return event

    def _web_answer(
        self, head: _Head, host: str | None, path: str, host_header: str | None = None
    ) -> tuple[bytes, str]:
        """What the origin (or our web persona) answers: (response bytes, status line)."""
        policy, http_date = self.policy, self.http_date
        if head.method not in PAGE_METHODS:
            status = "405 Method Not Allowed"
            method = _escaped(head.method, 40)
            body = _apache_page(
                status, f"The requested method {method} is not allowed for this URL."
            )
            allow = (("Allow", ", ".join(PAGE_METHODS)),)
            response = _origin_response(policy, status, body, http_date, extra=allow)
            return response, f"HTTP/1.1 {status}"
        if _is_judge(f"{host or ''}{path}"):
            remote_port = ephemeral_port(self.port_seed + head.raw)
            body = _judge_page(policy, head, host_header, path, remote_port)
        else:
            body = Template(policy.page_template).safe_substitute(
                title=html.escape(policy.page_title),
                host=_escaped(host or ""),
                path=_escaped(path),
            )
        head_only = head.method == "HEAD"
        response = _origin_response(policy, "200 OK", body, http_date, head_only=head_only)
        return response, "HTTP/1.1 200 OK"

    # Subclasses say how their persona answers.
    def _on_head(self, head: _Head, rest: bytes) -> list[_Event]:
        raise NotImplementedError

    def _bad(self, bad: _Bad) -> _Event:
        raise NotImplementedError

    def _error_event(self, error: str, reply: str) -> _Event:
        raise NotImplementedError


class HttpProxyServer(_OneRequest[ProxyRequest]):
    """Server side of one HTTP proxy connection; emits one :class:`ProxyRequest`.

    A granted CONNECT has ``tunnel`` set and ``closing`` false: the adapter stops feeding
    this machine and hands ``leftover`` and the connection over.
    """

    protocol = "http"
    # What a CONNECT asked for, for the error event of a request cut short after its head.
    _target: tuple[str | None, int | None] = (None, None)

    def _on_head(self, head: _Head, rest: bytes) -> list[ProxyRequest]:
        if head.method == "CONNECT":
            connect_host, port = _parse_authority(head.target, None)
            self._target = (connect_host, port)
            outcome, tunnel = self.policy.route(port)
            if tunnel is not None:
                self._out += ESTABLISHED
                reply = "HTTP/1.1 200 Connection established"
            else:
                self._out += _squid_error(
                    self.policy, "403 Forbidden", "ERR_ACCESS_DENIED", head.target, self.http_date
                )
                reply = "HTTP/1.1 403 Forbidden"
            return [self._finish(self._event(outcome, reply, tunnel=tunnel), rest)]
        if head.target.startswith("/") or head.target == "*":
            host_value = head.header("host")
            host = None
            if host_value:
                try:
                    host = _parse_authority(host_value, 0)[0]
                except _Bad:
                    host = host_value
            self._target = (host, None)
            response, reply = self._web_answer(head, host, head.target)
            outcome = "get" if head.method in PAGE_METHODS else "error"
            error = None if outcome == "get" else f"method {head.method} in origin-form"
            return self._answer_after_body(response, self._event(outcome, reply, error), rest)
        authority, host, port, path = _parse_url(head.target)
        self._target = (host, port)
        response, reply = self._web_answer(head, host, path, authority)
        return self._answer_after_body(response, self._event("get", reply), rest)

    def _bad(self, bad: _Bad) -> ProxyRequest:
        url = self._head.target if self._head is not None else ""
        self._out += _squid_error(self.policy, "400 Bad Request", bad.code, url, self.http_date)
        return self._error_event(bad.detail, "HTTP/1.1 400 Bad Request")

    def _error_event(self, error: str, reply: str) -> ProxyRequest:
        return self._event("error", reply, error)

    def _event(
        self, outcome: str, reply: str, error: str | None = None, tunnel: str | None = None
    ) -> ProxyRequest:
        head = self._head
        return ProxyRequest(
            protocol="http",
            version=head.version if head else "",
            method=head.method if head else "",
            target_host=self._target[0],
            target_port=self._target[1],
            auth=_proxy_auth(head) if head else None,
            outcome=outcome,
            reply=reply,
            error=error,
            tunnel=tunnel,
            headers=head.headers if head else (),
        )


class WebServer(_OneRequest[WebRequest]):
    """The web server behind an accepted tunnel to a web port (``non_smtp="web"``).

    Reads one request, answers the generic page or the judge echo exactly as the proxy's
    GET does, emits one :class:`WebRequest` and closes.
    """

    def _on_head(self, head: _Head, rest: bytes) -> list[WebRequest]:
        host_header = None
        if head.target.startswith("/") or head.target == "*":
            host, path = head.header("host"), head.target
        else:  # a client that still speaks proxy through the tunnel: absolute-form
            host_header, _, _, path = _parse_url(head.target)
            host = host_header
        response, reply = self._web_answer(head, host, path, host_header)
        error = None if head.method in PAGE_METHODS else f"method {head.method}"
        event = WebRequest(head.method, host, path, head.version, head.headers, reply, error)
        return self._answer_after_body(response, event, rest)

    def _bad(self, bad: _Bad) -> WebRequest:
        status = "400 Bad Request"
        body = _apache_page(
            status, "Your browser sent a request that this server could not understand."
        )
        self._out += _origin_response(self.policy, status, body, self.http_date)
        return self._error_event(bad.detail, f"HTTP/1.1 {status}")

    def _error_event(self, error: str, reply: str) -> WebRequest:
        head = self._head
        if head is None:
            return WebRequest("", None, "", reply=reply, error=error)
        return WebRequest(
            head.method, head.header("host"), head.target, head.version, head.headers, reply, error
        )
