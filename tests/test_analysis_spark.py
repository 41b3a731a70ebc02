"""The report's SQL on a real Apache Spark (local mode, a Debian JRE, PySpark from PyPI):
every table Spark returns equals DuckDB's on the same warehouse, value by value."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import math
from importlib import resources

import pytest

from analysis_data import build_known, write_inventory, write_ip2asn, write_mmdbs
from conftest import IN_CI, need_tool
from spampot.analysis.cli import load_sensor_info
from spampot.analysis.enrich import build_enricher
from spampot.analysis.filters import ReportFilter
from spampot.analysis.ingest import IngestConfig, ingest
from spampot.analysis.report import ReportOptions, build_report, group_rows
from spampot.analysis.sql import render_sql
from spampot.analysis.warehouse import open_warehouse

REPORT_SQL = sorted(
    p.name.removesuffix(".sql")
    for p in (resources.files("spampot.analysis") / "sql").iterdir()
    if p.name.startswith("report_")
)


def _need_spark() -> None:
    need_tool("java")
    if importlib.util.find_spec("pyspark") is None:
        if IN_CI:
            pytest.fail("PySpark is not installed; .ci/run must install spampot[spark]")
        pytest.skip("PySpark is not installed (pip install spampot[spark])")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> dict:
    _need_spark()
    from spampot.analysis.spark import spark_session

    root = tmp_path_factory.mktemp("spark")
    build_known(root / "raw")
    country, asn = write_mmdbs(root)
    geo = {"country_mmdb": country, "asn_mmdb": asn, "ip2asn": write_ip2asn(root / "ip2asn.tsv.gz")}
    enricher = build_enricher(**geo)
    ingest(IngestConfig(root / "raw", root / "warehouse", threads=2), enricher)
    inventory = load_sensor_info(write_inventory(root / "inventory.toml"))
    session = spark_session("local[2]")  # one session for the whole module
    yield {"root": root, "inventory": inventory, "spark": session, "geo": geo}
    session.stop()


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9)  # type: ignore[arg-type]
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _both(site: dict, flt: ReportFilter):
    from spampot.analysis.spark import open_spark_warehouse

    duck = open_warehouse(site["root"] / "warehouse", flt, site["inventory"], threads=2)
    spark = open_spark_warehouse(site["spark"], site["root"] / "warehouse", flt, site["inventory"])
    return duck, spark


# Two dozen queries on each engine (the content tables' among them), after the module's
# ingest and Spark start: more than the default 300 s on a loaded two-core machine.
@pytest.mark.timeout(900)
def test_every_report_query_gives_the_same_rows_on_spark_and_duckdb(site):
    duck, spark = _both(site, ReportFilter())
    compared = 0
    try:
        # The tables' queries read the grouping sets of one scan of each table (and the
        # sets' own queries are compared below, with the rest).
        group_rows(duck)
        group_rows(spark)  # type: ignore[arg-type]
        for name in REPORT_SQL:
            sql = render_sql(name, top=10)
            expected = sorted(duck.execute(sql).fetchall(), key=repr)
            got = sorted(spark.execute(sql).fetchall(), key=repr)
            assert len(got) == len(expected), name
            for row_d, row_s in zip(expected, got, strict=True):
                assert len(row_d) == len(row_s), name
                for a, b in zip(row_d, row_s, strict=True):
                    assert _same(a, b), (name, row_d, row_s)
                    compared += 1
    finally:
        duck.close()
    assert compared > 100  # neither side is empty


def test_the_whole_report_on_spark_equals_duckdb_s_with_filters(site):
    # The content tables' queries are compared one by one above; their campaigns below.
    options = ReportOptions(campaign_sample=0, content=False)
    flt = ReportFilter(dt.date(2026, 3, 3), None, ("res-1", "biz-1"), ())
    duck, spark = _both(site, flt)
    try:
        expected = build_report(duck, options, site["inventory"])
    finally:
        duck.close()
    assert expected.table("table2_general").rows[4][1] > 0  # the filter leaves emails
    got = build_report(spark, options, site["inventory"])  # type: ignore[arg-type]
    assert [t.key for t in got.tables] == [t.key for t in expected.tables]
    for mine, theirs in zip(got.tables, expected.tables, strict=True):
        assert _same([list(r) for r in mine.rows], [list(r) for r in theirs.rows]), mine.key
    for mine, theirs in zip(got.figures, expected.figures, strict=True):
        assert mine.periods == theirs.periods and mine.totals == theirs.totals
    assert got.notes == expected.notes


def test_spampot_report_engine_spark_from_the_command_line(site, tmp_path):
    # In this process, on the module's Spark (getOrCreate): no second JVM to start.
    from click.testing import CliRunner

    from spampot.cli import main

    result = CliRunner().invoke(
        main,
        [
            "report", "--engine", "spark", "--spark-master", "local[1]",
            "--warehouse", str(site["root"] / "warehouse"), "--raw", str(site["root"] / "raw"),
            "--campaign-sample", "50", "--no-content", "--json",
        ],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output[-3000:]
    report = json.loads(result.stdout)
    tables = {t["key"]: t for t in report["tables"]}
    general = {r["statistic"]: r["value"] for r in tables["table2_general"]["rows"]}
    assert general["Total emails collected"] == 12
    assert tables["campaigns"]["rows"]  # the sample was drawn on Spark, then grouped


@pytest.mark.timeout(900)
def test_content_campaigns_on_spark_equal_duckdb_s(site):
    """Whole-corpus campaigns (label propagation over the content tables) on both engines."""
    from spampot.analysis.content_report import campaigns_table, cluster

    duck, spark = _both(site, ReportFilter())
    try:
        partitions = []
        for con in (duck, spark):
            labels, _steps, settled = cluster(con)
            assert settled
            rows = con.execute(f"SELECT msg, label FROM {labels}").fetchall()
            groups: dict[str, set[str]] = {}
            for msg, label in rows:
                groups.setdefault(label, set()).add(msg)
            partitions.append(sorted(sorted(g) for g in groups.values()))
        assert partitions[0] == partitions[1] and partitions[0]  # the same campaigns
        expected = campaigns_table(duck, 10)
        got = campaigns_table(spark, 10)
        assert got.rows == expected.rows and got.rows
        assert got.notes == expected.notes
    finally:
        duck.close()


def test_the_ingest_sql_gives_the_same_tables_on_spark_and_duckdb(site, tmp_path):
    """The ingest's transformation (sql/ingest_*.sql over a batch's events) on Spark: the
    same text, the same rows as DuckDB's, table by table."""
    import duckdb

    from spampot.analysis.event_reader import load_batch
    from spampot.analysis.ingest import TABLES, scan_raw
    from spampot.analysis.sql import add_spark_names, load_sql

    raw = site["root"] / "raw"
    con = duckdb.connect()
    add_spark_names(con)
    files = [(f.rel, (raw / f.rel).read_bytes(), None) for f in scan_raw(raw)]
    assert load_batch(con, files).valid > 30
    con.execute(
        "CREATE TEMP TABLE ipinfo (src_ip VARCHAR, country VARCHAR, asn BIGINT,"
        " as_name VARCHAR, as_country VARCHAR, geo_source VARCHAR)"
    )
    con.execute(
        "INSERT INTO ipinfo SELECT DISTINCT src_ip, 'TW', 9924, 'TFN-TW', 'TW', 'test'"
        " FROM batch_events WHERE src_ip IS NOT NULL"
    )
    for name in ("batch_events", "ipinfo"):
        con.execute(f"COPY (SELECT * FROM {name}) TO '{tmp_path / name}.parquet' (FORMAT parquet)")
    spark = site["spark"]
    for name in ("batch_events", "ipinfo"):
        spark.read.parquet(str(tmp_path / f"{name}.parquet")).createOrReplaceTempView(name)
    compared = 0
    for table in TABLES:
        sql = load_sql(f"ingest_{table}")
        expected = sorted(con.execute(sql).fetchall(), key=repr)
        got = sorted((tuple(r) for r in spark.sql(sql).collect()), key=repr)
        assert len(got) == len(expected) > 0, table
        for row_d, row_s in zip(expected, got, strict=True):
            for a, b in zip(row_d, row_s, strict=True):
                a = a.replace(tzinfo=None) if isinstance(a, dt.datetime) else a
                b = b.replace(tzinfo=None) if isinstance(b, dt.datetime) else b
                assert _same(a, b), (table, row_d, row_s)
                compared += 1
    con.close()
    assert compared > 300


