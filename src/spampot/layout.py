"""Where everything lives in a sensor's data dir and in the central server's: the one place.

Every module that touches a data-dir path takes it from here (sensor, writer, events, health,
the gate, the collector, status): a path spelled twice drifts (DESIGN.md data contract).

A sensor's data dir (``[sensor] data_dir``, one filesystem: renames are atomic)::

    spool/<day>/<port>/<ip>/<HHMMSS>-<id>.eml.gz   complete messages: the collector takes them
    spool/events/<sensor>-<hour>[-n].jsonl.gz       complete rotated event files
    events/current[-w<k>].jsonl                     the live event log of worker k
    events/rotating[-w<k>]-<hour>[.n].jsonl         renamed aside during a rotation
    events/last-rotated[-w<k>]                      the last rotated name (never reused)
    tmp/                                            files being written (never read by others)
    state/sensor.pid                                the daemon's pid and start time
    state/sensor.lock                               held while a sensor runs on this data dir
    state/worker-<k>.json                           worker k's counters (spampot health)
    state/previous-runs.json                        carried across restarts (silence check)
    state/last-collection.json                      written by the gate's ``collected``
    tls/snakeoil.pem, tls/snakeoil.key              STARTTLS certificate and key, made at first
                                                    start (as root when started as root: the
                                                    key then stays unreadable to the run user)

The sensor hands exactly :attr:`SensorLayout.owned` (spool/, events/, state/, tmp/) to its run
user at start, and nothing else in the data dir: not ``tls/`` (its key, made by root when the
sensor starts as root, stays root's), and never what a person put beside them, such as the
collector's ``.ssh/`` (sshd's StrictModes refuses a key whose directory belongs to another
user).

The central server's data dir (``[central] data_dir`` of the inventory)::

    raw/<sensor>/...                                each sensor's spool, as collected
    state/collect/<sensor>.json, .lock, .known_hosts, .copying (a copy that did not end)
    state/status/<sensor>.jsonl                     spampot status history
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

SPOOL = "spool"
EVENTS = "events"
STATE = "state"
TMP = "tmp"
WORKER_FILE_PREFIX = "worker-"
DEFAULT_SENSOR_DATA_DIR = "/var/lib/spampot"
DEFAULT_CENTRAL_DATA_DIR = "/var/lib/spampot-central"


@dataclass(frozen=True, slots=True)
class SensorLayout:
    """The paths of one sensor's data dir (``root``); nothing here touches the disk."""

    root: Path

    # -- the four directories the sensor owns -------------------------------------------------

    @property
    def spool(self) -> Path:
        """Complete files only: whatever is here the collector may take."""
        return self.root / SPOOL

    @property
    def events(self) -> Path:
        """The live event logs."""
        return self.root / EVENTS

    @property
    def state(self) -> Path:
        return self.root / STATE

    @property
    def tmp(self) -> Path:
        """Where files are written before their rename into ``spool/``."""
        return self.root / TMP

    @property
    def owned(self) -> tuple[Path, ...]:
        """What the sensor creates and hands to its run user; never anything else."""
        return (self.spool, self.events, self.state, self.tmp)

    # -- inside them -----------------------------------------------------------------------------

    @property
    def spool_events(self) -> Path:
        """Rotated event files, complete (the collector takes them with the messages)."""
        return self.spool / EVENTS

    def current_events(self, worker: int = 0) -> Path:
        return self.events / f"current{worker_suffix(worker)}.jsonl"

    def rotating_events(self, worker: int, hour: str, n: int = 0) -> Path:
        """The live file renamed aside for compression (``n``: a second one in the hour)."""
        count = f".{n}" if n else ""
        return self.events / f"rotating{worker_suffix(worker)}-{hour}{count}.jsonl"

    def rotating_glob(self, worker: int) -> str:
        """Glob (in :attr:`events`) of the files a rotation left aside."""
        return f"rotating{worker_suffix(worker)}-*.jsonl"

    def last_rotated(self, worker: int) -> Path:
        """The last rotated file's hour and count: rotated names are never reused."""
        return self.events / f"last-rotated{worker_suffix(worker)}"

    @property
    def lock_file(self) -> Path:
        """Held by every process of a running sensor: one sensor per data dir."""
        return self.state / "sensor.lock"

    @property
    def pid_file(self) -> Path:
        return self.state / "sensor.pid"

    def worker_file(self, worker: int) -> Path:
        return self.state / f"{WORKER_FILE_PREFIX}{worker}.json"

    def worker_files(self) -> list[Path]:
        """Every worker's counter file present, in name order."""
        return sorted(self.state.glob(f"{WORKER_FILE_PREFIX}*.json"))

    @property
    def previous_runs(self) -> Path:
        return self.state / "previous-runs.json"

    @property
    def last_collection(self) -> Path:
        return self.state / "last-collection.json"

    @property
    def tls_dir(self) -> Path:
        return self.root / "tls"

    @property
    def tls_certificate(self) -> Path:
        return self.tls_dir / "snakeoil.pem"

    @property
    def tls_key(self) -> Path:
        return self.tls_dir / "snakeoil.key"


