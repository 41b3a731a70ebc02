"""Zero egress (invariant 1): whatever a client asks, the sensor opens no outbound connection
and resolves no name. Proved two ways, each with a negative control that shows the check fails
when something does reach out:

- an audit hook in every process of the sensor under test (``tests/egress/sitecustomize.py``)
  that records and aborts on any look-up or connect;
- the sensor in a network namespace of its own, with only loopback, where every address is
  routed to loopback and an nftables counter sees every packet that is not the workout
  talking to the sensor's listeners.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Sensor, free_port, need_root, need_tool

EGRESS_DIR = Path(__file__).parent / "egress"
WORKOUT = EGRESS_DIR / "workout.py"
CLIENT = "127.0.0.2"  # the workout's source address (tests/egress/workout.py)


def make_sensor(tmp_path: Path, workers: int = 2) -> Sensor:
    ports = {"smtp": free_port(), "http": free_port(), "socks": free_port()}
    ports["metrics"] = free_port()
    data_dir = tmp_path / "data"
    config = tmp_path / "sensor.toml"
    config.write_text(
        f"""
[sensor]
name = "egress"
hostname = "mx.sensor.example"
data_dir = "{data_dir}"
bind = ["127.0.0.1", "::1"]
workers = {workers}
user = ""  # root in CI, as every test sensor (tests/test_privileges.py covers the drop)
allow_root = true

[ports]
smtp = [{ports["smtp"]}]
# The workout's proxy port is in both lists, as Table 1's 57123: it speaks HTTP (Squid) and
# SOCKS (Dante) alike, so one port exercises both machines.
http = [{ports["http"]}]
socks = [{ports["socks"]}, {ports["http"]}]

[proxy]
non_smtp = "web"

[metrics]
enabled = true
port = {ports["metrics"]}
"""
    )
    return Sensor(data_dir, config, ports, stderr_path=tmp_path / "sensor.stderr")


def start(
    sensor: Sensor, audit_log: Path | None, prefix: tuple[str, ...] = (), canary: str = ""
) -> None:
    env = dict(os.environ)
    if audit_log is not None:
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(EGRESS_DIR), env.get("PYTHONPATH", "")) if p
        )
        env["SPAMPOT_AUDIT_LOG"] = str(audit_log)
        if canary:
            env["SPAMPOT_AUDIT_CANARY"] = canary
    assert sensor.stderr_path is not None
    with open(sensor.stderr_path, "ab") as err:
        sensor.proc = subprocess.Popen(
            [
                *prefix,
                sys.executable,
                "-m",
                "spampot",
                "sensor",
                "--config",
                str(sensor.config_path),
            ],
            stdout=err,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=env,
        )


def wait_listening(sensor: Sensor, timeout: float = 20.0) -> None:
    assert sensor.proc is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and sensor.proc.poll() is None:
        if "listening on" in sensor.stderr():
            return
        time.sleep(0.1)
    pytest.fail(f"sensor did not start: {sensor.stderr()}")


def workout(sensor: Sensor, prefix: tuple[str, ...] = ()) -> dict[str, int]:
    done = subprocess.run(
        [
            *prefix,
            sys.executable,
            str(WORKOUT),
            str(sensor.ports["smtp"]),
            str(sensor.ports["http"]),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def check_workout(sensor: Sensor, steps: dict[str, int]) -> None:
    """The workout reached the sensor: every tunnel to port 25 delivered its message."""
    smtp_steps = [k for k in steps if k.endswith(":25")]
    failed = {k: steps[k] for k in smtp_steps if steps[k] != 0}
    assert not failed, f"curl failed through the proxy: {failed}"
    # A name no resolver answers for is refused, as the real proxies' lookups fail.
    passed = {k: steps[k] for k in steps if k.endswith(" refused") and steps[k] == 0}
    assert not passed, f"a tunnel to an unresolvable name was granted: {passed}"
    assert steps["smtplib"] == 0
    if "swaks" in steps:
        assert steps["swaks"] == 0
    expected = len(smtp_steps) + 1 + ("swaks" in steps)
    events = sensor.wait_events(
        lambda evs: sum(e["eventid"] == "spampot.smtp.message" for e in evs) >= expected
    )
    messages = [e for e in events if e["eventid"] == "spampot.smtp.message"]
    assert len(messages) == expected
    outcomes = Counter(e["outcome"] for e in events if e["eventid"] == "spampot.proxy.request")
    assert set(outcomes) == {"smtp", "other", "get", "error"}, outcomes
    assert {e["via"] for e in messages} == {"smtp", "socks4", "socks4a", "socks5", "http"}


def stop(sensor: Sensor) -> int:
    code = sensor.stop(signal.SIGTERM, timeout=30)
    return code


# --- the audit hook ---------------------------------------------------------------------------


def test_audit_hook_sees_no_lookup_and_no_connect_in_any_sensor_process(tmp_path):
    need_tool("curl")
    need_tool("swaks")
    sensor = make_sensor(tmp_path, workers=2)
    log = tmp_path / "audit.log"
    start(sensor, log)
    try:
        wait_listening(sensor)
        steps = workout(sensor)
        check_workout(sensor, steps)
        # The management listener too (its HTTP server used to look up its own name).
        url = f"http://127.0.0.1:{sensor.ports['metrics']}/metrics"
        with urllib.request.urlopen(url, timeout=10) as page:
            assert b"spampot_" in page.read()
    finally:
        code = stop(sensor)
    assert not log.exists(), log.read_text()
    assert code == 0, sensor.stderr()
    # The supervisor, two workers and a writer for each ran with the hook.
    installed = set((tmp_path / "audit.log.installed").read_text().split())
    assert len(installed) == 5, installed


@pytest.mark.parametrize(
    ("canary", "workers"),
    [("main", 1), ("child", 1), ("child", 2)],
    ids=["main", "writer", "workers"],
)
def test_audit_hook_negative_control(tmp_path, canary, workers):
    """A connect in the main process, the writer or a worker is caught and aborts."""
    sensor = make_sensor(tmp_path, workers=workers)
    log = tmp_path / "audit.log"
    start(sensor, log, canary=canary)
    assert sensor.proc is not None
    code = sensor.proc.wait(timeout=30)
    sensor.proc = None
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert records, sensor.stderr()
    assert {r["event"] for r in records} <= {"socket.getaddrinfo", "socket.connect"}
    assert all("192.0.2.1" in r["args"] for r in records)
    if canary == "main":
        assert code == -signal.SIGABRT
    else:
        assert code != 0
        assert len({r["pid"] for r in records}) == workers  # each worker or writer caught


# --- the network namespace --------------------------------------------------------------------


@pytest.fixture
def netns() -> Iterator[str]:
    need_root()
    need_tool("ip")
    need_tool("nft")
    name = f"spampot-egress-{uuid.uuid4().hex[:8]}"
    etc = Path("/etc/netns") / name
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        # `ip netns exec` mounts this over /etc/resolv.conf: a look-up would go to a
        # documentation address, routed to loopback below, and be counted.
        etc.mkdir(parents=True)
        (etc / "resolv.conf").write_text("nameserver 192.0.2.53\noptions timeout:1 attempts:1\n")
        for cmd in (
            "ip link set lo up",
            # Loopback is the only interface. Without a route any outbound connect would fail
            # before a packet exists; routing every address to loopback turns an attempt into a
            # packet that the output hook counts, and that never leaves the namespace.
            "ip route add local 0.0.0.0/0 dev lo",
            "ip -6 route add local ::/0 dev lo",
        ):
            subprocess.run(["ip", "netns", "exec", name, *cmd.split()], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
        for child in etc.glob("*"):
            child.unlink()
        if etc.exists():
            etc.rmdir()


def load_counter(ns: str, ports: list[int]) -> None:
    port_set = ", ".join(str(p) for p in sorted(set(ports)))
    ruleset = f"""
