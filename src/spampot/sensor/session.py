"""The per-connection adapter: read, feed the protocol machine, write, act on its events.

Kept thin on purpose (DESIGN.md): every protocol decision lives in spampot.protocols. A
connection on a proxy port starts with a :class:`ProxyServer`; when it grants a tunnel to port
25 the same connection continues with an :class:`SmtpServer` named after the requested host,
fed the bytes the client pipelined after its request (the hand-over).
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import os
import random
import ssl
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from spampot.config import IPNetwork, LimitsSection
from spampot.dialects import load as load_dialect
from spampot.personas import tunnel_persona
from spampot.protocols.common import ClientError, printable
from spampot.protocols.detect import ProxyServer
from spampot.protocols.http_proxy import MAX_BODY_BYTES, MAX_HEADER_BYTES
from spampot.protocols.proxy import (
    TUNNEL_HOLD,
    TUNNEL_SMTP,
    TUNNEL_WEB,
    ProxyPolicy,
    ProxyRequest,
    WebRequest,
)
from spampot.protocols.proxy_protocol import ProxyHeaderError, ProxyHeaderParser
from spampot.protocols.smtp import (
    AuthAttempt,
    MessageReceived,
    Quit,
    Rejected,
    SmtpLimits,
    SmtpServer,
    StartTls,
)
from spampot.protocols.smtp_dialect import SmtpDialect, queue_id, render
from spampot.protocols.socks import MAX_USERID, SocksDialect
from spampot.protocols.socks import load_dialect as load_socks_dialect
from spampot.protocols.squid import SquidPersona
from spampot.protocols.web import WebServer
from spampot.sensor.delays import DelayQueue
from spampot.sensor.events import EventBuffer
from spampot.sensor.metrics import SensorMetrics
from spampot.sensor.original_dst import original_destination
from spampot.sensor.paths import ip_component
from spampot.sensor.spool import SpoolItem
from spampot.sensor.tls import TlsError, TlsLayer
from spampot.sensor.writer import Writer

Machine = SmtpServer | ProxyServer | WebServer

#: Listener roles that speak SMTP (config.listeners()); "smtps" starts with TLS (RFC 8314).
SMTP_ROLES = frozenset({"smtp", "submission", "smtps"})


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """What every session of one worker shares; built once from the Config."""

    sensor: str
    hostname: str
    dialect: SmtpDialect  # the persona of direct SMTP ports
    limits: SmtpLimits
    require_helo: bool
    tls: ssl.SSLContext | None = None  # STARTTLS and SMTPS; None: not offered
    auth_offer: str = "tls"  # "tls", "always", "never" (smtp.auth)
    tunnel_dialects: tuple[str, ...] = ()  # smtp.tunnel_dialects; empty: every common MTA
    proxy: ProxyPolicy = field(default_factory=ProxyPolicy)
    socks_dialect: SocksDialect = field(default_factory=load_socks_dialect)
    squid: SquidPersona | None = None  # None: the machine's default (a Squid named localhost)
    trusted_proxies: tuple[IPNetwork, ...] = ()  # PROXY protocol accepted from these
    max_header_bytes: int = MAX_HEADER_BYTES
    max_body_bytes: int = MAX_BODY_BYTES
    max_socks_userid: int = MAX_USERID
    original_dst: bool = False  # ask the kernel for the port before a NAT redirect


class SensorContext:
    """Per-worker state the sessions share: the writer, the event buffer, the live sessions.

    ``settings`` and ``limits`` are replaced whole on a configuration reload: sessions read
    them when they start (settings) or on every sweep (limits), never cache a part.
    """

    def __init__(
        self,
        settings: SessionSettings,
        buffer: EventBuffer,
        writer: Writer,
        limits: LimitsSection | None = None,
        metrics: SensorMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.limits = limits or LimitsSection()
        self.buffer = buffer
        self.writer = writer
        self.metrics = SensorMetrics() if metrics is None else metrics
        self.sessions: set[SensorSession] = set()
        self.delays = DelayQueue()  # replies held for a persona's error delay
        self.per_ip: dict[str, int] = {}  # open sessions per client address
        self.refused: Counter[str] = Counter()  # connections refused since the last report
        self.refused_from: Counter[str] = Counter()
        self.storage_low = False
        self.stored_bytes = 0  # message bytes handed to the writer (for the quota estimate)
        # Ids need uniqueness, not secrecy: a generator seeded once per worker costs no
        # system call per connection (os.urandom would cost two per session).
        self._ids = random.Random(os.urandom(16))

    def session_id(self) -> str:
        """12 hex digits, as Cowrie's session ids."""
        return f"{self._ids.getrandbits(48):012x}"

    def queue_id(self, style: str) -> str:
        """A queue id in the persona's style (Postfix, Exim, Sendmail, ...)."""
        return queue_id(style, self._ids.getrandbits(64), time.time())

    def admit(self, address: str) -> bool:
        """Count a session from ``address``, unless that address is at its limit."""
        count = self.per_ip.get(address, 0)
        if count >= self.limits.max_connections_per_ip:
            return False
        self.per_ip[address] = count + 1
        return True

    def release(self, address: str) -> None:
        count = self.per_ip.get(address, 0) - 1
        if count > 0:
            self.per_ip[address] = count
        else:
            self.per_ip.pop(address, None)

    def refuse(self, reason: str, address: str) -> None:
        self.refused[reason] += 1
        if len(self.refused_from) < 10_000 or address in self.refused_from:
            self.refused_from[address] += 1

    def set_storage_low(self, low: bool) -> None:
        """New SMTP transactions get 452 while the disk is short (live sessions included)."""
        self.storage_low = low
        for session in self.sessions:
            if isinstance(session.machine, SmtpServer):
                session.machine.storage_low = low

    def sweep(self, now: float) -> int:
        """Close sessions past their idle or total time; returns how many were closed."""
        limits = self.limits
        expired = [s for s in self.sessions if s.expired(now, limits)]
        for session in expired:
            session.time_out(now, limits)
        return len(expired)