# What may be a file under spool/ (relative to it): a message, or a rotated event file. The
# client address component is ip_component()'s output; the sensor name name_component()'s.
MESSAGE_RELPATH = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}/[0-9]{1,5}/[0-9A-Za-z._-]{1,80}/[0-9]{6}-[0-9A-F]{6,20}\.eml\.gz"
)
EVENTS_RELPATH = re.compile(EVENTS + r"/[0-9A-Za-z_-][0-9A-Za-z._-]{0,99}\.jsonl\.gz")


def spool_file(relpath: str) -> bool:
    """Whether ``relpath`` (relative to ``spool/``) has the form of a file the sensor writes."""
    if any(part in (".", "..") for part in relpath.split("/")):
        return False  # the address component's characters would allow them
    return bool(MESSAGE_RELPATH.fullmatch(relpath) or EVENTS_RELPATH.fullmatch(relpath))


# The live and set-aside event file names of SensorLayout.current_events / rotating_events, for
# recognising them in events/ (recovery at start, the rotation's leftovers).
CURRENT_EVENTS_NAME = re.compile(r"current(?:-w(?P<worker>[0-9]+))?\.jsonl")
ROTATING_EVENTS_NAME = re.compile(
    r"rotating(?P<worker>-w[0-9]+)?-(?P<hour>[0-9]{8}T[0-9]{2})(?:\.(?P<n>[0-9]+))?\.jsonl"
)


def worker_suffix(worker: int) -> str:
    """Worker 0 writes ``current.jsonl``; worker k > 0 ``current-wk.jsonl``."""
    return f"-w{worker}" if worker else ""


def remote_spool(data_dir: str) -> str:
    """The sensor's ``spool/`` as rsync names it from the central server (a trailing slash:
    the directory's contents), for a data dir given as a POSIX path on the sensor."""
    return str(PurePosixPath(data_dir) / SPOOL) + "/"


@dataclass(frozen=True, slots=True)
class CentralLayout:
    """The paths of the central server's data dir (``root``)."""

    root: Path

    @property
    def raw(self) -> Path:
        """``raw/<sensor>/…`` mirrors each sensor's ``spool/``; only whole files appear here."""
        return self.root / "raw"

    @property
    def state(self) -> Path:
        return self.root / STATE

    def raw_for(self, sensor: str) -> Path:
        return self.raw / sensor

    @property
    def collect_state(self) -> Path:
        return self.state / "collect"

    def collect_record(self, sensor: str) -> Path:
        return self.collect_state / f"{sensor}.json"

    def collect_lock(self, sensor: str) -> Path:
        return self.collect_state / f"{sensor}.lock"

    def copy_marker(self, sensor: str) -> Path:
        """Present while a copy runs and after one that was killed: sweep raw/ first."""
        return self.collect_state / f"{sensor}.copying"

    def known_hosts(self, sensor: str) -> Path:
        return self.collect_state / f"{sensor}.known_hosts"

    @property
    def status_history(self) -> Path:
        return self.state / "status"

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse"
