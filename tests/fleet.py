"""Sensors behind real sshd instances and a central inventory pointing at them, for collect tests.

Spool contents are written the way the sensor writes them (the Spool class: stage in tmp/,
rename into spool/), with rotated event files in ``spool/events/`` whose ``smtp.message``
events carry each message's sha256 and ``file``, as the sensor's writer does.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from spampot.sensor.spool import Spool, SpoolItem, gzip_bytes, is_complete_gzip
from sshd import ClientKey, SshServer

WORDS = [
    "viagra",
    "cheap",
    "pills",
    "offer",
    "free",
    "winner",
    "claim",
    "prize",
    "account",
    "verify",
    "bank",
    "urgent",
    "reply",
    "casino",
    "bonus",
    "loan",
    "mortgage",
    "rate",
    "lowest",
    "replica",
    "watches",
    "meds",
    "online",
    "pharmacy",
    "discount",
    "click",
    "here",
    "unsubscribe",
    "limited",
    "time",
    "act",
    "now",
    "dear",
    "friend",
    "million",
    "dollars",
    "transfer",
]


@dataclass
class FleetSensor:
    name: str
    server: SshServer
    data_dir: Path
    key: ClientKey
    events: list[dict] = field(default_factory=list)

    @property
    def spool(self) -> Path:
        return self.data_dir / "spool"

    def spool_files(self) -> list[Path]:
        # os.walk, not rglob: a collection may prune a directory while this walks it.
        return sorted(
            Path(root, name) for root, _dirs, files in os.walk(self.spool) for name in files
        )


def gate_command(config: Path) -> str:
    """The forced command, as deployed: the gate given the sensor's configuration."""
    return f"{sys.executable} -m spampot gate --config {config}"


def sensor_config(path: Path, name: str, data_dir: Path) -> Path:
    """A sensor configuration naming ``data_dir`` (no NTP server: nothing leaves loopback)."""
    path.write_text(
        f'[sensor]\nname = "{name}"\ndata_dir = "{data_dir}"\nbind = ["127.0.0.1"]\n'
        "[health]\nntp_servers = []\n"
    )
    return path


def add_sensor(server: SshServer, name: str, data_dir: Path | None = None) -> FleetSensor:
    """A sensor data dir behind ``server``, reached with its own key through the gate."""
    data_dir = data_dir or server.sensor_dir(name)
    config = sensor_config(server.root / f"{name}.toml", name, data_dir)
    key = server.client_key(f"central-{name}")
    server.authorize(key, command=gate_command(config), options="restrict")
    return FleetSensor(name, server, data_dir, key)


def spam(rng: random.Random, size: int) -> bytes:
    """A message of about ``size`` bytes that gzips to about 40 % (word salad, some base64)."""
    head = (
        f"From: {rng.choice(WORDS)}@example.com\r\nTo: victim@example.org\r\n"
        f"Subject: {' '.join(rng.choices(WORDS, k=5))}\r\n\r\n"
    ).encode()
    body = bytearray()
    while len(body) < size * 0.7:
        body += (" ".join(rng.choices(WORDS, k=12)) + "\r\n").encode()
    blob = rng.randbytes(int(size * 0.3 * 3 / 4)).hex().encode()
    return head + bytes(body) + blob + b"\r\n"


