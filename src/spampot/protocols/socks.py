"""SOCKS4 and SOCKS5 proxy, server side, sans-I/O, answering as the dialect's server (Dante).

The paper's SOCKS emulator (§3.2): any client accepted; CONNECT to the SMTP port is granted and
handed to the SMTP emulator; every other request is refused the way the emulated server
refuses it when its upstream fails; anything else is logged as an error.

References: "SOCKS: A protocol for TCP proxy across firewalls" (Ying-Da Lee, the SOCKS4
document, "SOCKS4" below), "SOCKS 4A: A Simple Extension to SOCKS 4 Protocol" ("SOCKS4a"),
RFC 1928 (SOCKS5) and RFC 1929 (username/password authentication for SOCKS5).

Where the documents leave the server a choice, :class:`SocksDialect` (``dialects/dante.toml``)
says what it does: which method it picks, what a failure reply carries in its BND fields,
whether it reads a SOCKS4a host name, when it closes without a reply. The sensor connects
nowhere, so the outcome of a CONNECT is decided here (``ProxyPolicy.route``): a tunnel to an
SMTP port succeeds; any other destination fails the way a real open proxy fails when it cannot
reach it (a name: it did not resolve; an address: the connection was refused), since the
sensor resolves no name and so can show no address for one. BIND and UDP ASSOCIATE to an
address succeed, as on an open Dante: the reply names a bound address and port, and the
connection is then held open with nothing ever bound, received or forwarded.

Every state change is one entry of :attr:`SocksServer._STEPS` (the transition table); every
client fault is raised as :class:`ProtocolError` and answered in one place.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, auto
from typing import ClassVar, NamedTuple

from spampot.protocols.common import ProtocolError, decode_client
from spampot.protocols.proxy import (
    TUNNEL_HOLD,
    ProxyAuth,
    ProxyPolicy,
    ProxyRequest,
    detect,
    ephemeral_port,
    resolvable,
)

# The SOCKS4 document bounds neither USERID nor (SOCKS4a) the host name. 255 octets is the
# RFC 1929 username limit and the RFC 1928 domain-name limit (one length octet), and already
# exceeds any DNS name (253, RFC 1035 §2.3.4).
MAX_USERID = 255
MAX_HOSTNAME = 255
# Bytes a held connection (BIND, UDP ASSOCIATE) may send before it is closed: the control
# connection carries nothing after the request (RFC 1928 §4, §7), so this is generous.
MAX_HELD_BYTES = 64 * 1024

_S4_COMMANDS = {1: "CONNECT", 2: "BIND"}
_S5_COMMANDS = {1: "CONNECT", 2: "BIND", 3: "UDP_ASSOCIATE"}  # RFC 1928 §4 CMD
_S5_TEXT = {
    0x00: "succeeded",
    0x01: "general failure",
    0x02: "not allowed",
    0x03: "network unreachable",
    0x04: "host unreachable",
    0x05: "connection refused",
    0x06: "TTL expired",
    0x07: "command not supported",
    0x08: "address type not supported",
}
_METHOD_NONE = 0x00
_METHOD_USERPASS = 0x02
_METHOD_NO_ACCEPTABLE = 0xFF  # RFC 1928 §3


@dataclass(frozen=True, slots=True)
class Socks5Replies:
    """RFC 1928 §6 REP for each way a request fails, and where its BND fields come from."""

    refused: int
    unresolved: int
    unusable_destination: int
    refused_bound: str  # "bound" (the outgoing socket's address) or "request" (DST echoed)
    unresolved_bound: str
    unusable_destination_bound: str
    silent_close: bool  # unknown CMD/ATYP, bad RFC 1929 version: close without a reply


@dataclass(frozen=True, slots=True)
class Socks4Replies:
    granted: int
    rejected: int
    refused_bound: str
    invalid_bound: str


@dataclass(frozen=True, slots=True)
class SocksDialect:
    """What a SOCKS server answers where the RFCs leave it the choice (``dialects/*.toml``)."""

    kind: str
    name: str
    software: str
    methods: tuple[int, ...]
    socks4a: bool
    socks4_after_negotiation: bool
    socks5: Socks5Replies
    socks4: Socks4Replies

    def __post_init__(self) -> None:
        bounds = (
            self.socks5.refused_bound,
            self.socks5.unresolved_bound,
            self.socks5.unusable_destination_bound,
            self.socks4.refused_bound,
            self.socks4.invalid_bound,
        )
        if any(b not in ("bound", "request") for b in bounds):
            raise ValueError(f"{self.name}: a *_bound value is neither 'bound' nor 'request'")


def load_dialect(name: str = "dante") -> SocksDialect:
    from spampot import dialects  # imported here: dialects sit above the protocol machines

    return dialects.load(name, SocksDialect)


@functools.lru_cache(maxsize=64)
def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The sensor's own address, parsed once: it is the same for most connections."""
    return ipaddress.ip_address(text)


def max_buffered(max_userid: int = MAX_USERID, max_hostname: int = MAX_HOSTNAME) -> int:
    """The most a SocksServer holds between calls: its largest single protocol unit."""
    socks4 = 8 + max_userid + 1 + max_hostname + 1  # SOCKS4a: header, USERID, NUL, name, NUL
    rfc1929 = 3 + 255 + 255  # RFC 1929 §2: VER ULEN UNAME PLEN PASSWD
    socks5_request = 5 + 255 + 2  # RFC 1928 §4 with the longest domain name
    return max(socks4, rfc1929, socks5_request)


class _Target(NamedTuple):
    """What a request asked for, as far as it could be parsed, and where it ended."""

    method: str = ""
    host: str | None = None
    port: int | None = None
    consumed: int = 0  # bytes of the current buffer that belong to the request
    raw: bytes = b""  # ATYP + DST.ADDR + DST.PORT (SOCKS5) or DSTPORT + DSTIP (SOCKS4)


_NO_TARGET = _Target()


class _State(Enum):
    VERSION = auto()
    S4_REQUEST = auto()
    S5_GREETING = auto()
    S5_AUTH = auto()
    S5_REQUEST = auto()
    HELD = auto()  # BIND / UDP ASSOCIATE answered: the connection stays, nothing happens
    DONE = auto()


_STAGE_NAMES = {
    _State.VERSION: "version",
    _State.S4_REQUEST: "SOCKS4 request",
    _State.S5_GREETING: "SOCKS5 method negotiation",
    _State.S5_AUTH: "RFC 1929 authentication",
    _State.S5_REQUEST: "SOCKS5 request",
}


class _Fault(ProtocolError):
    """A client fault: ``reply`` is sent, the request is logged as an error, and it closes."""

    def __init__(
        self, detail: str, reply: bytes = b"", text: str = "", target: _Target = _NO_TARGET
    ):
        super().__init__(detail, reply)
        self.detail = detail
        self.text = text  # what the reply says, for the event ("" when nothing is sent)
        self.target = target


class SocksServer:
    """Server side of one SOCKS4/5 connection.

    Feed it from the very first byte: it validates the version itself. It emits exactly one
    :class:`ProxyRequest`. A granted tunnel has ``tunnel`` set and ``closing`` false: the
    adapter stops feeding this machine and hands ``leftover`` and the connection over. A held
    request (BIND, UDP ASSOCIATE) has ``tunnel == TUNNEL_HOLD``: the adapter keeps feeding it,
    and it discards what it is fed, up to :data:`MAX_HELD_BYTES`.

    ``local_address`` is the address the client connected to (the adapter knows it), used in
    BND.ADDR unless ``policy.public_address`` is set.
    """

    module = "socks"

    def __init__(
        self,
        policy: ProxyPolicy | None = None,
        dialect: SocksDialect | None = None,
        *,
        local_address: str = "",
        max_userid: int = MAX_USERID,
        max_hostname: int = MAX_HOSTNAME,
        port_seed: bytes = b"",
    ) -> None:
        self.policy = policy if policy is not None else ProxyPolicy()
        self.dialect = dialect if dialect is not None else load_dialect()
        self.max_userid = max_userid
        self.max_hostname = max_hostname
        self.port_seed = port_seed  # varies BND.PORT per connection (see ephemeral_port)
        #: "socks4", "socks4a", "socks5" once known; what it looks like for a bad version byte.
        self.protocol: str | None = None
        self.closing = False
        self._state = _State.VERSION
        self._buf = bytearray()
        self._out = bytearray()
        self._events: list[ProxyRequest] = []
        self._auth: ProxyAuth | None = None
        self._received = 0
        self._held = 0
        self._bound = _address(self.policy.public_address or local_address or "0.0.0.0")

    @property
    def done(self) -> bool:
        """The request is answered; a held connection is done but stays open."""
        return self._state in (_State.DONE, _State.HELD)

    @property
    def buffered(self) -> int:
        """Bytes held between calls; never more than :attr:`max_buffered`."""
        return len(self._buf)

    @property
    def max_buffered(self) -> int:
        return max_buffered(self.max_userid, self.max_hostname)

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: bytes) -> list[ProxyRequest]:
        if self._state is _State.HELD:
            self._held += len(data)
            if self._held > MAX_HELD_BYTES:
                self.closing = True  # a control connection that floods is cut
            return []
        if self._state is _State.DONE:
            return []
        self._received += len(data)
        self._buf += data
        try:
            while not self.done and self._STEPS[self._state](self):
                pass
        except _Fault as fault:
            self._out += fault.reply
            self._finish("error", fault.text, fault.detail, fault.target)
        events, self._events = self._events, []
        return events

    def connection_lost(self) -> list[ProxyRequest]:
        """The peer went away: a request left half-sent is logged as a truncated error."""
        if self.done or not self._received:
            return []
        stage = _STAGE_NAMES[self._state]
        pending = len(self._buf)
        self._finish(
            "error", error=f"truncated: connection closed during {stage} ({pending} bytes pending)"
        )
        events, self._events = self._events, []
        return events

    # -- addresses --------------------------------------------------------------------------

    def _bound_port(self, target: _Target) -> bytes:
        """An ephemeral port for BND.PORT, the same for one request however it was split."""
        request = bytes(self._buf[: target.consumed]) if target.consumed else target.raw
        return ephemeral_port(self.port_seed + request).to_bytes(2, "big")

    def _bound5(self, target: _Target) -> bytes:
        """RFC 1928 §6 ATYP BND.ADDR BND.PORT: the sensor's address and a bound port."""
        atyp = b"\x01" if self._bound.version == 4 else b"\x04"
        return atyp + self._bound.packed + self._bound_port(target)

    def _bound4(self, target: _Target) -> bytes:
        """SOCKS4 DSTPORT DSTIP of a reply naming the bound socket (IPv4 only: else zeros)."""
        address = self._bound.packed if self._bound.version == 4 else bytes(4)
        return self._bound_port(target) + address

    # -- steps: each returns True when it advanced and more may be parsed -----------------

    def _version(self) -> bool:
        if not self._buf:
            return False
        version = self._buf[0]
        if version == 4:
            self.protocol, self._state = "socks4", _State.S4_REQUEST
            return True
        if version == 5:
            self.protocol, self._state = "socks5", _State.S5_GREETING
            return True
        # Neither protocol (an HTTP request, TLS, junk): closed without a word, as Dante does.
        # Only the first byte is named so the event does not depend on how the stream was
        # split; the bytes stay in ``leftover`` (the adapter logs them as ``input``).
        self.protocol = detect(bytes(self._buf[:1])) or "unknown"
        raise _Fault(f"not SOCKS: first byte 0x{version:02x}")

    def _socks4_request(self) -> bool:
        buf = self._buf
        if len(buf) < 8:  # VN CD DSTPORT(2) DSTIP(4)
            return False
        d4 = self.dialect.socks4
        command = buf[1]
        method = _S4_COMMANDS.get(command, "")
        port = int.from_bytes(buf[2:4], "big")
        dst_ip = bytes(buf[4:8])
        target = _Target(method, str(ipaddress.IPv4Address(dst_ip)), port, raw=bytes(buf[2:8]))
        nul = buf.find(0, 8, 8 + self.max_userid + 1)
        if nul < 0:
            if len(buf) > 8 + self.max_userid:
                error = f"SOCKS4 USERID longer than {self.max_userid} bytes"
                self._socks4_fault(d4.rejected, target, error)
            return False
        self._auth = ProxyAuth("userid", decode_client(bytes(buf[8:nul])), None)
        target = target._replace(consumed=nul + 1)
        # SOCKS4a: DSTIP 0.0.0.x with x non-zero means "the host name follows the USERID".
        socks4a = dst_ip[:3] == b"\0\0\0" and dst_ip[3] != 0
        if socks4a:
            self.protocol = "socks4a"
            with_host = self._socks4a_host(target)
            if with_host is None:
                return False
            target = with_host
        if command not in _S4_COMMANDS:
            self._socks4_fault(d4.rejected, target, f"unknown SOCKS4 command 0x{command:02x}")
        if socks4a and not self.dialect.socks4a and command == 1:
            # The server reads no host name: it connects to 0.0.0.x, which fails.
            error = f"SOCKS4a is not spoken by {self.dialect.software}"
            self._socks4_fault(d4.rejected, target, error, bound=d4.refused_bound)
        if socks4a and command == 1 and not resolvable(target.host or ""):
            # The name's lookup fails, and the server answers as for a failed connection.
            return self._socks4_reply(d4.rejected, "other", target, bound=d4.refused_bound)
        if command == 2:
            return self._socks4_reply(d4.granted, "other", target, tunnel=TUNNEL_HOLD)
        if dst_ip == bytes(4):
            self._socks4_fault(d4.rejected, target, "SOCKS4 destination 0.0.0.0")
        outcome, tunnel = self.policy.route(port)
        if tunnel is None:
            return self._socks4_reply(d4.rejected, outcome, target, bound=d4.refused_bound)
        return self._socks4_reply(d4.granted, outcome, target, tunnel=tunnel)

    def _socks4a_host(self, target: _Target) -> _Target | None:
        """The SOCKS4a host name after the USERID; None while it is incomplete.

        A server that does not speak SOCKS4a never reads it, but a SOCKS4a client sends the
        whole request at once: it is read here too, so the log says what was asked.
        """
        buf, start = self._buf, target.consumed
        nul = buf.find(0, start, start + self.max_hostname + 1)
        if nul < 0:
            if len(buf) - start > self.max_hostname:
                error = f"SOCKS4a host name longer than {self.max_hostname} bytes"
                self._socks4_fault(self.dialect.socks4.rejected, target._replace(host=None), error)
            return None
        target = target._replace(host=decode_client(bytes(buf[start:nul])), consumed=nul + 1)
        if not target.host and self.dialect.socks4a:
            self._socks4_fault(self.dialect.socks4.rejected, target, "SOCKS4a empty host name")
        return target

    def _socks4_fault(
        self, code: int, target: _Target, error: str, bound: str | None = None
    ) -> None:
        out = self._socks4_bytes(code, target, bound or self.dialect.socks4.invalid_bound)
        raise _Fault(error, out, _socks4_text(code), target)

    def _socks4_bytes(self, code: int, target: _Target, bound: str) -> bytes:
        # SOCKS4: every reply is VN=0, CD, DSTPORT, DSTIP.
        return bytes([0, code]) + (self._bound4(target) if bound == "bound" else target.raw)

    def _socks4_reply(
        self,
        code: int,
        outcome: str,
        target: _Target,
        bound: str = "bound",
        tunnel: str | None = None,
    ) -> bool:
        self._out += self._socks4_bytes(code, target, bound)
        return self._finish(outcome, _socks4_text(code), None, target, tunnel)

    def _socks5_greeting(self) -> bool:
        buf = self._buf
        if len(buf) < 2:  # VER NMETHODS
            return False
        count = buf[1]
        if len(buf) < 2 + count:
            return False
        offered = bytes(buf[2 : 2 + count])
        del buf[: 2 + count]
        chosen = next((m for m in self.dialect.methods if m in offered), _METHOD_NO_ACCEPTABLE)
        self._out += bytes([5, chosen])
        if chosen == _METHOD_NONE:
            self._auth = ProxyAuth("none", None, None)
            self._state = _State.S5_REQUEST
        elif chosen == _METHOD_USERPASS:
            self._state = _State.S5_AUTH
        else:
            # RFC 1928 §3: X'FF' means no acceptable method, and the client MUST close.
            what = f"({offered.hex(' ')})" if offered else "(NMETHODS=0)"
            raise _Fault(f"no acceptable SOCKS5 method offered {what}", b"", _S5_NO_METHOD)
        return True

    def _socks5_auth(self) -> bool:
        buf = self._buf
        if not buf:
            return False
        if buf[0] != 0x01:
            # RFC 1929 §2: VER is X'01'. Dante closes without a STATUS.
            raise _Fault(f"RFC 1929 sub-negotiation version 0x{buf[0]:02x}, expected 0x01")
        if len(buf) < 2:
            return False
        ulen = buf[1]
        if len(buf) < 3 + ulen:
            return False
        plen = buf[2 + ulen]
        end = 3 + ulen + plen
        if len(buf) < end:
            return False
        username = decode_client(bytes(buf[2 : 2 + ulen]))
        password = decode_client(bytes(buf[3 + ulen : end]))
        self._auth = ProxyAuth("userpass", username, password)
        del buf[:end]
        self._out += b"\x01\x00"  # any credentials succeed: an open proxy that logs them
        self._state = _State.S5_REQUEST
        return True

    def _socks5_request(self) -> bool:
        buf = self._buf
        if not buf:
            return False
        if buf[0] == 4 and self.dialect.socks4_after_negotiation:
            self.protocol, self._state = "socks4", _State.S4_REQUEST
            return True
        if buf[0] != 5:
            raise _Fault(f"SOCKS5 request version 0x{buf[0]:02x}")
        if len(buf) < 4:  # VER CMD RSV ATYP
            return False
        command, atyp = buf[1], buf[3]  # RSV is not checked: RFC 1928 gives no rule for it
        method = _S5_COMMANDS.get(command, "")
        if command not in _S5_COMMANDS:
            raise _Fault(f"unknown SOCKS5 command 0x{command:02x}", target=_Target(method))
        if atyp == 0x01:
            addr_end = 8
        elif atyp == 0x04:
            addr_end = 20
        elif atyp == 0x03:
            if len(buf) < 5:
                return False
            addr_end = 5 + buf[4]
        else:
            # The address length is unknown, so the request cannot even be delimited.
            raise _Fault(f"SOCKS5 address type 0x{atyp:02x}", target=_Target(method))
        end = addr_end + 2
        if len(buf) < end:
            return False
        raw_addr = bytes(buf[4:addr_end])
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
        if atyp == 0x01:
            address = ipaddress.IPv4Address(raw_addr)
        elif atyp == 0x04:
            address = ipaddress.IPv6Address(raw_addr)
        host = address.compressed if address else decode_client(raw_addr[1:])
        port = int.from_bytes(buf[addr_end:end], "big")
        target = _Target(method, host, port, end, bytes(buf[3:end]))
        d5 = self.dialect.socks5
        if address is None:
            # Nothing is ever resolved: a name the sensor must reach is a name that failed.
            if command == 1:
                outcome, tunnel = self.policy.route(port)
                if tunnel is not None and host and resolvable(host):
                    return self._socks5_reply(0, outcome, target, tunnel=tunnel)
            outcome = "other" if host else "error"
            error = None if host else "SOCKS5 empty domain name"
            return self._socks5_reply(
                d5.unresolved, outcome, target, d5.unresolved_bound, error=error
            )
        if command in (2, 3):
            return self._socks5_reply(0, "other", target, tunnel=TUNNEL_HOLD)
        if address.is_unspecified or port == 0:
            error = "SOCKS5 destination is unspecified address or port 0"
            bound = d5.unusable_destination_bound
            return self._socks5_reply(d5.unusable_destination, "error", target, bound, error=error)
        outcome, tunnel = self.policy.route(port)
        if tunnel is None:
            if address.version == 6 and self._bound.version == 4:
                # An IPv4-only server cannot reach an IPv6 address at all.
                bound = d5.unusable_destination_bound
                return self._socks5_reply(d5.unusable_destination, outcome, target, bound)
            return self._socks5_reply(d5.refused, outcome, target, d5.refused_bound)
        return self._socks5_reply(0, outcome, target, tunnel=tunnel)

    def _socks5_reply(
        self,
        code: int,
        outcome: str,
        target: _Target,
        bound: str = "bound",
        *,
        tunnel: str | None = None,
        error: str | None = None,
    ) -> bool:
        # RFC 1928 §6: VER REP RSV ATYP BND.ADDR BND.PORT.
        self._out += bytes([5, code, 0]) + (
            self._bound5(target) if bound == "bound" else target.raw
        )
        reply = f"SOCKS5 0x{code:02X} {_S5_TEXT.get(code, 'unassigned')}"
        return self._finish(outcome, reply, error, target, tunnel)

    def _finish(
        self,
        outcome: str,
        reply: str = "",
        error: str | None = None,
        target: _Target = _NO_TARGET,
        tunnel: str | None = None,
    ) -> bool:
        """Emit the request and stop; ``leftover`` is what follows the request.

        A request that cannot be delimited consumes nothing, so its bytes are the leftover:
        that keeps the event the same however the stream was split.
        """
        leftover = bytes(self._buf[target.consumed :])
        self._buf.clear()
        protocol = self.protocol or "unknown"
        version = {"socks4": "4", "socks4a": "4", "socks5": "5"}.get(protocol, "")
        self._events.append(
            ProxyRequest(
                protocol=protocol,
                version=version,
                method=target.method,
                target_host=target.host,
                target_port=target.port,
                auth=self._auth,
                outcome=outcome,
                reply=reply,
                error=error,
                tunnel=tunnel,
                leftover=leftover,
                module=self.module,
            )
        )
        if tunnel == TUNNEL_HOLD:
            self._state = _State.HELD
            self._held = len(leftover)
            self.closing = self._held > MAX_HELD_BYTES
        else:
            self._state = _State.DONE
            self.closing = tunnel is None
        return False

    _STEPS: ClassVar[dict[_State, Callable[[SocksServer], bool]]] = {
        _State.VERSION: _version,
        _State.S4_REQUEST: _socks4_request,
        _State.S5_GREETING: _socks5_greeting,
        _State.S5_AUTH: _socks5_auth,
        _State.S5_REQUEST: _socks5_request,
    }


_S5_NO_METHOD = "SOCKS5 method 0xFF no acceptable methods"


def _socks4_text(code: int) -> str:
    return f"SOCKS4 0x{code:02X} {'granted' if code == 0x5A else 'rejected'}"
