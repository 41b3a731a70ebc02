"""``spampot ingest``: collected event files into the Parquet warehouse, enriched.

Layout of the warehouse directory::

    <table>/day=<YYYY-MM-DD>/<batch>-<n>.parquet   messages, proxy_requests, sessions,
                                                   smtp_events, recipient_domains
    _manifest.jsonl                                one line per committed batch
    _staging/                                      a batch being written (removed at start)

A batch is a bounded set of event files (``batch_bytes`` of gzip input), read by DuckDB in one
pass, enriched (each distinct source address looked up once), written to ``_staging/``, moved
into place and only then committed by a line in the manifest naming its input files (path
under ``raw/``, size, mtime). Re-running adds nothing for files already committed; a crash
leaves files of an uncommitted batch, which the next run deletes before it starts, so every
file is in the warehouse exactly once. Memory is bounded by the batch size, not the data.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from spampot.analysis.enrich import Enricher
from spampot.analysis.sql import load_sql
from spampot.contract import COLUMNS

# The warehouse tables written at ingest, each from sql/ingest_<table>.sql.
TABLES = ("messages", "proxy_requests", "sessions", "smtp_events", "recipient_domains")
MANIFEST = "_manifest.jsonl"
STAGING = "_staging"

# Every event field any table reads, with its type: the event contract's stored fields. Other
# fields (``message``, headers, ...) are skipped by the JSON reader.
EVENT_COLUMNS: dict[str, str] = dict(COLUMNS)

IPINFO_SCHEMA = pa.schema(
    [
        ("src_ip", pa.string()),
        ("country", pa.string()),
        ("asn", pa.int64()),
        ("as_name", pa.string()),
        ("as_country", pa.string()),
        ("geo_source", pa.string()),
    ]
)


@dataclass(frozen=True, slots=True)
class IngestConfig:
    raw_dir: Path
    warehouse: Path
    batch_bytes: int = 128 * 1024 * 1024  # gzip input per batch: bounds memory
    threads: int = 0  # DuckDB threads; 0 = one per core
    memory_limit: str = "3GB"  # DuckDB spills to the warehouse's _staging/ beyond this
    small_file_bytes: int = 512 * 1024  # below this mean gzip size, read files as raw lines
    compression: str = "snappy"  # the cheapest to write (ingest speed), and what Spark reads best


@dataclass(frozen=True, slots=True)
class RawFile:
    rel: str  # path under raw/: <sensor dir>/events/<name>
    size: int
    mtime_ns: int


@dataclass(slots=True)
class IngestResult:
    files: int = 0
    input_bytes: int = 0
    events: int = 0
    batches: int = 0
    new_addresses: int = 0
    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))
    changed: list[str] = field(default_factory=list)  # committed files whose size/mtime moved
    failed: list[tuple[str, str]] = field(default_factory=list)  # unreadable files, and why
    seconds: float = 0.0


Progress = Callable[[int, int], None]  # (input bytes done, input bytes to do)


class Manifest:
    """The committed batches: which raw files the warehouse already holds."""

    def __init__(self, warehouse: Path) -> None:
        self.path = warehouse / MANIFEST
        self.files: dict[str, RawFile] = {}
        self.batches: set[str] = set()
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                try:
                    entry = json.loads(line)
                    batch = entry["batch"]
                    files = [RawFile(*item) for item in entry["files"]]
                except (ValueError, KeyError, TypeError):
                    continue  # a torn last line: that batch was never committed
                self.batches.add(batch)
                for raw in files:
                    self.files[raw.rel] = raw

    def commit(self, batch: str, files: list[RawFile], detail: dict[str, Any]) -> None:
        entry = {
            "batch": batch,
            "files": [[f.rel, f.size, f.mtime_ns] for f in files],
            "committed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **detail,
        }
        line = json.dumps(entry, separators=(",", ":")) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        self.batches.add(batch)
        for raw in files:
            self.files[raw.rel] = raw


def scan_raw(raw_dir: Path) -> list[RawFile]:
    """Every rotated event file under ``raw/<sensor>/events/``, in time order."""
    found: list[tuple[str, str, RawFile]] = []
    if not raw_dir.is_dir():
        return []
    for sensor_dir in sorted(raw_dir.iterdir()):
        events = sensor_dir / "events"
        if not events.is_dir():
            continue
        for entry in os.scandir(events):
            if not entry.name.endswith(".jsonl.gz") or not entry.is_file(follow_symlinks=False):
                continue
            st = entry.stat(follow_symlinks=False)
            rel = f"{sensor_dir.name}/events/{entry.name}"
            # <sensor>-<YYYYmmddTHH>[-n].jsonl.gz: sort by hour across sensors.
            stamp = entry.name.removesuffix(".jsonl.gz").rsplit("-", 2)
            hour = next((p for p in stamp if len(p) == 11 and p[8:9] == "T"), "")
            found.append((hour, rel, RawFile(rel, st.st_size, st.st_mtime_ns)))
    found.sort()
    return [raw for _, _, raw in found]


def plan_batches(files: list[RawFile], batch_bytes: int) -> Iterator[list[RawFile]]:
    batch: list[RawFile] = []
    size = 0
    for raw in files:
        batch.append(raw)
        size += raw.size
        if size >= batch_bytes:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def batch_id(files: list[RawFile]) -> str:
    digest = hashlib.sha256()
    for raw in files:
        digest.update(f"{raw.rel}\0{raw.size}\0{raw.mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


class Ingester:
    def __init__(self, config: IngestConfig, enricher: Enricher) -> None:
        self.config = config
        self.enricher = enricher
        config.warehouse.mkdir(parents=True, exist_ok=True)
        self._recover()
        self.manifest = Manifest(config.warehouse)
        self.con = duckdb.connect()
        if config.threads:
            self.con.execute(f"SET threads = {int(config.threads)}")
        self.con.execute("SET memory_limit = ?", [config.memory_limit])
        self.con.execute("SET temp_directory = ?", [str(config.warehouse / STAGING / "spill")])
        self.con.execute("SET preserve_insertion_order = false")
        self.con.execute(
            "CREATE TEMP TABLE ipinfo (src_ip VARCHAR PRIMARY KEY, country VARCHAR, asn BIGINT,"
            " as_name VARCHAR, as_country VARCHAR, geo_source VARCHAR)"
        )

    def close(self) -> None:
        self.con.close()
        shutil.rmtree(self.config.warehouse / STAGING, ignore_errors=True)

    def __enter__(self) -> Ingester:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- crash recovery ---------------------------------------------------------------------

    def _recover(self) -> None:
        """Delete what an interrupted run left: staging, and files of uncommitted batches."""
        warehouse = self.config.warehouse
        shutil.rmtree(warehouse / STAGING, ignore_errors=True)
        committed = Manifest(warehouse).batches
        for table in TABLES:
            for part in (warehouse / table).glob("day=*/*.parquet"):
                if part.name.split("-", 1)[0] not in committed:
                    part.unlink()

    # --- the run ----------------------------------------------------------------------------

    def pending(self) -> tuple[list[RawFile], list[str]]:
        """Files not yet ingested, and committed files that changed since (not re-read)."""
        new: list[RawFile] = []
        changed: list[str] = []
        for raw in scan_raw(self.config.raw_dir):
            known = self.manifest.files.get(raw.rel)
            if known is None:
                new.append(raw)
            elif (known.size, known.mtime_ns) != (raw.size, raw.mtime_ns):
                changed.append(raw.rel)
        return new, changed

    def run(self, progress: Progress | None = None) -> IngestResult:
        started = time.perf_counter()
        result = IngestResult()
        files, result.changed = self.pending()
        total = sum(f.size for f in files)
        done = 0
        if progress:
            progress(0, total)
        for batch in plan_batches(files, self.config.batch_bytes):
            self._ingest_batch(batch, result)
            done += sum(f.size for f in batch)
            if progress:
                progress(done, total)
        result.seconds = time.perf_counter() - started
        return result

    def _ingest_batch(self, files: list[RawFile], result: IngestResult) -> None:
        try:
            self._ingest_files(files, result)
        except duckdb.Error:
            # One unreadable file (not gzip, truncated) must not hold back the others: read
            # them one by one, and set aside the ones that fail.
            for raw in files:
                try:
                    self._ingest_files([raw], result)
                except duckdb.Error as exc:
                    self._set_aside(raw, exc, result)

    def _set_aside(self, raw: RawFile, exc: duckdb.Error, result: IngestResult) -> None:
        """Commit an unreadable file as failed: it is reported, and not retried each run."""
        reason = str(exc).splitlines()[0][:300]
        shutil.rmtree(self.config.warehouse / STAGING, ignore_errors=True)
        self.con.execute("DROP TABLE IF EXISTS batch_events")
        self.manifest.commit(batch_id([raw]), [raw], {"failed": reason})
        result.failed.append((raw.rel, reason))

    def _ingest_files(self, files: list[RawFile], result: IngestResult) -> None:
        con = self.con
        cfg = self.config
        bid = batch_id(files)
        paths = [str(cfg.raw_dir / raw.rel) for raw in files]
        small = sum(raw.size for raw in files) < cfg.small_file_bytes * len(files)
        con.execute(
            "CREATE OR REPLACE TEMP TABLE batch_events AS"
            ' SELECT "timestamp" AS ts, * EXCLUDE ("timestamp", filename),'
            " split_part(filename, '/', -3) AS raw_sensor"
            f" FROM ({_SMALL_FILES if small else _LARGE_FILES})",
            [paths],
        )
        count = con.execute("SELECT COUNT(*) FROM batch_events").fetchone()
        events = int(count[0]) if count else 0
        new_addresses = self._enrich()
        staging = cfg.warehouse / STAGING / bid
        staging.mkdir(parents=True, exist_ok=True)
        rows: dict[str, int] = {}
        written: list[tuple[Path, Path]] = []
        for table in TABLES:
            out = staging / table
            sql = load_sql(f"ingest_{table}")
            count = con.execute(
                f"COPY ({sql}) TO '{_quote(out)}' (FORMAT parquet, PARTITION_BY (day),"
                f" COMPRESSION {cfg.compression}, FILENAME_PATTERN '{bid}-{{i}}')"
            ).fetchone()
            rows[table] = int(count[0]) if count else 0
            for part in out.glob("day=*/*.parquet"):
                written.append((part, cfg.warehouse / table / part.parent.name / part.name))
        for src, dst in written:
            with open(src, "rb") as f:
                os.fsync(f.fileno())
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
        self.manifest.commit(
            bid, files, {"events": events, "rows": rows, "geo_source": self.enricher.label}
        )
        shutil.rmtree(staging, ignore_errors=True)
        con.execute("DROP TABLE batch_events")
        result.events += events
        result.new_addresses += new_addresses
        for table, n in rows.items():
            result.rows[table] += n
        result.files += len(files)
        result.input_bytes += sum(f.size for f in files)
        result.batches += 1

    def _enrich(self) -> int:
        """Look up the batch's addresses not seen before in this run; returns how many."""
        new = [
            row[0]
            for row in self.con.execute(
                "SELECT DISTINCT e.src_ip FROM batch_events AS e"
                " ANTI JOIN ipinfo AS i ON e.src_ip = i.src_ip WHERE e.src_ip IS NOT NULL"
            ).fetchall()
        ]
        if not new:
            return 0
        table = pa.table(self.enricher.lookup_many(new), schema=IPINFO_SCHEMA)
        self.con.register("new_ipinfo", table)
        try:
            self.con.execute("INSERT INTO ipinfo SELECT * FROM new_ipinfo")
        finally:
            self.con.unregister("new_ipinfo")
        return len(new)


