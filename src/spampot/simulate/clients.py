"""The bytes spam tools send: proxy requests, PROXY-protocol headers, an SMTP dialogue.

Used by the live driver to talk to a sensor, and by the offline generator, which feeds the
proxy requests once to the sensor's own protocol machines to learn the exact fields their
``proxy.request`` events carry.
"""

from __future__ import annotations

import base64
import ipaddress
import struct

from spampot.protocols.proxy_protocol import V2_SIGNATURE


def http_connect(host: str, port: int, *, host_header: bool = False) -> bytes:
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if host_header:
        return f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode()
    return f"CONNECT {authority} HTTP/1.0\r\n\r\n".encode()


def http_get(host: str, path: str = "/") -> bytes:
    return f"GET http://{host}{path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()


def http_malformed() -> bytes:
    """A request line a proxy cannot parse (an "invalid command" in the paper's Table 6)."""
    return b"HELO proxy\r\n\r\n"


def junk() -> bytes:
    """The first bytes of a TLS ClientHello: neither HTTP nor SOCKS."""
    return b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"


def socks4_connect(ip: str, port: int, userid: str = "") -> bytes:
    """SOCKS4 CONNECT to an IPv4 address (the SOCKS4 protocol document)."""
    return struct.pack("!BBH4s", 4, 1, port, ipaddress.IPv4Address(ip).packed) + (
        userid.encode() + b"\x00"
    )


def socks4a_connect(host: str, port: int, userid: str = "") -> bytes:
    """SOCKS4a: address 0.0.0.x and the host name after the user id (the 4A extension)."""
    return (
        struct.pack("!BBH4s", 4, 1, port, b"\x00\x00\x00\x01")
        + userid.encode()
        + b"\x00"
        + host.encode()
        + b"\x00"
    )


def socks4_bad_command(ip: str, port: int) -> bytes:
    return struct.pack("!BBH4s", 4, 9, port, ipaddress.IPv4Address(ip).packed) + b"\x00"


def socks5_greeting(userpass: bool = False) -> bytes:
    """RFC 1928 §3: version, method count, methods (0 none, 2 username/password). A client
    that authenticates offers username/password alone: a server that also sees "none"
    offered (Dante) picks that, and never asks."""
    return b"\x05\x01\x02" if userpass else b"\x05\x01\x00"


def socks5_userpass(username: str, password: str) -> bytes:
    """RFC 1929 §2."""
    user, pw = username.encode(), password.encode()
    return bytes([1, len(user)]) + user + bytes([len(pw)]) + pw


def socks5_request(host: str, port: int, command: int = 1) -> bytes:
    """RFC 1928 §4: CONNECT (1), BIND (2), UDP ASSOCIATE (3)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        name = host.encode()
        address = b"\x03" + bytes([len(name)]) + name
    else:
        address = (b"\x01" if ip.version == 4 else b"\x04") + ip.packed
    return bytes([5, command, 0]) + address + struct.pack("!H", port)


def proxy_header(version: int, src: str, src_port: int, dst: str, dst_port: int) -> bytes:
    """A HAProxy PROXY protocol header (spec §2.1 for v1, §2.2 for v2) naming the client."""
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if s.version != d.version:
        # The spec wants both addresses of one family: map the sensor's to the client's.
        d = (
            ipaddress.ip_address("::ffff:" + str(d))
            if s.version == 6
            else ipaddress.ip_address("127.0.0.1")
        )
    if version == 1:
        family = "TCP4" if s.version == 4 else "TCP6"
        return f"PROXY {family} {s} {d} {src_port} {dst_port}\r\n".encode()
    fam = 0x11 if s.version == 4 else 0x21
    body = s.packed + d.packed + struct.pack("!HH", src_port, dst_port)
    return V2_SIGNATURE + struct.pack("!BBH", 0x21, fam, len(body)) + body


def basic_auth(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


# --- the SMTP dialogue (RFC 5321), one client turn at a time -------------------------------


def smtp_ehlo(helo: str) -> bytes:
    return f"EHLO {helo}\r\n".encode()


def smtp_envelope(mail_from: str, rcpt_to: tuple[str, ...] | list[str]) -> list[bytes]:
    """MAIL, each RCPT and DATA: one command a turn (spam tools of the period waited for
    each reply)."""
    return [
        f"MAIL FROM:<{mail_from}>\r\n".encode(),
        *(f"RCPT TO:<{rcpt}>\r\n".encode() for rcpt in rcpt_to),
        b"DATA\r\n",
    ]


def smtp_data(message: bytes) -> bytes:
    """A message (CRLF lines) as sent after DATA's 354: every line that starts with a dot
    gets another (RFC 5321 §4.5.2), a last line without its CRLF gets one (the final dot
    must start a line: the server stores that CRLF too), then the final dot."""
    body = message.replace(b"\r\n.", b"\r\n..")
    if body.startswith(b"."):
        body = b"." + body
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body + b".\r\n"


def smtp_quit() -> bytes:
    return b"QUIT\r\n"
