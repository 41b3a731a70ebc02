"""The deployment kit in deploy/: the systemd unit verifies, the nftables rulesets load, they
list the ports the sensor emulates, and the redirect recipe serves the privileged ports from a
sensor that has no privilege, behind the firewall, in network namespaces the test creates."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from conftest import Sensor, need_root, need_tool
from spampot.config import Config

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
UNIT = DEPLOY / "spampot-sensor.service"
RULESET = DEPLOY / "spampot.nft"
REDIRECT = DEPLOY / "spampot-redirect.nft"


# --- systemd --------------------------------------------------------------------------------


def unit_for_this_machine(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this installation (verify checks the binary)."""
    spampot = shutil.which("spampot") or str(Path(sys.executable).parent / "spampot")
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/spampot", spampot))
    return unit


def test_systemd_unit_verifies_clean(tmp_path):
    need_tool("systemd-analyze")
    unit = unit_for_this_machine(tmp_path)
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    # verify warns about unknown or misspelt keys on stderr and still exits 0.
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_systemd_unit_is_hardened(tmp_path):
    need_tool("systemd-analyze")
    unit = unit_for_this_machine(tmp_path)
    text = UNIT.read_text()
    for line in (
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/spampot",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "ProtectHome=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "User=spampot",
        "Restart=on-failure",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ):
        assert re.search(f"^{re.escape(line)}$", text, re.M), line
    nofile = int(re.search(r"^LimitNOFILE=(\d+)$", text, re.M).group(1))  # type: ignore[union-attr]
    assert nofile >= 4 * 10_000  # 10,000 clients, with room for the rest
    # systemd's own exposure score (0 = locked down, 10 = exposed): at most 2.0 here.
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--threshold=20", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert re.search(r"Overall exposure level for \S+: (\d\.\d)", done.stdout)


def test_sysusers_and_tmpfiles_snippets_name_the_unit_user_and_data_dir():
    sysusers = (DEPLOY / "sysusers.d" / "spampot.conf").read_text()
    tmpfiles = (DEPLOY / "tmpfiles.d" / "spampot.conf").read_text()
    assert re.search(r"^u\s+spampot\s+-\s+\".*\"\s+/var/lib/spampot\s+\S+$", sysusers, re.M)
    assert re.search(r"^d\s+/var/lib/spampot\s+0750\s+spampot\s+spampot\s+-$", tmpfiles, re.M)
    assert Config().data_dir == Path("/var/lib/spampot")


# --- nftables -------------------------------------------------------------------------------


def nft_set(text: str, name: str) -> set[int]:
    match = re.search(r"set " + name + r" \{.*?elements = \{([^}]*)\}", text, re.S)
    assert match, name
    return {int(p) for p in re.findall(r"\d+", match.group(1))}


def test_ruleset_lets_in_exactly_the_default_ports():
    text = RULESET.read_text()
    config = Config()
    assert nft_set(text, "smtp_ports") == set(config.ports.smtp)
    assert nft_set(text, "http_ports") == set(config.ports.http)
    assert nft_set(text, "socks_ports") == set(config.ports.socks)
    assert nft_set(text, "management_ports") == {22, config.metrics.port}
    privileged = {p for p, _ in config.listeners() if p < 1024}
    redirect = re.search(r"elements = \{([^}]*)\}", REDIRECT.read_text())
    assert redirect
    pairs = dict(tuple(map(int, pair.split(":"))) for pair in redirect.group(1).split(","))
    assert set(pairs) == privileged and all(high == low + 10_000 for low, high in pairs.items())


def ip(ns: str, *args: str, **kw: object) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, *args], check=True, **kw)  # type: ignore[call-overload]


@pytest.fixture
def namespaces() -> Iterator[list[str]]:
    need_root()
    need_tool("ip")
    need_tool("nft")
    made: list[str] = []

    def cleanup() -> None:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], check=False)

    with ExitStack() as stack:
        stack.callback(cleanup)
        for role in ("sensor", "client"):
            name = f"spampot-{role}-{uuid.uuid4().hex[:8]}"
            subprocess.run(["ip", "netns", "add", name], check=True)
            made.append(name)
            ip(name, "ip", "link", "set", "lo", "up")
        yield made


@pytest.mark.parametrize("ruleset", [RULESET, REDIRECT], ids=lambda p: p.name)
def test_ruleset_passes_nft_check(namespaces, ruleset):
    ip(namespaces[0], "nft", "-c", "-f", str(ruleset))


def test_ruleset_loads_twice_and_leaves_other_tables_alone(namespaces):
    ns = namespaces[0]
    ip(ns, "nft", "add", "table", "inet", "other")
    for _ in range(2):  # reloading after an edit replaces the table
        ip(ns, "nft", "-f", str(RULESET))
        ip(ns, "nft", "-f", str(REDIRECT))
    tables = ip(ns, "nft", "list", "tables", capture_output=True, text=True).stdout.split("\n")
    assert {t for t in tables if t} == {
        "table inet other",
        "table inet spampot",
        "table inet spampot_redirect",
    }


SENSOR_ADDR, CLIENT_ADDR = "192.0.2.1", "192.0.2.2"  # a link between the test's namespaces


