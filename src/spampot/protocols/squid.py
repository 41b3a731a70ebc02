"""What the Squid persona says: its dialect (``dialects/squid.toml``) and how it is rendered.

Nothing here parses client bytes or decides anything: :mod:`spampot.protocols.http_proxy`
decides which answer a request gets, and the functions here write it the way Squid 5.7
writes it (errorpage.cc for the pages and their ``%`` codes, client_side_reply.cc for the
headers every answer carries, http.cc for the request Squid forwards upstream).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class Failure:
    """An error answer: the page, its HTTP status, and the errno the page names (0: none)."""

    page: str
    status: int
    errno: int = 0


@dataclass(frozen=True, slots=True)
class Unreachable:
    """How the proxy fails to reach a destination, by request kind and destination kind."""

    name: Failure
    address: Failure
    connect_name: Failure
    connect_address: Failure


@dataclass(frozen=True, slots=True)
class Scheme:
    """A URL scheme Squid forwards: its default port and the methods it allows ("*": all)."""

    port: int
    methods: tuple[str, ...]

    def allows(self, method: str) -> bool:
        return "*" in self.methods or method in self.methods


@dataclass(frozen=True, slots=True)
class SquidDialect:
    kind: str
    name: str
    software: str
    version: str
    admin: str
    request_header_max_size: int
    max_method_length: int
    max_uri_length: int
    max_url_length: int
    forward_max_age: int
    forwarded_for: str
    methods: tuple[str, ...]
    known_headers: tuple[str, ...]
    not_forwarded: tuple[str, ...]
    cache_control: tuple[str, ...]
    unreachable: Unreachable
    schemes: Mapping[str, Scheme]
    statuses: Mapping[str, str]
    errnos: Mapping[str, str]
    languages: tuple[str, ...]
    english: tuple[str, ...]
    stylesheet: str
    logo_png: str
    logo_modified: str
    pages: Mapping[str, str]
    english_pages: Mapping[str, str]

    @property
    def signature(self) -> str:
        """``squid/5.7``: the Server header, Via's comment and %s."""
        return f"{self.software}/{self.version}"

    def reason(self, status: int) -> str:
        return self.statuses[str(status)]


class SquidPersona:
    """A dialect with what is derived from it once, and the name this proxy goes by.

    ``hostname`` is what Squid calls itself (visible_hostname, else the machine's name): in
    Via, X-Cache and the page footers. ``port`` is its first http_port, which X-Cache-Lookup
    names whatever port a request came in on (getMyPort()).
    """

    def __init__(
        self, dialect: SquidDialect, hostname: str = "localhost", port: int = 3128
    ) -> None:
        self.dialect = dialect
        self.hostname = hostname
        self.port = port
        self._canonical = {name.lower(): name for name in dialect.known_headers}
        self._methods = {name.upper(): name for name in dialect.methods}
        self.not_forwarded = frozenset(name.lower() for name in dialect.not_forwarded)
        self.logo = base64.b64decode(dialect.logo_png)
        self.ports = {name: scheme.port for name, scheme in dialect.schemes.items()}

    def method(self, token: str) -> str:
        """HttpRequestMethod(): a known method in its own spelling, whatever the case sent."""
        return self._methods.get(token.upper(), token)

    def canonical(self, name: str) -> str:
        """A header name as Squid writes it back (HttpHeaderEntry::parse): known names in
        their registered spelling, others as the client sent them."""
        return self._canonical.get(name.lower(), name)


def load_dialect(name: str = "squid", version: str = "") -> SquidDialect:
    """The dialect ``name``, its version string replaced by ``version`` when given."""
    from spampot import dialects  # imported here: dialects sit above the protocol machines

    dialect = dialects.load(name, SquidDialect)
    return replace(dialect, version=version) if version else dialect


# -- pages --------------------------------------------------------------------------------------


def html_quote(text: str) -> str:
    """lib/html_quote.c: the five HTML specials as entities, and every control or 8-bit byte
    (but TAB, LF, CR) as ``&#NNN;`` (three digits, space-padded).

    Client text reaches here as Latin-1 (one character per byte received), so each byte the
    client sent is quoted as Squid quotes it.
    """
    out = []
    for byte in text.encode("latin-1", "replace"):
        char = chr(byte)
        if char in _ENTITIES:
            out.append(_ENTITIES[char])
        elif (byte <= 0x1F or byte >= 0x7F) and char not in "\n\r\t":
            out.append(f"&#{byte:3d};")
        else:
            out.append(char)
    return "".join(out)


