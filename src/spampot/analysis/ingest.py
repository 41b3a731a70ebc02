"""``spampot ingest``: collected event files into the Parquet warehouse, enriched.

Layout of the warehouse directory::

    <table>/day=<YYYY-MM-DD>/<batch>-<n>.parquet   messages, proxy_requests, sessions,
                                                   smtp_events, recipient_domains
    _manifest.jsonl                                one line per committed batch
    _quarantine/<batch>.jsonl                      lines of that batch kept out of the tables
    _staging/                                      a batch being written (removed at start)
    _ingest.lock                                   held by the run writing (who, since when)

A batch is a bounded set of event files (``batch_bytes`` of gzip input). Every line is
validated against the event contract (:mod:`spampot.analysis.event_reader`: in DuckDB, the
contract's decoder for what the query leaves); the valid events are the view ``batch_events``
in DuckDB, enriched (each distinct source address looked up once),
each warehouse table is written from it to ``_staging/``, moved into place and only then
committed by a line in the manifest naming its input files (path under ``raw/``, size,
mtime) and what was set aside. Re-running adds nothing for files already committed; a crash
leaves files of an uncommitted batch, which the next run deletes before it starts, so every
file is in the warehouse exactly once. One run at a time: a second waits for the lock (or,
told not to wait, says who holds it). Memory is bounded by the batch size, not the data.

A file that changed after it was committed (repaired, or grown) is not read again on its
own: ``reingest`` takes it back explicitly, with the other files of its batch, as one new
batch whose manifest line *replaces* the old one; the old batch's files are deleted after
that line is written (and by the next run's recovery, if a crash comes first), so what the
warehouse holds of those files is still exactly one copy.

**Adding a table** (the extension point): a :class:`BatchTable` in ``Ingester.tables``. Its
``build`` gets the batch's DuckDB connection, where ``batch_events`` (every valid event of
the batch, in the contract's stored columns plus ``ts`` and ``raw_sensor``) and ``ipinfo``
are readable, and the :class:`Batch` (the raw files and the raw directory, to read message
files beside the events); it returns a query (SQL text) or an Arrow table with a ``day``
column. The table is written, moved and committed with the batch's others, so it is
incremental and exactly-once like them, and ``reingest`` rebuilds it too. The default
tables are the ``sql/ingest_<table>.sql`` files (:data:`TABLES`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from spampot.analysis.content.batch import EVENT as CONTENT_EVENT
from spampot.analysis.content.batch import ContentExtractor, ContentOptions
from spampot.analysis.enrich import Enricher
from spampot.analysis.event_reader import (
    BATCH_SCHEMA,
    Rejected,
    drop_batch,
    empty_table,
    load_batch,
)
from spampot.analysis.sql import add_spark_names, load_sql
from spampot.contract import COLUMNS
from spampot.layout import EVENTS

# The warehouse tables written at ingest, each from sql/ingest_<table>.sql.
TABLES = ("messages", "proxy_requests", "sessions", "smtp_events", "recipient_domains")
MANIFEST = "_manifest.jsonl"
STAGING = "_staging"
QUARANTINE = "_quarantine"
LOCK = "_ingest.lock"

# Every event field any table reads, with its type: the event contract's stored fields.
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
    compression: str = "snappy"  # the cheapest to write (ingest speed), and what Spark reads best
    strict: bool = False  # a batch with any line set aside is not committed; the run stops
    wait: bool = True  # wait for another run's lock (False: raise IngestBusy at once)
    content: bool = True  # read the message files into the content tables (content/batch.py)
    content_jobs: int = 0  # processes reading them; 0: one per core


@dataclass(frozen=True, slots=True)
class RawFile:
    rel: str  # path under raw/: <sensor dir>/events/<name>
    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class Batch:
    """What a :class:`BatchTable` may read besides ``batch_events``."""

    id: str
    files: list[RawFile]
    raw_dir: Path


@dataclass(frozen=True, slots=True)
class BatchTable:
    """A warehouse table written from each batch (see the module's docstring).

    ``events``: the event ids (``spampot.…``) it reads from ``batch_events``; only the events
    some table reads are turned into columns (all are validated).
    """

    name: str
    build: Callable[[duckdb.DuckDBPyConnection, Batch], str | pa.Table]
    events: frozenset[str]


def sql_table(name: str) -> BatchTable:
    """A table from ``sql/ingest_<name>.sql``; its events are the ids the SQL names."""
    sql = load_sql(f"ingest_{name}")
    events = frozenset(re.findall(r"'(spampot\.[a-z_.]+)'", sql))
    return BatchTable(name, lambda _con, _batch: sql, events)


def content_tables(extractor: ContentExtractor) -> tuple[BatchTable, ...]:
    """The content tables (``message_content``, ``message_urls``, ``message_attachments``),
    built by one extraction per batch of the messages its ``smtp.message`` events name."""
    return tuple(
        BatchTable(name, functools.partial(extractor.table, name), frozenset({CONTENT_EVENT}))
        for name in extractor.names
    )


@dataclass(slots=True)
class StagedBatch:
    """A batch whose tables are written under the staging directory, to be moved into place
    and committed (:meth:`Ingester._commit_staged`), whichever engine wrote them."""

    id: str
    files: list[RawFile]
    staging: Path
    valid: int  # events that passed the contract
    rejected: list[Rejected]  # lines (and unreadable file tails) set aside
    replaces: str = ""  # the batch this one re-ingests, if any
    written: list[tuple[Path, Path]] = field(default_factory=list)  # staged path, final path
    rows: dict[str, int] = field(default_factory=dict)  # rows written, per table


@dataclass(slots=True)
class IngestResult:
    files: int = 0
    input_bytes: int = 0
    events: int = 0
    batches: int = 0
    new_addresses: int = 0
    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))
    changed: list[str] = field(default_factory=list)  # committed files whose size/mtime moved
    damaged: list[tuple[str, str]] = field(default_factory=list)  # files partly unreadable
    quarantined: int = 0  # lines (and unreadable file tails) kept out of the tables
    reasons: Counter[str] = field(default_factory=Counter)  # quarantined, by reason
    held_back: str | None = None  # --strict: the batch not committed, and why
    reingested: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def set_aside(self) -> bool:
        return bool(self.quarantined or self.held_back)


Progress = Callable[[int, int], None]  # (input bytes done, input bytes to do)


class IngestBusy(RuntimeError):
    """Another ``spampot ingest`` holds the warehouse (the message says who)."""


class NotIngested(ValueError):
    """``reingest`` of a file that no committed batch holds."""


class Manifest:
    """The committed batches: which raw files the warehouse already holds."""

    def __init__(self, warehouse: Path) -> None:
        self.path = warehouse / MANIFEST
        self.files: dict[str, RawFile] = {}
        self.batch_of: dict[str, str] = {}  # raw file -> batch
        self.batches: dict[str, list[RawFile]] = {}
        self.quarantined = 0
        self.damaged = 0
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                try:
                    entry = json.loads(line)
                    batch = entry["batch"]
                    files = [RawFile(*item) for item in entry["files"]]
                    replaces = list(entry.get("replaces", []))
                except (ValueError, KeyError, TypeError):
                    continue  # a torn last line: that batch was never committed
                for old in replaces:
                    self._forget(old)
                self._add(batch, files)
                self.quarantined += int(entry.get("quarantined", 0))
                self.damaged += len(entry.get("damaged", []))

    def _forget(self, batch: str) -> None:
        for raw in self.batches.pop(batch, []):
            if self.batch_of.get(raw.rel) == batch:
                del self.batch_of[raw.rel]
                self.files.pop(raw.rel, None)

    def _add(self, batch: str, files: list[RawFile]) -> None:
        self.batches[batch] = files
        for raw in files:
            self.files[raw.rel] = raw
            self.batch_of[raw.rel] = batch

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
        for old in detail.get("replaces", []):
            self._forget(old)
        self._add(batch, files)


def scan_raw(raw_dir: Path) -> list[RawFile]:
    """Every rotated event file under ``raw/<sensor>/events/``, in time order."""
    found: list[tuple[str, str, RawFile]] = []
    if not raw_dir.is_dir():
        return []
    for sensor_dir in sorted(raw_dir.iterdir()):
        events = sensor_dir / EVENTS  # raw/<sensor>/ mirrors the sensor's spool/
        if not events.is_dir():
            continue
        for entry in os.scandir(events):
            # A dot-file is rsync's file in transfer (.<name>.XXXXXX), or one a killed rsync
            # left (swept by the next collection): the sensor writes no name with a dot first.
            if entry.name.startswith(".") or not entry.name.endswith(".jsonl.gz"):
                continue
            if not entry.is_file(follow_symlinks=False):
                continue
            st = entry.stat(follow_symlinks=False)
            rel = f"{sensor_dir.name}/{EVENTS}/{entry.name}"
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


def batch_id(files: list[RawFile], replaces: str = "") -> str:
    digest = hashlib.sha256(replaces.encode())
    for raw in files:
        digest.update(f"{raw.rel}\0{raw.size}\0{raw.mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def warehouse_lock(warehouse: Path, wait: bool = True) -> Iterator[None]:
    """One ingest at a time: an exclusive flock on ``_ingest.lock``, naming its holder.

    The kernel drops a flock when its holder dies, so a killed run never leaves the
    warehouse locked; the text in the file only says who holds it now.
    """
    warehouse.mkdir(parents=True, exist_ok=True)
    path = warehouse / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "another run"
            if not wait:
                raise IngestBusy(
                    f"the warehouse {warehouse} is being written by {holder}"
                ) from None
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {since}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


class Ingester:
    def __init__(
        self,
        config: IngestConfig,
        enricher: Enricher,
        tables: tuple[BatchTable, ...] | None = None,
    ) -> None:
        self.config = config
        self.enricher = enricher
        self.content: ContentExtractor | None = None
        if tables is None:
            tables = tuple(sql_table(t) for t in TABLES)
            if config.content:
                self.content = ContentExtractor(ContentOptions(jobs=config.content_jobs))
                tables += content_tables(self.content)
        self.tables = tables
        config.warehouse.mkdir(parents=True, exist_ok=True)
        self.manifest = Manifest(config.warehouse)
        self.con = duckdb.connect()
        if config.threads:
            self.con.execute(f"SET threads = {int(config.threads)}")
        self.con.execute("SET memory_limit = ?", [config.memory_limit])
        self.con.execute("SET temp_directory = ?", [str(config.warehouse / STAGING / "spill")])
        self.con.execute("SET preserve_insertion_order = false")
        add_spark_names(self.con)
        self.con.execute(
            "CREATE TEMP TABLE ipinfo (src_ip VARCHAR PRIMARY KEY, country VARCHAR, asn BIGINT,"
            " as_name VARCHAR, as_country VARCHAR, geo_source VARCHAR)"
        )

    def close(self) -> None:
        self.con.close()
        if self.content is not None:
            self.content.close()

    def __enter__(self) -> Ingester:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- crash recovery ---------------------------------------------------------------------

    def _recover(self) -> None:
        """Delete what an interrupted run left: staging, files of uncommitted batches."""
        warehouse = self.config.warehouse
        shutil.rmtree(warehouse / STAGING, ignore_errors=True)
        self.manifest = Manifest(warehouse)
        committed = self.manifest.batches
        for table in {*TABLES, *(t.name for t in self.tables)}:
            for part in (warehouse / table).glob("day=*/*.parquet"):
                if part.name.split("-", 1)[0] not in committed:
                    part.unlink()
        for kept in (warehouse / QUARANTINE).glob("*.jsonl"):
            if kept.stem not in committed:
                kept.unlink()

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

    def run(
        self, progress: Progress | None = None, reingest: list[str] | None = None
    ) -> IngestResult:
        """Ingest what is new (and, first, the batches holding the files in ``reingest``)."""
        started = time.perf_counter()
        result = IngestResult()
        with warehouse_lock(self.config.warehouse, self.config.wait):
            self._recover()
            for old, files in self._replaced_batches(reingest or []):
                if not self._ingest_batch(files, result, replaces=old):
                    break
                result.reingested += [f.rel for f in files]
            files, result.changed = self.pending()
            total = sum(f.size for f in files)
            done = 0
            if progress:
                progress(0, total)
            for batch in plan_batches(files, self.config.batch_bytes):
                if result.held_back or not self._ingest_batch(batch, result):
                    break
                done += sum(f.size for f in batch)
                if progress:
                    progress(done, total)
            shutil.rmtree(self.config.warehouse / STAGING, ignore_errors=True)
        result.seconds = time.perf_counter() - started
        return result

    def _replaced_batches(self, rels: list[str]) -> list[tuple[str, list[RawFile]]]:
        """The committed batches holding ``rels``, each with its files as they are now."""
        current = {raw.rel: raw for raw in scan_raw(self.config.raw_dir)}
        out: dict[str, list[RawFile]] = {}
        for rel in rels:
            old = self.manifest.batch_of.get(rel)
            if old is None:
                raise NotIngested(f"{rel} is in no committed batch (a new file needs no reingest)")
            if old not in out:
                # A file of that batch that is gone now is simply not in the new one.
                out[old] = [current[f.rel] for f in self.manifest.batches[old] if f.rel in current]
        return list(out.items())

    def _ingest_batch(self, files: list[RawFile], result: IngestResult, replaces: str = "") -> bool:
        """Read, write and commit one batch; False when ``strict`` held it back."""
        cfg = self.config
        contents: list[tuple[str, bytes | None, str | None]] = []
        for raw in files:
            try:
                contents.append((raw.rel, (cfg.raw_dir / raw.rel).read_bytes(), None))
            except OSError as exc:  # vanished or unreadable since the scan
                contents.append((raw.rel, None, f"cannot read the file: {exc.strerror}"))
        wanted = frozenset().union(*(t.events for t in self.tables))
        try:
            read = load_batch(self.con, contents, wanted)
            del contents  # the lines are in DuckDB's tables now
            rejected = read.rejected
            if self._hold_back(rejected, result):
                return False
            bid = batch_id(files, replaces)
            self._write_batch(bid, files, read.valid, rejected, result, replaces)
        finally:
            drop_batch(self.con)
        return True

    def _write_batch(
        self,
        bid: str,
        files: list[RawFile],
        valid: int,
        rejected: list[Rejected],
        result: IngestResult,
        replaces: str,
    ) -> None:
        cfg = self.config
        new_addresses = self._enrich()
        staged = StagedBatch(bid, files, cfg.warehouse / STAGING / bid, valid, rejected, replaces)
        staged.staging.mkdir(parents=True, exist_ok=True)
        batch = Batch(bid, files, cfg.raw_dir)
        days = self.con.execute("SELECT DISTINCT CAST(ts AS DATE) FROM batch_events").fetchall()
        day = days[0][0] if len(days) == 1 else None
        for table in self.tables:
            staged.rows[table.name] = self._write_table(table, batch, staged.staging, day)
            for part in (staged.staging / table.name).glob("day=*/*.parquet"):
                staged.written.append(
                    (part, cfg.warehouse / table.name / part.parent.name / part.name)
                )
        self._commit_staged(staged, result)
        result.new_addresses += new_addresses

    def _hold_back(self, rejected: list[Rejected], result: IngestResult) -> bool:
        """``strict``: a batch with any line set aside is not committed; the run stops."""
        if not rejected or not self.config.strict:
            return False
        first = rejected[0]
        result.held_back = f"{first.file} line {first.line}: {first.reason}" + (
            f" (and {len(rejected) - 1} more)" if len(rejected) > 1 else ""
        )
        return True

    def _commit_staged(self, staged: StagedBatch, result: IngestResult) -> None:
        """Move a batch's staged files into place, with its quarantine, then commit it by its
        manifest line (whatever engine wrote it)."""
        cfg = self.config
        rejected = staged.rejected
        if rejected:
            kept = staged.staging / "quarantine.jsonl"
            with open(kept, "w", encoding="utf-8") as out:
                for r in rejected:
                    out.write(
                        json.dumps(
                            {
                                "file": r.file,
                                "line": r.line,
                                "reason": r.reason,
                                "excerpt": r.excerpt,
                            },
                            ensure_ascii=False,
                        )
                        + "\n"
                    )
            staged.written.append((kept, cfg.warehouse / QUARANTINE / f"{staged.id}.jsonl"))
        for src, dst in staged.written:
            with open(src, "rb") as f:
                os.fsync(f.fileno())
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
        damaged = [[r.file, r.reason] for r in rejected if r.line == 0]
        detail: dict[str, Any] = {
            "events": staged.valid,
            "rows": staged.rows,
            "geo_source": self.enricher.label,
            "quarantined": len(rejected),
        }
        if damaged:
            detail["damaged"] = damaged
        if staged.replaces:
            detail["replaces"] = [staged.replaces]
        self.manifest.commit(staged.id, staged.files, detail)
        if staged.replaces:
            self._delete_batch(staged.replaces)
        shutil.rmtree(staged.staging, ignore_errors=True)
        result.events += staged.valid
        for name, n in staged.rows.items():
            result.rows[name] = result.rows.get(name, 0) + n
        result.files += len(staged.files)
        result.input_bytes += sum(f.size for f in staged.files)
        result.batches += 1
        result.quarantined += len(rejected)
        result.reasons.update(_reason_class(r.reason) for r in rejected)
        result.damaged += [(rel, why) for rel, why in damaged]

    def _write_table(
        self, table: BatchTable, batch: Batch, staging: Path, day: dt.date | None
    ) -> int:
        """Write ``table``'s rows of the batch under ``staging``, a file per day; ``day``:
        the day of every event of the batch, if they share one."""
        out = staging / table.name
        source = table.build(self.con, batch)
        arrow = isinstance(source, pa.Table)
        if arrow:
            self.con.register("batch_table", source)
        query = "SELECT * FROM batch_table" if arrow else source
        options = f"FORMAT parquet, COMPRESSION {self.config.compression}"
        try:
            if day is not None:
                # The batch's events are of one day (hourly files: most batches): one plain
                # file, as PARTITION_BY would write it, at half the CPU of its partitioning.
                # A row of another day (a table whose day is not its event's) stops the copy.
                part = out / f"day={day.isoformat()}" / f"{batch.id}-0.parquet"
                part.parent.mkdir(parents=True, exist_ok=True)
                try:
                    count = self.con.execute(
                        f"COPY (SELECT * EXCLUDE (day) FROM ({query}) WHERE CASE WHEN"
                        f" day = DATE '{day.isoformat()}' THEN true ELSE error('{_OTHER_DAY}')"
                        f" END) TO '{_quote(part)}' ({options})"
                    ).fetchone()
                except duckdb.InvalidInputException as exc:
                    if _OTHER_DAY not in str(exc):
                        raise
                    shutil.rmtree(out)
                else:
                    if not count or not count[0]:
                        shutil.rmtree(out)  # no rows: no file, as PARTITION_BY writes none
                    return int(count[0]) if count else 0
            count = self.con.execute(
                f"COPY ({query}) TO '{_quote(out)}' ({options}, PARTITION_BY (day),"
                f" FILENAME_PATTERN '{batch.id}-{{i}}')"
            ).fetchone()
        finally:
            if arrow:
                self.con.unregister("batch_table")
        return int(count[0]) if count else 0

    def _delete_batch(self, batch: str) -> None:
        warehouse = self.config.warehouse
        for table in {*TABLES, *(t.name for t in self.tables)}:
            for part in (warehouse / table).glob(f"day=*/{batch}-*.parquet"):
                part.unlink()
        with contextlib.suppress(FileNotFoundError):
            (warehouse / QUARANTINE / f"{batch}.jsonl").unlink()

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
        # The columns as list parameters, not an Arrow table: ``pa.table`` of Python lists
        # imports pandas where it is installed (about 0.3 CPU-s), and new addresses
        # are few beside the events.
        columns = self.enricher.lookup_many(new)
        self.con.execute(
            "INSERT INTO ipinfo BY NAME SELECT "
            + ", ".join(f"unnest(${i}) AS {name}" for i, name in enumerate(columns, 1)),
            list(columns.values()),
        )
        return len(new)


def _reason_class(reason: str) -> str:
    """A reason without its positions and values, to count alike reasons together."""
    for marker in (" - at `", " (byte", " after ", " at byte "):
        if marker in reason:
            head, _, rest = reason.partition(marker)
            if marker == " - at `":
                return f"{head} at {rest.split('`', 1)[0]}"
            return head
    return reason


_OTHER_DAY = "a row of another day than the events of its batch"


def _quote(path: Path) -> str:
    return str(path).replace("'", "''")


def empty_batch_events() -> pa.Table:
    """``batch_events`` with no rows: the columns a table has before any file is ingested."""
    return empty_table(BATCH_SCHEMA)


def ingest(
    config: IngestConfig,
    enricher: Enricher,
    progress: Progress | None = None,
    reingest: list[str] | None = None,
) -> IngestResult:
    with contextlib.closing(Ingester(config, enricher)) as ingester:
        return ingester.run(progress, reingest)
