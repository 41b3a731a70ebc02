"""The central server's inventory: one TOML file naming every sensor and how to reach it.

```toml
[central]
data_dir = "/var/lib/spampot-central"     # raw/ and state/ live here

[collect]
parallel = 4

[defaults]                                 # any [[sensor]] key, for every sensor
user = "spampot"
key = "/etc/spampot/central_ed25519"

[[sensor]]
name = "br-01"
host = "br-01.example.net"
host_key = "ssh-ed25519 AAAA…"             # or known_hosts = "/etc/spampot/known_hosts"
tags = ["residential"]
isp = "Example Telecom"
```

Loaded into frozen dataclasses; unknown sections and keys, wrong types and missing required
keys are errors with a message naming the place, so a typo never leaves a default in force.
Relative paths are relative to the inventory file's directory.
"""

from __future__ import annotations

import base64
import dataclasses
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spampot.layout import (
    DEFAULT_CENTRAL_DATA_DIR,
    DEFAULT_SENSOR_DATA_DIR,
    CentralLayout,
    remote_spool,
)


class InventoryError(ValueError):
    """The inventory is unreadable, or holds a wrong, unknown or missing key."""


# A sensor name becomes a directory under raw/ and state/: keep it a plain file name.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Host and user go on ssh's command line: nothing that could read as an option or hold a space.
_HOST = re.compile(r"[A-Za-z0-9_.:%\[\]-]{1,253}")
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}")
_KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)


@dataclass(frozen=True, slots=True)
class CentralSection:
    data_dir: Path = Path(DEFAULT_CENTRAL_DATA_DIR)

    @property
    def layout(self) -> CentralLayout:
        """Every path in the central data dir (spampot.layout)."""
        return CentralLayout(self.data_dir)

    @property
    def raw_dir(self) -> Path:
        return self.layout.raw

    @property
    def state_dir(self) -> Path:
        return self.layout.state


@dataclass(frozen=True, slots=True)
class CollectSection:
    parallel: int = 4  # sensors collected at once
    connect_timeout: int = 20  # seconds for the TCP connection and SSH handshake
    io_timeout: int = 120  # rsync --timeout: seconds without any data before giving up
    max_duration: int = 3600  # seconds one sensor's collection may take in all
    bwlimit: int = 0  # KiB/s per sensor (rsync --bwlimit); 0 = no limit
    # rsync -z: off, since every spool file is gzip already and compressing the stream cost
    # more CPU than it saved (bench/collect_bench.py); on for a slow uplink.
    compress: bool = False
    # Sync raw/ to disk before the sensor deletes anything (a second rsync pass removes what
    # the centre holds); false = one pass with --remove-source-files.
    durable: bool = True
    rsync: str = "rsync"  # the rsync program on the central server
    ssh: str = "ssh"  # the ssh program on the central server


@dataclass(frozen=True, slots=True)
class StatusSection:
    """``spampot status``: how sensors are asked, and the thresholds of the eight checks."""

    timeout: int = 60  # seconds for one sensor's whole answer (SSH and spampot health)
    parallel: int = 8  # sensors asked at once
    load_warn: float = 2.0  # 5-minute load average per CPU
    load_crit: float = 4.0
    disk_warn: float = 80.0  # percent of the data dir's space, or of its inodes, in use
    disk_crit: float = 90.0
    clock_warn: float = 1.0  # seconds of offset against NTP, either way
    clock_crit: float = 10.0
    silence_warn: int = 7200  # seconds without a captured email
    sync_warn: int = 7200  # seconds since the last successful collection
    sync_crit: int = 86400
    boot_tolerance: int = 60  # seconds a boot time may move (clock steps) without a reboot
    history_keep: int = 10000  # records kept per sensor in state/status/<sensor>.jsonl


@dataclass(frozen=True, slots=True)
class SensorEntry:
    name: str
    host: str
    key: Path  # private key of the central server for this sensor
    port: int = 22
    user: str = "spampot"
    host_key: str = ""  # pinned public host key line: "ssh-ed25519 AAAA…"
    known_hosts: Path | None = None  # or a known_hosts file holding it
    data_dir: str = DEFAULT_SENSOR_DATA_DIR  # on the sensor
    tags: tuple[str, ...] = ()  # e.g. "residential", "business"
    isp: str = ""
    enabled: bool = True

    @property
    def remote_spool(self) -> str:
        """The sensor's spool directory with a trailing slash (rsync: its contents)."""
        return remote_spool(self.data_dir)

    @property
    def destination(self) -> str:
        """``user@host`` for ssh; IPv6 literals need no brackets there."""
        return f"{self.user}@{self.host.strip('[]')}"


