"""The per-connection adapter: read, feed the protocol machine, write, act on its events.

Kept thin on purpose (DESIGN.md): every protocol decision lives in spampot.protocols.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from dataclasses import dataclass
from typing import Any

from spampot.protocols.common import ClientError, printable
from spampot.protocols.smtp import (
    AuthAttempt,
    Helo,
    MessageReceived,
    Quit,
    Rejected,
    SmtpEvent,
    SmtpLimits,
    SmtpPersona,
    SmtpServer,
)
from spampot.sensor.events import EventBuffer
from spampot.sensor.paths import ip_component
from spampot.sensor.spool import SpoolItem
from spampot.sensor.writer import Writer


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """What every session of one worker shares; built once from the Config."""

    hostname: str
    persona: SmtpPersona
    limits: SmtpLimits
    require_helo: bool


class SensorContext:
    """Per-worker state the sessions share: the writer, the event buffer, the live sessions."""

    def __init__(self, settings: SessionSettings, buffer: EventBuffer, writer: Writer) -> None:
        self.settings = settings
        self.buffer = buffer
        self.writer = writer
        self.sessions: set[SmtpSession] = set()
        self.accepting = True


def new_queue_id() -> str:
    """A Postfix-style short queue id: 10 upper-case hex digits."""
    return os.urandom(5).hex().upper()


class SmtpSession(asyncio.Protocol):
    """One TCP connection on an SMTP port."""

    __slots__ = (
        "base",
        "bytes_in",
        "bytes_out",
        "ctx",
        "machine",
        "port",
        "reason",
        "started",
        "target_host",
        "target_port",
        "transport",
        "via",
    )

    def __init__(self, ctx: SensorContext, port: int) -> None:
        self.ctx = ctx
        self.port = port
        self.transport: asyncio.Transport | None = None
        self.machine: SmtpServer | None = None
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
        self.started = time.monotonic()
        peer = transport.get_extra_info("peername") or ("", 0)
        local = transport.get_extra_info("sockname") or ("", 0)
        self.base = {
            "session": os.urandom(6).hex(),
            "src_ip": _plain_ip(peer[0]),
            "src_port": peer[1],
            "dst_ip": _plain_ip(local[0]),
            "dst_port": self.port,
        }
        ctx = self.ctx
        ctx.sessions.add(self)
        ctx.buffer.emit(
            "session.open",
            self.base,
            f"New connection: {peer[0]}:{peer[1]} ({local[0]}:{self.port})",
        )
        s = ctx.settings
        self.machine = SmtpServer(s.hostname, s.persona, s.limits, require_helo=s.require_helo)
        self._flush()

    def data_received(self, data: bytes) -> None:
        machine = self.machine
        assert machine is not None
        self.bytes_in += len(data)
        self._handle(machine.receive_data(data))

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and self.reason == "client closed":
            self.reason = "reset"
        ctx = self.ctx
        ctx.sessions.discard(self)
        if self.machine is not None:
            self.machine.connection_lost()
        duration = round(time.monotonic() - self.started, 6)
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

    def _handle(self, events: list[SmtpEvent]) -> None:
        for event in events:
            if isinstance(event, MessageReceived):
                self._store(event)
            elif isinstance(event, AuthAttempt):
                self.ctx.buffer.emit(
                    "smtp.auth",
                    self.base,
                    f"AUTH {event.mechanism} username={event.username!r}",
                    mechanism=event.mechanism,
                    username=event.username,
                    password=event.password,
                )
            elif isinstance(event, Rejected):
                self._reject(event)
            elif isinstance(event, ClientError):
                self.ctx.buffer.emit(
                    "smtp.error",
                    self.base,
                    f"Client error: {event.detail}",
                    error=event.detail,
                    reply=event.reply.decode("ascii", "backslashreplace").strip(),
                    input=printable(event.raw),
                )
            elif isinstance(event, Quit):
                self.reason = "quit"
            elif isinstance(event, Helo):
                pass  # kept by the machine and logged with each message
        self._flush()

    def _reject(self, event: Rejected) -> None:
        self.ctx.buffer.emit(
            "smtp.reject",
            self.base,
            f"Rejected at {event.stage}: {event.code} ({event.why})",
            stage=event.stage,
            code=event.code,
            why=event.why,
        )

    def _store(self, msg: MessageReceived) -> None:
        ctx = self.ctx
        now, _ = ctx.buffer.clock.now()
        queue_id = new_queue_id()
        tm = time.gmtime(now)
        day = time.strftime("%Y-%m-%d", tm)
        relpath = (
            f"{day}/{self.port}/{ip_component(self.base['src_ip'])}/"
            f"{time.strftime('%H%M%S', tm)}-{queue_id}.eml.gz"
        )
        size = len(msg.data)
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
            size=size,
            sha256=hashlib.sha256(msg.data).hexdigest(),
            queue_id=queue_id,
            file=relpath,
        )
        item = SpoolItem(relpath, f"{queue_id}.{os.getpid()}.eml.gz", msg.data)
        if self.transport is not None:
            # No more input until the disk answers: the pipelined rest waits in the kernel.
            self.transport.pause_reading()
        ctx.writer.store(item, line, lambda ok: self._stored(ok, queue_id))

    def _stored(self, ok: bool, queue_id: str) -> None:
        machine = self.machine
        if machine is None or self.transport is None:
            return  # the client left; the message is stored (or not) all the same
        self._handle(machine.message_stored(queue_id) if ok else machine.message_deferred())
        if self.transport is not None and not machine.waiting and not machine.closing:
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

    def close(self, reason: str, reply: bytes = b"") -> None:
        """Close from the sensor's side (shutdown, timeout), with a last reply if any."""
        transport = self.transport
        if transport is None:
            return
        self.reason = reason
        if reply:
            self.bytes_out += len(reply)
            transport.write(reply)
        transport.close()


def _plain_ip(address: str) -> str:
    """IPv4-mapped IPv6 peers are IPv4 clients."""
    return address[7:] if address.startswith("::ffff:") and "." in address else address