class SensorSession(asyncio.Protocol):
    """One TCP connection; ``role`` is the listening port's: one of SMTP_ROLES, or a proxy
    port's role ("http", "socks" or "proxy", see :mod:`spampot.protocols.detect`)."""

    __slots__ = (
        "base",
        "bytes_in",
        "bytes_out",
        "counted",
        "ctx",
        "delayed",
        "header",
        "last",
        "machine",
        "paused",
        "port",
        "reason",
        "role",
        "started",
        "target_host",
        "target_port",
        "tls",
        "transport",
        "via",
    )

    def __init__(self, ctx: SensorContext, port: int, role: str = "smtp") -> None:
        self.ctx = ctx
        self.port = port
        self.role = role
        self.transport: asyncio.Transport | None = None
        self.machine: Machine | None = None
        self.header: ProxyHeaderParser | None = None
        self.paused = False
        self.counted = False  # holds one of its address's per-IP slots
        self.last = 0.0  # when the client last sent anything (monotonic)
        self.base: dict[str, Any] = {}
        self.bytes_in = 0
        self.bytes_out = 0
        self.reason = "client closed"
        self.started = 0.0
        self.via = "smtp"
        self.target_host: str | None = None
        self.target_port: int | None = None
        self.tls: TlsLayer | None = None  # after STARTTLS (or from the start on SMTPS)
        self.delayed = False  # waits in ctx.delays for a persona's error delay

    # --- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self.started = self.last = time.monotonic()
        ctx = self.ctx
        peer = transport.get_extra_info("peername") or ("", 0)
        local = transport.get_extra_info("sockname") or ("", 0)
        if ctx.settings.original_dst:
            before_nat = original_destination(transport.get_extra_info("socket"))
            if before_nat is not None:
                local = before_nat
                self.port = before_nat[1]
        self.base = {
            "session": ctx.session_id(),
            "src_ip": _plain_ip(peer[0]),
            "src_port": peer[1],
            "dst_ip": _plain_ip(local[0]),
            "dst_port": self.port,
        }
        if len(ctx.sessions) >= ctx.limits.max_connections:
            self._refuse("max_connections")
            return
        ctx.sessions.add(self)
        if ctx.settings.trusted_proxies and _trusted(self.base["src_ip"], ctx.settings):
            self.header = ProxyHeaderParser()  # the session starts once the header is read
            return
        self._open()

    def _refuse(self, reason: str) -> None:
        """Over a connection limit: a real MTA's 421 on SMTP ports, a bare close on proxies.

        Refusals are not logged one by one (a flood would write the disk full of them): the
        housekeeping reports them as one ``sensor.limit`` event per interval.
        """
        self.ctx.refuse(reason, self.base["src_ip"])
        self.reason = reason
        transport = self.transport
        assert transport is not None
        if self.role in ("smtp", "submission"):
            s = self.ctx.settings
            reply = s.dialect.replies["too_many_connections"]
            transport.write(render(reply, host=s.hostname, client_ip=self.base["src_ip"]))
        transport.close()

    def _open(self) -> None:
        ctx = self.ctx
        base = self.base
        if not ctx.admit(base["src_ip"]):
            ctx.sessions.discard(self)
            self._refuse("max_connections_per_ip")
            return
        self.counted = True
        ctx.metrics.sessions += 1
        ctx.buffer.emit(
            "session.open",
            base,
            f"New connection: {base['src_ip']}:{base['src_port']} ({base['dst_ip']}:{self.port})",
        )
        s = ctx.settings
        if self.role not in SMTP_ROLES:
            self.machine = ProxyServer(
                s.proxy,
                self.role,
                socks_dialect=s.socks_dialect,
                squid=s.squid,
                local_address=base["dst_ip"],
                client_address=base["src_ip"],
                http_date=ctx.buffer.clock.http_date(),
                max_header_bytes=s.max_header_bytes,
                max_body_bytes=s.max_body_bytes,
                max_userid=s.max_socks_userid,
                port_seed=f"{self.base['session']}".encode(),
            )
        elif self.role == "smtps":
            # RFC 8314 §3.3: TLS from the first byte; the banner follows the handshake.
            assert s.tls is not None
            self.tls = TlsLayer(s.tls)
            return
        else:
            self.machine = self._smtp_machine(s.hostname, s.dialect, self.base["src_ip"])
        self._flush()

    def _smtp_machine(self, name: str, dialect: SmtpDialect, client_ip: str) -> SmtpServer:
        s = self.ctx.settings
        return SmtpServer(
            name,
            dialect,
            s.limits,
            require_helo=s.require_helo,
            date=self.ctx.buffer.clock.mail_date(),
            storage_low=self.ctx.storage_low,
            client_ip=client_ip,
            tls_available=s.tls is not None,
            auth_offer=s.auth_offer,
            tls=self.tls.info() if self.tls is not None else None,
            # Only personas that print one (Google's gsmtp id) cost a random draw.
            session_tag=self.ctx.queue_id("google") if "{id}" in dialect.replies["banner"] else "",
        )

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        self.last = time.monotonic()
        if self.header is not None:
            data = self._proxy_header(data)
            if not data:
                return
        if self.tls is not None:
            data = self._tls_receive(data)
            if not data:
                return
        machine = self.machine
        if machine is None:
            return
        self._handle(machine.receive_data(data))
        self._pace(machine)

    def _pace(self, machine: Machine) -> None:
        """Stop reading while the machine waits (disk, error delay); arm the delay's timer."""
        if not isinstance(machine, SmtpServer) or self.transport is None:
            return
        if machine.delay and not self.delayed:
            # The persona's error sleep, without sleeping: the reply is held by the machine,
            # nothing is read, and the worker's delay queue releases it.
            self.delayed = True
            self.ctx.delays.add(machine.delay, self)
        if machine.waiting and (machine.buffered or machine.delay) and not self.paused:
            # The client pipelined past a message still waiting for the disk, or made the
            # persona slow down: read no more, so the backlog stays in the kernel. (Most
            # clients wait for the 250; they cost no pause/resume system calls.)
            self.paused = True
            self.transport.pause_reading()
        elif self.paused and not machine.waiting:
            self.paused = False
            self.transport.resume_reading()

    def delay_over(self) -> None:
        self.delayed = False
        machine = self.machine
        if not isinstance(machine, SmtpServer) or self.transport is None:
            return
        self._handle(machine.resume())
        self._pace(machine)

    # --- TLS (STARTTLS, SMTPS) --------------------------------------------------------------

    def _tls_receive(self, raw: bytes) -> bytes:
        """Raw bytes through the TLS layer; returns the plaintext for the machine."""
        layer = self.tls
        assert layer is not None
        was_established = layer.established
        try:
            plain = layer.receive(raw)
        except TlsError as exc:
            self._tls_write(b"")  # a TLS alert, if OpenSSL made one
            self.ctx.buffer.emit(
                "smtp.error",
                self.base,
                f"TLS failed: {exc}",
                error=f"TLS: {exc}",
                reply="",
                input=printable(raw[:64]),
            )
            self.reason = "tls error"
            if self.transport is not None:
                self.transport.close()
            return b""
        if not was_established:
            self._tls_write(b"")  # the handshake's own messages
            if layer.established:
                self._tls_up(layer)
        return plain

    def _tls_up(self, layer: TlsLayer) -> None:
        info = layer.info()
        # Every later event of the session says it came over TLS (the data stay as before).
        self.base["tls"] = {"version": info.version, "cipher": info.cipher, "sni": info.sni}
        self.ctx.buffer.emit(
            "smtp.tls",
            self.base,
            f"TLS established: {info.version} {info.cipher}",
            role=self.role,
        )
        machine = self.machine
        if isinstance(machine, SmtpServer) and machine.starting_tls:
            machine.tls_started(info)
        elif machine is None:  # SMTPS: the session starts now, banner first
            s = self.ctx.settings
            self.machine = self._smtp_machine(s.hostname, s.dialect, self.base["src_ip"])
            self._flush()

    def _tls_write(self, plaintext: bytes) -> None:
        layer = self.tls
        transport = self.transport
        if layer is None or transport is None:
            return
        if plaintext:
            layer.send(plaintext)
        out = layer.outgoing()
        if out:
            self.bytes_out += len(out)
            transport.write(out)

    def _proxy_header(self, data: bytes) -> bytes:
        """Read the trusted front end's PROXY header; returns the bytes after it."""
        header = self.header
        assert header is not None
        try:
            if not header.receive_data(data):
                return b""
        except ProxyHeaderError as exc:
            self.ctx.buffer.emit(
                "session.error",
                self.base,
                f"Bad PROXY header from a trusted front end: {exc}",
                error=str(exc),
            )
            self.header = None
            self.reason = "bad proxy header"
            if self.transport is not None:
                self.transport.close()
            return b""
        self.header = None
        real = header.result
        assert real is not None
        if real.src_ip is not None:
            # The front end's own address is kept: it is what the socket saw.
            self.base["proxied_by"] = self.base["src_ip"]
            self.base["src_ip"] = _plain_ip(real.src_ip)
            self.base["src_port"] = real.src_port
            self.base["dst_ip"] = real.dst_ip
        self._open()
        return header.rest

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and self.reason == "client closed":
            self.reason = "reset"
        ctx = self.ctx
        ctx.sessions.discard(self)
        if self.counted:
            self.counted = False
            ctx.release(self.base["src_ip"])
        machine = self.machine
        if machine is None and self.tls is None:
            # A trusted front end's connection that never carried a client (a health check,
            # or a bad header, logged as session.error): no session to close.
            self.transport = None
            return
        if isinstance(machine, ProxyServer | WebServer):
            # A handshake cut short is logged as an "error" request (truncated).
            for event in machine.connection_lost():
                self._event(event)
        elif machine is not None:
            machine.connection_lost()
        duration = round(time.monotonic() - self.started, 6)
        ctx.metrics.bytes_in += self.bytes_in
        ctx.metrics.bytes_out += self.bytes_out
        ctx.buffer.emit(
            "session.close",
            self.base,
            f"Connection lost after {duration:.3f} s",
            duration_s=duration,
            bytes_in=self.bytes_in,
            bytes_out=self.bytes_out,
            reason=self.reason,
        )
        ctx.writer.flush_soon()
        self.transport = None

    # --- acting on protocol events ----------------------------------------------------------

    def _handle(self, events: list[Any]) -> None:
        for event in events:
            self._event(event)
        self._flush()

    def _event(self, event: object) -> None:
        buffer = self.ctx.buffer
        if isinstance(event, MessageReceived):
            self._store(event)
        elif isinstance(event, ProxyRequest):
            self._proxy_request(event)
        elif isinstance(event, AuthAttempt):
            buffer.emit(
                "smtp.auth",
                self.base,
                f"AUTH {event.mechanism} username={event.username!r}: {event.outcome}",
                mechanism=event.mechanism,
                username=event.username,
                password=event.password,
                result=event.outcome,
            )
        elif isinstance(event, Rejected):
            self.ctx.metrics.reject(event.why)
            buffer.emit(
                "smtp.reject",
                self.base,
                f"Rejected at {event.stage}: {event.code} ({event.why})",
                stage=event.stage,
                code=event.code,
                why=event.why,
            )
        elif isinstance(event, ClientError):
            buffer.emit(
                "smtp.error",
                self.base,
                f"Client error: {event.detail}",
                error=event.detail,
                reply=event.reply.decode("ascii", "backslashreplace").strip(),
                input=printable(event.raw),
            )
        elif isinstance(event, WebRequest):
            buffer.emit(
                "web.request",
                self.base,
                f"{event.method or '?'} {event.path[:200]} in a tunnel to {self.target_host}",
                method=event.method,
                host=event.host,
                path=event.path,
                version=event.version,
                headers=[list(h) for h in event.headers],
                reply=event.reply,
                error=event.error,
            )
        elif isinstance(event, Quit):
            self.reason = "quit"
        elif isinstance(event, StartTls) and event.discarded:
            # Plaintext pipelined after STARTTLS is never run (CVE-2011-0411): logged only.
            buffer.emit(
                "smtp.error",
                self.base,
                "Plaintext after STARTTLS discarded",
                error="plaintext after STARTTLS",
                reply="",
                input=printable(event.discarded),
            )

    def _proxy_request(self, event: ProxyRequest) -> None:
        auth = event.auth
        self.ctx.metrics.proxy_request(event.protocol, event.outcome)
        self.ctx.buffer.emit(
            "proxy.request",
            self.base,
            f"{event.protocol} {event.method or '?'} {event.target_host}:{event.target_port}"
            f" -> {event.outcome}",
            protocol=event.protocol,
            version=event.version,
            method=event.method,
            target_host=event.target_host,
            target_port=event.target_port,
            auth=None
            if auth is None
            else {"method": auth.method, "username": auth.username, "password": auth.password},
            outcome=event.outcome,
            reply=event.reply,
            error=event.error,
            headers=[list(h) for h in event.headers] or None,
            module=event.module,
            # What an invalid request sent (escaped, bounded): "log what was tried".
            input=printable(event.leftover)
            if event.outcome == "error" and event.leftover
            else None,
        )
        if event.tunnel is None or event.tunnel == TUNNEL_HOLD:
            return  # closed, or held open by the proxy machine (SOCKS BIND, UDP ASSOCIATE)
        # The hand-over: the proxy's success reply is flushed first, then the new machine's
        # greeting, then the machine is fed what the client pipelined after its request.
        self._flush()
        self.via = event.protocol
        self.target_host = event.target_host
        self.target_port = event.target_port
        settings = self.ctx.settings
        clock = self.ctx.buffer.clock
        if event.tunnel == TUNNEL_SMTP:
            # The target's persona depends on the host asked for and the sensor only; the
            # server sees the proxy (this sensor's address) as its client.
            name, dialect_name = tunnel_persona(
                settings.sensor, event.target_host or "", settings.tunnel_dialects
            )
            dialect = load_dialect(dialect_name, SmtpDialect)
            self.machine = self._smtp_machine(name, dialect, self.base["dst_ip"] or "")
        elif event.tunnel == TUNNEL_WEB:
            self.machine = WebServer(
                settings.proxy,
                remote_addr=self.base["dst_ip"],
                http_date=clock.http_date(),
                port_seed=self.base["session"].encode(),
            )
        else:  # pragma: no cover - ProxyRequest.tunnel has only these values
            return
        self._flush()
        if event.leftover:
            self._handle(self.machine.receive_data(event.leftover))

    def _store(self, msg: MessageReceived) -> None:
        ctx = self.ctx
        machine = self.machine
        assert isinstance(machine, SmtpServer)
        queue_id = ctx.queue_id(machine.dialect.queue_id)
        day, hhmmss = ctx.buffer.clock.spool_stamp()
        relpath = (
            f"{day}/{self.port}/{ip_component(self.base['src_ip'])}/{hhmmss}-{queue_id}.eml.gz"
        )
        line = ctx.buffer.encode(
            "smtp.message",
            self.base,
            f"Message {queue_id} from <{msg.mail_from}> to {len(msg.rcpt_to)} recipient(s)",
            via=self.via,
            target_host=self.target_host,
            target_port=self.target_port,
            helo=msg.helo,
            mail_from=msg.mail_from,
            mail_params=msg.mail_params,
            rcpt_to=list(msg.rcpt_to),
            size=len(msg.data),
            sha256=hashlib.sha256(msg.data).hexdigest(),
            queue_id=queue_id,
            file=relpath,
            bdat=msg.bdat,
        )
        ctx.stored_bytes += len(msg.data)
        ctx.writer.store(SpoolItem(relpath, msg.data), line, lambda ok: self._stored(ok, queue_id))

    def _stored(self, ok: bool, queue_id: str) -> None:
        if ok:
            self.ctx.metrics.message_stored()
        machine = self.machine
        if not isinstance(machine, SmtpServer) or self.transport is None:
            return  # the client left; the message is stored (or not) all the same
        self._handle(machine.message_stored(queue_id) if ok else machine.message_deferred())
        self._pace(machine)

    def _flush(self) -> None:
        machine = self.machine
        transport = self.transport
        if machine is None or transport is None:
            return
        out = machine.data_to_send()
        if out:
            if self.tls is not None and self.tls.established:
                self._tls_write(out)
            else:
                self.bytes_out += len(out)
                transport.write(out)
        if machine.closing:
            transport.close()
        elif isinstance(machine, SmtpServer):
            if machine.delay:
                self._pace(machine)  # a held reply (error delay, greet pause): arm its timer
            elif machine.starting_tls and self.tls is None:
                # The 220 went out in plaintext; from the next byte on the client speaks TLS.
                settings_tls = self.ctx.settings.tls
                assert settings_tls is not None  # STARTTLS is only offered with a context
                self.tls = TlsLayer(settings_tls)

    # --- time limits -----------------------------------------------------------------------

    def _idle_limit(self, limits: LimitsSection) -> float | None:
        machine = self.machine
        if isinstance(machine, ProxyServer) and machine.done and not machine.closing:
            # A held SOCKS BIND or UDP ASSOCIATE: the client waits for a peer that never
            # comes, silent, as a Dante client does; treated as an idle SMTP client.
            return limits.command_timeout
        if not isinstance(machine, SmtpServer):
            return limits.handshake_timeout  # PROXY header, proxy request, web, SMTPS hello
        if machine.waiting:
            return None  # the client waits for our disk or delay, not the other way round
        return limits.data_timeout if machine.in_data else limits.command_timeout

    def expired(self, now: float, limits: LimitsSection) -> bool:
        if self.transport is None:
            return False
        if now - self.started >= limits.session_timeout:
            return True
        idle = self._idle_limit(limits)
        return idle is not None and now - self.last >= idle

    def time_out(self, now: float, limits: LimitsSection) -> None:
        """The persona's words on an SMTP timeout; proxies just close, as Squid does."""
        whole = now - self.started >= limits.session_timeout
        self.close("session timeout" if whole else "idle timeout", "timeout")

    def close(self, reason: str, say: str = "") -> None:
        """Close from the sensor's side (shutdown, timeout) with the persona's last reply
        ``say`` (a dialect reply key, "timeout" or "shutdown"; a persona may have none)."""
        transport = self.transport
        if transport is None:
            return
        self.reason = reason
        machine = self.machine
        if say and isinstance(machine, SmtpServer):
            template = machine.dialect.replies[say]
            if template:
                reply = render(template, host=machine.hostname, client_ip=machine.client_ip)
                if self.tls is not None and self.tls.established:
                    self._tls_write(reply)
                else:
                    self.bytes_out += len(reply)
                    transport.write(reply)
        transport.close()


def _trusted(address: str, settings: SessionSettings) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in settings.trusted_proxies)


def _plain_ip(address: str) -> str:
    """IPv4-mapped IPv6 peers are IPv4 clients."""
    return address[7:] if address.startswith("::ffff:") and "." in address else address
