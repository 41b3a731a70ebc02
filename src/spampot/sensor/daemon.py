"""Starting and stopping a sensor: bind, fork workers, run the event loop, drain on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import fcntl
import os
import resource
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TextIO

from spampot import __version__
from spampot.config import Config, ConfigError
from spampot.sensor import metrics as state
from spampot.sensor.events import (
    Clock,
    EventBuffer,
    EventFile,
    RotationPolicy,
    recover_event_files,
)
from spampot.sensor.housekeeping import Housekeeper
from spampot.sensor.paths import name_component
from spampot.sensor.privileges import PrivilegeError, drop_privileges
from spampot.sensor.session import SensorContext, SensorSession, SessionSettings
from spampot.sensor.spool import Spool
from spampot.sensor.writer import Writer, fork_writer

# Sockets, identity, processes, the health recorder and the metrics listener are set up once.
RESTART_SECTIONS = ("sensor", "ports", "health", "metrics")
CONTROL_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
DRAIN_SECONDS = 10.0  # SIGTERM: how long open sessions may take to finish
LOCK_FILE = "sensor.lock"
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_LIBC = ctypes.CDLL(None, use_errno=True)
LOCK_WAIT_SECONDS = 60.0  # a start waits this long for the previous run's last process
ERROR_REPORT_SECONDS = 10.0  # at most one sensor.error about storage per interval


class BindError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Listener:
    sock: socket.socket
    port: int
    role: str

    @property
    def label(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"[{host}]:{port}/{self.role}" if ":" in host else f"{host}:{port}/{self.role}"


def bind_listeners(config: Config, copies: int = 1) -> tuple[list[list[Listener]], list[str]]:
    """Bind every configured (address, port); ``copies`` sockets each with SO_REUSEPORT.

    Returns one list of listeners per worker, and the errors for what could not be bound.
    """
    per_worker: list[list[Listener]] = [[] for _ in range(copies)]
    errors: list[str] = []
    for port, role in config.listeners():
        for address in config.sensor.bind:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            socks: list[socket.socket] = []
            try:
                for _ in range(copies):
                    sock = socket.socket(family, socket.SOCK_STREAM)
                    socks.append(sock)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    if copies > 1:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                    if family == socket.AF_INET6:
                        # Separate IPv4 and IPv6 sockets: "::" must not also claim IPv4.
                        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    sock.bind((address, port))
                    sock.listen(config.sensor.listen_backlog)
                    sock.setblocking(False)
            except OSError as exc:
                for sock in socks:
                    sock.close()
                reason = exc.strerror or str(exc)
                if exc.errno == errno.EACCES and port < 1024:
                    reason += " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
                errors.append(f"cannot listen on {address} port {port}: {reason}")
                continue
            for k, sock in enumerate(socks):
                per_worker[k].append(Listener(sock, port, role))
    return per_worker, errors


def lock_data_dir(data_dir: Path, wait: float = LOCK_WAIT_SECONDS) -> int:
    """Hold ``state/sensor.lock`` for the life of the sensor; returns the descriptor.

    Every process of the sensor inherits it, so the lock lasts until the last one is gone: a
    start waits while a writer of the previous run still closes its files (its event loop was
    killed alone), and a second sensor on the same data dir is refused.
    """
    path = state.state_dir(data_dir) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise BlockingIOError(
                    f"another sensor holds {path} (a sensor on this data dir is running)"
                ) from None
            time.sleep(0.05)


def stop_with_parent(parent: int) -> None:
    """In a worker: SIGTERM (a drain, then a clean stop) when the supervisor is gone, even
    killed with SIGKILL, rather than serving on, orphaned (prctl(2) PR_SET_PDEATHSIG)."""
    if _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        return  # not Linux: the supervisor's own stop still reaches the workers
    if os.getppid() != parent:  # gone before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def raise_fd_limit() -> int:
    """Every connection is a descriptor: lift the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def run_sensor(
    config: Config,
    *,
    log: TextIO = sys.stderr,
    reload: Callable[[], Config] | None = None,
) -> int:
    """Run the sensor until SIGTERM/SIGINT; returns the exit status.

    ``reload`` re-reads the configuration on SIGHUP (the command line's overrides included).
    """
    # Until a process can act on them (drain, forward, reload), the stop and reload signals
    # wait, blocked: a SIGTERM during start-up stops the sensor cleanly once it can, instead of
    # killing it half-started (its event file left open, its workers orphaned). Forked
    # processes inherit the mask; each unblocks once its handlers are in place.
    signal.pthread_sigmask(signal.SIG_BLOCK, CONTROL_SIGNALS)
    try:
        return _run_sensor(config, log, reload)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, CONTROL_SIGNALS)


