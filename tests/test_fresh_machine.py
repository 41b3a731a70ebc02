"""The README on a fresh machine: its Quick start and its Set-up from zero, run as written.

Everything happens in pristine Debian 12 roots (tests/freshroot.py: debootstrap minbase, no
Python at all, overlays so the base is never changed), with the system's own Python (Debian's,
which carries PEP 668's EXTERNALLY-MANAGED marker). The commands are read from README.md, so the
README cannot drift from what is tested:

- Quick start: its install command in a root, then `spampot sensor` exactly as written, in a
  network namespace of its own, captures a message; the installed command runs as another
  user (`nobody`), gate and health included.
- Deployment and Set-up from zero: a sensor root and a central root, each in its own network
  namespace joined by a veth pair (TEST-NET-1 addresses), with the accounts and paths of the
  deployment units. Every README line runs as written, but for the three things a chroot
  cannot hold, each done as its unit would: `systemctl enable --now spampot-sensor` starts the
  unit's ExecStart as its User= with its AmbientCapabilities= (setpriv); the timer's
  `systemctl` line is left to the by-hand run that follows it; sshd (started by its package
  on a real machine) runs in the sensor's namespace with `UsePAM no`, under which a locked
  account is refused. Placeholders the README names (the central address and key, the
  sensor's address and host key) are replaced by the real ones.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import need_root, need_tool
from freshroot import Root, commands, netns, pristine_base, readme_section, sh_blocks

pytestmark = [pytest.mark.timeout(2400)]

SENSOR_ADDR, CENTRAL_ADDR = "192.0.2.2", "192.0.2.1"
UNITS = Path(__file__).resolve().parent.parent / "deploy"
SEND = (
    "import smtplib,sys\n"
    "with smtplib.SMTP(sys.argv[1], 25, timeout=20) as c:\n"
    "    c.sendmail('a@spam.example', ['v@example.org'], sys.argv[2].encode())\n"
)


def quick_start() -> tuple[str, str]:
    """The Quick start's first command, as (install, run): ``<install> && spampot sensor``."""
    [line] = commands(sh_blocks(readme_section("## Quick start"))[0])
    install, _, run = line.rpartition(" && ")
    assert run == "spampot sensor", line
    return install, run


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A pristine root where the Quick start's install command ran; its upper layer."""
    need_root()
    need_tool("ip")
    base = pristine_base()
    assert not (base / "usr/bin/python3").exists(), "the base must be pristine"
    work = tmp_path_factory.mktemp("installed")
    root = Root(work, [base])
    try:
        # As on any Debian machine with services: packages do not start their daemons in a
        # chroot (policy-rc.d, Debian's interface for this), which would bind the host's ports.
        policy = root.path / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        source = root.copy_source()
        install, _ = quick_start()
        done = root.run(install, cwd=source, timeout=1500)
        assert done.returncode == 0, (install, done.stdout[-3000:], done.stderr[-3000:])
        # The system's Python, externally managed: a bare `pip install .` would be refused.
        assert list((root.path / "usr/lib").glob("python3.*/EXTERNALLY-MANAGED"))
        # A sensor's set: no compiler installed for it, no analysis stack in its venv.
        assert root.run("command -v g++ || command -v gcc").returncode != 0
        venv = root.path / "opt/spampot/lib"
        assert list(venv.glob("python3.*/site-packages/uvloop"))
        assert not list(venv.glob("python3.*/site-packages/duckdb")), "the analysis stack"
    finally:
        root.close()
    return base, work / "upper"


@contextlib.contextmanager
def layered(installed, tmp_path: Path, name: str):
    base, upper = installed
    root = Root(tmp_path / name, [upper, base])
    try:
        yield root
    finally:
        root.close()


def host_python_in(ns: str, code: str, *args: str, timeout: float = 60) -> str:
    done = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def wait_for_port(ns: str, address: str, port: int, timeout: float = 90) -> None:
    code = (
        "import socket,sys,time\n"
        f"end=time.monotonic()+{timeout}\n"
        "while True:\n"
        "    try:\n"
        f"        s=socket.create_connection(('{address}',{port}),timeout=2); s.recv(64); break\n"
        "    except OSError:\n"
        "        if time.monotonic()>end: sys.exit('no listener')\n"
        "        time.sleep(0.2)\n"
    )
    host_python_in(ns, code, timeout=timeout + 30)


