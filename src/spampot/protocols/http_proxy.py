"""The HTTP proxy port as Squid answers it (the Squid persona), sans-I/O.

The paper's HTTP proxy emulator (§3.1-3.2): ``CONNECT`` to the SMTP port is handed to the
SMTP emulator, every other request is answered and logged. Here every answer is the one an
open Squid 5.7 gives (:mod:`spampot.protocols.squid` writes it, the dialect says it):

* ``CONNECT host:25`` (an SMTP port) -> ``HTTP/1.1 200 Connection established`` and
  ``tunnel="smtp"`` (outcome "smtp"); under ``non_smtp="web"`` a web port is granted too and
  handed to a :class:`~spampot.protocols.web.WebServer` (outcome "other").
* Any other ``CONNECT``, and every absolute-form request to a URL that is not a proxy judge,
  gets what an open Squid answers when it cannot reach the destination (the dialect's
  ``unreachable`` pages: the sensor connects nowhere and resolves no name), outcomes "other"
  and "get".
* A proxy judge URL (``azenv``, ``judge``, ...) gets the page the judge would return for the
  request as Squid forwards it (Via, X-Forwarded-For, Cache-Control added; hop-by-hop headers
  dropped), with ``REMOTE_ADDR`` the sensor's address: outcome "get".
* ``TRACE`` with ``Max-Forwards: 0`` is answered by Squid itself; ``OPTIONS`` with
  ``Max-Forwards: 0`` gets its 501; ``/squid-internal-static/`` its logo or a 404.
* Anything Squid refuses (a bad request line, ``GET /`` on a proxy port, an unknown scheme,
  HTTP/9.9, bad headers, a wrong Content-Length or Expect, an over-long head) gets Squid's
  page and status and the connection closes: outcome "error".

Connections persist as Squid's do (HTTP/1.1 unless ``Connection: close``, HTTP/1.0 with
``keep-alive``): one :class:`ProxyRequest` per request, until the client closes, a refusal
closes, or a tunnel is handed over. Every state change is an entry of the transition table
:attr:`HttpProxyServer._STEPS`; every refusal is a :class:`BadRequest` answered in one place.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import Enum, auto
from typing import ClassVar

from spampot.protocols.common import decode_client, printable
from spampot.protocols.proxy import (
    ProxyAuth,
    ProxyPolicy,
    ProxyRequest,
    detect,
    ephemeral_port,
    resolvable,
)
from spampot.protocols.squid import (
    Failure,
    PageFacts,
    SquidPersona,
    cache_headers,
    load_dialect,
    negotiate_language,
    render_page,
    serialize,
    status_line,
    via,
)
from spampot.protocols.squid_request import (
    BadRequest,
    Head,
    Url,
    parse_fields,
    parse_url,
    read_head,
)
from spampot.protocols.web import is_judge, judge_page

# Squid's request_header_max_size default (64 KB): request line plus headers.
MAX_HEADER_BYTES = 64 * 1024
# A request body is read and discarded so the next request on the connection can be read;
# beyond this (nginx's client_max_body_size default, 1 MiB) the connection is closed after
# the answer instead.
MAX_BODY_BYTES = 1024 * 1024
# Longest chunk-size line of a chunked request body (RFC 9112 §7.1); Squid's parser allows
# this much before calling it garbage.
MAX_CHUNK_LINE = 4096
# Requests answered on one connection; then it is closed, as after any refusal.
MAX_REQUESTS = 1000

ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"
_LOGO_PATH = "/squid-internal-static/icons/SN.png"
_INTERNAL = "/squid-internal-"
_INTERNAL_STATIC = "/squid-internal-static"


class _State(Enum):
    HEAD = auto()  # reading a request line and its headers
    BODY = auto()  # discarding a Content-Length body
    CHUNKS = auto()  # discarding a chunked body
    DONE = auto()  # answered and closing, or handed over


@dataclass(frozen=True, slots=True)
class _Request:
    """A request as Squid holds it once it has built one."""

    head: Head
    url: Url
    fields: tuple[tuple[str, str], ...]  # as sent (names and values decoded, never dropped)
    headers: tuple[tuple[str, str], ...]  # Squid's view: canonical names, Host normalised
    content_length: int | None  # None: Content-Length values Squid rejects (a 411)

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        values = [v for n, v in self.headers if n.lower() == lowered]
        return ", ".join(values) if values else None

    def has_token(self, name: str, token: str) -> bool:
        value = self.header(name)
        return value is not None and token in (t.strip().lower() for t in value.split(","))

    @property
    def keep_alive(self) -> bool:
        """Http::Message::persistent(): Connection (or Proxy-Connection) says, by version."""
        name = "Connection" if self.header("Connection") is not None else "Proxy-Connection"
        if self.head.version > (1, 0):
            return not self.has_token(name, "close")
        return self.has_token(name, "keep-alive")


class HttpProxyServer:
    """Server side of one connection to an HTTP proxy port, as Squid.

    A granted tunnel has ``tunnel`` set and ``closing`` false: the adapter stops feeding this
    machine and hands ``leftover`` and the connection over.
    """

    module = "http"

    def __init__(
        self,
        policy: ProxyPolicy | None = None,
        persona: SquidPersona | None = None,
        *,
        local_address: str = "",
        client_address: str = "",
        max_header_bytes: int = MAX_HEADER_BYTES,
        max_body_bytes: int = MAX_BODY_BYTES,
        http_date: str = "",
        port_seed: bytes = b"",
    ) -> None:
        self.policy = policy if policy is not None else ProxyPolicy()
        self.persona = persona if persona is not None else SquidPersona(load_dialect())
        self.dialect = self.persona.dialect
        #: What an origin sees as the client's address: the sensor's (public) address.
        self.remote_addr = self.policy.public_address or local_address or "0.0.0.0"
        #: The client's address, which Squid appends to X-Forwarded-For.
        self.client_address = client_address or "unknown"
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes
        self.http_date = http_date  # RFC 9110 §6.6.1: the machine has no clock; "" = omitted
        self.port_seed = port_seed  # varies REMOTE_PORT per connection (see ephemeral_port)
        #: "http", or what the first byte looked like when it was not HTTP (a SOCKS greeting).
        self.protocol = "http"
        self.closing = False
        self._state = _State.HEAD
        self._buf = bytearray()
        self._out = bytearray()
        self._events: list[ProxyRequest] = []
        self._received = 0
        self._requests = 0
        self._body_left = 0
        self._refused: _Request | None = None  # the request a BadRequest refuses, if built
        self._chunk_crlf = False  # a chunk's data was read; its CRLF is next

    # -- the machine's interface --------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self._state is _State.DONE

    @property
    def buffered(self) -> int:
        """Bytes held between calls; never more than :attr:`max_buffered`."""
        return len(self._buf)

    @property
    def max_buffered(self) -> int:
        # A request line of up to the limit, then headers of up to the limit less that line.
        return 2 * self.max_header_bytes

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: bytes) -> list[ProxyRequest]:
        if self.done:
            return []
        if not self._received and data:
            # What a first request Squid could not read was, for the log: HTTP, a SOCKS
            # greeting, or something else ("unknown").
            self.protocol = detect(data[:1]) or "http"
        self._received += len(data)
        self._buf += data
        try:
            while not self.done and self._STEPS[self._state](self):
                pass
        except BadRequest as bad:
            self._refuse(bad)
        events, self._events = self._events, []
        return events

    def connection_lost(self) -> list[ProxyRequest]:
        """The peer went away: a request left half-sent is logged as a truncated error."""
        if self.done:
            return []
        in_head = self._state is _State.HEAD
        self._state = _State.DONE
        self.closing = True
        if not in_head:
            return []  # the request was answered already; its body is simply cut
        pending = len(self._buf.strip(b"\r\n"))
        if not pending:
            return []
        error = f"truncated: connection closed in the request head ({pending} bytes pending)"
        return [self._event("error", "", error=error, leftover=bytes(self._buf))]

    # -- steps: each returns True when it advanced and more may be parsed -----------------

    def _read_head(self) -> bool:
        # skipGarbageLines(), done here so empty lines never pile up in the buffer.
        while self._buf[:1] == b"\n" or self._buf[:2] == b"\r\n":
            del self._buf[: 1 if self._buf[:1] == b"\n" else 2]
        d = self.dialect
        head = read_head(
            self._buf,
            self.max_header_bytes,
            d.max_method_length,
            d.max_uri_length,
            self.persona.method,
        )
        if head is None:
            return False
        del self._buf[: head.size]  # what follows stays: a body, the next request, a tunnel's
        self._requests += 1
        self._answer(self._build(head))
        return not self.done

    def _discard_body(self) -> bool:
        used = min(len(self._buf), self._body_left)
        del self._buf[:used]
        self._body_left -= used
        if self._body_left:
            return False
        self._state = _State.HEAD
        return bool(self._buf)

    def _discard_chunks(self) -> bool:
        """RFC 9112 §7.1: chunk-size line, data, CRLF; a zero chunk, trailers, an empty line."""
        while True:
            if self._body_left > 0:
                used = min(len(self._buf), self._body_left)
                del self._buf[:used]
                self._body_left -= used
                if self._body_left:
                    return False
            nl = self._buf.find(b"\n")
            if nl < 0:
                if len(self._buf) > MAX_CHUNK_LINE:
                    self._close_quietly()
                return False
            line = bytes(self._buf[:nl]).rstrip(b"\r")
            del self._buf[: nl + 1]
            if self._body_left < 0:  # in the trailer section: an empty line ends the body
                if not line:
                    self._body_left = 0
                    self._state = _State.HEAD
                    return bool(self._buf)
                continue
            if self._body_left == 0 and self._chunk_crlf:
                self._chunk_crlf = False
                if line:
                    self._close_quietly()
                    return False
                continue
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                self._close_quietly()
                return False
            if size == 0:
                self._body_left = -1  # trailers follow
                continue
            self._body_left = size
            self._chunk_crlf = True

    def _close_quietly(self) -> None:
        """A body Squid cannot frame: it resets the connection (abortChunkedRequestBody())."""
        self._state = _State.DONE
        self.closing = True

    _STEPS: ClassVar[dict[_State, Callable[[HttpProxyServer], bool]]] = {
        _State.HEAD: _read_head,
        _State.BODY: _discard_body,
        _State.CHUNKS: _discard_chunks,
    }

    # -- building the request (servers/Http1Server.cc buildHttpRequest()) ---------------------

    def _build(self, head: Head) -> _Request:
        if head.method == "PRI" and head.version < (2, 0):
            # RFC 9113 §3.4: PRI is HTTP/2's preface; in HTTP/1 a broken client or proxy.
            raise BadRequest(
                "PRI method in HTTP/1",
                "ERR_UNSUP_REQ",
                405,
                url="error:method-not-allowed",
                head=head,
            )
        uri = head.uri
        if uri.startswith(_INTERNAL):
            # internalCheck(): a relative URL to Squid itself, as if sent to this port.
            uri = f"http://{self.persona.hostname}:{self.persona.port}{uri}"
        url = parse_url(head.method, uri, self.persona.ports, self.dialect.max_url_length)
        if url is None:
            raise BadRequest(
                f"invalid URL {printable(head.uri.encode('latin-1'), 120)}",
                "ERR_INVALID_URL",
                400,
                url=head.uri,
                head=head,
            )
        major, minor = head.version
        if (major == 0 and minor != 9) or major > 1:
            raise BadRequest(
                f"unsupported HTTP version {head.version_text}",
                "ERR_UNSUP_HTTPVERSION",
                505,
                url=head.uri,
                head=head,
            )
        fields = parse_fields(head.mime)
        if fields is None:
            raise BadRequest(
                "malformed header block", "ERR_INVALID_REQ", 400, url=head.uri, head=head
            )
        headers = [(self.persona.canonical(n), v) for n, v in fields]
        headers, length = _framing(headers)
        # Host is rebuilt from the URL's authority and moves to the end (it stays absent
        # when the client sent none).
        if any(n == "Host" for n, _ in headers):
            headers = [(n, v) for n, v in headers if n != "Host"]
            headers.append(("Host", url.authority(self.persona.ports.get(url.scheme, 0))))
        if head.mime.isascii():  # the common case: the same text either way
            decoded = tuple(fields)
        else:
            decoded = tuple(
                (decode_client(n.encode("latin-1")), decode_client(v.encode("latin-1")))
                for n, v in fields
            )
        return _Request(head, url, decoded, tuple(headers), length)

    # -- answering ------------------------------------------------------------------------------

    def _answer(self, request: _Request) -> None:
        """clientProcessRequest() and what follows, for one request."""
        head, url = request.head, request.url
        expect = request.header("Expect")
        if expect is not None and expect.strip().lower() != "100-continue":
            raise self._refusal("unsupported Expect", "ERR_INVALID_REQ", 417, request)
        path_internal = url.path.startswith(_INTERNAL_STATIC)
        max_forwards = _int(request.header("Max-Forwards"))
        te = request.header("Transfer-Encoding")
        chunked = te is not None and te.strip().lower() == "chunked"
        te_unsupported = te is not None and not chunked
        if head.method in ("OPTIONS", "TRACE") and max_forwards != 0 and url.path == "*":
            raise self._refusal("OPTIONS * or TRACE *", "ERR_UNSUP_REQ", 501, request)
        if head.method == "OPTIONS" and max_forwards == 0:
            raise self._refusal("OPTIONS with Max-Forwards: 0", "ERR_UNSUP_REQ", 501, request)
        scheme = self.dialect.schemes.get(url.scheme)
        allowed = head.method in ("CONNECT", "OPTIONS", "TRACE", "PURGE") or (
            scheme is not None and scheme.allows(head.method)
        )
        if not allowed:  # urlCheckRequest()
            raise self._refusal(f"{head.method} of {url.scheme}", "ERR_UNSUP_REQ", 501, request)
        if te_unsupported:
            raise self._refusal("unsupported Transfer-Encoding", "ERR_UNSUP_REQ", 501, request)
        length = 0 if chunked else request.content_length
        if length is None or (length > 0 and head.method in ("GET", "HEAD")):
            # clientIsContentLengthValid(): request_entities off, no body on GET or HEAD.
            raise self._refusal("invalid Content-Length", "ERR_INVALID_REQ", 411, request)
        if head.method == "CONNECT":
            self._connect(request)
            return
        keep = request.keep_alive and self._requests < MAX_REQUESTS
        if path_internal:
            self._internal(request, keep)
        elif head.method == "TRACE" and max_forwards == 0:
            self._trace(request, keep)
        elif url.scheme in ("http", "https") and is_judge(url.host, url.path):
            self._judge(request, keep)
        else:
            failure = self._unreachable(url, connect=False)
            # TRACE is never cached, so Squid makes no cache lookup for it.
            lookup = "NONE" if head.method == "TRACE" else "MISS"
            self._error_reply(failure, request, lookup=lookup, keep=keep)
            self._log(request, "get", failure)
        self._after(keep, length, chunked)

    def _after(self, keep: bool, length: int, chunked: bool) -> None:
        """The request's body is discarded, then the next request is read, or it closes."""
        if not keep or length > self.max_body_bytes:
            self._state = _State.DONE
            self.closing = True
            if self._events:  # what the client sent after: the log keeps it
                self._events[-1] = replace(self._events[-1], leftover=bytes(self._buf))
            self._buf.clear()
            return
        if chunked:
            self._state, self._body_left, self._chunk_crlf = _State.CHUNKS, 0, False
        elif length:
            self._state, self._body_left = _State.BODY, length
        else:
            self._state = _State.HEAD

    def _connect(self, request: _Request) -> None:
        url = request.url
        outcome, tunnel = self.policy.route(url.port)
        rest = bytes(self._buf)
        self._buf.clear()
        if tunnel is not None and (_is_address(url.host) or resolvable(url.host)):
            self._out += ESTABLISHED
            self._events.append(
                self._event(
                    outcome,
                    "HTTP/1.1 200 Connection established",
                    request,
                    tunnel=tunnel,
                    leftover=rest,
                )
            )
            self._state = _State.DONE
            return
        failure = self._unreachable(url, connect=True)
        self._error_reply(failure, request, tunnel_error=True)
        self._log(request, "other", failure, leftover=rest)  # a refused tunnel, whatever port
        self._state = _State.DONE
        self.closing = True

    def _unreachable(self, url: Url, *, connect: bool) -> Failure:
        how = self.dialect.unreachable
        if _is_address(url.host):
            return how.connect_address if connect else how.address
        return how.connect_name if connect else how.name

    def _judge(self, request: _Request, keep: bool) -> None:
        """The judge's page for the request as Squid forwards it, and Squid's reply to it."""
        forwarded = self._forwarded_headers(request)
        remote_port = ephemeral_port(self.port_seed + request.head.uri.encode("latin-1"))
        body = judge_page(
            self.remote_addr, remote_port, request.head.method, request.url.path, forwarded
        ).encode("latin-1", "replace")  # the bytes the client sent, as the origin echoes them
        headers = [
            *self._date("Date"),
            ("Content-Type", "text/html; charset=UTF-8"),
            ("Content-Length", str(len(body))),
            *self._proxied(lookup="NONE" if request.head.method == "TRACE" else "MISS", keep=keep),
        ]
        head_only = request.head.method == "HEAD"
        self._out += serialize(status_line(self.dialect, 200), headers, b"" if head_only else body)
        self._log(request, "get", reply=status_line(self.dialect, 200))

    def _forwarded_headers(self, request: _Request) -> list[tuple[str, str]]:
        """http.cc httpBuildRequestHeader(): what the origin receives."""
        persona, dialect = self.persona, self.dialect
        connection = {t.strip().lower() for t in (request.header("Connection") or "").split(",")}
        out: list[tuple[str, str]] = []
        for name, value in request.headers:
            lowered = name.lower()
            if lowered == "max-forwards":
                hops = _int(value)
                if request.head.method in ("TRACE", "OPTIONS") and hops is not None and hops > 0:
                    out.append((name, str(hops - 1)))
                continue
            if lowered in persona.not_forwarded or lowered in connection:
                continue
            out.append((name, value))
        hostname = persona.hostname
        major, minor = request.head.version
        previous = request.header("Via")
        out.append(
            ("Via", ", ".join(filter(None, [previous, via(dialect, hostname, f"{major}.{minor}")])))
        )
        if dialect.forwarded_for != "delete":
            chain = request.header("X-Forwarded-For")
            if dialect.forwarded_for in ("on", "off"):
                me = self.client_address if dialect.forwarded_for == "on" else "unknown"
                chain = f"{chain}, {me}" if chain else me
            if chain:
                out.append(("X-Forwarded-For", chain))
        if not any(n == "Host" for n, _ in out):
            out.append(
                ("Host", request.url.authority(self.persona.ports.get(request.url.scheme, 0)))
            )
        if request.url.userinfo and not any(n == "Authorization" for n, _ in out):
            token = base64.b64encode(request.url.userinfo.encode("latin-1")).decode()
            out.append(("Authorization", f"Basic {token}"))
        out.append(("Cache-Control", self._cache_control(request.header("Cache-Control"))))
        out.append(("Connection", "keep-alive"))
        return out

    def _cache_control(self, value: str | None) -> str:
        """HttpHdrCc as Squid forwards it: known directives in its order, others after them,
        and max-age added unless there is one or no-cache."""
        order = self.dialect.cache_control
        known: dict[str, str] = {}
        others: list[str] = []
        for item in (value or "").split(","):
            directive = item.strip()
            if not directive:
                continue
            name, eq, argument = directive.partition("=")
            name = name.strip().lower()
            if name in order:
                known.setdefault(name, f"{name}={argument.strip()}" if eq else name)
            else:
                others.append(directive)
        if "max-age" not in known and "no-cache" not in known:
            known["max-age"] = f"max-age={self.dialect.forward_max_age}"
        return ", ".join([known[name] for name in order if name in known] + others)

    def _trace(self, request: _Request, keep: bool) -> None:
        """clientReplyContext::traceReply(): the request as Squid holds it, as message/http."""
        major, minor = request.head.version
        lines = [f"{request.head.method} {request.url.path} HTTP/{major}.{minor}"]
        lines += [f"{n}: {v}" for n, v in request.headers]
        body = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        headers = [
            ("Server", self.dialect.signature),
            ("Mime-Version", "1.0"),
            *self._date("Date"),
            ("Content-Type", "message/http"),
            ("Content-Length", str(len(body))),
            *self._date("Expires"),
            *self._proxied(lookup="NONE", keep=keep),
        ]
        self._out += serialize(status_line(self.dialect, 200), headers, body)
        self._log(request, "get", reply=status_line(self.dialect, 200))

    def _internal(self, request: _Request, keep: bool) -> None:
        """/squid-internal-static/: Squid's logo (a cache hit), else its 404."""
        if request.url.path != _LOGO_PATH:
            failure = Failure("ERR_INVALID_REQ", 404)
            self._error_reply(failure, request, lookup="MISS", keep=keep)
            self._log(request, "get", failure)
            return
        logo = self.persona.logo
        headers = [
            ("Server", self.dialect.signature),
            ("Mime-Version", "1.0"),
            ("Content-Type", "image/png"),
            ("Content-Length", str(len(logo))),
            ("Last-Modified", self.dialect.logo_modified),
            ("Cache-Control", "max-age=86400"),
            *self._date("Date"),
            *self._proxied(lookup="HIT", keep=keep),
        ]
        head_only = request.head.method == "HEAD"
        self._out += serialize(status_line(self.dialect, 200), headers, b"" if head_only else logo)
        self._log(request, "get", reply=status_line(self.dialect, 200))

    # -- Squid's answers ------------------------------------------------------------------------

    def _date(self, name: str) -> list[tuple[str, str]]:
        return [(name, self.http_date)] if self.http_date else []

    def _proxied(self, *, lookup: str, keep: bool) -> list[tuple[str, str]]:
        """What client_side_reply.cc adds to every answer of a request Squid built."""
        hostname = self.persona.hostname
        return [
            *cache_headers(hostname, self.persona.port, lookup),
            ("Via", via(self.dialect, hostname)),
            ("Connection", "keep-alive" if keep else "close"),
        ]

    def _refusal(self, detail: str, page: str, status: int, request: _Request) -> BadRequest:
        """A refusal of a request Squid has built (so its page knows the request)."""
        self._refused = request
        return BadRequest(
            detail, page, status, url=request.head.uri, head=request.head, parsed=True
        )

    def _refuse(self, bad: BadRequest) -> None:
        """Answer a refused request with its page and close (quitAfterError())."""
        head = bad.head
        request = self._refused if bad.parsed else None
        self._error_reply(
            Failure(bad.page, bad.status),
            request,
            url=bad.url,
            head=head,
            request_text=bad.request_text,
            lookup="NONE",
            keep=False,
        )
        reply = status_line(self.dialect, bad.status)
        self._events.append(
            self._event(
                "error", reply, request, error=bad.detail, head=head, leftover=bytes(self._buf)
            )
        )
        self._buf.clear()
        self._state = _State.DONE
        self.closing = True

    def _error_reply(
        self,
        failure: Failure,
        request: _Request | None,
        *,
        url: str | None = None,
        head: Head | None = None,
        request_text: str = "[no request]",
        lookup: str = "NONE",
        keep: bool = False,
        tunnel_error: bool = False,
    ) -> None:
        """An error page with Squid's headers (errorpage.cc ErrorState::BuildHttpReply())."""
        dialect = self.dialect
        if request is not None:
            english, language = negotiate_language(dialect, request.header("Accept-Language"))
            facts = self._facts(request, failure)
        else:
            english, language = False, "en"
            shown = url if url is not None else "[no URL]"
            facts = PageFacts(url=shown, effective_url=shown, request=request_text)
        body = render_page(
            dialect,
            failure.page,
            facts,
            hostname=self.persona.hostname,
            date=self.http_date,
            english=english,
        )
        headers = [
            ("Server", dialect.signature),
            ("Mime-Version", "1.0"),
            *self._date("Date"),
            ("Content-Type", "text/html;charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("X-Squid-Error", f"{failure.page} {failure.errno}"),
            ("Vary", "Accept-Language"),
            ("Content-Language", language),
        ]
        if not tunnel_error:
            headers += self._proxied(lookup=lookup, keep=keep)
        head_only = (request.head.method if request else head.method if head else "") == "HEAD"
        self._out += serialize(
            status_line(dialect, failure.status), headers, b"" if head_only else body
        )

    def _facts(self, request: _Request, failure: Failure) -> PageFacts:
        url, head = request.url, request.head
        default = self.persona.ports.get(url.scheme, 0)
        if head.method == "CONNECT":
            shown = (
                f"https://{url.host}/*" if url.port == 443 else f"{url.bracketed_host}:{url.port}"
            )
            effective = f"{url.bracketed_host}:{url.port}"
        else:
            effective = f"{url.scheme}://{url.authority(default)}{url.path}"
            # strip_query_terms on: nothing after a "?" is shown.
            shown = effective.split("?", 1)[0] + "?" if "?" in effective else effective
        major, minor = head.version
        packed = "".join(
            f"{n}: ** NOT DISPLAYED **\r\n" if n in _MASKED else f"{n}: {v}\r\n"
            for n, v in request.headers
        )
        return PageFacts(
            url=shown,
            effective_url=effective,
            host=url.host,
            server_ip=url.host if _is_address(url.host) else "[unknown]",
            errno=failure.errno,
            request=f"{head.method} {url.path} HTTP/{major}.{minor}\r\n{packed}\r\n",
            method=head.method,
            protocol=url.scheme,
        )

    # -- events ---------------------------------------------------------------------------------

    def _log(
        self,
        request: _Request,
        outcome: str,
        failure: Failure | None = None,
        *,
        reply: str = "",
        leftover: bytes = b"",
    ) -> None:
        if failure is not None:
            reply = status_line(self.dialect, failure.status)
        self._events.append(self._event(outcome, reply, request, leftover=leftover))

    def _event(
        self,
        outcome: str,
        reply: str,
        request: _Request | None = None,
        *,
        error: str | None = None,
        tunnel: str | None = None,
        head: Head | None = None,
        leftover: bytes = b"",
    ) -> ProxyRequest:
        head = request.head if request is not None else head
        url = request.url if request is not None else None
        if request is not None:
            fields = request.fields
        else:  # a refused request: its header lines as sent
            fields = _raw_fields(head.mime) if head is not None else ()
        return ProxyRequest(
            protocol=self.protocol if head is None and self._requests == 0 else "http",
            version=head.version_text if head is not None else "",
            method=head.method if head is not None else "",  # tchars: ASCII
            target_host=(url.host or None) if url is not None else None,
            target_port=url.port if url is not None and url.host else None,
            auth=_proxy_auth(fields),
            outcome=outcome,
            reply=reply,
            error=error,
            tunnel=tunnel,
            leftover=leftover,
            headers=fields,
            module=self.module,
        )


_MASKED = frozenset({"Authorization", "Proxy-Authorization"})


def _raw_fields(mime: bytes) -> tuple[tuple[str, str], ...]:
    """Header lines of a refused request, read leniently for the log: whatever precedes the
    first colon is the name; a line without one is a name with an empty value."""
    fields = []
    for line in mime.split(b"\n"):
        line = line.rstrip(b"\r")
        if line:
            name, _, value = line.partition(b":")
            fields.append((decode_client(name), decode_client(value.strip(b" \t"))))
    return tuple(fields)


def _is_address(host: str) -> bool:
    if not host or not (host[0].isdigit() or ":" in host):
        return False  # a name: the common case, without building an address
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _framing(headers: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], int | None]:
    """HttpHeader::parse() on framing headers (Http::ContentLengthInterpreter): the headers
    Squid keeps, and the body length (None when its Content-Length values are refused).

    A Transfer-Encoding voids every Content-Length, and "identity" is dropped. A value that is
    not a number is dropped and the request refused; identical values are merged into one
    field at the end; differing values are refused.
    """
    if any(n == "Transfer-Encoding" for n, _ in headers):
        kept = [(n, v) for n, v in headers if n != "Content-Length"]
        te = ", ".join(v for n, v in kept if n == "Transfer-Encoding")
        if te.strip().lower() == "identity":
            kept = [(n, v) for n, v in kept if n != "Transfer-Encoding"]
        return kept, 0
    lengths: list[int] = []
    bad = False
    kept = []
    for name, value in headers:
        if name != "Content-Length":
            kept.append((name, value))
            continue
        items = [item.strip(" \t\x0b\x0c\r") for item in value.split(",")]
        if any(not re.fullmatch(r"[0-9]{1,18}", item) for item in items):
            bad = True  # dropped, and the request refused
            continue
        lengths += [int(item) for item in items]
        kept.append((name, value))
    if bad or len(set(lengths)) > 1:
        return [(n, v) for n, v in kept if n != "Content-Length"], None
    if len(lengths) > 1:  # duplicates: one clean field, at the end
        kept = [(n, v) for n, v in kept if n != "Content-Length"]
        kept.append(("Content-Length", str(lengths[0])))
    return kept, lengths[0] if lengths else 0


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    text = value.strip()
    return int(text) if text.isdigit() and len(text) < 19 else None


def _proxy_auth(fields: tuple[tuple[str, str], ...]) -> ProxyAuth | None:
    value = next((v for n, v in fields if n.lower() == "proxy-authorization"), None)
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
