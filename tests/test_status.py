"""``spampot status`` against two real sensors over a real sshd, each unhealthy in one way.

Each sensor is a real daemon on loopback ports; the central key reaches it through sshd with a
forced command that runs ``spampot health --json`` with that sensor's configuration, as the
sensor's gate does. The clock is checked against chronyd on loopback, the offset against a
second chronyd under libfaketime.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest

from conftest import need_root
from test_health import send_mail, sensor_keys

PYTHON = sys.executable


@dataclass
class Fleet:
    tmp: Path
    sshd: object
    ntp: object
    sensors: dict
    status: str = ""

    @property
    def inventory(self) -> Path:
        return self.tmp / "inventory.toml"

    @property
    def central(self) -> Path:
        return self.tmp / "central"

    def write_inventory(self, status: str = "") -> None:
        self.status = status or self.status
        # The machine running the tests is shared: its load is no test's business unless asked.
        keys = {"timeout": "60", "load_warn": "1000.0", "load_crit": "2000.0"}
        for line in self.status.splitlines():
            key, _, value = line.partition("=")
            keys[key.strip()] = value.strip()
        lines = [
            "[central]",
            f'data_dir = "{self.central}"',
            "[status]",
            *(f"{k} = {v}" for k, v in keys.items()),
            "[defaults]",
            f'user = "{self.sshd.user}"',
            f"port = {self.sshd.port}",
            f'host_key = "{self.sshd.host_key}"',
        ]
        for name, (sensor, key) in self.sensors.items():
            lines += [
                "[[sensor]]",
                f'name = "{name}"',
                'host = "127.0.0.1"',
                f'key = "{key.path}"',
                f'data_dir = "{sensor.data_dir}"',
            ]
        self.inventory.write_text("\n".join(lines) + "\n")

    def run(self, *args: str, check_code: int | None = None) -> tuple[int, str]:
        done = subprocess.run(
            [PYTHON, "-m", "spampot", "status", "--inventory", str(self.inventory), *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert not done.stderr.strip() or "Traceback" not in done.stderr, done.stderr
        if check_code is not None:
            assert done.returncode == check_code, done.stdout + done.stderr
        return done.returncode, done.stdout

    def states(self) -> tuple[int, dict[str, dict[str, str]]]:
        code, out = self.run("--json")
        data = json.loads(out)
        validate_status(data)  # every round of every test: the documented schema
        assert data["exit_code"] == code
        return code, {
            s["sensor"]: {k: v["state"] for k, v in s["checks"].items()} for s in data["sensors"]
        }

    def collect(self) -> None:
        """A real collection of every sensor (rsync over SSH through the gate)."""
        done = subprocess.run(
            [PYTHON, "-m", "spampot", "collect", "--inventory", str(self.inventory)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr

    def collected(self, name: str, ago: timedelta = timedelta(0)) -> None:
        """What the collector writes on the sensor after a successful pull, back-dated."""
        sensor = self.sensors[name][0]
        when = (datetime.now(UTC) - ago).strftime("%Y-%m-%dT%H:%M:%SZ")
        (sensor.data_dir / "state" / "last-collection.json").write_text(
            json.dumps({"time": when, "files": 1, "bytes": 100})
        )


STATUS_SCHEMA = json.loads(
    (Path(__file__).parent.parent / "src/spampot/central/status.schema.json").read_text()
)


def validate_status(record: dict) -> None:
    """``spampot status --json`` against its schema (strict: a field added without being
    documented there fails)."""
    jsonschema.validate(record, STATUS_SCHEMA, cls=jsonschema.Draft202012Validator)


ALL_OK = dict.fromkeys(
    ("connectivity", "uptime", "load", "disk", "clock", "processes", "capture", "sync"), "OK"
)


def expect(**changed: str) -> dict[str, str]:
    return {**ALL_OK, **changed}


@pytest.fixture
def fleet(tmp_path, sshd, ntp_server, sensor_factory):
    """``make(a=extra_config, b=extra_config, offset=0)``: two sensors reachable over SSH."""

    def make(ntp_offsets: dict | None = None, start: bool = True, **extras: str) -> Fleet:
        ntp_offsets = ntp_offsets or {}
        good = ntp_server()
        servers = {0: good}
        sensors = {}
        for name, extra in extras.items():
            offset = ntp_offsets.get(name, 0)
            if offset not in servers:
                servers[offset] = ntp_server(offset=offset)
            health = (
                "[health]\n"
                'interface = "lo"\n'
                "sample_interval = 0.2\n"
                f'ntp_servers = ["{servers[offset].address}"]\n'
                "ntp_timeout = 2.0\n"
            )
            sensor = sensor_factory(health + extra, start=False, name=name)
            key = sshd.client_key(name)
            # The sensor's forced command, as deployed: the gate lets health and rsync through.
            command = [PYTHON, "-m", "spampot", "gate", "--config", str(sensor.config_path)]
            sshd.authorize(key, command=shlex.join(command))
            sensors[name] = (sensor, key)
        made = Fleet(tmp_path, sshd, good, sensors)
        if start:
            for sensor, _ in sensors.values():
                sensor.start()
        made.write_inventory()
        return made

    return make


def test_healthy_sensor_and_one_with_a_listener_down(fleet):
    blocker = socket.socket()  # bound, not listening: the sensor cannot have this port
    blocker.bind(("127.0.0.1", 0))
    try:
        f = fleet(a="", b="", start=False)
        b = f.sensors["b"][0]
        text = b.config_path.read_text().replace(
            f"http = [{b.ports['http']}]", f"http = [{blocker.getsockname()[1]}]"
        )
        b.config_path.write_text(text.replace('bind = ["127.0.0.1", "::1"]', ""))
        sensor_keys(b, 'bind = ["127.0.0.1"]\nallow_partial_bind = true')
        for sensor, _ in f.sensors.values():
            sensor.start()
            send_mail(sensor.smtp_port, 1)
        code, states = f.states()
        assert states == {"a": expect(sync="WARN"), "b": expect(processes="CRIT", sync="WARN")}
        f.collect()
        assert (f.central / "raw" / "a").is_dir()
        code, states = f.states()
        assert states == {"a": ALL_OK, "b": expect(processes="CRIT")}
        assert code == 2

        code, out = f.run()  # the terminal table
        first = out.splitlines()[0]
        assert first.startswith("SPAMPOT CRIT - 2 sensor(s): b CRIT |")
        assert "listener(s) not accepting: 127.0.0.1:" in out.replace("\n", " ")
        assert code == 2
        code, out = f.run("--sensor", "a")
        assert code == 0 and out.startswith("SPAMPOT OK - 1 sensor(s), all OK")
    finally:
        blocker.close()


def test_disk_nearly_full_and_no_captures_for_too_long(fleet, tmp_path):
    need_root()
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    # No free-space floor on a: it must still capture on the nearly full disk.
    f = fleet(a="\n[spool]\nmin_free_bytes = 0\nmin_free_inodes = 0\n", b="", start=False)
    try:
        a = f.sensors["a"][0]
        small = mount / "data"
        a.config_path.write_text(a.config_path.read_text().replace(str(a.data_dir), str(small)))
        a.data_dir = small
        f.write_inventory("silence_warn = 8")
        for sensor, _ in f.sensors.values():
            sensor.start()
        (small / "filler").write_bytes(b"\0" * (int(3.8 * 2**20)))  # > 90 % of 4 MiB
        f.collected("a")
        f.collected("b")
        time.sleep(8.5)  # b: started, and silent for longer than silence_warn
        send_mail(a.smtp_port, 1)  # a has captured just now
        code, states = f.states()
        assert states == {"a": expect(disk="CRIT"), "b": expect(capture="WARN")}
        assert code == 2
    finally:
        for sensor, _ in f.sensors.values():
            if sensor.proc is not None:
                sensor.stop()
        subprocess.run(["umount", str(mount)], check=True)


def test_not_collected_for_too_long_and_a_reboot(fleet, tmp_path):
    # b reads the kernel through a procfs of the test's making whose boot time changes.
    procfs = tmp_path / "proc-b"
    procfs.mkdir()
    for name in ("uptime", "loadavg", "net"):
        (procfs / name).symlink_to(f"/proc/{name}")
    (procfs / "stat").write_text("btime 1790000000\n")
    f = fleet(a="", b=f'procfs = "{procfs}"\n')
    f.collected("a", ago=timedelta(days=3))
    f.collected("b", ago=timedelta(hours=3))
    code, states = f.states()
    assert states == {"a": expect(sync="CRIT"), "b": expect(sync="WARN")}
    assert code == 2

    f.collected("a")
    f.collected("b")
    (procfs / "stat").write_text("btime 1790086400\n")  # a day later: it rebooted
    code, states = f.states()
    assert states == {"a": ALL_OK, "b": expect(uptime="WARN")}
    assert code == 1
    code, states = f.states()  # seen once; the same boot is no new reboot
    assert states == {"a": ALL_OK, "b": ALL_OK}
    assert code == 0

    boots = [
        datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for t in (1790000000, 1790086400)
    ]
    code, out = f.run("--history", "5", "--sensor", "b")  # the trend, without SSH
    assert code == 0 and out.count(boots[1]) == 2 and out.count(boots[0]) == 1
    assert out.count("WARN") == 2  # the reboot (and the sync warning before it)
    lines = (f.central / "state/status/b.jsonl").read_text().splitlines()
    history = [json.loads(line) for line in lines]
    assert [h["checks"]["uptime"] for h in history] == ["OK", "WARN", "OK"]
    assert [h["boot_time"] for h in history] == [boots[0], boots[1], boots[1]]


def test_clock_offset_and_an_unreachable_sensor(fleet):
    f = fleet(ntp_offsets={"a": 120}, a="", b="")
    f.collected("a")
    f.collected("b")
    code, states = f.states()
    assert states == {"a": expect(clock="CRIT"), "b": ALL_OK}
    _, out = f.run("--json", "--sensor", "a")
    clock = json.loads(out)["sensors"][0]["checks"]["clock"]["summary"]
    assert clock.startswith("offset +1")  # +120 s, give or take the network
    f.write_inventory("clock_warn = 0.0\nclock_crit = 1000.0")
    assert f.states()[1]["b"]["clock"] == "WARN"  # any offset at all warns now

    f.sshd.stop()
    code, states = f.states()
    unknown = dict.fromkeys(ALL_OK, "UNKNOWN")
    assert states == {
        "a": {**unknown, "connectivity": "CRIT"},
        "b": {**unknown, "connectivity": "CRIT"},
    }
    assert code == 2


def test_every_runs_rounds_and_load_thresholds_apply(fleet):
    f = fleet(a="")
    f.collected("a")
    f.write_inventory("load_warn = 0.0\nload_crit = 1000.0")
    code, out = f.run("--json", "--every", "1s", "--rounds", "2")
    rounds = [json.loads(line) for line in out.splitlines()]
    for record in rounds:
        validate_status(record)
    assert len(rounds) == 2 and code == 1
    assert all(r["sensors"][0]["checks"]["load"]["state"] == "WARN" for r in rounds)
    assert rounds[1]["sensors"][0]["figures"]["messages_15min"] == 0
    history = f.central / "state/status/a.jsonl"
    assert len(history.read_text().splitlines()) == 2


def test_bad_inventory_is_unknown(tmp_path):
    path = tmp_path / "inv.toml"
    path.write_text("[status]\nload_warn = 5.0\nload_crit = 1.0\n")
    done = subprocess.run(
        [PYTHON, "-m", "spampot", "status", "--inventory", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3
    assert done.stdout.startswith("SPAMPOT UNKNOWN - ")
    assert "load_warn is above" in done.stdout
    assert os.path.exists(path)
