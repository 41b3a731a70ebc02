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
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from spampot.config import IPNetwork, LimitsSection
from spampot.personas import choose_persona
from spampot.protocols.common import ClientError, printable
from spampot.protocols.detect import ProxyServer
from spampot.protocols.http_proxy import MAX_BODY_BYTES, MAX_HEADER_BYTES, WebServer
from spampot.protocols.proxy import (
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
    SmtpPersona,
    SmtpServer,
)
from spampot.protocols.socks import MAX_USERID
from spampot.sensor.events import EventBuffer
from spampot.sensor.metrics import SensorMetrics
from spampot.sensor.original_dst import original_destination
from spampot.sensor.paths import ip_component
from spampot.sensor.spool import SpoolItem
from spampot.sensor.writer import Writer

Machine = SmtpServer | ProxyServer | WebServer


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """What every session of one worker shares; built once from the Config."""

    sensor: str
    hostname: str
    persona: SmtpPersona
    limits: SmtpLimits
    require_helo: bool
    proxy: ProxyPolicy = field(default_factory=ProxyPolicy)
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

    def queue_id(self) -> str:
        """A Postfix-style short queue id: 10 upper-case hex digits."""
        return f"{self._ids.getrandbits(40):010X}"

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
    """One TCP connection; ``role`` is "smtp" or "proxy" (from the listening port)."""

    __slots__ = (
        "base",
        "bytes_in",
        "bytes_out",
        "counted",
        "ctx",
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
        if self.role == "smtp":
            host = self.ctx.settings.hostname
            transport.write(f"421 4.7.0 {host} Error: too many connections\r\n".encode())
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
        if self.role == "proxy":
            self.machine = ProxyServer(
                s.proxy,
                http_date=ctx.buffer.clock.http_date(),
                max_header_bytes=s.max_header_bytes,
                max_body_bytes=s.max_body_bytes,
                max_userid=s.max_socks_userid,
                port_seed=f"{self.base['session']}".encode(),
            )
        else:
            self.machine = SmtpServer(
                s.hostname,
                s.persona,
                s.limits,
                require_helo=s.require_helo,
                date=ctx.buffer.clock.mail_date(),
                storage_low=ctx.storage_low,
            )
        self._flush()

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        self.last = time.monotonic()
        if self.header is not None:
            data = self._proxy_header(data)
            if not data:
                return
        machine = self.machine
        if machine is None:
            return
        self._handle(machine.receive_data(data))
        if isinstance(machine, SmtpServer) and machine.waiting and machine.buffered:
            # The client pipelined past a message still waiting for the disk: read no more
            # until it is answered, so the backlog stays in the kernel, not in our memory.
            # (Most clients wait for the 250; they cost no pause/resume system calls.)
            self.paused = True
            if self.transport is not None:
                self.transport.pause_reading()

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
        if machine is None:
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
                f"AUTH {event.mechanism} username={event.username!r}",
                mechanism=event.mechanism,
                username=event.username,
                password=event.password,
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
        )
        if event.tunnel is None:
            return
        # The hand-over: the proxy's success reply is flushed first, then the new machine's
        # greeting, then the machine is fed what the client pipelined after its request.
        self._flush()
        self.via = event.protocol
        self.target_host = event.target_host
        self.target_port = event.target_port
        settings = self.ctx.settings
        clock = self.ctx.buffer.clock
        if event.tunnel == TUNNEL_SMTP:
            name, persona = choose_persona(
                settings.sensor, self.base["src_ip"], event.target_host or ""
            )
            self.machine = SmtpServer(
                name,
                persona,
                settings.limits,
                require_helo=settings.require_helo,
                date=clock.mail_date(),
                storage_low=self.ctx.storage_low,
            )
        elif event.tunnel == TUNNEL_WEB:
            self.machine = WebServer(settings.proxy, http_date=clock.http_date())
        else:  # pragma: no cover - ProxyRequest.tunnel has only these values
            return
        self._flush()
        if event.leftover:
            self._handle(self.machine.receive_data(event.leftover))

    def _store(self, msg: MessageReceived) -> None:
        ctx = self.ctx
        queue_id = ctx.queue_id()
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
        if self.paused and self.transport is not None and not machine.waiting:
            self.paused = False
            self.transport.resume_reading()

    def _flush(self) -> None:
        machine = self.machine
        transport = self.transport
        if machine is None or transport is None:
            return
        out = machine.data_to_send()
        if out:
            self.bytes_out += len(out)
            transport.write(out)
        if machine.closing:
            transport.close()

    # --- time limits -----------------------------------------------------------------------

    def _idle_limit(self, limits: LimitsSection) -> float | None:
        machine = self.machine
        if not isinstance(machine, SmtpServer):
            return limits.handshake_timeout  # PROXY header, proxy request, tunnelled web
        if machine.waiting:
            return None  # the client waits for our disk, not the other way round
        return limits.data_timeout if machine.in_data else limits.command_timeout

    def expired(self, now: float, limits: LimitsSection) -> bool:
        if self.transport is None:
            return False
        if now - self.started >= limits.session_timeout:
            return True
        idle = self._idle_limit(limits)
        return idle is not None and now - self.last >= idle

    def time_out(self, now: float, limits: LimitsSection) -> None:
        """Postfix's words on an SMTP timeout (421 4.4.2); proxies just close, as Squid does."""
        machine = self.machine
        reply = b""
        if isinstance(machine, SmtpServer):
            reply = f"421 4.4.2 {machine.hostname} Error: timeout exceeded\r\n".encode()
        whole = now - self.started >= limits.session_timeout
        self.close("session timeout" if whole else "idle timeout", reply)

    def close(self, reason: str, reply: bytes = b"") -> None:
        """Close from the sensor's side (shutdown, timeout), with a last reply if any."""
        transport = self.transport
        if transport is None:
            return
        self.reason = reason
        if reply and isinstance(self.machine, SmtpServer):
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
