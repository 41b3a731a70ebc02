"""The machine behind every proxy port: the port's role says which server answers.

A port listed only under ``ports.http`` is a Squid port: whatever a client sends, the HTTP
machine answers it as Squid would (a SOCKS greeting included). A port listed only under
``ports.socks`` is a Dante port: an HTTP request gets what Dante gives it (the connection
closed without a word). A port in both lists (Table 1's 57123), or every proxy port under
``ports.cross_protocol``, serves both: the client's first byte picks the machine
(:func:`~spampot.protocols.proxy.detect`). Whatever happens, the request is logged with the
protocol the client spoke (``protocol``) and the emulator that answered (``module``).
"""

from __future__ import annotations

from spampot.protocols.http_proxy import MAX_BODY_BYTES, MAX_HEADER_BYTES, HttpProxyServer
from spampot.protocols.proxy import ProxyPolicy, ProxyRequest, detect
from spampot.protocols.socks import MAX_HOSTNAME, MAX_USERID, SocksDialect, SocksServer
from spampot.protocols.socks import max_buffered as socks_max_buffered
from spampot.protocols.squid import SquidPersona

#: Port roles (``Config.listeners``): which machine a proxy port runs.
ROLE_HTTP = "http"
ROLE_SOCKS = "socks"
ROLE_BOTH = "proxy"
ROLES = (ROLE_HTTP, ROLE_SOCKS, ROLE_BOTH)


class ProxyServer:
    """The machine an adapter runs on a proxy port; the same interface as those it wraps.

    Under ``role="proxy"``, a first byte that is none of the three protocols gets no answer
    (no reply format would be understood): a ``ProxyRequest`` with ``protocol="unknown"`` and
    ``outcome="error"`` is emitted, and the machine wants to close.
    """

    def __init__(
        self,
        policy: ProxyPolicy | None = None,
        role: str = ROLE_BOTH,
        *,
        socks_dialect: SocksDialect | None = None,
        squid: SquidPersona | None = None,
        local_address: str = "",
        client_address: str = "",
        http_date: str = "",
        max_header_bytes: int = MAX_HEADER_BYTES,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_userid: int = MAX_USERID,
        max_hostname: int = MAX_HOSTNAME,
        port_seed: bytes = b"",
    ) -> None:
        if role not in ROLES:
            raise ValueError(f"unknown proxy port role {role!r}")
        self.policy = policy if policy is not None else ProxyPolicy()
        self.role = role
        self.socks_dialect = socks_dialect
        self.squid = squid
        self.local_address = local_address
        self.client_address = client_address
        self.http_date = http_date
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes
        self.max_userid = max_userid
        self.max_hostname = max_hostname
        self.port_seed = port_seed
        self.machine: SocksServer | HttpProxyServer | None = None
        self._unknown = False
        if role == ROLE_HTTP:
            self.machine = self._http()
        elif role == ROLE_SOCKS:
            self.machine = self._socks()

    def _http(self) -> HttpProxyServer:
        return HttpProxyServer(
            self.policy,
            self.squid,
            local_address=self.local_address,
            client_address=self.client_address,
            max_header_bytes=self.max_header_bytes,
            max_body_bytes=self.max_body_bytes,
            http_date=self.http_date,
            port_seed=self.port_seed,
        )

    def _socks(self) -> SocksServer:
        return SocksServer(
            self.policy,
            self.socks_dialect,
            local_address=self.local_address,
            max_userid=self.max_userid,
            max_hostname=self.max_hostname,
            port_seed=self.port_seed,
        )

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
                        "unknown",
                        "",
                        "",
                        None,
                        None,
                        None,
                        "error",
                        "",
                        error=error,
                        leftover=data,
                        module="unknown",
                    )
                ]
            self.machine = self._http() if kind == "http" else self._socks()
        return self.machine.receive_data(data)

    def connection_lost(self) -> list[ProxyRequest]:
        return self.machine.connection_lost() if self.machine is not None else []