def _warehouse_rows(warehouse, table: str) -> tuple[list[tuple], list[tuple]]:
    """(column names and types, every row sorted) of a warehouse table, read by DuckDB."""
    import duckdb

    with duckdb.connect() as con:
        relation = con.sql(
            f"SELECT * FROM read_parquet('{warehouse / table}/day=*/*.parquet',"
            " hive_partitioning = true, hive_types = {'day': DATE})"
        )
        columns = list(zip(relation.columns, map(str, relation.types), strict=True))
        return columns, sorted(relation.fetchall(), key=repr)


def _quarantine(warehouse) -> list[tuple]:
    records = []
    for path in (warehouse / "_quarantine").glob("*.jsonl"):
        for line in path.read_text("utf-8").splitlines():
            r = json.loads(line)
            records.append((r["file"], r["line"], r["reason"], r["excerpt"]))
    return sorted(records)


@pytest.mark.timeout(900)
def test_spampot_ingest_engine_spark_writes_the_warehouse_duckdb_s_ingest_writes(site, tmp_path):
    """The same raw files (a bad line, a line without its timestamp, a cut gzip file among
    them) ingested by DuckDB into one warehouse and by ``spampot ingest --engine spark``
    into another: every table equal value by value and type by type, the same quarantine,
    and a second Spark run finds nothing new."""
    import gzip
    import shutil

    from click.testing import CliRunner

    from spampot.analysis.ingest import TABLES, Manifest
    from spampot.cli import main

    raw = tmp_path / "raw"
    shutil.copytree(site["root"] / "raw", raw)
    events = raw / "res-1" / "events"
    some = sorted(events.glob("*.jsonl.gz"))[0]
    good = gzip.decompress(some.read_bytes()).splitlines(keepends=True)
    (events / "res-1-20260305T10.jsonl.gz").write_bytes(
        gzip.compress(
            good[0].replace(b"2026-03-0", b"2026-03-1")
            + b"not json at all\n"
            + b'{"eventid":"spampot.session.open","sensor":"res-1"}\n'
            + good[-1]
        )
    )
    whole = gzip.compress(b"".join(good))
    (raw / "res-2" / "events" / "res-2-20260306T11.jsonl.gz").write_bytes(
        whole[: len(whole) * 2 // 3]
    )
    duck = tmp_path / "duck"
    expected = ingest(
        IngestConfig(raw, duck, threads=2, content=False), build_enricher(**site["geo"])
    )
    assert expected.quarantined >= 3 and expected.damaged

    spark_wh = tmp_path / "spark"
    geo = [f"--{k.replace('_', '-')}={v}" for k, v in site["geo"].items()]
    args = ["ingest", "--engine", "spark", "--spark-master", "local[2]", "--raw", str(raw),
            "--warehouse", str(spark_wh), *geo]  # fmt: skip
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 3, result.output[-3000:]  # lines set aside, the rest committed
    assert f"{expected.events:,} events" in result.output
    assert "builds no content tables" in result.output
    assert not (spark_wh / "message_content").exists()
    compared = 0
    for table in TABLES:
        columns_d, rows_d = _warehouse_rows(duck, table)
        columns_s, rows_s = _warehouse_rows(spark_wh, table)
        assert columns_s == columns_d, table
        assert len(rows_s) == len(rows_d) > 0, table
        for row_d, row_s in zip(rows_d, rows_s, strict=True):
            for a, b in zip(row_d, row_s, strict=True):
                assert _same(a, b), (table, row_d, row_s)
                compared += 1
        # Each file is named after its committed batch, as the recovery expects.
        batches = Manifest(spark_wh).batches
        assert all(
            p.name.split("-", 1)[0] in batches for p in (spark_wh / table).rglob("*.parquet")
        )
    assert compared > 300
    assert _quarantine(spark_wh) == _quarantine(duck) and len(_quarantine(duck)) >= 3
    theirs, mine = Manifest(duck), Manifest(spark_wh)
    assert (mine.quarantined, mine.damaged) == (theirs.quarantined, theirs.damaged)
    assert set(mine.files) == set(theirs.files)
    assert not (spark_wh / "_staging").exists() or not any((spark_wh / "_staging").iterdir())

    again = CliRunner().invoke(main, args, catch_exceptions=False)
    assert again.exit_code == 0, again.output[-3000:]
    assert "ingested 0 files" in again.output
    assert _warehouse_rows(spark_wh, "messages") == _warehouse_rows(duck, "messages")


def test_a_failed_spark_job_commits_nothing_and_the_next_run_commits_once(
    site, tmp_path, monkeypatch
):
    """A Spark job that fails after some of a batch's tables were written (here the third
    table's SQL is refused by Spark's analyzer) leaves no table file in place and no manifest
    line; the next run deletes what was staged and commits the batch once."""
    import spampot.analysis.spark_ingest as spark_ingest
    from spampot.analysis.ingest import TABLES, Manifest
    from spampot.analysis.spark_ingest import SparkIngester
    from spampot.analysis.sql import load_sql

    raw = site["root"] / "raw"
    warehouse = tmp_path / "wh"
    config = IngestConfig(raw, warehouse, content=False)
    broken = f"ingest_{TABLES[2]}"
    monkeypatch.setattr(
        spark_ingest,
        "load_sql",
        lambda name: (
            "SELECT no_such_column FROM batch_events" if name == broken else load_sql(name)
        ),
    )
    with (
        SparkIngester(config, build_enricher(**site["geo"]), site["spark"]) as ingester,
        pytest.raises(Exception, match="no_such_column"),
    ):
        ingester.run()
    assert any((warehouse / "_staging").rglob("*.parquet"))  # two tables were staged
    assert not list(warehouse.glob("*/day=*/*.parquet")) and not Manifest(warehouse).batches
    monkeypatch.undo()
    with SparkIngester(config, build_enricher(**site["geo"]), site["spark"]) as ingester:
        result = ingester.run()
    assert result.batches == 1 and result.rows["messages"] == 12
    assert len(Manifest(warehouse).batches) == 1
    assert not any((warehouse / "_staging").rglob("*.parquet"))
    assert _warehouse_rows(warehouse, "messages") == _warehouse_rows(
        site["root"] / "warehouse", "messages"
    )
