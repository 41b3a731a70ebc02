"""Squid's reading of an HTTP request, sans-I/O: request line, header block, header fields, URL.

Squid 5.7 with its defaults (relaxed_header_parser on, uri_whitespace strip, HTTP violations
compiled in, as Debian builds it) reads requests more loosely than RFC 9112 and in its own
order; a client can tell a proxy by what it accepts. Each function here follows one of
Squid's: :func:`read_head` Http1::RequestParser (src/http/one/RequestParser.cc, Parser.cc),
:func:`parse_fields` HttpHeader::parse() and HttpHeaderEntry::parse() (src/HttpHeader.cc),
:func:`parse_url` AnyP::Uri::parse() (src/anyp/Uri.cc). A fault raises :class:`BadRequest`
with the page and status Squid answers it with (servers/Http1Server.cc buildHttpRequest()).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from spampot.protocols.common import ProtocolError

# RFC 9110 §5.6.2 tchar.
_TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
# RFC 9112 §3.5: a tolerant parser may take SP, HTAB, VT, FF or bare CR between the fields.
_DELIMITERS = b" \t\x0b\x0c\r"
# RequestParser::RequestTargetCharacters() with relaxed parsing and HTTP violations: RFC 3986
# characters, the delimiters above, RFC 2396 "unwise" ones, and every 8-bit byte.
_URI_CHARS = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    b":/?#[]@!$&'()*+,;=-._~%" + _DELIMITERS + b'"\\|^<>`{}' + bytes(range(128, 256))
)
_WSP = b" \t"
# The same sets as regular expressions: the parser's hot paths run in C.
_METHOD = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_NOT_URI = re.compile(
    b"[" + b"".join(b"\\x%02x" % c for c in range(256) if c not in _URI_CHARS) + b"]"
)
_EMPTY_LINE = re.compile(rb"\n\r?\n")
_FOLD = re.compile(rb"\r*\n[ \t]+")
_SPACE = " \t\n\v\f\r"  # xisspace()


class BadRequest(ProtocolError):
    """A request Squid refuses: it answers ``page`` with ``status`` and closes.

    ``url`` is what the page shows as the URL (%U); ``parsed`` says whether Squid got as far as
    a request object (only then does it negotiate the page's language and name the method).
    """

    def __init__(
        self,
        detail: str,
        page: str,
        status: int,
        *,
        url: str = "[no URL]",
        head: Head | None = None,
        parsed: bool = False,
        request_text: str = "[no request]",
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.page = page
        self.status = status
        self.url = url
        self.head = head
        self.parsed = parsed
        #: What %R shows when Squid has no request object: the unparsed input it kept.
        self.request_text = request_text


@dataclass(frozen=True, slots=True)
class Head:
    """A request line and its raw header block, as Squid's first parser stage leaves them."""

    method: str
    uri: str  # bytes decoded as Latin-1: one char per byte, so nothing is lost
    version: tuple[int, int]  # (0, 9) for a request line without a version
    version_text: str  # as sent ("" for HTTP/0.9)
    mime: bytes  # the header block, after Squid's clean-up (obs-fold unfolded)
    size: int  # bytes of the buffer the head took (request line, blank lines, headers)

    @property
    def http09(self) -> bool:
        return self.version == (0, 9)


def read_head(
    buf: bytes | bytearray,
    limit: int,
    max_method: int,
    max_uri: int,
    method_name: Callable[[str], str] = str,
) -> Head | None:
    """The head at the start of ``buf``; None while incomplete; BadRequest when refused.

    ``limit`` is request_header_max_size: a request line and headers at least this long are
    refused (414 when the line alone reaches it, 431 otherwise). ``method_name`` spells the
    method as the server does (Squid: a known method in upper case, whatever was sent).
    """
    start = 0
    # skipGarbageLines(): empty lines (LF or CRLF) before the request line are skipped.
    while start < len(buf) and (
        buf[start] == 0x0A or (buf[start] == 0x0D and buf[start + 1 : start + 2] == b"\n")
    ):
        start += 1
    if start == len(buf):
        return None
    nl = buf.find(b"\n", start)
    if nl < 0:
        if len(buf) - start >= limit:
            # Blamed on a bad method if there is one, else on the URI.
            _split_method(bytes(buf[start:]), max_method)
            raise BadRequest(
                f"request line longer than {limit} bytes", "ERR_TOO_BIG", 414, url=_TOO_LARGE_URI
            )
        return None
    line = bytes(buf[start:nl])
    method, rest = _split_method(line, max_method)
    rest = rest.rstrip(b"\r")  # skipTrailingCrs(): any number of CRs before the LF
    version, version_text, uri_part = _version(rest, method)
    if not uri_part:
        raise _invalid("no URI in the request line")
    bad = _NOT_URI.search(uri_part)
    if bad is not None:
        # The URI is what precedes the byte: none at all is not HTTP.
        raise _invalid(f"byte 0x{bad[0][0]:02x} in the URI", uri_seen=bad.start() > 0)
    if len(uri_part) > max_uri:
        raise BadRequest(f"URI longer than {max_uri} bytes", "ERR_TOO_BIG", 414, url=_TOO_LARGE_URI)
    uri = uri_part.decode("latin-1")
    first_line_size = len(method) + len(uri) + 12  # firstLineSize(): "method SP uri SP H/1.1"
    method = method_name(method)
    if version[0] != 1:
        return Head(method, uri, version, version_text, b"", nl + 1)
    # grabMimeBlock(): headersEnd() finds the empty line, starting right after the LF.
    end = _headers_end(buf, nl + 1)
    if end < 0:
        if len(buf) - (nl + 1) + first_line_size >= limit:
            raise BadRequest(
                f"request head longer than {limit} bytes", "ERR_TOO_BIG", 431, url=_TOO_LARGE_URI
            )
        return None
    if first_line_size + end - (nl + 1) >= limit:
        raise BadRequest(
            f"request head longer than {limit} bytes", "ERR_TOO_BIG", 431, url=_TOO_LARGE_URI
        )
    mime = _clean_mime(bytes(buf[nl + 1 : end]))
    return Head(method, uri, version, version_text, mime, end)


# The URL an error page shows when Squid failed before it had one (abortRequestParsing()).
_ERROR_URI = "error:invalid-request"
_TOO_LARGE_URI = "error:request-too-large"


def _invalid(detail: str, uri_seen: bool = False) -> BadRequest:
    """A request line Squid cannot parse: ERR_INVALID_REQ once a URI was read, before that
    ERR_PROTOCOL_UNKNOWN (probably another protocol)."""
    page = "ERR_INVALID_REQ" if uri_seen else "ERR_PROTOCOL_UNKNOWN"
    return BadRequest(detail, page, 400, url=_ERROR_URI)


def _method(line: bytes, max_method: int) -> str:
    match = _METHOD.match(line, 0, max_method)
    return match[0].decode("ascii") if match else ""


def _split_method(line: bytes, max_method: int) -> tuple[str, bytes]:
    """parseMethodField(): up to 32 TCHARs, then at least one delimiter."""
    method = _method(line, max_method)
    if not method:
        raise _invalid("no method")
    rest = line[len(method) :]
    stripped = rest.lstrip(_DELIMITERS)
    if len(stripped) == len(rest):
        raise _invalid("no delimiter after the method")
    return method, stripped


_VERSION = re.compile(rb"HTTP/([0-9]+)\.([0-9]+)\Z")


def _version(rest: bytes, method: str) -> tuple[tuple[int, int], str, bytes]:
    """parseHttpVersionField(), read backwards from the end of the line: (version, as sent,
    what is left for the URI)."""
    match = _VERSION.search(rest)
    if match:
        major, minor = match[1], match[2]
        # Multi-digit numbers are read as 0.0 (unsupported).
        version = (int(major), int(minor)) if len(major) == len(minor) == 1 else (0, 0)
        before = rest[: match.start()]
        if version[0] == 0:
            # http0(): for a version 0.x (or one read as 0.0) the delimiters before it are
            # not skipped, and stay at the end of the URI.
            return version, match[0].decode("ascii"), before
        uri_part = before.rstrip(_DELIMITERS)
        if len(uri_part) == len(before):
            raise _invalid("no delimiter before the protocol version")
        return version, match[0].decode("ascii"), uri_part
    if method.upper() == "GET":
        return (0, 9), "", rest  # RFC 1945: a request line without a version
    raise _invalid("no HTTP version")


def _headers_end(buf: bytes | bytearray, start: int) -> int:
    """headersEnd(): the index just past the empty line (LF or CR LF) ending the header block,
    which may be the very first line; -1 while there is none."""
    if buf[start : start + 1] == b"\n":
        return start + 1
    if buf[start : start + 2] == b"\r\n":
        return start + 2
    match = _EMPTY_LINE.search(buf, start)
    return match.end() if match else -1


def _clean_mime(mime: bytes) -> bytes:
    """cleanMimePrefix() and unfoldMime(): lines starting with whitespace right after the
    request line are dropped; every later obs-fold becomes one SP."""
    at = 0
    while at < len(mime) and mime[at] in _DELIMITERS:
        nl = mime.find(b"\n", at)
        at = len(mime) if nl < 0 else nl + 1
    mime = mime[at:] or b"\r\n"
    # LF followed by SP/HTAB (with any CRs before the LF): one SP.
    return _FOLD.sub(b" ", mime) if b"\n " in mime or b"\n\t" in mime else mime


def parse_fields(mime: bytes) -> list[tuple[str, str]] | None:
    """HttpHeader::parse(): the header fields (names as sent); None when Squid refuses them."""
    if b"\0" in mime:
        return None
    fields: list[tuple[str, str]] = []
    lines = mime.split(b"\n")
    # The block ends with its empty line; what follows the last LF is nothing.
    for raw in lines[:-1]:
        line = raw[:-1] if raw.endswith(b"\r") else raw
        if raw.endswith(b"\r") and line and not line.strip(b"\r"):
            return None  # a CR-only line: request smuggling
        if not line:
            break  # the terminating empty line
        line = line.replace(b"\r", b" ")  # relaxed: bare CRs become spaces
        name_end = line.find(b":")
        if name_end <= 0:
            return None
        name = line[:name_end]
        # RFC 9112 §5.1: no whitespace between the field name and the colon, in a request.
        if name[-1:].decode("latin-1") in _SPACE or any(b not in _TCHAR for b in name):
            return None
        value = line[name_end + 1 :].strip(_SPACE.encode())
        if len(value) > 65534:
            return None
        fields.append((name.decode("latin-1"), value.decode("latin-1")))
    return fields


@dataclass(frozen=True, slots=True)
class Url:
    """An absolute URL (or CONNECT authority) as Squid keeps it."""

    scheme: str  # lower case
    host: str  # lower case, brackets removed from an IPv6 address
    port: int
    path: str  # "" for CONNECT
    userinfo: str = ""

    @property
    def bracketed_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    def authority(self, default_port: int) -> str:
        """Uri::authority(): host, and ``:port`` unless it is the scheme's default (and, for
        the host-less ``*`` of OPTIONS and TRACE, always)."""
        if not self.host:
            return f":{self.port}"
        host = self.bracketed_host
        return host if self.port == default_port else f"{host}:{self.port}"


_SCHEME = re.compile(r"([A-Za-z0-9+.\-_]{1,16}):")


def parse_url(method: str, uri: str, schemes: Mapping[str, int], max_url: int = 8192) -> Url | None:
    """AnyP::Uri::parse(): the URL of a request, or None when Squid calls it invalid.

    ``schemes`` maps each scheme Squid accepts to its default port; a URL of ``max_url``
    bytes or more (MAX_URL) is refused.
    """
    if len(uri) >= max_url:
        return None
    if method in ("OPTIONS", "TRACE") and uri == "*":
        return Url("http", "", 80, "*")
    if method == "CONNECT":
        return _parse_authority_form(uri)
    match = _SCHEME.match(uri)
    if not match or not match[1][0].isalpha():
        return None
    scheme = match[1].lower()
    rest = uri[match.end() :]
    if not rest.startswith("//"):
        return None
    rest = rest[2:]
    # The host ends at the first "/", "?", "#" or whitespace (bug 3233).
    end = next((i for i, c in enumerate(rest) if c in "/?#" or c in _SPACE), len(rest))
    host, path = rest[:end], rest[end:]
    path = path.split("\r", 1)[0].split("\n", 1)[0]
    if not path.startswith("/"):
        path = "/" + path
    userinfo = ""
    if "@" in host:
        userinfo, _, host = host.rpartition("@")
    port_text = None
    if host.startswith("["):
        inside, _, after = host[1:].partition("]")
        port_text = after.split(":", 1)[1] if ":" in after else None
        host = inside
    elif host.count(":") == 1:
        host, port_text = host.split(":")
    if not host:
        return None  # bug 3183: a scheme without a host
    default = schemes.get(scheme, 0)
    port = _atoi(port_text) if port_text is not None else default
    host = "".join(c for c in host.lower() if c not in _SPACE)  # uri_whitespace strip
    host = host.rstrip(".")
    if ".." in host or host.startswith(".") or not 0 < port < 65536:
        return None
    if scheme not in schemes:
        return None
    path = "".join(c for c in path if c not in _SPACE)  # uri_whitespace strip
    return Url(scheme, host, port, path, userinfo)


def _parse_authority_form(uri: str) -> Url | None:
    """CONNECT's sscanf("[%[^]]]:%d") then sscanf("%[^:]:%d"): port 443 when absent."""
    port = 443
    match = re.match(r"\[([^\]]+)\](?::(-?[0-9]+))?", uri)
    if not match:
        match = re.match(r"([^:]+)(?::([+-]?[0-9]+))?", uri)
    if not match:
        return None
    host = match[1].lower()
    if match[2] is not None:
        port = int(match[2][:10]) if len(match[2]) <= 10 else -1
    host = "".join(c for c in host if c not in _SPACE).rstrip(".")
    if ".." in host or host.startswith(".") or not 0 < port < 65536:
        return None
    return Url("https" if port == 443 else "http", host, port, "")


def _atoi(text: str) -> int:
    """C atoi(): leading whitespace, optional sign, digits; 0 when there are none."""
    match = re.match(r"[\s]*([+-]?[0-9]+)", text)
    if not match:
        return 0
    digits = match[1]
    return int(digits) if len(digits.lstrip("+-")) <= 10 else -1
