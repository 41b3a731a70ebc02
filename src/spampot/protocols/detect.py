"""Which proxy protocol a client speaks, from its first byte; and the machine for proxy ports.

Every proxy port serves HTTP, SOCKS4 and SOCKS5 (DESIGN.md, "Default ports"): the client
speaks first in all three, and the first byte tells them apart. SOCKS4 requests start with
VN=4, SOCKS5 greetings with VER=5 (RFC 1928 §3), HTTP with a method token (RFC 9112 §3), in
practice always letters.
"""

from __future__ import annotations

from spampot.protocols.http_proxy import MAX_BODY_BYTES, MAX_HEADER_BYTES, HttpProxyServer
from spampot.protocols.proxy import ProxyPolicy, ProxyRequest
from spampot.protocols.socks import MAX_HOSTNAME, MAX_USERID, SocksServer
from spampot.protocols.socks import max_buffered as socks_max_buffered


def detect(first: bytes) -> str | None:
    """ "socks4", "socks5", "http", "unknown", or None while nothing has arrived."""
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


class ProxyServer:
    """The machine an adapter runs on every proxy port: detects, then delegates.

    Same interface as the machines it wraps. For a first byte that is none of the three
    protocols it answers nothing (no reply format would be understood) and emits a
    ``ProxyRequest`` with ``protocol="unknown"``, ``outcome="error"``, then wants to close.
    """

    def __init__(
        self,
        policy: ProxyPolicy | None = None,
        *,
        http_date: str = "",
        max_header_bytes: int = MAX_HEADER_BYTES,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_userid: int = MAX_USERID,
        max_hostname: int = MAX_HOSTNAME,
        port_seed: bytes = b"",
    ) -> None:
        self.policy = policy if policy is not None else ProxyPolicy()
        self.http_date = http_date
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes
        self.max_userid = max_userid
        self.max_hostname = max_hostname
        self.port_seed = port_seed
        self.machine: SocksServer | HttpProxyServer | None = None
        self._unknown = False

    @property
    def protocol(self) -> str | None:
        """None until the first byte; then "http", "socks4", "socks4a", "socks5" or "unknown"."""
        if self.machine is not None:
            return self.machine.protocol
        return "unknown" if self._unknown else None

    @property
    def done(self) -> bool:
        return self._unknown or (self.machine is not None and self.machine.done)

    @property
    def closing(self) -> bool:
        return self._unknown or (self.machine is not None and self.machine.closing)

    @property
    def buffered(self) -> int:
        return self.machine.buffered if self.machine is not None else 0

    @property
    def max_buffered(self) -> int:
        return max(self.max_header_bytes, socks_max_buffered(self.max_userid, self.max_hostname))

    def data_to_send(self) -> bytes:
        return self.machine.data_to_send() if self.machine is not None else b""

    def receive_data(self, data: bytes) -> list[ProxyRequest]:
        if self.machine is None:
            if self._unknown:
                return []
            kind = detect(data)
            if kind is None:
                return []
            if kind == "unknown":
                self._unknown = True
                # Only the first byte is named so the event does not depend on how the
                # stream was split; all the bytes are kept in leftover.
                error = f"unknown protocol: first byte 0x{data[0]:02x}"
                return [
                    ProxyRequest(
                        "unknown", "", "", None, None, None, "error", "", error=error, leftover=data
                    )
                ]
            if kind == "http":
                self.machine = HttpProxyServer(
                    self.policy,
                    max_header_bytes=self.max_header_bytes,
                    max_body_bytes=self.max_body_bytes,
                    http_date=self.http_date,
                    port_seed=self.port_seed,
                )
            else:
                self.machine = SocksServer(
                    self.policy,
                    max_userid=self.max_userid,
                    max_hostname=self.max_hostname,
                    port_seed=self.port_seed,
                )
        return self.machine.receive_data(data)

    def connection_lost(self) -> list[ProxyRequest]:
        return self.machine.connection_lost() if self.machine is not None else []
