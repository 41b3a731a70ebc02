"""``spampot ingest --engine spark``: the ingest's transformation as a Spark job.

The driver (the machine running ``spampot ingest``) keeps everything that makes the warehouse
exactly-once, with the DuckDB ingest's own code (:class:`spampot.analysis.ingest.Ingester`,
which this class extends): it holds ``_ingest.lock``, deletes what an interrupted run left,
picks the files the manifest does not hold, plans the batches, and commits each one (its files
moved into place, then its manifest line) only after Spark's job for it has succeeded. What
differs is how a batch is read and its tables written:

1. Spark reads the batch's event files in its executors (one task per group of files) and
   validates every line with the event contract's msgspec decoder
   (:func:`spampot.analysis.event_reader.read_events`: the decoder that judges every line in
   DuckDB's ingest too, so validity has one definition); the valid
   events become ``batch_events`` in the columns of ``BATCH_SCHEMA`` (Arrow batches, no
   Python object per row), the rejected lines (file, line, reason, excerpt) come back to the
   driver for the quarantine.
2. The driver looks up the batch's new source addresses with the same :class:`Enricher` as
   the DuckDB ingest (once per address per run) and hands them to Spark as ``ipinfo``.
3. Spark runs the same ``sql/ingest_<table>.sql`` files and writes each table, cast to the
   column types DuckDB's ingest writes, as Parquet partitioned by ``day`` into
   ``_staging/<batch>/``; the driver renames each file ``<batch>-<n>.parquet`` into place.

A failed or killed job leaves only files in ``_staging/`` (deleted by the next run) or, if the
driver dies while moving, files of a batch with no manifest line (deleted by the next run's
recovery, as for DuckDB's). Both directories, raw/ and the warehouse, must therefore be paths
the driver and every executor see alike: a local directory in local mode, NFS (or another
shared POSIX file system) on a cluster. The content tables are not built by this engine.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from spampot.analysis.enrich import Enricher
from spampot.analysis.event_reader import (
    BATCH_SCHEMA,
    FileEvents,
    Rejected,
    read_events,
    to_table,
)
from spampot.analysis.ingest import (
    IPINFO_SCHEMA,
    STAGING,
    TABLES,
    IngestConfig,
    Ingester,
    IngestResult,
    RawFile,
    StagedBatch,
    batch_id,
    sql_table,
)
from spampot.analysis.sql import load_sql

# Gzip input an executor decodes before it hands the events over (bounds its memory).
GROUP_BYTES = 32 * 1024 * 1024
# Beside each event row, what the executors tell the driver: a rejected line (``_line`` >= 0,
# 0 for a file's unreadable part) or a file's count of valid events (``_line`` -1).
_REPORT = (
    ("_file", pa.string()),
    ("_line", pa.int64()),
    ("_reason", pa.string()),
    ("_excerpt", pa.string()),
    ("_valid", pa.int64()),
)
_ReportRow = tuple[str, int, str | None, str | None, int | None]
JOB_SCHEMA = pa.schema([*BATCH_SCHEMA, *(pa.field(n, t) for n, t in _REPORT)])


def _decode_files(
    batches: Iterator[pa.RecordBatch], eventids: list[str]
) -> Iterator[pa.RecordBatch]:
    """In an executor: each (rel, path) read and validated by the contract's decoder; the
    events of several files go out together (Arrow batches of a few per task, not two per
    file), at most :data:`GROUP_BYTES` of gzip input at a time."""
    wanted = frozenset(eventids)
    group: list[FileEvents] = []
    rows: list[_ReportRow] = []
    size = 0
    for batch in batches:
        for rel, path in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True):
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError as exc:  # vanished or unreadable since the driver's scan
                rows.append((rel, 0, f"cannot read the file: {exc.strerror}", "", None))
                continue
            found = read_events(rel, data)
            size += len(data)
            del data
            group.append(found)
            rows += [(r.file, r.line, r.reason, r.excerpt, None) for r in found.rejected]
            rows.append((rel, -1, None, None, found.count))
            if size >= GROUP_BYTES:
                yield from _group_batches(group, wanted, rows)
                group, rows, size = [], [], 0
    yield from _group_batches(group, wanted, rows)


def _group_batches(
    group: list[FileEvents], wanted: frozenset[str], rows: list[_ReportRow]
) -> Iterator[pa.RecordBatch]:
    events = to_table(group, wanted)
    if events.num_rows:
        report = [pa.nulls(events.num_rows, t) for _, t in _REPORT]
        yield from pa.Table.from_arrays([*events.columns, *report], schema=JOB_SCHEMA).to_batches()
    if rows:
        yield _report_batch(rows)


def _report_batch(rows: list[_ReportRow]) -> pa.RecordBatch:
    n = len(rows)
    columns = [pa.nulls(n, f.type) for f in BATCH_SCHEMA]
    for i, (_, kind) in enumerate(_REPORT):
        columns.append(pa.array([row[i] for row in rows], kind))
    return pa.RecordBatch.from_arrays(columns, schema=JOB_SCHEMA)


class SparkIngester(Ingester):
    """The ingest with each batch read and transformed by Spark (see the module's docstring)."""

    def __init__(self, config: IngestConfig, enricher: Enricher, session: Any) -> None:
        # The event tables only: content extraction stays with the DuckDB ingest.
        super().__init__(config, enricher, tables=tuple(sql_table(t) for t in TABLES))
        self.spark = session
        self.ipinfo: dict[str, tuple[Any, ...]] = {}  # looked up in this run, by address
        from pyspark.sql.pandas.types import from_arrow_schema

        from spampot.analysis.spark import table_schema

        self._job_schema = from_arrow_schema(JOB_SCHEMA)
        # The column types DuckDB's ingest writes: Spark's output is cast to them, so a
        # warehouse may hold batches of both engines and either engine reads it.
        self._types = {t: from_arrow_schema(table_schema(t)) for t in TABLES}

    def _ingest_batch(self, files: list[RawFile], result: IngestResult, replaces: str = "") -> bool:
        from pyspark import StorageLevel
        from pyspark.sql import functions as F

        cfg = self.config
        spark = self.spark
        paths = [(f.rel, str((cfg.raw_dir / f.rel).resolve())) for f in files]
        slices = max(1, min(len(files), spark.sparkContext.defaultParallelism * 2))
        eventids = sorted(frozenset().union(*(t.events for t in self.tables)))
        listing = spark.createDataFrame(paths, "rel STRING, path STRING").repartition(slices)
        job = listing.mapInArrow(
            lambda batches: _decode_files(batches, eventids), self._job_schema
        ).persist(StorageLevel.MEMORY_AND_DISK)
        try:
            reports = job.filter(F.col("_line").isNotNull()).select(*(n for n, _ in _REPORT))
            valid = 0
            rejected: list[Rejected] = []
            for row in reports.collect():
                if row["_line"] < 0:
                    valid += row["_valid"]
                else:
                    rejected.append(
                        Rejected(row["_file"], row["_line"], row["_reason"], row["_excerpt"])
                    )
            order = {f.rel: i for i, f in enumerate(files)}
            rejected.sort(key=lambda r: (order.get(r.file, -1), r.line))
            if self._hold_back(rejected, result):
                return False
            events = job.filter(F.col("_line").isNull()).select(*BATCH_SCHEMA.names)
            events.createOrReplaceTempView("batch_events")
            new_addresses = self._spark_ipinfo(events)
            bid = batch_id(files, replaces)
            staged = StagedBatch(
                bid, files, cfg.warehouse / STAGING / bid, valid, rejected, replaces
            )
            staged.staging.mkdir(parents=True, exist_ok=True)
            for table in self.tables:
                out = staged.staging / table.name
                frame = spark.sql(load_sql(f"ingest_{table.name}"))
                frame = frame.select(
                    *(F.col(c.name).cast(c.dataType) for c in self._types[table.name].fields)
                )
                frame.write.partitionBy("day").option("compression", cfg.compression).parquet(
                    out.as_uri()
                )
                staged.rows[table.name] = 0
                for n, part in enumerate(sorted(out.glob("day=*/*.parquet"))):
                    staged.rows[table.name] += pq.read_metadata(part).num_rows
                    name = f"{bid}-{n}.parquet"
                    staged.written.append(
                        (part, cfg.warehouse / table.name / part.parent.name / name)
                    )
            self._commit_staged(staged, result)
            result.new_addresses += new_addresses
        finally:
            job.unpersist()
            spark.catalog.dropTempView("batch_events")
        return True

    def _spark_ipinfo(self, events: Any) -> int:
        """``ipinfo`` for Spark: every address of the batch, each looked up once per run."""
        addresses = [
            row[0]
            for row in events.select("src_ip").where("src_ip IS NOT NULL").distinct().collect()
        ]
        new = [a for a in addresses if a not in self.ipinfo]
        if new:
            found = self.enricher.lookup_many(new)
            columns = [found[name] for name in IPINFO_SCHEMA.names]
            for row in zip(*columns, strict=True):
                self.ipinfo[row[0]] = row
        from pyspark.sql.pandas.types import from_arrow_schema

        self.spark.createDataFrame(
            [self.ipinfo[a] for a in addresses], from_arrow_schema(IPINFO_SCHEMA)
        ).createOrReplaceTempView("ipinfo")
        return len(new)


def spark_ingest(config: IngestConfig, enricher: Enricher, session: Any) -> IngestResult:
    with SparkIngester(config, enricher, session) as ingester:
        return ingester.run()
