"""Events and policy shared by the HTTP proxy and SOCKS machines.

A proxy machine emits one :class:`ProxyRequest` per request it answers: the paper's Table 6
counts requests to the proxy modules by outcome. A SOCKS connection carries one request; an
HTTP connection may carry several (keep-alive), until a tunnel to port 25 is handed to the
SMTP emulator or the connection closes.
"""

from __future__ import annotations

import ipaddress
import zlib
from dataclasses import dataclass

#: The paper's Table 6 classes, and nothing else, may appear in ``ProxyRequest.outcome``.
OUTCOMES = ("smtp", "other", "get", "error")

#: What ``ProxyRequest.tunnel`` asks of the adapter: hand the connection to the SMTP machine,
#: to a WebServer, or keep it open with this machine, which discards what follows (a SOCKS
#: BIND or UDP ASSOCIATE that was answered as granted, with nothing ever bound).
TUNNEL_SMTP = "smtp"
TUNNEL_WEB = "web"
TUNNEL_HOLD = "hold"

#: Which emulator answered a request (``ProxyRequest.module``): Table 6's rows.
MODULES = ("http", "socks")

DEFAULT_PAGE_TEMPLATE = (
    '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>$title</title></head>\n'
    "<body><h1>$title</h1>\n<p>This is the default web page for this server.</p>\n"
    "<p>The web server software is running but no content has been added, yet.</p>\n"
    "</body></html>\n"
)


@dataclass(frozen=True, slots=True)
class ProxyAuth:
    """Credentials a client presented; honeypot proxies accept them all, so log them all."""

    method: str  # "none", "userpass" (RFC 1929), "userid" (SOCKS4), "basic" (HTTP), or the scheme
    username: str | None
    password: str | None


@dataclass(frozen=True, slots=True)
class ProxyRequest:
    """Event: the one request of a proxy connection, as answered. Logged as ``proxy.request``."""

    protocol: str  # "http", "socks4", "socks4a", "socks5"; "unknown" when detection failed
    version: str  # "HTTP/1.1", "HTTP/1.0", "4", "5"; "" when unknown
    method: str  # CONNECT, GET, HEAD, POST, ..., BIND, UDP_ASSOCIATE; "" if unparsable
    target_host: str | None
    target_port: int | None
    auth: ProxyAuth | None
    outcome: str  # one of OUTCOMES
    reply: str  # short text of what was answered; "" when nothing was sent
    error: str | None = None  # what was wrong, when outcome == "error"
    tunnel: str | None = None  # TUNNEL_SMTP / TUNNEL_WEB: adapter hands the connection over
    leftover: bytes = b""  # bytes the client sent after the request, for the next machine
    headers: tuple[tuple[str, str], ...] = ()  # HTTP request headers as sent; () for SOCKS
    #: The emulator that answered ("http" = the Squid persona, "socks" = Dante): the port's
    #: module. It differs from ``protocol`` when a client spoke the other protocol to a port
    #: that serves only one.
    module: str = "http"


@dataclass(frozen=True, slots=True)
class WebRequest:
    """Event: the one request a :class:`~spampot.protocols.http_proxy.WebServer` answered."""

    method: str  # "" if unparsable
    host: str | None  # Host header (or the absolute URL's authority)
    path: str  # request-target as sent ("" if unparsable)
    version: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    reply: str = ""  # status line answered; "" when nothing was sent
    error: str | None = None  # set when the request was invalid or truncated


@dataclass(frozen=True, slots=True)
class ProxyPolicy:
    """What the emulated proxies grant. Defaults are the paper's behaviour (§3.2)."""

    #: Tunnels to these ports are handed to the SMTP emulator (outcome "smtp").
    smtp_ports: frozenset[int] = frozenset({25})
    #: "refuse": refuse every other port, as the paper did (outcome "other");
    #: "web": accept tunnels to ``web_ports`` too and hand them to a WebServer.
    non_smtp: str = "refuse"
    #: No TLS is emulated, so 443 is deliberately absent.
    web_ports: frozenset[int] = frozenset({80, 8080, 8000, 3128})
    #: The sensor's public IP, for REMOTE_ADDR on judge pages and BND.ADDR in SOCKS replies;
    #: "" = the address each client connected to (the adapter gives it to the machine), which
    #: is the public address unless the sensor sits behind NAT.
    public_address: str = ""
    #: Under non_smtp="web", the origin inside a granted web tunnel: its Server header, and
    #: its page for what is not a proxy judge, a ``string.Template`` with $title, $host,
    #: $path (HTML-escaped client values).
    web_server_software: str = "Apache"
    page_title: str = "Welcome"
    page_template: str = DEFAULT_PAGE_TEMPLATE

    def __post_init__(self) -> None:
        if self.non_smtp not in ("refuse", "web"):
            raise ValueError(f"non_smtp must be 'refuse' or 'web', not {self.non_smtp!r}")
        for port in self.smtp_ports | self.web_ports:
            if not 0 < port < 65536:
                raise ValueError(f"port out of range: {port}")
        if self.public_address:
            ipaddress.ip_address(self.public_address)  # ValueError for a name or garbage

    def route(self, port: int) -> tuple[str, str | None]:
        """``(outcome, tunnel)`` for a tunnel request to ``port``; tunnel None means refuse."""
        if port in self.smtp_ports:
            return "smtp", TUNNEL_SMTP
        if self.non_smtp == "web" and port in self.web_ports:
            return "other", TUNNEL_WEB
        return "other", None


def ephemeral_port(seed: bytes) -> int:
    """A plausible client-side port for replies that must name one, with no randomness.

    Derived from the request, plus a per-connection ``port_seed`` the adapter may give the
    machine (e.g. client address, port and time), so it varies the way a real proxy's outgoing
    port would and a checker cannot fingerprint a constant; the range is Linux's default
    ``ip_local_port_range`` (32768-60999).
    """
    return 32768 + zlib.crc32(seed) % (60999 - 32768 + 1)


#: Top-level domains no DNS resolver answers for, so a proxy asked for such a name fails at its
#: lookup (and so does the sensor, even for port 25: no mail server has such a name): RFC 6761
#: §6.2 "test" and §6.4 "invalid", RFC 6762 "local" (multicast DNS only), RFC 7686 "onion",
#: RFC 9476 "alt".
UNRESOLVABLE_TLDS = frozenset({"test", "invalid", "local", "onion", "alt"})


def resolvable(host: str) -> bool:
    """Whether a name could resolve (decided without any lookup): not under those TLDs."""
    return host.rstrip(".").lower().rpartition(".")[2] not in UNRESOLVABLE_TLDS


def detect(first: bytes) -> str | None:
    """What a client speaks, from its first byte: "socks4", "socks5", "http", "unknown";
    None while nothing has arrived.

    The client speaks first in all three: SOCKS4 requests start with VN=4, SOCKS5 greetings
    with VER=5 (RFC 1928 §3), HTTP with a method token (RFC 9112 §3), in practice letters.
    """
    if not first:
        return None
    byte = first[0]
    if byte == 4:
        return "socks4"
    if byte == 5:
        return "socks5"
    if 0x41 <= byte <= 0x5A or 0x61 <= byte <= 0x7A:
        return "http"
    return "unknown"
