"""The PROXY protocol (HAProxy, versions 1 and 2), receiving side, sans-I/O.

A sensor behind a NAT, a load balancer or a port redirector learns the real client address
from the header such a front end sends before the client's first byte
(https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt). It is accepted only from
addresses the configuration trusts: anyone else could forge their source otherwise.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_MAX = 107  # spec §2.1: the longest v1 line, CRLF included
V2_MAX = 16 + 2048  # header and addresses plus TLVs; the spec leaves TLV size open, we bound it


# Spec §2.2: family byte 0x11 is TCP over IPv4, 0x21 TCP over IPv6: (address size, type).
_V2_TCP: dict[int, tuple[int, type[ipaddress.IPv4Address] | type[ipaddress.IPv6Address]]] = {
    0x11: (4, ipaddress.IPv4Address),
    0x21: (16, ipaddress.IPv6Address),
}


@dataclass(frozen=True, slots=True)
class ProxiedAddress:
    """The connection as the front end saw it; None fields mean "use the socket's own"."""

    src_ip: str | None
    src_port: int | None
    dst_ip: str | None
    dst_port: int | None
    version: int


class ProxyHeaderError(ValueError):
    pass


class ProxyHeaderParser:
    """Feed bytes until ``result`` is set; ``rest`` is what followed the header."""

    __slots__ = ("_buf", "rest", "result")

    def __init__(self) -> None:
        self._buf = b""
        self.result: ProxiedAddress | None = None
        self.rest = b""

    def receive_data(self, data: bytes) -> bool:
        """True once the header is complete; raises ProxyHeaderError on a bad one."""
        self._buf += data
        buf = self._buf
        if buf[:1] == b"P":
            return self._v1(buf)
        if buf[:1] == b"\r":
            return self._v2(buf)
        if buf:
            raise ProxyHeaderError(f"no PROXY header: first byte 0x{buf[0]:02x}")
        return False

    def _done(self, result: ProxiedAddress, used: int) -> bool:
        self.result = result
        self.rest = self._buf[used:]
        self._buf = b""
        return True

    def _v1(self, buf: bytes) -> bool:
        end = buf.find(b"\r\n", 0, V1_MAX)
        if end < 0:
            if len(buf) >= V1_MAX or not b"PROXY ".startswith(buf[:6]):
                raise ProxyHeaderError("PROXY v1 line too long or malformed")
            return False
        parts = buf[:end].split(b" ")
        if parts[0] != b"PROXY" or len(parts) < 2:
            raise ProxyHeaderError("malformed PROXY v1 line")
        if parts[1] == b"UNKNOWN":  # spec §2.1: the receiver uses the socket's addresses
            return self._done(ProxiedAddress(None, None, None, None, 1), end + 2)
        if parts[1] not in (b"TCP4", b"TCP6") or len(parts) != 6:
            raise ProxyHeaderError("malformed PROXY v1 line")
        family = 4 if parts[1] == b"TCP4" else 6
        if b"%" in parts[2] or b"%" in parts[3]:
            # A scope id (RFC 4007 §11) is not part of the spec's address form and would carry
            # any bytes but "%" into the event log.
            raise ProxyHeaderError("scoped address in PROXY v1 line")
        try:
            src = ipaddress.ip_address(parts[2].decode("ascii"))
            dst = ipaddress.ip_address(parts[3].decode("ascii"))
            sport, dport = _port(parts[4]), _port(parts[5])
        except (ValueError, UnicodeDecodeError) as exc:
            raise ProxyHeaderError(f"bad address in PROXY v1 line: {exc}") from None
        if src.version != family or dst.version != family:
            raise ProxyHeaderError("PROXY v1 address does not match its family")
        return self._done(ProxiedAddress(_text(src), sport, _text(dst), dport, 1), end + 2)

    def _v2(self, buf: bytes) -> bool:
        if len(buf) < 16:
            if not V2_SIGNATURE.startswith(buf[:12]):
                raise ProxyHeaderError("bad PROXY v2 signature")
            return False
        if buf[:12] != V2_SIGNATURE:
            raise ProxyHeaderError("bad PROXY v2 signature")
        ver_cmd, fam, length = struct.unpack_from("!BBH", buf, 12)
        if ver_cmd >> 4 != 2 or ver_cmd & 0xF > 1:
            raise ProxyHeaderError(f"bad PROXY v2 version/command 0x{ver_cmd:02x}")
        if 16 + length > V2_MAX:
            raise ProxyHeaderError(f"PROXY v2 header of {length} bytes is over the limit")
        if len(buf) < 16 + length:
            return False
        body = buf[16 : 16 + length]
        used = 16 + length
        if ver_cmd & 0xF == 0:  # LOCAL: a health check by the proxy itself
            return self._done(ProxiedAddress(None, None, None, None, 2), used)
        tcp = _V2_TCP.get(fam)
        if tcp is not None and length >= 2 * tcp[0] + 4:
            size, address = tcp
            src, dst, sport, dport = struct.unpack_from(f"!{size}s{size}sHH", body)
            real = ProxiedAddress(_text(address(src)), sport, _text(address(dst)), dport, 2)
            return self._done(real, used)
        if fam == 0x00:  # UNSPEC: addresses unknown, use the socket's
            return self._done(ProxiedAddress(None, None, None, None, 2), used)
        raise ProxyHeaderError(f"unsupported PROXY v2 family 0x{fam:02x} (length {length})")


def _text(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """An IPv4-mapped IPv6 address is an IPv4 client, as for a socket's peer."""
    mapped = getattr(ip, "ipv4_mapped", None)
    return str(mapped if mapped is not None else ip)


def _port(raw: bytes) -> int:
    if not raw.isdigit() or len(raw) > 5 or (len(raw) > 1 and raw[:1] == b"0"):
        raise ValueError(f"bad port {raw!r}")
    port = int(raw)
    if port > 65535:
        raise ValueError(f"bad port {port}")
    return port