def fill_spool(
    sensor: FleetSensor,
    count: int,
    *,
    seed: int = 1,
    days: tuple[str, ...] = ("2026-11-26", "2026-11-27"),
    size: int = 6000,
    big: int = 0,
    big_size: int = 400_000,
) -> list[dict]:
    """Write ``count`` messages (and ``big`` large ones) plus one rotated event file per day.

    Returns the ``smtp.message`` events, which are also kept in ``sensor.events``.
    """
    rng = random.Random(seed)
    spool = Spool(sensor.data_dir)
    spool.prepare()
    events: list[dict] = []
    total = count + big
    for i in range(total):
        day = days[i * len(days) // total]
        port = rng.choice((25, 1080, 3128, 8080))
        ip = f"198.51.100.{rng.randrange(1, 40)}"
        qid = f"{seed:02X}{len(sensor.events) + i:08X}"
        hhmmss = f"{rng.randrange(24):02d}{rng.randrange(60):02d}{rng.randrange(60):02d}"
        relpath = f"{day}/{port}/{ip}/{hhmmss}-{qid}.eml.gz"
        data = rng.randbytes(big_size) if i >= count else spam(rng, size)
        spool.publish(spool.stage(SpoolItem(relpath, data)), relpath)
        events.append(
            {
                "eventid": "spampot.smtp.message",
                "timestamp": f"{day}T{hhmmss[:2]}:{hhmmss[2:4]}:{hhmmss[4:]}.000000Z",
                "sensor": sensor.name,
                "dst_port": port,
                "src_ip": ip,
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "queue_id": qid,
                "file": relpath,
            }
        )
    for day in days:
        lines = "".join(json.dumps(e) + "\n" for e in events if e["file"].startswith(day))
        stamp = day.replace("-", "") + "T12"
        name = f"{sensor.name}-{stamp}-{seed}.jsonl.gz"
        tmp = sensor.data_dir / "tmp" / name
        tmp.write_bytes(gzip_bytes(lines.encode(), 6))
        os.rename(tmp, sensor.spool / "events" / name)
    sensor.events += events
    return events


def write_inventory(
    path: Path,
    central: Path,
    sensors: list[FleetSensor],
    collect: str = "",
    known_hosts: tuple[str, ...] = (),
) -> Path:
    """An inventory for ``sensors``: host keys pinned with ``host_key``, or for the sensors
    named in ``known_hosts``, given in a known_hosts file."""
    parts = [f'[central]\ndata_dir = "{central}"\n\n[collect]\nparallel = 4\n{collect}\n']
    for s in sensors:
        trust = (
            f'known_hosts = "{s.server.known_hosts()}"'
            if s.name in known_hosts
            else f'host_key = "{s.server.host_key}"'
        )
        parts.append(
            f"""
[[sensor]]
name = "{s.name}"
host = "127.0.0.1"
port = {s.server.port}
user = "{s.server.user}"
key = "{s.key.path}"
{trust}
data_dir = "{s.data_dir}"
tags = ["residential"]
isp = "Test ISP"
"""
        )
    path.write_text("".join(parts))
    return path


def collect_cmd(inventory: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "spampot", "collect", "--inventory", str(inventory), *args]


def run_collect(inventory: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        collect_cmd(inventory, "--no-progress", *args),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def check_centre(raw: Path, sensor: FleetSensor) -> None:
    """Every message of ``sensor`` is at the centre exactly once, whole and byte-identical.

    Reads the events from the collected event files (as the analysis would), and checks that
    nothing else is under ``raw/<sensor>``: no temporary file, no duplicate.
    """
    base = raw / sensor.name
    collected_events = []
    for path in sorted((base / "events").glob("*.jsonl.gz")):
        collected_events += [
            json.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines()
        ]
    messages = [e for e in collected_events if e["eventid"] == "spampot.smtp.message"]
    assert sorted(e["queue_id"] for e in messages) == sorted(e["queue_id"] for e in sensor.events)
    expected = {e["file"]: e["sha256"] for e in messages}
    for relpath, digest in expected.items():
        data = gzip.decompress((base / relpath).read_bytes())
        assert hashlib.sha256(data).hexdigest() == digest, relpath
    present = {str(p.relative_to(base)) for p in base.rglob("*") if p.is_file()}
    event_files = {p for p in present if p.startswith("events/")}
    assert present - event_files == set(expected), "stray or missing files under raw/"
    for path in base.rglob("*.gz"):
        assert is_complete_gzip(path), path
