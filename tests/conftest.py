"""Shared fixtures: a real sensor process on loopback ports, and the external tools."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from spampot.protocols.proxy import ProxyRequest

IN_CI = os.environ.get("CI") == "true"

# The differential tests' servers (tests/differential/differential_fixtures.py).
sys.path.insert(0, str(Path(__file__).parent / "differential"))
pytest_plugins = ["differential_fixtures"]


def rss_kib(pid: int | str = "self") -> int:
    """Resident size of a process (KiB), from /proc/PID/status."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def need_tool(name: str) -> str:
    """The tool's path; skip when it is missing, except in CI where it must be there."""
    path = shutil.which(name)
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is not installed; .ci/run must install it")
        pytest.skip(f"{name} is not installed (apt-get install {name})")
    return path


def feed(machine, chunks: list[bytes]) -> tuple[list, bytes]:
    """Feed chunks to a proxy machine as the adapter does; returns (events, output).

    Once the machine is done the adapter stops feeding it; what it would have fed is folded
    into the request's leftover, so every split of a stream yields the same result.
    """
    events: list = []
    out = b""
    tail = b""
    for chunk in chunks:
        if machine.done:
            tail += chunk
            continue
        events += machine.receive_data(chunk)
        out += machine.data_to_send()
        assert machine.buffered <= machine.max_buffered
    events += machine.connection_lost()
    if events and tail and isinstance(events[-1], ProxyRequest):
        events[-1] = replace(events[-1], leftover=events[-1].leftover + tail)
    return events, out


def need_root() -> None:
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("CI runs as root; this test needs root")
        pytest.skip("needs root")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_banner(port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> bytes:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1) as s:
                return s.recv(512)
        except OSError as exc:
            last = exc
            time.sleep(0.05)
    raise TimeoutError(f"no banner on {host}:{port}: {last}")