@dataclass(frozen=True, slots=True)
class Inventory:
    central: CentralSection = field(default_factory=CentralSection)
    collect: CollectSection = field(default_factory=CollectSection)
    status: StatusSection = field(default_factory=StatusSection)
    sensors: tuple[SensorEntry, ...] = ()
    path: Path | None = None  # the file it was read from

    def sensor(self, name: str) -> SensorEntry:
        for entry in self.sensors:
            if entry.name == name:
                return entry
        known = ", ".join(s.name for s in self.sensors) or "none"
        raise KeyError(f"no sensor named {name!r} in the inventory (known: {known})")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.sensors)


# Sections read by _section(); a new section is one frozen dataclass and one line here (and a
# field on Inventory).
_SECTIONS: dict[str, type] = {
    "central": CentralSection,
    "collect": CollectSection,
    "status": StatusSection,
}
_TOP = {*_SECTIONS, "defaults", "sensor"}
_SENSOR_KEYS = {f.name for f in dataclasses.fields(SensorEntry)}


def load_inventory(path: Path | str) -> Inventory:
    """Read and check the inventory at ``path``; raises :class:`InventoryError`."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except OSError as exc:
        raise InventoryError(f"cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InventoryError(f"{path}: {exc}") from exc
    try:
        return parse_inventory(raw, base=path.parent, path=path)
    except InventoryError as exc:
        raise InventoryError(f"{path}: {exc}") from exc


def parse_inventory(raw: dict[str, Any], base: Path, path: Path | None = None) -> Inventory:
    """Build an :class:`Inventory` from parsed TOML; relative paths are taken from ``base``."""
    unknown = sorted(set(raw) - _TOP)
    if unknown:
        raise InventoryError(
            f"unknown section(s): {', '.join(unknown)} (known: {', '.join(sorted(_TOP))})"
        )
    sections = {
        name: _section(cls, name, raw.get(name, {}), base) for name, cls in _SECTIONS.items()
    }
    defaults = raw.get("defaults", {})
    if not isinstance(defaults, dict):
        raise InventoryError("[defaults] must be a table")
    entries = raw.get("sensor", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise InventoryError("sensors are given as [[sensor]] tables")
    unknown = sorted(set(defaults) - _SENSOR_KEYS)
    if unknown:
        raise InventoryError(
            f"[defaults] unknown key(s): {', '.join(unknown)} (sensor keys: {_sensor_keys()})"
        )
    if "name" in defaults or "host" in defaults:
        raise InventoryError("[defaults] cannot set name or host: they belong to each sensor")
    sensors: list[SensorEntry] = []
    for index, entry in enumerate(entries):
        where = f"[[sensor]] #{index + 1}" + (
            f" ({entry['name']})" if isinstance(entry.get("name"), str) else ""
        )
        sensors.append(_sensor({**defaults, **entry}, where, base))
    seen: set[str] = set()
    for entry in sensors:
        if entry.name in seen:
            raise InventoryError(f"sensor name {entry.name!r} appears twice")
        seen.add(entry.name)
    return Inventory(**sections, sensors=tuple(sensors), path=path)


def _sensor_keys() -> str:
    return ", ".join(f.name for f in dataclasses.fields(SensorEntry))


def _section(cls: type, name: str, values: Any, base: Path) -> Any:
    if not isinstance(values, dict):
        raise InventoryError(f"[{name}] must be a table")
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise InventoryError(
            f"[{name}] unknown key(s): {', '.join(unknown)} (known: {', '.join(known)})"
        )
    defaults = cls()
    kwargs = {
        key: _coerce(f"{name}.{key}", getattr(defaults, key), value, base)
        for key, value in values.items()
    }
    obj = cls(**kwargs)
    if name == "collect":
        if obj.parallel < 1:
            raise InventoryError("collect.parallel must be at least 1")
        if obj.connect_timeout < 1 or obj.io_timeout < 1 or obj.max_duration < 1:
            raise InventoryError("collect timeouts must be at least 1 second")
    if name == "status":
        if obj.parallel < 1 or obj.timeout < 1:
            raise InventoryError("status.parallel and status.timeout must be at least 1")
        if obj.history_keep < 1:
            raise InventoryError("status.history_keep must be at least 1")
        for check in ("load", "disk", "clock", "sync"):
            if getattr(obj, f"{check}_warn") > getattr(obj, f"{check}_crit"):
                raise InventoryError(f"status.{check}_warn is above status.{check}_crit")
    return obj


def _coerce(where: str, default: Any, value: Any, base: Path) -> Any:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise InventoryError(f"{where} must be true or false")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InventoryError(f"{where} must be a non-negative integer")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise InventoryError(f"{where} must be a non-negative number")
        return float(value)
    if isinstance(default, Path):
        if not isinstance(value, str) or not value:
            raise InventoryError(f"{where} must be a path (a non-empty string)")
        return base / Path(value).expanduser()
    if isinstance(default, str):
        if not isinstance(value, str):
            raise InventoryError(f"{where} must be a string")
        return value
    raise InventoryError(f"{where}: unsupported value")  # pragma: no cover - schema bug


def _sensor(values: dict[str, Any], where: str, base: Path) -> SensorEntry:
    unknown = sorted(set(values) - _SENSOR_KEYS)
    if unknown:
        raise InventoryError(
            f"{where}: unknown key(s): {', '.join(unknown)} (known: {_sensor_keys()})"
        )
    for required in ("name", "host", "key"):
        if required not in values:
            raise InventoryError(f"{where}: {required!r} is required")

    def text(key: str, pattern: re.Pattern[str] | None = None, what: str = "") -> str:
        value = values[key]
        if not isinstance(value, str):
            raise InventoryError(f"{where}: {key} must be a string")
        if pattern is not None and not pattern.fullmatch(value):
            raise InventoryError(f"{where}: {key} {value!r} is not {what}")
        return value

    def path(key: str) -> Path:
        value = text(key)
        if not value:
            raise InventoryError(f"{where}: {key} must not be empty")
        return base / Path(value).expanduser()

    kwargs: dict[str, Any] = {
        "name": text("name", _NAME, "a valid sensor name (letters, digits, . _ -; at most 64)"),
        "host": text("host", _HOST, "a host name or address"),
        "key": path("key"),
    }
    if kwargs["host"].startswith("-"):
        raise InventoryError(f"{where}: host must not start with '-'")
    if "port" in values:
        port = values["port"]
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise InventoryError(f"{where}: port must be 1..65535")
        kwargs["port"] = port
    if "user" in values:
        kwargs["user"] = text("user", _USER, "a valid user name")
    if "host_key" in values:
        kwargs["host_key"] = _host_key(text("host_key"), where)
    if "known_hosts" in values:
        kwargs["known_hosts"] = path("known_hosts")
    if "data_dir" in values:
        data_dir = text("data_dir")
        if not data_dir.startswith("/") or "\n" in data_dir:
            raise InventoryError(f"{where}: data_dir must be an absolute path on the sensor")
        kwargs["data_dir"] = data_dir.rstrip("/") or "/"
    if "tags" in values:
        tags = values["tags"]
        if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
            raise InventoryError(f"{where}: tags must be a list of non-empty strings")
        kwargs["tags"] = tuple(tags)
    if "isp" in values:
        kwargs["isp"] = text("isp")
    if "enabled" in values:
        if not isinstance(values["enabled"], bool):
            raise InventoryError(f"{where}: enabled must be true or false")
        kwargs["enabled"] = values["enabled"]
    entry = SensorEntry(**kwargs)
    if bool(entry.host_key) == (entry.known_hosts is not None):
        raise InventoryError(
            f"{where}: give exactly one of host_key (the pinned key line) or known_hosts (a file):"
            " the sensor's host key is always checked"
        )
    return entry


def _host_key(line: str, where: str) -> str:
    """``type base64 [comment]`` -> ``type base64``; the blob must decode and name its type."""
    parts = line.split()
    if len(parts) < 2 or parts[0] not in _KEY_TYPES:
        raise InventoryError(
            f"{where}: host_key must be a public key line such as 'ssh-ed25519 AAAA…'"
            " (the sensor's /etc/ssh/ssh_host_ed25519_key.pub)"
        )
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except ValueError as exc:
        raise InventoryError(f"{where}: host_key is not valid base64") from exc
    # The blob starts with the key type as an SSH string (RFC 4253 §6.6).
    kind = parts[0].encode()
    if blob[4 : 4 + len(kind)] != kind:
        raise InventoryError(f"{where}: host_key's blob does not match its type {parts[0]}")
    return f"{parts[0]} {parts[1]}"