table inet spampot_egress {{
    counter attempts {{ }}
    chain output {{
        type filter hook output priority 0; policy accept;
        # Packets of connections already let through below, in both directions.
        ct state established,related accept
        # A new connection from the workout's address to one of the sensor's listeners.
        ip saddr {CLIENT} ip daddr 127.0.0.1 tcp dport {{ {port_set} }} ct state new accept
        # Anything else is an attempt to reach out: count it, log it, refuse it.
        counter name "attempts" log prefix "spampot-egress: " reject
    }}
}}
"""
    subprocess.run(
        ["ip", "netns", "exec", ns, "nft", "-f", "-"], input=ruleset, text=True, check=True
    )


def attempts(ns: str) -> int:
    out = subprocess.run(
        ["ip", "netns", "exec", ns, "nft", "list", "counter", "inet", "spampot_egress", "attempts"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"packets (\d+)", out)
    assert match, out
    return int(match.group(1))


def test_no_packet_leaves_the_sensor_in_its_own_network_namespace(tmp_path, netns):
    need_tool("curl")
    need_tool("swaks")
    sensor = make_sensor(tmp_path, workers=2)
    load_counter(netns, list(sensor.ports.values()))
    prefix = ("ip", "netns", "exec", netns)
    start(sensor, None, prefix)
    try:
        wait_listening(sensor)
        steps = workout(sensor, prefix)
        check_workout(sensor, steps)
    finally:
        code = stop(sensor)
    assert code == 0, sensor.stderr()
    assert attempts(netns) == 0


@pytest.mark.parametrize(
    "attempt",
    [
        "import socket; socket.create_connection(('192.0.2.1', 25), timeout=2)",
        "import socket; socket.create_connection(('127.0.0.1', {smtp}), timeout=2)",
        "import socket; socket.getaddrinfo('mx.example.org', 25)",
    ],
    ids=["connect out", "connect to a listener from the sensor's address", "name lookup"],
)
def test_namespace_negative_control(tmp_path, netns, attempt):
    """A deliberate connect or look-up from inside the namespace moves the counter."""
    sensor = make_sensor(tmp_path, workers=1)
    load_counter(netns, list(sensor.ports.values()))
    prefix = ("ip", "netns", "exec", netns)
    start(sensor, None, prefix)
    try:
        wait_listening(sensor)
        assert attempts(netns) == 0
        code = attempt.format(smtp=sensor.ports["smtp"])
        subprocess.run([*prefix, sys.executable, "-c", code], capture_output=True, timeout=30)
    finally:
        stop(sensor)
    assert attempts(netns) > 0