def start(argv: list[str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as f:
        return subprocess.Popen(
            argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip


def stop(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def spool_messages(root: Root, data_dir: str = "var/lib/spampot") -> list[Path]:
    return sorted((root.path / data_dir / "spool").rglob("*.eml.gz"))


# -- finding 1: the Quick start ---------------------------------------------------------------


def test_quick_start_installs_with_the_system_python_and_captures(installed, tmp_path):
    _, run = quick_start()
    with layered(installed, tmp_path, "quick") as root, netns() as nets:
        ns = nets.add("quick")
        sensor = start(root.argv(run, netns=ns), tmp_path / "sensor.log")
        try:
            wait_for_port(ns, "127.0.0.1", 25)
            host_python_in(ns, SEND, "127.0.0.1", "Subject: quick start\r\n\r\nhello\r\n")
            deadline = time.monotonic() + 30
            while not spool_messages(root) and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            stop(sensor)
        log = (tmp_path / "sensor.log").read_text(errors="replace")
        [message] = spool_messages(root)
        nobody = root.check("id -u nobody").strip()
        assert str(message.stat().st_uid) == nobody, log  # dropped to sensor.user
        assert "Traceback" not in log, log
        # Another user runs the installed command, gate and health included.
        as_nobody = "setpriv --reuid=nobody --regid=nogroup --clear-groups"
        assert "spampot, version" in root.check(f"{as_nobody} spampot --version")
        root.check("spampot config > /etc/quick.toml && chmod 644 /etc/quick.toml")
        report = root.check(
            f"SSH_ORIGINAL_COMMAND='spampot health --json' {as_nobody} "
            "/usr/local/bin/spampot gate --config /etc/quick.toml"
        )
        assert json.loads(report)["traffic"]["messages"] >= 1


# -- findings 2-5: Deployment and Set-up from zero --------------------------------------------


def unit_value(unit: str, key: str) -> str:
    found = re.search(rf"^{key}=(.*)$", (UNITS / unit).read_text(), re.M)
    assert found, (unit, key)
    return found.group(1).strip()


def start_unit(root: Root, ns: str, unit: str, log: Path) -> subprocess.Popen:
    """What `systemctl enable --now <unit>` does, for its User=, capabilities and ExecStart."""
    user, group = unit_value(unit, "User"), unit_value(unit, "Group")
    caps = unit_value(unit, "AmbientCapabilities").lower().replace("cap_", "+")
    command = (
        f"setpriv --reuid={user} --regid={group} --init-groups "
        f"--inh-caps={caps} --ambient-caps={caps} {unit_value(unit, 'ExecStart')}"
    )
    return start(root.argv(command, netns=ns), log)


def run_block(root: Root, lines: list[str], ns: str, cwd: str, units: dict) -> None:
    """Run README lines in ``root``: in the namespace ``ns``, but apt-get on the machine's
    network (the registries); the install is the Quick start's, already run in ``installed``;
    ``systemctl`` lines are recorded for the caller to do what the unit would."""
    install, _ = quick_start()
    for line in lines:
        if line == install:
            continue
        if line.startswith("systemctl "):
            units[line.rsplit(" ", 1)[1]] = line
            continue
        registries = "apt-get" in line or "install.sh" in line
        root.check(line, netns=None if registries else ns, cwd=cwd, timeout=1500)


def test_set_up_from_zero_as_written(installed, tmp_path):
    deployment = sh_blocks(readme_section("## Deployment"))
    setup = readme_section("### Set-up from zero")
    central_block, key_block, timer_block = (commands(b) for b in sh_blocks(setup))
    inventory = re.findall(r"^```toml\n(.*?)^```", setup, re.M | re.S)[0]
    sensor_block = commands(deployment[0])
    # One form of the forced command (finding 5), the path the units run.
    readme = (UNITS.parent / "README.md").read_text()
    forced = {" ".join(c.split()) for c in re.findall(r'command="([^"]*)"', readme)}
    assert forced == {"/usr/local/bin/spampot gate --config /etc/spampot/sensor.toml"}, forced
    assert unit_value("spampot-sensor.service", "ExecStart").startswith("/usr/local/bin/spampot ")

    with (
        layered(installed, tmp_path, "sensor") as sensor,
        layered(installed, tmp_path, "central") as central,
        netns() as nets,
    ):
        sns, cns = nets.add("sensor"), nets.add("central")
        nets.link(sns, SENSOR_ADDR, cns, CENTRAL_ADDR)
        units: dict[str, str] = {}
        procs: list[subprocess.Popen] = []
        try:
            # The sensor, as in Deployment.
            src = sensor.copy_source()
            # The sensor's install is the Quick start's; the central server's adds its extra
            # over the same venv (run here, with the compiler it needs).
            assert sensor_block[0] == quick_start()[0]
            assert central_block[0] == f"{quick_start()[0]} --central"
            sensor.check("apt-get update -qq && apt-get install -y -qq systemd", timeout=900)
            run_block(sensor, sensor_block, sns, src, units)
            assert "spampot-sensor" in units
            procs.append(start_unit(sensor, sns, "spampot-sensor.service", tmp_path / "sensor.log"))
            wait_for_port(sns, "127.0.0.1", 25)
            # The central server.
            csrc = central.copy_source()
            central.check("apt-get update -qq && apt-get install -y -qq systemd", timeout=900)
            run_block(central, central_block, cns, csrc, units)
            central_key = central.check("cat /etc/spampot/central_ed25519.pub").strip()
            # The central key on the sensor, placeholders replaced by the real values.
            key_lines = [
                line.replace("203.0.113.5", CENTRAL_ADDR).replace(
                    "ssh-ed25519 AAAA…central… spampot-central", central_key
                )
                for line in key_block
            ]
            run_block(sensor, key_lines, sns, src, units)
            host_key = " ".join(sensor.check(key_lines[-1]).split()[:2])
            sensor.check("mkdir -p /run/sshd")
            procs.append(
                start(
                    sensor.argv("/usr/sbin/sshd -D -e -o UsePAM=no", netns=sns),
                    tmp_path / "sshd.log",
                )
            )
            wait_for_port(sns, SENSOR_ADDR, 22)
            # The inventory, with the sensor's real address and host key.
            text = inventory.replace("198.51.100.23", SENSOR_ADDR)
            text = re.sub(r'host_key = "[^"]*"', f'host_key = "{host_key}"', text)
            (central.path / "etc/spampot/inventory.toml").write_text(text)
            # A capture to collect, through the real sensor, from the central's side.
            host_python_in(cns, SEND, SENSOR_ADDR, "Subject: from zero\r\n\r\nhello\r\n")
            deadline = time.monotonic() + 30
            while not spool_messages(sensor) and time.monotonic() < deadline:
                time.sleep(0.2)
            [captured] = spool_messages(sensor)
            relpath = captured.relative_to(sensor.path / "var/lib/spampot/spool")
            data = captured.read_bytes()
            # The timer, and the first run by hand before the service ever ran (finding 4).
            run_block(central, timer_block, cns, csrc, units)
            assert "spampot-collect.timer" in units
            collected = central.path / "var/lib/spampot-central/raw/br-01" / relpath
            assert collected.read_bytes() == data
            assert not spool_messages(sensor)  # deleted on the sensor once held centrally
            # The unit's own command, as its user, does the same (nothing left to do now).
            service = unit_value("spampot-collect.service", "ExecStart")
            central.check(f"runuser -u spampot-central -- {service}", netns=cns)
            # status through the same key and gate: the sensor's own configuration.
            out = central.run(
                "runuser -u spampot-central -- spampot status --json", netns=cns, timeout=300
            )
            checks = json.loads(out.stdout)["sensors"][0]["checks"]
            for name in ("connectivity", "processes", "sync"):
                assert checks[name]["state"] == "OK", (name, checks)
            # Who owns what (finding 2): the sensor never took .ssh/ from its owner.
            owner = {
                p: sensor.check(f"stat -c %U /var/lib/spampot/{p}").strip()
                for p in (".ssh", ".ssh/authorized_keys", "spool", "state")
            }
            assert set(owner.values()) == {"spampot"}, owner
            shadow = sensor.check("getent shadow spampot").split(":")[1]
            assert not shadow.startswith("!"), shadow  # finding 3: not locked for sshd
        finally:
            for proc in procs:
                stop(proc)
            logs = {p.name: p.read_text(errors="replace")[-1500:] for p in tmp_path.glob("*.log")}
            print(shlex.quote(json.dumps(logs)))