_ENTITIES = {"<": "&lt;", ">": "&gt;", '"': "&quot;", "&": "&amp;", "'": "&#39;"}
_CODE = re.compile(r"%(.)", re.S)


@dataclass(frozen=True, slots=True)
class PageFacts:
    """What a page's ``%`` codes say (errorpage.cc ErrorState::compileLegacyCode()).

    Every value is text as Squid has it (the machine derived it from the client's bytes);
    :func:`render_page` HTML-quotes it, as Squid does.
    """

    url: str = "[no URL]"  # %U
    host: str = "[unknown host]"  # %H
    server_ip: str = "[unknown]"  # %I
    errno: int = 0  # %E
    request: str = "[no request]"  # %R
    method: str = "[unknown method]"  # %M
    effective_url: str = "[no URL]"  # %u
    protocol: str = "[unknown protocol]"  # %P


def render_page(
    dialect: SquidDialect,
    page: str,
    facts: PageFacts,
    *,
    hostname: str,
    date: str,
    english: bool = False,
) -> bytes:
    """The body of error page ``page``; ``english`` selects errors/en/ over errors/templates/."""
    template = (dialect.english_pages if english else dialect.pages)[page]
    errno = facts.errno
    values = {
        "c": page,
        "U": facts.url,
        "u": facts.effective_url,
        "H": facts.host,
        "I": facts.server_ip,
        "E": f"({errno}) {dialect.errnos[str(errno)]}" if errno else "[No Error]",
        "R": facts.request,
        "M": facts.method,
        "P": facts.protocol,
        "w": dialect.admin,
        "W": "",  # email_err_data off
        "T": date,
        "h": hostname,
        "s": dialect.signature,
        "z": "[unknown]",
        "%": "%",
    }

    def code(match: re.Match[str]) -> str:
        letter = match[1]
        if letter == "l":
            return dialect.stylesheet  # inserted as it is, unquoted
        value = values.get(letter)
        return match[0] if value is None else html_quote(value)

    return _CODE.sub(code, template).encode("utf-8", "surrogateescape")


def negotiate_language(dialect: SquidDialect, accept_language: str | None) -> tuple[bool, str]:
    """errorpage.cc TemplateFile::loadFor(): (English variant?, Content-Language).

    Squid tries the tags of Accept-Language in the order written (q-values ignored), each
    lower-cased with ``_`` read as ``-``; the first one it has a directory for wins, ``*``
    stops at the default, and the default is errors/templates/ sent as "en". The persona
    has the English pages only: a tag of another language it has is passed over, as a tag
    Squid does not know would be, and the search goes on.
    """
    if accept_language:
        for tag in _language_tags(accept_language):
            if tag == "*":
                break
            if tag in dialect.english:
                return True, tag
            if tag == "templates":
                return False, tag
    return False, "en"


def _language_tags(header: str) -> list[str]:
    """strHdrAcptLangGetItem(): the usable tags of an Accept-Language value, in order."""
    tags = []
    for item in header.split(","):
        raw = re.split(r"[;\s]", item.strip(" \t\r\n\v\f"), maxsplit=1)[0]
        tag = raw.lower().replace("_", "-")
        if tag and re.fullmatch(r"[a-z*-]+", tag):
            tags.append(tag[:255])
    return tags


# -- headers -------------------------------------------------------------------------------------


def status_line(dialect: SquidDialect, status: int) -> str:
    """Squid answers every request in HTTP/1.1, whatever its version."""
    return f"HTTP/1.1 {status} {dialect.reason(status)}"


def via(dialect: SquidDialect, hostname: str, version: str = "1.1") -> str:
    """HttpHeader::addVia(): ``<major>.<minor> <host> (squid/<version>)``."""
    return f"{version} {hostname} ({dialect.signature})"


def cache_headers(hostname: str, port: int, lookup: str) -> list[tuple[str, str]]:
    """X-Cache and X-Cache-Lookup (client_side_reply.cc). ``lookup`` is "NONE" when the
    request failed before a cache lookup, "MISS" when it was forwarded, "HIT" for Squid's own
    icons (the only objects the persona ever has)."""
    return [
        ("X-Cache", f"{'HIT' if lookup == 'HIT' else 'MISS'} from {hostname}"),
        ("X-Cache-Lookup", f"{lookup} from {hostname}:{port}"),
    ]


def serialize(status_text: str, headers: list[tuple[str, str]], body: bytes = b"") -> bytes:
    lines = [status_text, *(f"{name}: {value}" for name, value in headers), "", ""]
    return "\r\n".join(lines).encode("utf-8", "surrogateescape") + body