@dataclass
class Sensor:
    data_dir: Path
    config_path: Path
    ports: dict[str, int]
    proc: subprocess.Popen | None = None
    stderr_path: Path | None = None
    extra: dict = field(default_factory=dict)
    python: str = sys.executable  # the interpreter (and so the environment) it runs in

    @property
    def smtp_port(self) -> int:
        return self.ports["smtp"]

    def start(self, wait: bool = True) -> None:
        assert self.stderr_path is not None
        err = open(self.stderr_path, "ab")  # noqa: SIM115 - kept open for the child
        self.proc = subprocess.Popen(
            [self.python, "-m", "spampot", "sensor", "--config", str(self.config_path)],
            stdout=err,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )
        err.close()
        if wait:
            wait_banner(self.smtp_port)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        self.proc = None
        return code

    def kill(self, everything: bool = True, timeout: float = 30) -> None:
        """SIGKILL. ``everything``: every process of the sensor at once, writers first (the
        OOM killer, systemd's last resort); else the main process alone, and then wait until
        the processes it leaves (its writer, which closes the event log on losing it) exit."""
        from sshd import descendants

        assert self.proc is not None
        others = descendants(self.proc.pid)
        if everything:
            for pid in reversed(others):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.proc = None
        deadline = time.monotonic() + timeout
        while any(_alive(pid) for pid in others):
            assert time.monotonic() < deadline, f"processes of the killed sensor left: {others}"
            time.sleep(0.02)

    def events(self) -> list[dict]:
        """Every event written so far: the live file and the rotated ones.

        Each line is checked against the event contract on the way: every test that reads a
        real sensor's events also proves that the sensor writes what the ingest accepts.
        """
        import gzip
        import json

        lines: list[bytes] = []
        for rotated in sorted((self.data_dir / "spool" / "events").glob("*.jsonl.gz")):
            lines += gzip.decompress(rotated.read_bytes()).splitlines()
        for live in sorted((self.data_dir / "events").glob("current*.jsonl")):
            lines += live.read_bytes().splitlines()
        for line in lines:
            check_contract(line)
        return [json.loads(line) for line in lines]

    def wait_events(self, pred, timeout: float = 10.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            events = self.events()
            if pred(events) or time.monotonic() > deadline:
                return events
            time.sleep(0.1)

    def stderr(self) -> str:
        assert self.stderr_path is not None
        return self.stderr_path.read_text(errors="replace")


def check_contract(line: bytes) -> None:
    """Fail with the line and the reason when it does not match the event contract."""
    import msgspec

    from spampot.contract import DECODER

    try:
        DECODER.decode(line)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise AssertionError(f"event breaks the contract ({exc}): {line[:500]!r}") from None


def _alive(pid: int) -> bool:
    """Running (a zombie, or a pid reused by another process's child, does not count)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3] != b"Z"


def write_config(path: Path, data_dir: Path, ports: dict[str, int], extra: str = "") -> None:
    path.write_text(
        f"""
[sensor]
name = "test-sensor"
hostname = "mx.sensor.example"
data_dir = "{data_dir}"
bind = ["127.0.0.1", "::1"]
# Tests run as root in CI with data dirs under pytest's private tmp: keep root there
# (tests/test_privileges.py covers the drop).
user = ""
allow_root = true

[ports]
smtp = [{ports["smtp"]}]
http = [{ports["http"]}]
socks = [{ports["socks"]}]
{extra}
"""
    )


@pytest.fixture
def sensor_factory(tmp_path: Path) -> Iterator:
    made: list[Sensor] = []

    def make(extra: str = "", start: bool = True, name: str = "s") -> Sensor:
        ports = {"smtp": free_port(), "http": free_port(), "socks": free_port()}
        data_dir = tmp_path / f"data-{name}"
        config = tmp_path / f"{name}.toml"
        write_config(config, data_dir, ports, extra)
        sensor = Sensor(data_dir, config, ports, stderr_path=tmp_path / f"{name}.stderr")
        made.append(sensor)
        if start:
            sensor.start()
        return sensor

    yield make
    for sensor in made:
        if sensor.proc is not None and sensor.proc.poll() is None:
            sensor.proc.kill()
            sensor.proc.wait()


@pytest.fixture
def sensor(sensor_factory) -> Sensor:
    return sensor_factory()


# -- a real OpenSSH server (tests/sshd.py) ------------------------------------------------------


@pytest.fixture
def sshd_factory(tmp_path: Path) -> Iterator:
    """``make(name="sshd", start=True) -> SshServer``: real sshd instances on loopback ports.

    Each has its own host key, config and authorized_keys under ``tmp_path/<name>``; add keys
    with ``server.authorize(server.client_key(), command=...)``. All are stopped at the end.
    """
    need_tool("rsync")
    need_tool("ssh")
    if not os.path.exists("/usr/sbin/sshd"):
        if IN_CI:
            pytest.fail("/usr/sbin/sshd is missing; .ci/run must install openssh-server")
        pytest.skip("needs openssh-server (apt-get install openssh-server)")
    from sshd import SshServer

    made: list[SshServer] = []

    def make(name: str = "sshd", start: bool = True) -> SshServer:
        server = SshServer.create(tmp_path / name)
        made.append(server)
        if start:
            server.start()
        return server

    yield make
    for server in made:
        server.stop()


@pytest.fixture
def sshd(sshd_factory):
    """One running sshd on 127.0.0.1 (see ``sshd_factory``)."""
    return sshd_factory()


@pytest.fixture
def ntp_server(tmp_path: Path) -> Iterator:
    """Factory: ``ntp_server(offset=0.0)`` starts a chronyd on loopback (see tests/ntp.py)."""
    from ntp import ChronyServer

    started: list[ChronyServer] = []

    def make(offset: float = 0.0) -> ChronyServer:
        need_root()  # chronyd binds its sockets and drops privileges as root
        chronyd = need_tool("chronyd")
        faketime = need_tool("faketime") if offset else None
        server = ChronyServer(tmp_path / f"chrony-{len(started)}", chronyd, faketime, offset)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def chrony_client(tmp_path: Path) -> Iterator:
    """Factory: ``chrony_client(server_port)``, a chronyd following that NTP server."""
    from ntp import ChronyClient

    started: list[ChronyClient] = []

    def make(server_port: int) -> ChronyClient:
        need_root()
        need_tool("chronyc")
        client = ChronyClient(
            tmp_path / f"chrony-client-{len(started)}", need_tool("chronyd"), server_port
        )
        started.append(client)
        return client

    yield make
    for client in started:
        client.stop()
