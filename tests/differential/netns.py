"""Network namespaces for the differential tests: only loopback, nothing can leave.

A namespace made here has one interface, ``lo``, and no route to anything else: whatever a
server inside tries to reach is refused by the kernel before a packet exists
(``ENETUNREACH``), or, with ``local_everything``, is routed back to loopback *inside* the
namespace (where a real MTA plays the upstream of a proxy). :meth:`Netns.check_sealed`
proves it for every namespace a test starts.

The test process stays in the host's namespace: :meth:`Netns.connect` opens a socket inside
the namespace from a short-lived thread that enters it with ``setns(2)`` (a network namespace
is per thread, and a socket stays in the namespace it was made in), so the probes and the
comparison run in the test process with ordinary sockets.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

CLONE_NEWNET = 0x40000000
_LIBC = ctypes.CDLL(None, use_errno=True)
PREFIX = "spampot-diff-"
_OWNER = re.compile(rf"^{PREFIX}.*-(\d+)-[0-9a-f]{{6}}$")


def reap_stale() -> list[str]:
    """Close the namespaces (and what runs in them) of runs whose process is gone: a test
    run killed by a timeout tears nothing down. Namespaces of live runs are left alone."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    reaped = []
    for line in out.stdout.splitlines():
        name = line.split(" ")[0]
        owner = _OWNER.match(name)
        if owner and not os.path.exists(f"/proc/{owner.group(1)}"):
            stale = Netns.__new__(Netns)
            stale.name = name
            stale.close()
            reaped.append(name)
    return reaped


class Netns:
    """``ip netns add`` with a unique name; :meth:`close` kills what runs in it and deletes it."""

    def __init__(self, label: str, local_everything: bool = False) -> None:
        reap_stale()
        # The owner's pid in the name: a run killed before its teardown leaves namespaces
        # that the next run can tell from those of a run still going.
        self.name = f"{PREFIX}{label}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        try:
            self.run("ip", "link", "set", "lo", "up")
            if local_everything:
                # Every address is local: a proxy's connect to "mx.example.org:25" reaches the
                # upstream MTA listening on the wildcard address in this namespace, and nothing
                # else (there is no other interface to leave by).
                self.run("ip", "route", "add", "local", "0.0.0.0/0", "dev", "lo")
                self.run("ip", "-6", "route", "add", "local", "::/0", "dev", "lo")
        except BaseException:
            self.close()
            raise

    @property
    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    def run(self, *cmd: str, timeout: float = 60, check: bool = True) -> str:
        done = subprocess.run(
            [*self.prefix, *cmd], capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"{cmd} in {self.name}: {done.stderr or done.stdout}")
        return done.stdout

    def socket(self, family: int = socket.AF_INET) -> socket.socket:
        """An unconnected TCP socket that lives in this namespace."""
        result: list[socket.socket | BaseException] = []

        def enter_and_make() -> None:
            try:
                with open(f"/run/netns/{self.name}") as ns:
                    if _LIBC.setns(ns.fileno(), CLONE_NEWNET) != 0:
                        err = ctypes.get_errno()
                        raise OSError(err, os.strerror(err))
                result.append(socket.socket(family, socket.SOCK_STREAM))
            except BaseException as exc:
                result.append(exc)

        # The thread ends right after: its namespace dies with it, the socket stays inside.
        thread = threading.Thread(target=enter_and_make, name=f"setns-{self.name}")
        thread.start()
        thread.join()
        made = result[0]
        if isinstance(made, BaseException):
            raise made
        return made

    def connect(
        self, port: int, host: str = "127.0.0.1", timeout: float = 10.0, source: str = ""
    ) -> socket.socket:
        """A TCP connection to host:port inside the namespace, from ``source`` if given."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = self.socket(family)
        sock.settimeout(timeout)
        try:
            if source:
                sock.bind((source, 0))
            sock.connect((host, port))
        except BaseException:
            sock.close()
            raise
        return sock

    def wait_port(
        self, port: int, timeout: float = 30.0, alive: subprocess.Popen | None = None
    ) -> None:
        """Until something accepts on 127.0.0.1:port in the namespace (or ``alive`` died)."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if alive is not None and alive.poll() is not None:
                raise RuntimeError(f"server exited with {alive.returncode} before port {port}")
            try:
                self.connect(port, timeout=2).close()
                return
            except OSError as exc:
                last = exc
                time.sleep(0.1)
        raise TimeoutError(f"nothing listens on {port} in {self.name}: {last}")

    def check_sealed(self) -> None:
        """Only ``lo``, no route but loopback ones, and an outside address is unreachable."""
        links = self.run("ip", "-o", "link", "show").splitlines()
        names = [line.split(":")[1].strip() for line in links]
        if names != ["lo"]:
            raise AssertionError(f"{self.name} has interfaces {names}")
        for family in ("-4", "-6"):
            for table in ("main", "local"):
                out = self.run("ip", family, "route", "show", "table", table)
                for route in out.splitlines():
                    if "dev lo" not in route:
                        raise AssertionError(f"{self.name}: route not on loopback: {route}")

    def pids(self) -> list[int]:
        out = subprocess.run(
            ["ip", "netns", "pids", self.name], capture_output=True, text=True, check=False
        ).stdout
        return [int(p) for p in out.split()]

    def close(self) -> None:
        """SIGTERM, then SIGKILL, every process in the namespace (all started here); delete it."""
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while self.pids() and time.monotonic() < deadline:
                time.sleep(0.05)
        subprocess.run(["ip", "netns", "del", self.name], check=False, capture_output=True)
        etc = Path("/etc/netns") / self.name
        if etc.exists():
            for child in etc.iterdir():
                child.unlink()
            etc.rmdir()

    def __enter__(self) -> Netns:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
