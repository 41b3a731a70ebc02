"""One worker: an event loop serving its listening sockets, with a writer process of its own.

A :class:`WorkerSpec` is what the start-up (``spampot.sensor.daemon``) hands each worker;
:meth:`Worker.run` runs it in the current process until SIGTERM: it forks the writer (before any
event loop or thread exists), serves, and on SIGTERM stops accepting, lets open sessions finish
for up to :data:`DRAIN_SECONDS`, closes the rest with ``421``, and closes the writer, which
closes the event log into ``spool/events/``. SIGHUP reopens the event log and reloads the
configuration.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import ssl
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

# Imported with the module, before the privileges are dropped: imported later, as the
# unprivileged user, it can be unreadable (an interpreter under /root), and the silent fallback
# to asyncio's own loop that was here cost about 7 % of the sensor's throughput.
import uvloop

from spampot import __version__
from spampot.config import Config, ConfigError, keep_restart_only, restart_needed
from spampot.dialects import load as load_dialect
from spampot.protocols.smtp_dialect import SmtpDialect
from spampot.sensor import metrics as state
from spampot.sensor.events import Clock, EventBuffer, EventFile, RotationPolicy
from spampot.sensor.housekeeping import Housekeeper
from spampot.sensor.paths import name_component
from spampot.sensor.session import SensorContext, SensorSession, SessionSettings
from spampot.sensor.spool import Spool
from spampot.sensor.writer import Writer, fork_writer

CONTROL_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
DRAIN_SECONDS = 10.0  # SIGTERM: how long open sessions may take to finish
ERROR_REPORT_SECONDS = 10.0  # at most one sensor.error about storage per interval


@dataclass(frozen=True, slots=True)
class Listener:
    sock: socket.socket
    port: int
    role: str

    @property
    def label(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"[{host}]:{port}/{self.role}" if ":" in host else f"{host}:{port}/{self.role}"


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What the start-up hands a worker."""

    config: Config
    spool: Spool
    listeners: list[Listener]
    index: int  # 0 .. workers-1; worker 0 also serves /metrics and says where it listens
    bind_errors: list[str]  # ports that could not be bound (sensor.allow_partial_bind)
    settled: str  # what the start-up finished of the last run's files, for sensor.start
    reload: Callable[[], Config] | None  # re-reads the configuration on SIGHUP
    # STARTTLS and SMTPS, made once at start (as root); None when smtp.starttls is off.
    tls: ssl.SSLContext | None = None

    def close_listeners(self) -> None:
        for listener in self.listeners:
            listener.sock.close()


