"""A real NTP server on loopback: chronyd serving its own clock, optionally shifted.

chronyd runs with ``-x`` (it never touches the system clock) and no sources, as a stratum-8
local reference bound to 127.0.0.1 on a free port, its command sockets off. The offset test
runs a second chronyd under libfaketime (Debian ``faketime``), which shifts every clock read
of that process only: its answers then carry a clock ``offset`` seconds ahead.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import ntplib


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ChronyServer:
    def __init__(self, directory: Path, chronyd: str, faketime: str | None, offset: float) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        args = [chronyd, "-x", "-d", "-u", "root", "-f", str(directory / "chrony.conf")]
        if offset:
            assert faketime is not None
            args = [faketime, "-f", f"{offset:+g}s", *args]
        # The free port is chosen, then bound by chronyd: another process may take it between
        # the two, so a start that does not answer is tried again on another port.
        for attempt in range(3):
            self.port = free_udp_port()
            (directory / "chrony.conf").write_text(
                f"port {self.port}\n"
                "bindaddress 127.0.0.1\n"
                "allow 127.0.0.1\n"
                "local stratum 8\n"
                "cmdport 0\n"
                "bindcmdaddress /\n"
                f"pidfile {directory / 'chronyd.pid'}\n"
            )
            self.log = open(directory / f"chronyd-{attempt}.log", "wb")  # noqa: SIM115
            # A session of its own: faketime runs chronyd as a child, so stop the whole group.
            self.proc = subprocess.Popen(
                args,
                stdout=self.log,
                stderr=self.log,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            if self._ready():
                return
            self.stop()
        raise RuntimeError(
            "chronyd did not answer: " + (directory / "chronyd-2.log").read_text()[-2000:]
        )

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _ready(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        client = ntplib.NTPClient()
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                client.request("127.0.0.1", version=4, port=self.port, timeout=0.3)
                return True
            except (ntplib.NTPException, OSError):
                time.sleep(0.1)
        return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


class ChronyClient:
    """A chronyd that follows one NTP server (never touching the system clock, ``-x``), with
    its command socket at ``socket``: what ``chronyc -h socket tracking`` asks, as it asks the
    machine's own chronyd."""

    def __init__(self, directory: Path, chronyd: str, server_port: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.socket = directory / "run" / "chronyd.sock"
        conf = directory / "chrony.conf"
        conf.write_text(
            "port 0\n"
            f"server 127.0.0.1 port {server_port} iburst minpoll -6 maxpoll -6\n"
            "cmdport 0\n"
            f"bindcmdaddress {self.socket}\n"
            f"pidfile {directory / 'chronyd.pid'}\n"
        )
        self.log = open(directory / "chronyd.log", "wb")  # noqa: SIM115 - kept for the child
        self.proc = subprocess.Popen(
            [chronyd, "-x", "-d", "-u", "root", "-f", str(conf)],
            stdout=self.log,
            stderr=self.log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while not self.socket.exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.log.close()
