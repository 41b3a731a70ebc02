"""Starting a sensor: lock the data dir, settle the last run's files, bind, drop root, and
run the workers (``spampot.sensor.worker``): one in this process, or several under a
:class:`Supervisor`.

Stop and reload signals are blocked from the first line of :func:`run_sensor` until the process
that receives them can act on them (a worker's event loop, the supervisor's forwarding), so a
SIGTERM during start-up is a clean stop a moment later, never a half-started sensor killed.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import resource
import signal
import socket
import ssl
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from spampot.config import Config
from spampot.layout import SensorLayout
from spampot.sensor import metrics as state
from spampot.sensor.events import RotationPolicy, recover_event_files
from spampot.sensor.paths import name_component
from spampot.sensor.privileges import PrivilegeError, drop_privileges
from spampot.sensor.spool import Spool
from spampot.sensor.tls import ensure_certificate, server_context
from spampot.sensor.worker import CONTROL_SIGNALS, Listener, Worker, WorkerSpec

LOCK_WAIT_SECONDS = 60.0  # a start waits this long for the previous run's last process
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_LIBC = ctypes.CDLL(None, use_errno=True)


class BindError(RuntimeError):
    pass


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
    path = SensorLayout(data_dir).lock_file
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
    tls = None
    if config.smtp.starttls:
        # Made (once, before the ports listen: clients never queue behind the key generation)
        # and read while still root: the key stays unreadable to others.
        try:
            tls = server_context(*ensure_certificate(config.data_dir, config.smtp_hostname))
        except (OSError, ssl.SSLError) as exc:
            print(f"spampot: TLS certificate: {exc}", file=log)
            return 2
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
    settled = "; ".join(
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
    specs = [
        WorkerSpec(config, spool, listeners, k, errors, settled, reload, tls)
        for k, listeners in enumerate(per_worker)
    ]
    try:
        if len(specs) == 1:
            return Worker(specs[0]).run()
        return Supervisor(specs).run()
    finally:
        state.remove_pid_file(pid_file)


class Supervisor:
    """Several workers: one process each (with its own SO_REUSEPORT sockets, its own writer),
    forked from here; the control signals are forwarded to them, and the sensor's status is
    1 if any worker failed."""

    def __init__(self, specs: list[WorkerSpec]) -> None:
        self.specs = specs
        self.children: dict[int, int] = {}  # pid -> worker index

    def run(self) -> int:
        me = os.getpid()
        for spec in self.specs:
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child (covered by the e2e tests)
                code = 1
                try:
                    stop_with_parent(me)
                    for other in self.specs:
                        if other is not spec:
                            other.close_listeners()
                    code = Worker(spec).run()
                finally:
                    os._exit(code)
            self.children[pid] = spec.index
        for spec in self.specs:
            spec.close_listeners()
        for signum in CONTROL_SIGNALS:
            signal.signal(signum, self._forward)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, CONTROL_SIGNALS)  # what waited is forwarded
        return self._wait()

    def _forward(self, signum: int, _frame: object) -> None:
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def _wait(self) -> int:
        status = 0
        while self.children:
            try:
                pid, wstatus = os.wait()
            except ChildProcessError:
                break
            self.children.pop(pid, None)
            if os.waitstatus_to_exitcode(wstatus) != 0:
                status = 1
        return status
