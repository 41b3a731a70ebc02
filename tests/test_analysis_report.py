"""Every table and figure of the report checked against a dataset worked out by hand.

The dataset (tests/analysis_data.py, build_known) is written in the sensor's exact format,
ingested with fixture MaxMind and ip2asn databases, and reported on.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from analysis_data import build_known, write_inventory, write_ip2asn, write_mmdbs
from spampot.analysis.cli import load_sensor_info
from spampot.analysis.enrich import build_enricher
from spampot.analysis.filters import ReportFilter
from spampot.analysis.ingest import IngestConfig, ingest
from spampot.analysis.render import write_report_files
from spampot.analysis.report import ReportOptions, build_report
from spampot.analysis.warehouse import open_warehouse

D = dt.date


@pytest.fixture(scope="module")
def known(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("known")
    build_known(root / "raw")
    country, asn = write_mmdbs(root)
    enricher = build_enricher(
        country_mmdb=country, asn_mmdb=asn, ip2asn=write_ip2asn(root / "ip2asn.tsv.gz")
    )
    result = ingest(IngestConfig(root / "raw", root / "warehouse", threads=2), enricher)
    inventory = load_sensor_info(write_inventory(root / "inventory.toml"))
    return {"root": root, "result": result, "inventory": inventory}


def run(known: dict, flt: ReportFilter | None = None, **options: object):
    flt = flt or ReportFilter()
    con = open_warehouse(known["root"] / "warehouse", flt, known["inventory"], threads=2)
    try:
        opts = ReportOptions(raw_dir=known["root"] / "raw", **options)  # type: ignore[arg-type]
        return build_report(con, opts, known["inventory"], flt.describe())
    finally:
        con.close()


def column(table, key: str) -> list:
    return [r[key] for r in table.records()]


def test_ingest_counts(known):
    result = known["result"]
    assert result.rows["messages"] == 12
    assert result.rows["proxy_requests"] == 18
    assert result.rows["sessions"] == 20
    assert result.rows["smtp_events"] == 1
    assert result.new_addresses == 8  # seven senders and one proxy-only address


def test_table2_general(known):
    stats = dict(run(known).table("table2_general").rows)
    assert stats["Data collection start"] == D(2026, 3, 2)
    assert stats["Data collection end"] == D(2026, 3, 5)
    assert stats["Days of collected data"] == 4
    assert stats["Days with emails"] == 3
    assert stats["Total emails collected"] == 12
    assert stats["Total recipients"] == 29
    assert stats["Average recipients per spam"] == 2.42
    assert stats["Average emails per day"] == 3
    assert stats["Unique IPs sending spam"] == 7
    assert stats["Unique ASes sending spam"] == 4
    assert stats["Unique Country Codes"] == 4
    # 18 requests to the modules (Table 6's totals), one of which spoke neither protocol.
    assert stats["Proxy requests (HTTP and SOCKS modules)"] == 18
    assert stats["of which in neither protocol (junk)"] == 1


def test_table3_countries_unknown_kept(known):
    table = run(known).table("table3_countries")
    assert table.rows == [
        (1, "TW", 6, 50.0),
        (2, "CN", 2, 16.67),
        (3, "unknown", 2, 16.67),
        (4, "BR", 1, 8.33),
        (5, "US", 1, 8.33),
    ]


def test_table3_top_limit(known):
    table = run(known, top=2).table("table3_countries")
    assert [r[1] for r in table.rows] == ["TW", "CN"]
    assert "66.67 %" in table.notes[0]


def test_table4_ases_with_numbers_and_registration_country(known):
    table = run(known).table("table4_ases")
    assert [(r["asn"], r["as_name"], r["as_country"], r["emails"], r["pct"]) for r in
            table.records()] == [
        (9924, "TFN-TW", "TW", 6, 50.0),
        (4837, "CHINA169", "CN", 2, 16.67),
        (None, "unknown", None, 2, 16.67),
        (28573, "CLARO", "BR", 1, 8.33),
        (33322, "NDCHOST", "US", 1, 8.33),
    ]  # fmt: skip
    # Each fact once (no "name (CC)" column repeating two others); no country for addresses
    # no database placed in an AS.
    keys = [c.key for c in table.columns]
    assert keys == ["rank", "asn", "as_name", "as_country", "emails", "pct"]
    assert not table.notes  # numbers and registration countries were known


def test_table5_ports(known):
    table = run(known).table("table5_ports")
    assert [(r[1], r[2], r[3], r[4], r[5]) for r in table.rows] == [
        (1080, "SOCKS", "socks", 6, 50.0),
        (8080, "HTTP", "alternate http", 3, 25.0),
        (25, "SMTP", "smtp", 2, 16.67),
        (3128, "HTTP", "Squid", 1, 8.33),
    ]


def test_table6_proxy_outcomes(known):
    table = run(known).table("table6_proxy_requests")
    # By the module of the port, as the paper counts: the junk that came to 3128 (an HTTP
    # port) is one of the HTTP module's errors; what was spoken is kept in the last columns.
    assert table.rows == [
        ("HTTP", "connection to 25/TCP", 4, 44.44, 4, 0, 0),
        ("HTTP", "connection to other", 1, 11.11, 1, 0, 0),
        ("HTTP", "get", 2, 22.22, 2, 0, 0),
        ("HTTP", "errors", 2, 22.22, 1, 0, 1),
        ("HTTP", "total", 9, 100.0, 8, 0, 1),
        ("SOCKS", "connection to 25/TCP", 6, 66.67, 0, 6, 0),
        ("SOCKS", "connection to other", 1, 11.11, 0, 1, 0),
        ("SOCKS", "errors", 2, 22.22, 0, 2, 0),
        ("SOCKS", "total", 9, 100.0, 0, 9, 0),
    ]


def test_table6_a_port_of_neither_list_is_classed_by_what_was_spoken(tmp_path):
    from analysis_data import SensorData
    from spampot.analysis.enrich import Enricher

    data = SensorData(tmp_path / "raw", "s1")
    data.proxy_request("2026-03-02T13:00:00", "203.0.113.5", 5555, "socks5", "other",
                       ("irc.example.net", 6667))  # fmt: skip
    data.proxy_request("2026-03-02T13:01:00", "203.0.113.5", 5555, "unknown", "error",
                       (None, None))  # fmt: skip
    data.write()
    ingest(IngestConfig(tmp_path / "raw", tmp_path / "warehouse", threads=2), Enricher([]))
    report = run({"root": tmp_path, "inventory": {}}, campaign_sample=0)
    assert [r[:3] for r in report.table("table6_proxy_requests").rows] == [
        ("SOCKS", "connection to 25/TCP", 0),
        ("SOCKS", "connection to other", 1),
        ("SOCKS", "errors", 0),
        ("SOCKS", "total", 1),
        ("unknown", "connection to 25/TCP", 0),
        ("unknown", "connection to other", 0),
        ("unknown", "errors", 1),
        ("unknown", "total", 1),
    ]


def test_figure2_shares_per_day(known):
    fig = run(known).figure("figure2_countries")
    assert fig.period == "day"
    assert fig.periods == [D(2026, 3, 2), D(2026, 3, 3), D(2026, 3, 5)]
    assert fig.totals == [7, 4, 1]
    shares = {s.label: s.values for s in fig.series}
    assert shares["TW"] == [57.14, 50.0, 0.0]
    assert shares["CN"] == [28.57, 0.0, 0.0]
    assert shares["unknown"] == [0.0, 50.0, 0.0]
    assert shares["BR"] == [0.0, 0.0, 100.0]
    assert shares["US"] == [14.29, 0.0, 0.0]
    for i in range(3):
        assert sum(s.values[i] for s in fig.series) == pytest.approx(100, abs=0.02)


def test_figure2_other_series_and_weeks(known):
    fig = run(known, series=2, period="week").figure("figure2_countries")
    assert [s.label for s in fig.series] == ["TW", "CN", "other"]
    assert fig.periods == [D(2026, 3, 2)]  # Monday of the ISO week
    assert fig.totals == [12]
    assert [s.values[0] for s in fig.series] == [50.0, 16.67, 33.33]


def test_figure3_ports(known):
    fig = run(known).figure("figure3_ports")
    shares = {s.label: s.values for s in fig.series}
    assert shares["1080"] == [57.14, 50.0, 0.0]
    assert shares["8080"] == [28.57, 0.0, 100.0]
    assert shares["25"] == [14.29, 25.0, 0.0]
    assert shares["3128"] == [0.0, 25.0, 0.0]


def test_recipient_domains_lowercased(known):
    table = run(known).table("top_recipient_domains")
    assert [(r[1], r[2]) for r in table.rows] == [
        ("a.example", 10),
        ("e.example", 6),
        ("b.example", 5),
        ("d.example", 5),
        ("c.example", 3),
    ]


def test_destinations(known):
    table = run(known).table("top_destinations")
    assert [(r[1], r[2], r[3], r[4]) for r in table.rows] == [
        ("mx.victim.example", 25, 10, 10),
        ("www.example.com", 80, 2, 0),
        ("irc.example.net", 6667, 1, 0),
        ("www.example.com", 443, 1, 0),
    ]
    assert table.rows[0][5] == 5  # source addresses that asked for it


def test_residential_vs_business(known):
    table = run(known).table("sensor_tags")
    assert table.rows == [
        ("business", 1, 3, 25.0, 1.0, 2),
        ("residential", 2, 9, 75.0, 3.0, 16),
    ]


def test_isps_compared(known):
    table = run(known).table("sensor_isps")
    assert table.rows == [
        ("Business Co", 1, 3, 25.0, 1.0, 2),
        ("Cable Co", 1, 7, 58.33, 3.5, 14),
        ("DSL Co", 1, 2, 16.67, 2.0, 2),
    ]


def test_sensors_and_days(known):
    report = run(known)
    sensors = report.table("sensors")
    assert [(r[0], r[1], r[2], r[5], r[6]) for r in sensors.rows] == [
        ("biz-1", "business", "Business Co", 3, 3),
        ("res-1", "residential", "Cable Co", 2, 7),
        ("res-2", "residential", "DSL Co", 1, 2),
    ]
    days = report.table("messages_per_day_per_sensor")
    assert (D(2026, 3, 3), "res-1", 1, 1) in days.rows
    assert sum(r[2] for r in days.rows) == 12
    fig = report.figure("figure_sensor_days")
    assert len(fig.periods) == 4  # every day of the span, the silent one as zero
    assert {s.label: s.values for s in fig.series}["biz-1"] == [1.0, 1.0, 0.0, 1.0]


def test_campaigns(known):
    table = run(known, campaign_sample=100).table("campaigns")
    records = table.records()
    assert [(r["subject"], r["sampled"], r["sources"], r["sensors"]) for r in records] == [
        ("Replica watches", 6, 2, 2),
        ("Hot stock tip", 2, 1, 1),
    ]
    assert records[0]["pct"] == 50.0
    assert records[0]["estimated"] == 6
    assert records[0]["countries"] == "TW 100%"


def test_date_range_single_day(known):
    report = run(known, ReportFilter(start=D(2026, 3, 3), end=D(2026, 3, 3)))
    stats = dict(report.table("table2_general").rows)
    assert stats["Total emails collected"] == 4
    assert stats["Days of collected data"] == 1
    assert stats["Unique IPs sending spam"] == 3
    assert report.table("table3_countries").rows == [
        (1, "TW", 2, 50.0),
        (2, "unknown", 2, 50.0),
    ]
    assert report.figure("figure2_countries").periods == [D(2026, 3, 3)]


def test_empty_range(known, tmp_path):
    report = run(known, ReportFilter(start=D(2027, 1, 1)))
    stats = dict(report.table("table2_general").rows)
    assert stats["Total emails collected"] == 0
    assert stats["Data collection start"] is None
    assert stats["Average recipients per spam"] is None
    assert report.table("table3_countries").rows == []
    assert report.table("table6_proxy_requests").rows == []
    assert report.figure("figure2_countries").periods == []
    write_report_files(report, tmp_path)  # renders without data
    assert "No emails in this range" in (tmp_path / "report.html").read_text()


def test_sensor_and_tag_filters(known):
    by_tag = dict(run(known, ReportFilter(tags=("business",))).table("table2_general").rows)
    assert by_tag["Total emails collected"] == 3
    by_sensor = run(known, ReportFilter(sensors=("res-2",)))
    assert dict(by_sensor.table("table2_general").rows)["Total emails collected"] == 2
    nobody = run(known, ReportFilter(tags=("no-such-tag",)))
    assert dict(nobody.table("table2_general").rows)["Total emails collected"] == 0


def test_files_for_every_table(known, tmp_path):
    report = run(known)
    write_report_files(report, tmp_path)
    for table in report.tables:
        data = json.loads((tmp_path / f"{table.key}.json").read_text())
        assert len(data["rows"]) == len(table.rows)
        lines = (tmp_path / f"{table.key}.csv").read_text().splitlines()
        assert lines[0].split(",") == [c.key for c in table.columns]
        assert len(lines) == len(table.rows) + 1
    for figure in report.figures:
        assert (tmp_path / f"{figure.key}.csv").exists()
    whole = json.loads((tmp_path / "report.json").read_text())
    assert {t["key"] for t in whole["tables"]} >= {
        "table2_general",
        "table3_countries",
        "table4_ases",
        "table5_ports",
        "table6_proxy_requests",
    }
    html = (tmp_path / "report.html").read_text()
    assert html.count("<svg") == 3
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")


def test_a_warehouse_written_before_a_column_existed_still_reports(known, tmp_path):
    """proxy_requests files from before the sensor recorded the port's role (no ``module``
    column): the report reads them, and Table 6 classes by the port's Table 1 module."""
    import shutil

    import duckdb

    old = tmp_path / "warehouse"
    shutil.copytree(known["root"] / "warehouse", old)
    for part in (old / "proxy_requests").glob("day=*/*.parquet"):
        with duckdb.connect() as con:
            con.execute(
                f"COPY (SELECT * EXCLUDE (module) FROM read_parquet('{part}'))"
                f" TO '{part}.new' (FORMAT parquet)"
            )
        part.with_name(part.name + ".new").replace(part)
    report = run({"root": tmp_path, "inventory": known["inventory"]}, campaign_sample=0)
    assert (
        report.table("table6_proxy_requests").rows == run(known).table("table6_proxy_requests").rows
    )
