"""The web server behind a granted tunnel to a web port, and the proxy judge's page; sans-I/O.

Under ``proxy.non_smtp = "web"`` a tunnel to a web port (``proxy.web_ports``) is granted and
the HTTP request inside it answered here, as by the origin: a proxy judge's echo page, or the
generic page (``proxy.page_template``). The judge page is also what the Squid persona returns
for a judge URL fetched through the proxy (:mod:`spampot.protocols.http_proxy`).
"""

from __future__ import annotations

import html
from string import Template

from spampot.protocols.common import decode_client, printable
from spampot.protocols.proxy import ProxyPolicy, WebRequest, ephemeral_port
from spampot.protocols.squid_request import BadRequest, parse_fields, parse_url, read_head

# Substrings of a URL (host and path) that betray a proxy judge: these get the echo page.
JUDGE_MARKERS = ("azenv", "judge", "proxyjudge", "env.php", "prxjdg", "headers")
PAGE_METHODS = ("GET", "HEAD", "POST")
_PORTS = {"http": 80, "https": 443}
# The longest request head read: Squid's request_header_max_size, what the proxy reads too.
MAX_HEADER_BYTES = 64 * 1024


def judge_page(
    remote_addr: str, remote_port: int, method: str, path: str, headers: list[tuple[str, str]]
) -> str:
    """The azenv.php echo proxy judges parse: what the origin saw of the request.

    ``headers`` are the request headers as the origin received them (after any proxy);
    ``remote_addr`` is the address the origin saw the connection come from.
    """
    lines = [f"HTTP_{name.upper().replace('-', '_')} = {value}" for name, value in headers]
    lines += [
        f"REMOTE_ADDR = {remote_addr}",
        f"REMOTE_PORT = {remote_port}",
        "SERVER_PROTOCOL = HTTP/1.1",
        f"REQUEST_METHOD = {method}",
        f"REQUEST_URI = {path}",
    ]
    body = html.escape("\n".join(lines), quote=False)
    return (
        "<html><head><title>AZ Environment variables 1.04</title></head><body><pre>\n"
        f"{body}\n</pre></body></html>\n"
    )


def is_judge(host: str | None, path: str) -> bool:
    lowered = f"{host or ''}{path}".lower()
    return any(marker in lowered for marker in JUDGE_MARKERS)


class WebServer:
    """The origin inside a web tunnel: reads one request, answers it, emits one
    :class:`WebRequest` and closes (``Connection: close``)."""

    def __init__(
        self,
        policy: ProxyPolicy | None = None,
        *,
        remote_addr: str = "",
        max_header_bytes: int = MAX_HEADER_BYTES,
        http_date: str = "",
        port_seed: bytes = b"",
    ) -> None:
        self.policy = policy if policy is not None else ProxyPolicy()
        self.remote_addr = self.policy.public_address or remote_addr or "0.0.0.0"
        self.max_header_bytes = max_header_bytes
        self.http_date = http_date
        self.port_seed = port_seed
        self.closing = False
        self.done = False
        self._buf = bytearray()
        self._out = bytearray()

    @property
    def buffered(self) -> int:
        return len(self._buf)

    @property
    def max_buffered(self) -> int:
        return 2 * self.max_header_bytes

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: bytes) -> list[WebRequest]:
        if self.done:
            return []
        self._buf += data
        try:
            head = read_head(self._buf, self.max_header_bytes, 32, 65535)
        except BadRequest as bad:
            status = "400 Bad Request"
            return [self._finish(self._page(status, _BAD), status, bad.detail)]
        if head is None:
            return []
        fields = [
            (decode_client(n.encode("latin-1")), decode_client(v.encode("latin-1")))
            for n, v in parse_fields(head.mime) or []
        ]
        host = next((v for n, v in fields if n.lower() == "host"), None)
        path = head.uri
        absolute = not head.uri.startswith("/")
        url = parse_url(head.method, head.uri, _PORTS) if absolute else None
        if url is not None:  # a client that still speaks proxy through the tunnel
            host, path = url.host, url.path
        method = decode_client(head.method.encode())
        event = WebRequest(method, host, path, head.version_text, tuple(fields))
        if head.method not in PAGE_METHODS:
            status = "405 Method Not Allowed"
            body = _apache(status, f"The requested method {html.escape(method)} is not allowed.")
            extra = (("Allow", ", ".join(PAGE_METHODS)),)
            return [
                self._finish(self._page(status, body, extra), status, f"method {method}", event)
            ]
        if is_judge(host, path):
            port = ephemeral_port(self.port_seed + bytes(self._buf[: head.size]))
            body = judge_page(self.remote_addr, port, method, path, fields)
        else:
            body = Template(self.policy.page_template).safe_substitute(
                title=html.escape(self.policy.page_title),
                host=html.escape(printable((host or "").encode(), 200)),
                path=html.escape(printable(path.encode(), 200)),
            )
        page = self._page("200 OK", body, head_only=head.method == "HEAD")
        return [self._finish(page, "200 OK", None, event)]

    def connection_lost(self) -> list[WebRequest]:
        if self.done or not self._buf:
            return []
        pending = len(self._buf)
        self.done = self.closing = True
        return [WebRequest("", None, "", error=f"truncated: {pending} bytes of a request head")]

    def _page(
        self,
        status: str,
        body: str,
        extra: tuple[tuple[str, str], ...] = (),
        *,
        head_only: bool = False,
    ) -> bytes:
        data = body.encode("utf-8", "surrogateescape")
        headers = [
            *([("Date", self.http_date)] if self.http_date else []),
            ("Server", self.policy.web_server_software),
            *extra,
            ("Content-Length", str(len(data))),
            ("Connection", "close"),
            ("Content-Type", "text/html; charset=UTF-8"),
        ]
        head = "\r\n".join([f"HTTP/1.1 {status}", *(f"{n}: {v}" for n, v in headers), "", ""])
        return head.encode() + (b"" if head_only else data)

    def _finish(
        self, page: bytes, status: str, error: str | None, event: WebRequest | None = None
    ) -> WebRequest:
        self._out += page
        self._buf.clear()
        self.done = self.closing = True
        reply = f"HTTP/1.1 {status}"
        if event is None:
            return WebRequest("", None, "", reply=reply, error=error)
        return WebRequest(
            event.method, event.host, event.path, event.version, event.headers, reply, error
        )


_BAD = (
    '<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">\n<html><head>\n'
    "<title>400 Bad Request</title>\n</head><body>\n<h1>Bad Request</h1>\n"
    "<p>Your browser sent a request that this server could not understand.<br />\n</p>\n"
    "</body></html>\n"
)


def _apache(title: str, message: str) -> str:
    return (
        '<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">\n<html><head>\n'
        f"<title>{title}</title>\n</head><body>\n<h1>{title.partition(' ')[2]}</h1>\n"
        f"<p>{message}</p>\n</body></html>\n"
    )