def link(sensor_ns: str, client_ns: str) -> None:
    a, b = f"sp{uuid.uuid4().hex[:6]}", f"sp{uuid.uuid4().hex[:6]}"
    ip(sensor_ns, "ip", "link", "add", a, "type", "veth", "peer", "name", b, "netns", client_ns)
    ip(sensor_ns, "ip", "addr", "add", f"{SENSOR_ADDR}/24", "dev", a)
    ip(sensor_ns, "ip", "link", "set", a, "up")
    ip(client_ns, "ip", "addr", "add", f"{CLIENT_ADDR}/24", "dev", b)
    ip(client_ns, "ip", "link", "set", b, "up")


def in_ns(ns: str, code: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# A process without privilege: user nobody, no capability but reading files (the test's
# Python lives under /root), so it cannot bind a port below 1024.
UNPRIVILEGED = (
    "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
    "--bounding-set=-all,+dac_read_search", "--inh-caps=-all,+dac_read_search",
    "--ambient-caps=-all,+dac_read_search",
)  # fmt: skip


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory user nobody can reach (pytest's tmp_path is under a root-only one)."""
    path = Path(tempfile.mkdtemp(prefix="spampot-redirect-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_redirect_serves_the_privileged_ports_from_an_unprivileged_sensor(namespaces, open_dir):
    need_tool("setpriv")
    sensor_ns, client_ns = namespaces
    link(sensor_ns, client_ns)
    ip(sensor_ns, "nft", "-f", str(RULESET))
    ip(sensor_ns, "nft", "-f", str(REDIRECT))

    tmp_path = open_dir
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    os.chown(data_dir, 65534, 65534)
    config = data_dir / "sensor.toml"  # where user nobody can read it
    config.write_text(
        f"""
[sensor]
name = "redirected"
hostname = "mx.sensor.example"
data_dir = "{data_dir}"
bind = ["{SENSOR_ADDR}"]
original_dst = true  # events name the port the client reached, before the redirect

[ports]
smtp = [10025]
http = [10080, 8080]
socks = [10559, 1080]
"""
    )
    prefix = ["ip", "netns", "exec", sensor_ns, *UNPRIVILEGED]
    # Really without privilege: port 25 cannot be bound there.
    refused = subprocess.run(
        [
            *prefix,
            sys.executable,
            "-c",
            f"import socket; socket.socket().bind(('{SENSOR_ADDR}', 25))",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "PermissionError" in refused.stderr
    sensor = Sensor(data_dir, config, {"smtp": 10025}, stderr_path=tmp_path / "sensor.stderr")
    with open(sensor.stderr_path, "ab") as err:  # type: ignore[arg-type]
        sensor.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "spampot", "sensor", "--config", str(config)],
            stdout=err,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 20
        while "listening on" not in sensor.stderr() and time.monotonic() < deadline:
            assert sensor.proc.poll() is None, sensor.stderr()
            time.sleep(0.1)
        client = f"""
import smtplib, socket
with smtplib.SMTP("{SENSOR_ADDR}", 25, local_hostname="client.example", timeout=5) as s:
    s.sendmail("a@b.example", ["v@example.org"], b"Subject: redirected\\r\\n\\r\\nhi\\r\\n")
for port in (559, 1080):  # a SOCKS5 greeting on the SOCKS ports, low and high
    with socket.create_connection(("{SENSOR_ADDR}", port), timeout=5) as c:
        c.sendall(b"\\x05\\x01\\x00")
        assert c.recv(2) == b"\\x05\\x00", port
for port in (80, 8080):  # Squid's answer to a request for itself on the HTTP ports
    with socket.create_connection(("{SENSOR_ADDR}", port), timeout=5) as c:
        c.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
        assert c.recv(64).startswith(b"HTTP/1.1 400 Bad Request"), port
for port in (22, 10025, 3306):  # filtered: no answer at all, not even a reset
    try:
        socket.create_connection(("{SENSOR_ADDR}", port), timeout=1)
        raise SystemExit(f"port {{port}} is open")
    except TimeoutError:
        pass
print("ok")
"""
        done = in_ns(client_ns, client)
        assert done.stdout.strip() == "ok", done.stderr
        # Nothing goes out of the sensor's namespace but replies: a listener in the client's
        # namespace stays unreachable from it.
        serve = "import socket, time; s = socket.create_server((%r, 9999)); time.sleep(30)"
        serve %= CLIENT_ADDR
        listener = subprocess.Popen(["ip", "netns", "exec", client_ns, sys.executable, "-c", serve])
        try:
            time.sleep(0.5)
            out = in_ns(
                sensor_ns,
                f"import socket\ntry:\n socket.create_connection(('{CLIENT_ADDR}', 9999), 2)\n"
                " print('connected')\nexcept OSError as e:\n print(type(e).__name__)",
            )
            assert out.stdout.strip() == "TimeoutError", out
            back = in_ns(
                client_ns, f"import socket; socket.create_connection(('{CLIENT_ADDR}', 9999), 2)"
            )
            assert back.returncode == 0, back.stderr  # the listener is there
        finally:
            listener.kill()
            listener.wait()
    finally:
        code = sensor.stop()
    assert code == 0, sensor.stderr()
    events = sensor.events()
    (msg,) = [e for e in events if e["eventid"] == "spampot.smtp.message"]
    assert msg["src_ip"] == CLIENT_ADDR and msg["dst_port"] == 25
    assert msg["file"].split("/")[1] == "25"  # the spool path too
    assert (data_dir / "spool" / msg["file"]).stat().st_uid == 65534
    proxied = {e["dst_port"] for e in events if e["eventid"] == "spampot.proxy.request"}
    assert proxied == {80, 559, 8080, 1080}  # redirected ports by their original number
