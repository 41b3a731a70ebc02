"""The report on Apache Spark: the same ``sql/report_*.sql`` over the same Parquet warehouse.

``spampot report --engine spark`` opens a SparkSession (``local[*]`` by default; a cluster
with ``--spark-master spark://host:7077``, ``yarn``, ``k8s://...``, or whatever master
``spark-submit`` was given), registers the views the SQL reads (``messages``,
``proxy_requests``, ``sessions``, ``smtp_events``, ``recipient_domains`` restricted to the
report's range and sensors, ``sensor_tags``, ``ingest_summary``) over the warehouse's
directories, and hands :func:`spampot.analysis.report.build_report` a connection-like object
whose ``execute(sql).fetchall()`` runs on Spark. Nothing else changes: the tables, their
arithmetic in Python, the files written. The warehouse must be on storage every executor
reads (HDFS, S3, NFS) when the cluster has more than one machine.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from spampot.analysis.content.schema import CONTENT_TABLES, stored_schema
from spampot.analysis.filters import ReportFilter, SensorInfo
from spampot.analysis.ingest import TABLES, Manifest, empty_batch_events
from spampot.analysis.ports import port_modules_sql
from spampot.analysis.sql import add_spark_names, load_sql


def spark_session(master: str | None = None, app: str = "spampot report") -> Any:
    """A SparkSession; ``master`` None keeps what spark-submit set, else ``local[*]``."""
    from pyspark import SparkConf
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app)
    if master:
        builder = builder.master(master)
    elif not SparkConf().contains("spark.master"):  # spark-submit sets it; else run here
        builder = builder.master("local[*]")
    # Small aggregates: a few shuffle partitions, not the default 200, keep local runs quick.
    builder = builder.config("spark.sql.shuffle.partitions", "8")
    builder = builder.config("spark.sql.session.timeZone", "UTC")
    builder = builder.config("spark.ui.enabled", "false")
    builder = builder.config("spark.ui.showConsoleProgress", "false")
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


class _Result:
    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self._rows = rows

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._rows

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._rows[0] if self._rows else None


def plain(value: Any) -> Any:
    """A Spark value as DuckDB's Python client gives it (Decimal -> float, lists as lists)."""
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


class SparkConnection:
    """What the report needs of a DuckDB connection, answered by Spark SQL."""

    dialect = "spark"

    def __init__(self, session: Any) -> None:
        self.session = session

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> _Result:
        if params:
            raise ValueError("the report's SQL on Spark takes no parameters")
        rows = self.session.sql(sql).collect()
        return _Result([tuple(plain(v) for v in row) for row in rows])

    def close(self) -> None:
        """The session stays for the next report in this process (spark.stop() ends it)."""


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def open_spark_warehouse(
    session: Any,
    path: Path | str,
    flt: ReportFilter,
    inventory: Mapping[str, SensorInfo],
) -> SparkConnection:
    """The report's views on Spark, over ``path`` (a local directory or a Hadoop URI)."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T
    from pyspark.sql.pandas.types import from_arrow_schema

    root = str(path)
    condition = flt.condition(inventory, _literal)
    local = Path(root) if "://" not in root else None
    for table in (*TABLES, *CONTENT_TABLES):
        has_files = local is None or any((local / table).glob("day=*/*.parquet"))
        if has_files:
            frame = (
                session.read.option("basePath", f"{root}/{table}")
                .option("mergeSchema", "true")
                .parquet(f"{root}/{table}/day=*")
            )
            frame = frame.withColumn("day", frame["day"].cast("date"))
            # Every column today's ingest writes, null in files written before it had it.
            for column in from_arrow_schema(table_schema(table)).fields:
                if column.name not in frame.columns:
                    frame = frame.withColumn(column.name, F.lit(None).cast(column.dataType))
        else:  # no files yet: an empty table with the columns DuckDB's ingest gives it
            frame = session.createDataFrame([], from_arrow_schema(table_schema(table)))
        frame.createOrReplaceTempView(f"all_{table}")
        session.sql(f"SELECT * FROM all_{table} WHERE {condition}").createOrReplaceTempView(table)
    tags = [(name, tag) for name, info in inventory.items() for tag in info.tags]
    schema = T.StructType(
        [T.StructField("sensor", T.StringType()), T.StructField("tag", T.StringType())]
    )
    session.createDataFrame(tags, schema).createOrReplaceTempView("sensor_tags")
    session.sql(port_modules_sql()).createOrReplaceTempView("port_modules")
    manifest = Manifest(Path(root)) if local is not None else None
    session.sql(
        f"SELECT CAST({manifest.quarantined if manifest else 0} AS BIGINT) AS quarantined,"
        f" CAST({manifest.damaged if manifest else 0} AS BIGINT) AS damaged_files"
    ).createOrReplaceTempView("ingest_summary")
    return SparkConnection(session)


def table_schema(table: str) -> Any:
    """The Arrow schema of ``table`` as the ingest writes it (its SQL over no events)."""
    import duckdb

    if table in CONTENT_TABLES:
        return stored_schema(table)
    with duckdb.connect() as con:
        add_spark_names(con)
        con.register("batch_events", empty_batch_events())
        con.execute(
            "CREATE TEMP TABLE ipinfo (src_ip VARCHAR, country VARCHAR, asn BIGINT,"
            " as_name VARCHAR, as_country VARCHAR, geo_source VARCHAR)"
        )
        result = con.sql(load_sql(f"ingest_{table}")).to_arrow_table()
        assert result is not None
        return result.schema