def _run_sensor(config: Config, log: TextIO, reload: Callable[[], Config] | None) -> int:
    try:
        lock_data_dir(config.data_dir)
    except (BlockingIOError, OSError) as exc:
        print(f"spampot: {exc}", file=log)
        return 2
    raise_fd_limit()
    spool = Spool(config.data_dir, config.spool.compress_level)
    published, removed = spool.prepare()
    workers = config.sensor.workers
    per_worker, errors = bind_listeners(config, workers)
    for error in errors:
        print(f"spampot: {error}", file=log)
    if errors and not config.sensor.allow_partial_bind:
        print(
            "spampot: not starting; set sensor.allow_partial_bind to run on the ports that bound",
            file=log,
        )
        return 2
    if not per_worker[0]:
        print("spampot: no port could be bound", file=log)
        return 2
    try:
        who = drop_privileges(config.sensor, config.data_dir)
    except (PrivilegeError, OSError) as exc:
        print(f"spampot: {exc}", file=log)
        return 2
    if who:
        print(f"spampot: {who}", file=log)
    policy = RotationPolicy(config.events.rotate_bytes, config.spool.compress_level)
    closed = recover_event_files(config.data_dir, name_component(config.sensor_name), policy)
    detail = "; ".join(
        text
        for count, text in (
            (published, f"published {published} whole staged message(s) left in tmp/"),
            (removed, f"removed {removed} partial file(s) from tmp/"),
            (closed, f"closed {closed} event file(s) left in events/ into spool/events/"),
        )
        if count
    )
    state.clear_worker_files(config.data_dir)
    pid_file = state.write_pid_file(config.data_dir)
    try:
        if workers == 1:
            return _worker_main(config, spool, per_worker[0], 0, errors, detail, reload)
        return _supervise(config, spool, per_worker, errors, detail, reload)
    finally:
        state.remove_pid_file(pid_file)


def _supervise(
    config: Config,
    spool: Spool,
    per_worker: list[list[Listener]],
    errors: list[str],
    detail: str,
    reload: Callable[[], Config] | None,
) -> int:
    """Fork one worker per SO_REUSEPORT socket set and wait for them."""
    children: dict[int, int] = {}
    supervisor = os.getpid()
    for k, listeners in enumerate(per_worker):
        pid = os.fork()
        if pid == 0:
            stop_with_parent(supervisor)
            for j, others in enumerate(per_worker):
                if j != k:
                    for listener in others:
                        listener.sock.close()
            code = 1
            try:
                code = _worker_main(config, spool, listeners, k, errors, detail, reload)
            finally:
                os._exit(code)
        children[pid] = k
    for listeners in per_worker:
        for listener in listeners:
            listener.sock.close()

    def forward(signum: int, _frame: object) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    for signum in CONTROL_SIGNALS:
        signal.signal(signum, forward)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, CONTROL_SIGNALS)  # what waited is forwarded now
    status = 0
    while children:
        try:
            pid, wstatus = os.wait()
        except ChildProcessError:
            break
        children.pop(pid, None)
        code = os.waitstatus_to_exitcode(wstatus)
        if code != 0:
            status = 1
    return status


def _worker_main(
    config: Config,
    spool: Spool,
    listeners: list[Listener],
    worker: int,
    errors: list[str],
    detail: str,
    reload: Callable[[], Config] | None,
) -> int:
    sensor = config.sensor_name
    event_file = EventFile(
        config.data_dir,
        name_component(sensor),
        RotationPolicy(config.events.rotate_bytes, config.spool.compress_level),
        worker,
    )
    # Forked before the event loop exists: a fork must not inherit a running loop or threads.
    writer_pid, writer_sock = fork_writer(
        spool, event_file, config.spool.fsync, [listener.sock for listener in listeners]
    )
    serve = _serve(config, listeners, worker, errors, detail, writer_pid, writer_sock, reload)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(serve)
    return uvloop.run(serve)