class Worker:
    """A worker at work. Built and run inside the worker's own process (:meth:`run`)."""

    # Made once the event loop runs (serve): the writer's handle, the sessions' shared
    # context and the housekeeping that sweeps them.
    writer: Writer
    ctx: SensorContext
    keeper: Housekeeper

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.config = spec.config  # the running configuration, replaced by a reload
        self.buffer = EventBuffer(spec.config.sensor_name, Clock())
        self.base: dict[str, object] = dict.fromkeys(
            ("session", "src_ip", "src_port", "dst_ip", "dst_port")
        )  # the session fields of sensor-wide events: all null
        self.stopping = asyncio.Event()
        self.status = 0
        self._last_report = -ERROR_REPORT_SECONDS
        self._unreported = 0

    def run(self) -> int:
        """Fork the writer, then serve until stopped; returns the exit status."""
        config = self.config
        event_file = EventFile(
            config.data_dir,
            name_component(config.sensor_name),
            RotationPolicy(config.events.rotate_bytes, config.spool.compress_level),
            self.spec.index,
        )
        # Forked before the event loop exists: a fork must not inherit a running loop or threads.
        writer_pid, writer_sock = fork_writer(
            self.spec.spool,
            event_file,
            config.spool.fsync,
            [listener.sock for listener in self.spec.listeners],
        )
        return _run_loop(self.serve(writer_pid, writer_sock))

    async def serve(self, writer_pid: int, writer_sock: socket.socket) -> int:
        loop = asyncio.get_running_loop()
        config, spec = self.config, self.spec
        self.writer = await Writer.start(
            loop,
            writer_sock,
            self.buffer,
            writer_pid,
            on_error=self._storage_error,
            on_lost=self._writer_lost,
        )
        self.ctx = SensorContext(
            session_settings(config, spec.tls), self.buffer, self.writer, limits=config.limits
        )
        recorder = start_recorder(config, self.ctx, spec.index, len(spec.listeners))
        self.keeper = Housekeeper(self.ctx, self.buffer, config.data_dir, config.spool, self.base)
        servers = [
            await loop.create_server(
                self._session_factory(listener),
                sock=listener.sock,
                backlog=config.sensor.listen_backlog,
                start_serving=False,
            )
            for listener in spec.listeners
        ]
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        loop.add_signal_handler(signal.SIGINT, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        # A stop that came during the start-up waited, blocked (daemon.run_sensor): it acts now.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, CONTROL_SIGNALS)
        labels = [listener.label for listener in spec.listeners]
        self.buffer.emit(
            "sensor.start",
            self.base,
            f"spampot {__version__} sensor {config.sensor_name} listening on "
            f"{len(labels)} socket(s)",
            version=__version__,
            listeners=labels,
            worker=spec.index,
            detail="; ".join(
                [*spec.bind_errors, spec.settled] if spec.settled else spec.bind_errors
            )
            or None,
        )
        await self.writer.drain()
        for server in servers:
            await server.start_serving()
        if spec.index == 0:
            print(
                f"spampot: sensor {config.sensor_name} listening on {', '.join(labels)}",
                file=sys.stderr,
            )
        flusher = asyncio.create_task(self._flush_every())
        housekeeping = asyncio.create_task(self.keeper.run())
        await self.stopping.wait()

        for server in servers:
            server.close()
        await self._drain(loop)
        self.buffer.emit(
            "sensor.stop", self.base, "Sensor stopping", version=__version__, worker=spec.index
        )
        flusher.cancel()
        recorder.stop()
        housekeeping.cancel()
        await self.writer.close()
        return self.status

    def _session_factory(self, listener: Listener) -> Callable[[], SensorSession]:
        ctx, port, role = self.ctx, listener.port, listener.role
        return lambda: SensorSession(ctx, port, role)

    async def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        """Open sessions may finish for DRAIN_SECONDS; the rest are told 421 and closed."""
        ctx = self.ctx
        deadline = loop.time() + DRAIN_SECONDS
        while ctx.sessions and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for session in list(ctx.sessions):
            session.close("shutdown", "shutdown")  # the persona's words, if it has any
        for _ in range(100):  # connection_lost runs on later loop turns; bounded wait
            if not ctx.sessions:
                break
            await asyncio.sleep(0.01)

    async def _flush_every(self) -> None:
        """The event log reaches the file at least once per interval (DESIGN.md: once a second)."""
        while True:
            await asyncio.sleep(self.config.events.flush_interval)
            self.writer.flush_soon()

    # -- the writer's callbacks --------------------------------------------------------------

    def _storage_error(self, text: str) -> None:
        # A full disk fails every batch: one event per interval, counting the rest.
        now = asyncio.get_running_loop().time()
        if now - self._last_report < ERROR_REPORT_SECONDS:
            self._unreported += 1
            return
        if self._unreported:
            text += f" ({self._unreported} more storage error(s) since the last report)"
        self._last_report, self._unreported = now, 0
        self.buffer.emit("sensor.error", self.base, f"Storage error: {text}", detail=text)

    def _writer_lost(self) -> None:
        print("spampot: the writer process died; stopping", file=sys.stderr)
        self.status = 1
        self.stopping.set()

    # -- SIGHUP ------------------------------------------------------------------------------

    def _on_sighup(self) -> None:
        self.writer.reopen()
        if self.spec.reload is not None:
            self.config = self._reload(self.spec.reload)

    def _reload(self, reload: Callable[[], Config]) -> Config:
        """Apply what can change in a running sensor; say what needs a restart."""
        old = self.config
        try:
            new = reload()
        except ConfigError as exc:
            self.buffer.emit(
                "sensor.error",
                self.base,
                f"Reload failed, configuration kept: {exc}",
                detail=str(exc),
            )
            return old
        pending = restart_needed(old, new)
        # Apply everything but the restart-only keys, which keep their running values.
        applied = keep_restart_only(new, old)
        # The TLS context is made once at start (as root): a reload turns STARTTLS off and on
        # again, but cannot start it on a sensor that started without it.
        self.ctx.settings = session_settings(applied, self.spec.tls)
        self.ctx.limits = applied.limits
        self.keeper.spool = applied.spool
        changed = [f.name for f in fields(old) if getattr(old, f.name) != getattr(applied, f.name)]
        self.buffer.emit(
            "sensor.reload",
            self.base,
            "Configuration reloaded"
            + (f"; needs a restart to change: {', '.join(pending)}" if pending else ""),
            changed=changed,
            restart_needed=pending,
        )
        return applied


def _run_loop(main: Coroutine[Any, Any, int]) -> int:
    return uvloop.run(main)


def start_recorder(
    config: Config, ctx: SensorContext, worker: int, listeners: int
) -> state.StateRecorder:
    """Counters to state files for ``spampot health``; worker 0 serves /metrics if asked."""
    procfs = Path(config.health.procfs)
    interface = state.capture_interface(config.health.interface, procfs)
    recorder = state.StateRecorder(
        ctx.metrics, config.data_dir, worker, config.health.sample_interval, interface, procfs
    )
    if worker == 0 and config.metrics.enabled:
        from spampot.sensor.exporter import start_exporter

        start_exporter(config, listeners)
    recorder.start()
    return recorder


def session_settings(config: Config, tls: ssl.SSLContext | None = None) -> SessionSettings:
    return SessionSettings(
        sensor=config.sensor_name,
        hostname=config.smtp_hostname,
        dialect=load_dialect(config.smtp.dialect, SmtpDialect),
        limits=config.smtp.limits,
        require_helo=config.smtp.require_helo,
        tls=tls if config.smtp.starttls else None,
        auth_offer=config.smtp.auth,
        tunnel_dialects=config.smtp.tunnel_dialects,
        proxy=config.proxy.policy,
        socks_dialect=config.proxy.socks_dialect,
        squid=config.proxy.squid(config.smtp_hostname, config.squid_port),
        trusted_proxies=config.trusted_proxies,
        original_dst=config.sensor.original_dst,
        max_header_bytes=config.proxy.max_header_bytes,
        max_body_bytes=config.proxy.max_body_bytes,
        max_socks_userid=config.proxy.max_socks_userid,
    )
