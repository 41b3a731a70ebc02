"""SOCKS4, SOCKS4a and SOCKS5 proxy, server side, sans-I/O.

The paper's SOCKS emulator (§3.2): no authentication demanded, any client accepted; CONNECT to
the SMTP port is granted and handed to the SMTP emulator, every other port refused, anything
else logged as an error. One request per connection.

References: "SOCKS: A protocol for TCP proxy across firewalls" (Ying-Da Lee, the SOCKS4
document, "SOCKS4" below), "SOCKS 4A: A Simple Extension to SOCKS 4 Protocol" ("SOCKS4a"),
RFC 1928 (SOCKS5) and RFC 1929 (username/password authentication for SOCKS5).

Choices where the documents are silent or permissive:

* An empty SOCKS4 USERID is still logged as ``ProxyAuth("userid", "", None)``.
* SOCKS5 RSV (RFC 1928 §4 "RESERVED", X'00') is not checked: the RFC gives no rule for
  other values, and refusing would only lose spam from sloppy clients.
* A SOCKS5 client offering both "no authentication" and username/password is asked for the
  credentials (RFC 1928 §3 leaves the choice to the server), so they are recorded; any are
  accepted. ``ProxyPolicy.socks5_prefer_userpass = False`` answers "no authentication"
  instead, as a typical open proxy does.
* RFC 1929 credentials of any length (including empty) are accepted and recorded.
* A SOCKS5 domain name of length 0 is an error (general failure, RFC 1928 §6 X'01').
* Replies on failure echo nothing of the server's own address (all zero BND fields).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from enum import Enum, auto
from typing import ClassVar, NamedTuple

from spampot.protocols.common import decode_client
from spampot.protocols.proxy import ProxyAuth, ProxyPolicy, ProxyRequest, ephemeral_port

# The SOCKS4 document bounds neither USERID nor (SOCKS4a) the host name. 255 octets is the
# RFC 1929 username limit and the RFC 1928 domain-name limit (one length octet), and already
# exceeds any DNS name (253, RFC 1035 §2.3.4).
MAX_USERID = 255
MAX_HOSTNAME = 255

# SOCKS4 reply CD values ("90: request granted", "91: request rejected or failed").
_S4_GRANTED = 0x5A
_S4_REJECTED = 0x5B

# SOCKS5 REP values, RFC 1928 §6.
_S5_SUCCEEDED = 0x00
_S5_GENERAL_FAILURE = 0x01
_S5_NOT_ALLOWED = 0x02
_S5_COMMAND_NOT_SUPPORTED = 0x07
_S5_ATYP_NOT_SUPPORTED = 0x08
_S5_TEXT = {
    _S5_SUCCEEDED: "succeeded",
    _S5_GENERAL_FAILURE: "general failure",
    _S5_NOT_ALLOWED: "not allowed",
    _S5_COMMAND_NOT_SUPPORTED: "command not supported",
    _S5_ATYP_NOT_SUPPORTED: "address type not supported",
}
# RFC 1928 §6: BND.ADDR/BND.PORT of a failure reply carry nothing useful; send IPv4 zeros.
_S5_NO_BOUND = b"\x01" + bytes(6)

_S4_COMMANDS = {1: "CONNECT", 2: "BIND"}
_S5_COMMANDS = {1: "CONNECT", 2: "BIND", 3: "UDP_ASSOCIATE"}  # RFC 1928 §4 CMD


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


_NO_TARGET = _Target()


class _State(Enum):
    VERSION = auto()
    S4_REQUEST = auto()
    S5_GREETING = auto()
    S5_AUTH = auto()
    S5_REQUEST = auto()
    DONE = auto()


_STAGE_NAMES = {
    _State.VERSION: "version",
    _State.S4_REQUEST: "SOCKS4 request",
    _State.S5_GREETING: "SOCKS5 method negotiation",
    _State.S5_AUTH: "RFC 1929 authentication",
    _State.S5_REQUEST: "SOCKS5 request",
}


class SocksServer:
    """Server side of one SOCKS4/4a/5 connection.

    Feed it from the very first byte: it validates the version itself. It emits exactly one
    :class:`ProxyRequest`; a granted tunnel has ``tunnel`` set and ``closing`` false, and the
    adapter then stops feeding this machine and hands ``leftover`` and the connection over.
    """

    def __init__(
        self,
        policy: ProxyPolicy | None = None,
        *,
        max_userid: int = MAX_USERID,
        max_hostname: int = MAX_HOSTNAME,
        port_seed: bytes = b"",
    ) -> None:
        self.policy = policy if policy is not None else ProxyPolicy()
        self.max_userid = max_userid
        self.max_hostname = max_hostname
        self.port_seed = port_seed  # varies BND.PORT per connection (see ephemeral_port)
        #: "socks4", "socks4a", "socks5" once known; "unknown" for a bad version byte.
        self.protocol: str | None = None
        self.closing = False
        self._state = _State.VERSION
        self._buf = bytearray()
        self._out = bytearray()
        self._events: list[ProxyRequest] = []
        self._auth: ProxyAuth | None = None
        self._received = 0
        self._bound_addr = self.policy.socks5_bound

    @property
    def done(self) -> bool:
        return self._state is _State.DONE

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
        if self.done:
            return []
        self._received += len(data)
        self._buf += data
        while not self.done and self._STEPS[self._state](self):
            pass
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
        # Neither protocol: there is no reply format that either kind of client would read.
        self.protocol = "unknown"
        return self._finish("error", error=f"not SOCKS: version byte 0x{version:02x}")

    def _socks4_request(self) -> bool:
        buf = self._buf
        if len(buf) < 8:  # VN CD DSTPORT(2) DSTIP(4)
            return False
        command = buf[1]
        method = _S4_COMMANDS.get(command, "")
        port = int.from_bytes(buf[2:4], "big")
        dst_ip = bytes(buf[4:8])
        # SOCKS4: every reply is VN=0, CD, then DSTPORT and DSTIP ("ignored" unless BIND);
        # we echo the request's, as common servers do.
        echo = bytes(buf[2:8])
        target = _Target(method, str(ipaddress.IPv4Address(dst_ip)), port)
        nul = buf.find(0, 8, 8 + self.max_userid + 1)
        if nul < 0:
            if len(buf) > 8 + self.max_userid:
                error = f"SOCKS4 USERID longer than {self.max_userid} bytes"
                return self._socks4_reply(_S4_REJECTED, "error", echo, target, error)
            return False
        self._auth = ProxyAuth("userid", decode_client(bytes(buf[8:nul])), None)
        target = target._replace(consumed=nul + 1)
        # SOCKS4a: DSTIP 0.0.0.x with x non-zero means "the host name follows the USERID".
        if dst_ip[:3] == b"\0\0\0" and dst_ip[3]:
            self.protocol = "socks4a"
            start = target.consumed
            nul = buf.find(0, start, start + self.max_hostname + 1)
            if nul < 0:
                if len(buf) - start > self.max_hostname:
                    error = f"SOCKS4a host name longer than {self.max_hostname} bytes"
                    target = _Target(method, None, port)
                    return self._socks4_reply(_S4_REJECTED, "error", echo, target, error)
                return False
            target = target._replace(host=decode_client(bytes(buf[start:nul])), consumed=nul + 1)
            if not target.host:
                error = "SOCKS4a empty host name"
                return self._socks4_reply(_S4_REJECTED, "error", echo, target, error)
        if command == 1:
            outcome, tunnel = self.policy.route(port)
        elif command == 2:
            # BIND would need a listening socket on the sensor: refuse it, count it as "other".
            outcome, tunnel = "other", None
        else:
            error = f"unknown SOCKS4 command 0x{command:02x}"
            return self._socks4_reply(_S4_REJECTED, "error", echo, target, error)
        code = _S4_GRANTED if tunnel else _S4_REJECTED
        return self._socks4_reply(code, outcome, echo, target, tunnel=tunnel)

    def _socks4_reply(
        self,
        code: int,
        outcome: str,
        echo: bytes,
        target: _Target,
        error: str | None = None,
        tunnel: str | None = None,
    ) -> bool:
        text = "granted" if code == _S4_GRANTED else "rejected"
        out = bytes([0, code]) + echo
        return self._finish(outcome, out, f"SOCKS4 0x{code:02X} {text}", error, target, tunnel)

    def _socks5_greeting(self) -> bool:
        buf = self._buf
        if len(buf) < 2:  # VER NMETHODS
            return False
        count = buf[1]
        if count == 0:
            # RFC 1928 §3: NMETHODS is 1 to 255; with nothing offered nothing can be chosen.
            return self._no_method("SOCKS5 greeting offers no methods (NMETHODS=0)")
        if len(buf) < 2 + count:
            return False
        methods = bytes(buf[2 : 2 + count])
        del buf[: 2 + count]
        userpass = 0x02 in methods and (self.policy.socks5_prefer_userpass or 0x00 not in methods)
        if userpass:
            self._out += b"\x05\x02"
            self._state = _State.S5_AUTH
        elif 0x00 in methods:
            self._auth = ProxyAuth("none", None, None)
            self._out += b"\x05\x00"
            self._state = _State.S5_REQUEST
        else:
            offered = methods.hex(" ")
            return self._no_method(f"no acceptable SOCKS5 method offered ({offered})")
        return True

    def _no_method(self, error: str) -> bool:
        # RFC 1928 §3: X'FF' means no acceptable method and the client MUST close.
        reply = "SOCKS5 method 0xFF no acceptable methods"
        return self._finish("error", b"\x05\xff", reply, error)

    def _socks5_auth(self) -> bool:
        buf = self._buf
        if not buf:
            return False
        if buf[0] != 0x01:
            # RFC 1929 §2: VER is X'01'; any STATUS but X'00' and the server MUST close.
            error = f"RFC 1929 sub-negotiation version 0x{buf[0]:02x}, expected 0x01"
            return self._finish("error", b"\x01\x01", "RFC1929 0x01 failure", error)
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
        if buf[0] != 5:
            error = f"SOCKS5 request version 0x{buf[0]:02x}"
            return self._socks5_reply(_S5_GENERAL_FAILURE, "error", _NO_TARGET, error)
        if len(buf) < 4:  # VER CMD RSV ATYP
            return False
        command, atyp = buf[1], buf[3]
        method = _S5_COMMANDS.get(command, "")
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
            error = f"SOCKS5 address type 0x{atyp:02x}"
            return self._socks5_reply(_S5_ATYP_NOT_SUPPORTED, "error", _Target(method), error)
        end = addr_end + 2
        if len(buf) < end:
            return False
        raw_addr = bytes(buf[4:addr_end])
        if atyp == 0x01:
            host = str(ipaddress.IPv4Address(raw_addr))
        elif atyp == 0x04:
            host = ipaddress.IPv6Address(raw_addr).compressed
        else:
            host = decode_client(raw_addr[1:])
        target = _Target(method, host, int.from_bytes(buf[addr_end:end], "big"), end)
        if atyp == 0x03 and not host:
            error = "SOCKS5 empty domain name"
            return self._socks5_reply(_S5_GENERAL_FAILURE, "error", target, error)
        if command == 1:
            outcome, tunnel = self.policy.route(target.port or 0)
            if tunnel is None:
                return self._socks5_reply(_S5_NOT_ALLOWED, outcome, target)
            bound = self._bound_addr + ephemeral_port(self.port_seed + bytes(buf[:end])).to_bytes(
                2, "big"
            )
            return self._socks5_reply(_S5_SUCCEEDED, outcome, target, tunnel=tunnel, bound=bound)
        if command in (2, 3):
            # BIND and UDP ASSOCIATE would need sockets on the sensor: refuse, count as "other".
            return self._socks5_reply(_S5_COMMAND_NOT_SUPPORTED, "other", target)
        error = f"unknown SOCKS5 command 0x{command:02x}"
        return self._socks5_reply(_S5_COMMAND_NOT_SUPPORTED, "error", target, error)

    def _socks5_reply(
        self,
        code: int,
        outcome: str,
        target: _Target,
        error: str | None = None,
        *,
        tunnel: str | None = None,
        bound: bytes = _S5_NO_BOUND,
    ) -> bool:
        # RFC 1928 §6: VER REP RSV ATYP BND.ADDR BND.PORT; on failure the server closes.
        out = bytes([5, code, 0]) + bound
        reply = f"SOCKS5 0x{code:02X} {_S5_TEXT[code]}"
        return self._finish(outcome, out, reply, error, target, tunnel)

    def _finish(
        self,
        outcome: str,
        out: bytes = b"",
        reply: str = "",
        error: str | None = None,
        target: _Target = _NO_TARGET,
        tunnel: str | None = None,
    ) -> bool:
        """Answer, emit the request and stop; ``leftover`` is what follows the request.

        A request that cannot be delimited consumes nothing, so its bytes are the leftover:
        that keeps the event the same however the stream was split.
        """
        self._out += out
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
            )
        )
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
