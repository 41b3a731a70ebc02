"""Events and policy shared by the HTTP proxy and SOCKS machines.

A proxy machine emits exactly one :class:`ProxyRequest` per connection: the paper's Table 6
counts requests to the proxy modules by outcome, and one request per connection is all the
spam tools it saw needed (a tunnel to port 25 is then handed to the SMTP emulator).
"""

from __future__ import annotations

import ipaddress
import zlib
from dataclasses import dataclass, field

#: The paper's Table 6 classes, and nothing else, may appear in ``ProxyRequest.outcome``.
OUTCOMES = ("smtp", "other", "get", "error")

#: What ``ProxyRequest.tunnel`` asks of the adapter.
TUNNEL_SMTP = "smtp"
TUNNEL_WEB = "web"

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
    #: The sensor's public IP: REMOTE_ADDR on judge pages, BND.ADDR in SOCKS5 replies.
    public_address: str = "192.0.2.10"
    #: SOCKS5 client offering both "no authentication" and username/password: True (default)
    #: picks RFC 1929 so the credentials are recorded, any being accepted, so no client is
    #: lost; False picks "no authentication" like a typical open proxy.
    socks5_prefer_userpass: bool = True
    #: Proxy persona: Server header and signature of the proxy's own error pages.
    server_software: str = "squid/4.13"
    #: Origin persona: Server header of pages "fetched" through the proxy.
    web_server_software: str = "Apache"
    #: Generic page for GET through the proxy: a ``string.Template`` with $title, $host, $path
    #: (HTML-escaped client values).
    page_title: str = "Welcome"
    page_template: str = DEFAULT_PAGE_TEMPLATE
    #: Derived from public_address in __post_init__.
    socks5_bound: bytes = field(default=b"", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.non_smtp not in ("refuse", "web"):
            raise ValueError(f"non_smtp must be 'refuse' or 'web', not {self.non_smtp!r}")
        for port in self.smtp_ports | self.web_ports:
            if not 0 < port < 65536:
                raise ValueError(f"port out of range: {port}")
        public = ipaddress.ip_address(self.public_address)  # ValueError for a name or garbage
        # SOCKS5 BND.ATYP + BND.ADDR (RFC 1928 §6), built once rather than per connection.
        bound = (b"\x01" if public.version == 4 else b"\x04") + public.packed
        object.__setattr__(self, "socks5_bound", bound)

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
