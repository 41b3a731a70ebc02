"""Reading the warehouse: DuckDB views over the Parquet files, with the report's filters.

The report's SQL reads the views ``messages``, ``proxy_requests``, ``sessions``,
``smtp_events``, ``recipient_domains`` and the content tables (``message_content``,
``message_urls``, ``message_attachments``), already restricted to the date range and sensors
asked for, and ``sensor_tags`` (sensor, tag) from the inventory. On Spark the same views are
``createOrReplaceTempView`` over the same directories with the same WHERE clause.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path

import duckdb
import pyarrow as pa

from spampot.analysis.content.schema import CONTENT_TABLES, stored_schema
from spampot.analysis.filters import ReportFilter, SensorInfo
from spampot.analysis.ingest import TABLES, Manifest, empty_batch_events
from spampot.analysis.ports import port_modules_sql
from spampot.analysis.sql import add_spark_names, load_sql


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def open_warehouse(
    path: Path,
    flt: ReportFilter,
    inventory: Mapping[str, SensorInfo],
    *,
    threads: int = 0,
    memory_limit: str = "3GB",
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the filtered views the report's SQL reads."""
    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    con.execute("SET memory_limit = ?", [memory_limit])
    # Every query over a view binds read_parquet again, reading each file's footer (0.8 CPU-s
    # a query over the 4,660 files of a 100-million warehouse); cached, 0.45.
    con.execute("SET parquet_metadata_cache = true")
    # Spill (rare: aggregates here are small) to the temp dir, not to .tmp/ wherever we run.
    con.execute("SET temp_directory = ?", [str(Path(tempfile.gettempdir()) / "spampot-report")])
    add_spark_names(con)
    # Empty, typed stand-ins so that a table with no files yet has its columns all the same.
    con.register("empty_batch_events", empty_batch_events())
    con.execute("CREATE TEMP TABLE batch_events AS SELECT * FROM empty_batch_events")
    con.unregister("empty_batch_events")
    con.execute(
        "CREATE TEMP TABLE ipinfo (src_ip VARCHAR, country VARCHAR, asn BIGINT,"
        " as_name VARCHAR, as_country VARCHAR, geo_source VARCHAR)"
    )
    condition = flt.condition(inventory, _literal)
    for table in (*TABLES, *CONTENT_TABLES):
        if next((path / table).glob("day=*/*.parquet"), None) is not None:
            source = (
                f"read_parquet({_literal(str(path / table) + '/day=*/*.parquet')},"
                " hive_partitioning = true, hive_types = {'day': DATE}, union_by_name = true)"
            )
        elif table in CONTENT_TABLES:
            con.register("empty_content", stored_schema(table).empty_table())
            con.execute(f"CREATE TEMP TABLE empty_{table} AS SELECT * FROM empty_content")
            con.unregister("empty_content")
            source = f"empty_{table}"
        else:
            source = f"({load_sql('ingest_' + table)}) AS empty"
        if table in CONTENT_TABLES:
            con.execute(f"CREATE TEMP VIEW all_{table} AS SELECT * FROM {source}")
        else:
            # Every column today's ingest writes, null in files written before it had it (a
            # warehouse outlives changes of the contract).
            con.execute(
                f"CREATE TEMP VIEW all_{table} AS SELECT * FROM ({load_sql('ingest_' + table)})"
                f" AS today UNION ALL BY NAME SELECT * FROM {source}"
            )
        con.execute(f"CREATE TEMP VIEW {table} AS SELECT * FROM all_{table} WHERE {condition}")
    con.execute(f"CREATE TEMP VIEW port_modules AS {port_modules_sql()}")
    manifest = Manifest(path)
    con.execute(
        "CREATE TEMP TABLE ingest_summary AS SELECT ? :: BIGINT AS quarantined,"
        " ? :: BIGINT AS damaged_files",
        [manifest.quarantined, manifest.damaged],
    )
    tags = [(name, tag) for name, info in inventory.items() for tag in info.tags]
    con.register(
        "sensor_tags_arrow",
        pa.table(
            {"sensor": [s for s, _ in tags], "tag": [t for _, t in tags]},
            schema=pa.schema([("sensor", pa.string()), ("tag", pa.string())]),
        ),
    )
    con.execute("CREATE TEMP TABLE sensor_tags AS SELECT * FROM sensor_tags_arrow")
    con.unregister("sensor_tags_arrow")
    return con