def _struct_literal(columns: dict[str, str]) -> str:
    return "{" + ", ".join(f"'{name}': '{kind}'" for name, kind in columns.items()) + "}"


# Two ways to read a batch of event files into the same columns. DuckDB's JSON reader with
# the columns given is the fastest per event, but sets up each column for each file (about
# 2 ms of CPU per file with these 35 columns); a sensor with little traffic rotates hourly
# files of a few dozen events, where that dominates. Those are read as raw JSON lines and
# transformed once per line instead (3x faster there, a fifth slower on large files).
_LARGE_FILES = (
    "SELECT * FROM read_json(?, format = 'newline_delimited', records = true, columns = "
    + _struct_literal(EVENT_COLUMNS)
    + ", compression = 'gzip', timestampformat = '%Y-%m-%dT%H:%M:%S.%fZ', filename = true,"
    " ignore_errors = true, maximum_object_size = 16777216)"
)
_SMALL_FILES = (
    "SELECT unnest(json_transform(json, '"
    + json.dumps(EVENT_COLUMNS).replace("'", "''")
    + "')), filename FROM read_json_objects(?, format = 'newline_delimited',"
    " compression = 'gzip', filename = true, ignore_errors = true,"
    " maximum_object_size = 16777216)"
)


def _quote(path: Path) -> str:
    return str(path).replace("'", "''")


def ingest(
    config: IngestConfig, enricher: Enricher, progress: Progress | None = None
) -> IngestResult:
    with contextlib.closing(Ingester(config, enricher)) as ingester:
        return ingester.run(progress)