async def _serve(
    config: Config,
    listeners: list[Listener],
    worker: int,
    errors: list[str],
    detail: str,
    writer_pid: int,
    writer_sock: socket.socket,
    reload: Callable[[], Config] | None,
) -> int:
    loop = asyncio.get_running_loop()
    sensor = config.sensor_name
    buffer = EventBuffer(sensor, Clock())
    sensor_base: dict[str, object] = {
        "session": None,
        "src_ip": None,
        "src_port": None,
        "dst_ip": None,
        "dst_port": None,
    }
    stop = asyncio.Event()
    status = 0

    last_report = -ERROR_REPORT_SECONDS
    unreported = 0

    def writer_error(text: str) -> None:
        # A full disk fails every batch: one event per interval, counting the rest.
        nonlocal last_report, unreported
        now = loop.time()
        if now - last_report < ERROR_REPORT_SECONDS:
            unreported += 1
            return
        if unreported:
            text += f" ({unreported} more storage error(s) since the last report)"
        last_report, unreported = now, 0
        buffer.emit("sensor.error", sensor_base, f"Storage error: {text}", detail=text)

    def writer_lost() -> None:
        nonlocal status
        print("spampot: the writer process died; stopping", file=sys.stderr)
        status = 1
        stop.set()

    writer = await Writer.start(
        loop, writer_sock, buffer, writer_pid, on_error=writer_error, on_lost=writer_lost
    )
    ctx = SensorContext(session_settings(config), buffer, writer, limits=config.limits)
    recorder = _start_recorder(config, ctx, worker, len(listeners))
    keeper = Housekeeper(ctx, buffer, config.data_dir, config.spool, sensor_base)
    current = config

    def on_sighup() -> None:
        nonlocal current
        writer.reopen()
        if reload is not None:
            current = _reload(current, reload, ctx, keeper, buffer, sensor_base)

    def factory(port: int, role: str) -> Callable[[], SensorSession]:
        return lambda: SensorSession(ctx, port, role)

    servers = []
    for listener in listeners:
        servers.append(
            await loop.create_server(
                factory(listener.port, listener.role),
                sock=listener.sock,
                backlog=config.sensor.listen_backlog,
                start_serving=False,
            )
        )
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, on_sighup)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, CONTROL_SIGNALS)  # a stop that waited acts now
    labels = [listener.label for listener in listeners]
    buffer.emit(
        "sensor.start",
        sensor_base,
        f"spampot {__version__} sensor {sensor} listening on {len(labels)} socket(s)",
        version=__version__,
        listeners=labels,
        worker=worker,
        detail="; ".join([*errors, detail] if detail else errors) or None,
    )
    await writer.drain()
    for server in servers:
        await server.start_serving()
    if worker == 0:
        print(f"spampot: sensor {sensor} listening on {', '.join(labels)}", file=sys.stderr)

    flusher = asyncio.create_task(_flush_every(writer, lambda: current.events.flush_interval))
    housekeeping = asyncio.create_task(keeper.run())
    await stop.wait()

    for server in servers:
        server.close()
    deadline = loop.time() + DRAIN_SECONDS
    while ctx.sessions and loop.time() < deadline:
        await asyncio.sleep(0.05)
    for session in list(ctx.sessions):
        session.close("shutdown", b"421 4.3.2 Service shutting down\r\n")
    for _ in range(100):  # connection_lost runs on later loop turns; bounded wait
        if not ctx.sessions:
            break
        await asyncio.sleep(0.01)
    buffer.emit("sensor.stop", sensor_base, "Sensor stopping", version=__version__, worker=worker)
    flusher.cancel()
    recorder.stop()
    housekeeping.cancel()
    await writer.close()
    return status


def _start_recorder(
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


async def _flush_every(writer: Writer, interval: Callable[[], float]) -> None:
    """The event log reaches the file at least once per interval (DESIGN.md: once a second)."""
    while True:
        await asyncio.sleep(interval())
        writer.flush_soon()


def session_settings(config: Config) -> SessionSettings:
    return SessionSettings(
        sensor=config.sensor_name,
        hostname=config.smtp_hostname,
        persona=config.smtp.persona,
        limits=config.smtp.limits,
        require_helo=config.smtp.require_helo,
        proxy=config.proxy.policy,
        trusted_proxies=config.trusted_proxies,
        original_dst=config.sensor.original_dst,
        max_header_bytes=config.proxy.max_header_bytes,
        max_body_bytes=config.proxy.max_body_bytes,
        max_socks_userid=config.proxy.max_socks_userid,
    )


def restart_needed(old: Config, new: Config) -> list[str]:
    """Keys a reload cannot apply: sockets, identity, processes, the writer's settings."""
    fixed = [
        f"{section}.{f.name}" for section in RESTART_SECTIONS for f in fields(getattr(old, section))
    ]
    fixed += ["spool.compress_level", "spool.fsync", "events.rotate_bytes"]
    out = []
    for dotted in fixed:
        section, key = dotted.split(".")
        if getattr(getattr(old, section), key) != getattr(getattr(new, section), key):
            out.append(dotted)
    return out


def _reload(
    old: Config,
    reload: Callable[[], Config],
    ctx: SensorContext,
    keeper: Housekeeper,
    buffer: EventBuffer,
    sensor_base: dict[str, object],
) -> Config:
    """SIGHUP: apply what can change in a running sensor; say what needs a restart."""
    try:
        new = reload()
    except ConfigError as exc:
        buffer.emit(
            "sensor.error",
            sensor_base,
            f"Reload failed, configuration kept: {exc}",
            detail=str(exc),
        )
        return old
    pending = restart_needed(old, new)
    # Apply everything but the restart-only keys, which keep their running values.
    applied = _keep_restart_only(new, old)
    ctx.settings = session_settings(applied)
    ctx.limits = applied.limits
    keeper.spool = applied.spool
    changed = [f.name for f in fields(old) if getattr(old, f.name) != getattr(applied, f.name)]
    buffer.emit(
        "sensor.reload",
        sensor_base,
        "Configuration reloaded"
        + (f"; needs a restart to change: {', '.join(pending)}" if pending else ""),
        changed=changed,
        restart_needed=pending,
    )
    return applied


def _keep_restart_only(new: Config, old: Config) -> Config:
    """``new`` with the restart-only keys put back to their running values."""
    return replace(
        new,
        **{section: getattr(old, section) for section in RESTART_SECTIONS},
        spool=replace(new.spool, compress_level=old.spool.compress_level, fsync=old.spool.fsync),
        events=replace(new.events, rotate_bytes=old.events.rotate_bytes),
    )
