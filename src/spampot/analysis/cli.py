"""``spampot ingest`` and ``spampot report``."""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from spampot.analysis.filters import ReportFilter, SensorInfo
from spampot.central.inventory import Inventory, InventoryError, load_inventory

_PATH = click.Path(path_type=Path)
_FILE = click.Path(path_type=Path, dir_okay=False, exists=True)


def _inventory(path: Path | None) -> Inventory | None:
    if path is None:
        return None
    try:
        return load_inventory(path)
    except InventoryError as exc:
        raise click.ClickException(str(exc)) from exc


def sensor_info(inventory: Inventory | None) -> dict[str, SensorInfo]:
    """Tags and ISP of each sensor of the central inventory."""
    if inventory is None:
        return {}
    return {s.name: SensorInfo(s.tags, s.isp) for s in inventory.sensors}


def load_sensor_info(path: Path) -> dict[str, SensorInfo]:
    return sensor_info(_inventory(path))


def _on_terminal() -> bool:
    return sys.stderr.isatty()


@contextmanager
def _bytes_progress(label: str) -> Iterator[object]:
    if not _on_terminal():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn(label),
        BarColumn(),
        DownloadColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as progress:
        task = progress.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update


@click.command()
@click.option(
    "--inventory",
    type=_FILE,
    help="Central inventory: raw/ and the warehouse are under its data_dir.",
)
@click.option("--raw", "raw_dir", type=_PATH, help="Collected data (raw/<sensor>/…).")
@click.option(
    "--warehouse", type=_PATH, help="Warehouse directory (default: <data_dir>/warehouse)."
)
@click.option("--country-mmdb", type=_FILE, help="MaxMind GeoLite2/GeoIP2 Country (or City) .mmdb.")
@click.option("--asn-mmdb", type=_FILE, help="MaxMind GeoLite2/GeoIP2 ASN .mmdb.")
@click.option("--ip2asn", type=_FILE, help="ip2asn TSV (plain or .gz): AS number, country, name.")
@click.option(
    "--no-geoip2fast", is_flag=True, help="Do not fall back on the bundled geoip2fast data."
)
@click.option(
    "--batch-mb",
    type=click.IntRange(1),
    default=256,
    show_default=True,
    help="Gzip input per batch (bounds memory).",
)
@click.option(
    "--threads", type=click.IntRange(0), default=0, help="DuckDB threads (0: one per core)."
)
@click.option("--memory-limit", default="3GB", show_default=True)
@click.option(
    "--strict",
    is_flag=True,
    help="Commit no batch with a line set aside: stop there, exit status 4.",
)
@click.option(
    "--no-wait",
    is_flag=True,
    help="If another ingest holds the warehouse, say who and exit 75 instead of waiting.",
)
@click.option(
    "--reingest",
    "reingest_files",
    multiple=True,
    metavar="RAW_PATH",
    help="Read again a committed file that was repaired (path under raw/, or a full path):"
    " its batch is replaced, exactly once. Repeatable.",
)
@click.option(
    "--no-content",
    is_flag=True,
    help="Do not read the message files into the content tables (events only).",
)
@click.option(
    "--content-jobs",
    type=click.IntRange(0),
    default=0,
    help="Processes reading message files (0: one per core).",
)
@click.option(
    "--engine",
    type=click.Choice(["duckdb", "spark"]),
    default="duckdb",
    show_default=True,
    help="Read, validate and transform each batch with DuckDB here, or as an Apache Spark job"
    " (pip install spampot[spark]); the lock, the manifest and each batch's commit stay here."
    " Spark builds the event tables only, not the content tables (as --no-content).",
)
@click.option(
    "--spark-master",
    metavar="URL",
    help="Spark master (spark://host:7077, yarn, k8s://...); default: what spark-submit"
    " set, else local[*]. raw/ and the warehouse must be paths every executor sees.",
)
def ingest(
    inventory: Path | None,
    raw_dir: Path | None,
    warehouse: Path | None,
    country_mmdb: Path | None,
    asn_mmdb: Path | None,
    ip2asn: Path | None,
    no_geoip2fast: bool,
    batch_mb: int,
    threads: int,
    memory_limit: str,
    strict: bool,
    no_wait: bool,
    reingest_files: tuple[str, ...],
    no_content: bool,
    content_jobs: int,
    engine: str,
    spark_master: str | None,
) -> None:
    """Turn collected event files into the Parquet warehouse, enriched (re-runs add new files).

    Exit status: 0 when every line was read; 3 when lines or damaged file parts were set
    aside in the quarantine (the rest is in the warehouse); 4 when --strict held a batch back;
    75 when --no-wait found another run writing.
    """
    from spampot.analysis.enrich import GeoSourceError, build_enricher
    from spampot.analysis.ingest import IngestBusy, IngestConfig, Ingester, NotIngested

    inv = _inventory(inventory)
    raw_dir = raw_dir or (inv.central.raw_dir if inv else None)
    warehouse = warehouse or (inv.central.layout.warehouse if inv else None)
    if raw_dir is None or warehouse is None:
        raise click.UsageError("give --inventory, or --raw and --warehouse")
    if not raw_dir.is_dir():
        raise click.ClickException(f"{raw_dir} does not exist (nothing collected yet?)")
    try:
        enricher = build_enricher(
            country_mmdb=country_mmdb,
            asn_mmdb=asn_mmdb,
            ip2asn=ip2asn,
            geoip2fast=not no_geoip2fast,
        )
    except GeoSourceError as exc:
        raise click.ClickException(str(exc)) from exc
    config = IngestConfig(
        raw_dir=raw_dir,
        warehouse=warehouse,
        batch_bytes=batch_mb * 1024 * 1024,
        threads=threads,
        memory_limit=memory_limit,
        strict=strict,
        wait=not no_wait,
        content=not no_content and engine == "duckdb",
        content_jobs=content_jobs,
    )
    again = [_raw_relative(raw_dir, name) for name in reingest_files]
    try:
        if engine == "spark":
            try:
                from spampot.analysis.spark import spark_session
                from spampot.analysis.spark_ingest import SparkIngester
            except ImportError as exc:  # pragma: no cover - depends on the install
                raise click.ClickException(f"--engine spark needs PySpark: {exc}") from exc
            session = spark_session(spark_master, "spampot ingest")
            ingester: Ingester = SparkIngester(config, enricher, session)
        else:
            ingester = Ingester(config, enricher)
        with ingester, _bytes_progress("ingest") as progress:
            result = ingester.run(progress, again)  # type: ignore[arg-type]
    except IngestBusy as exc:
        click.echo(f"spampot ingest: {exc}", err=True)
        sys.exit(75)  # EX_TEMPFAIL: try again later
    except NotIngested as exc:
        raise click.ClickException(str(exc)) from exc
    rate = result.events / result.seconds if result.seconds else 0.0
    click.echo(
        f"ingested {result.files:,} files ({result.input_bytes / 1e6:,.1f} MB) in"
        f" {result.batches} batch(es): {result.events:,} events in {result.seconds:.1f} s"
        f" ({rate:,.0f} events/s); {result.rows['messages']:,} emails,"
        f" {result.rows['proxy_requests']:,} proxy requests, {result.rows['sessions']:,}"
        f" sessions; {result.new_addresses:,} addresses looked up ({enricher.label});"
        f" {result.quarantined:,} set aside"
        + (
            f"; {result.rows['message_content']:,} message files read for content"
            f" ({result.rows.get('message_urls', 0):,} URLs,"
            f" {result.rows.get('message_attachments', 0):,} attachments)"
            if "message_content" in result.rows
            else ""
        )
    )
    if engine == "spark" and not no_content:
        click.echo("note: --engine spark builds no content tables (see --no-content)", err=True)
    for rel in result.reingested:
        click.echo(f"reingested {rel}", err=True)
    for rel, reason in result.damaged:
        click.echo(f"warning: {rel}: {reason}; its whole lines were read", err=True)
    for reason, n in result.reasons.most_common(10):
        click.echo(f"warning: {n:,} line(s) set aside: {reason}", err=True)
    if result.quarantined:
        click.echo(f"the lines set aside are in {warehouse / '_quarantine'}", err=True)
    for rel in result.changed:
        click.echo(
            f"warning: {rel} changed after it was ingested; not read again"
            " (spampot ingest --reingest to replace what it gave)",
            err=True,
        )
    if result.held_back:
        click.echo(f"--strict: batch not committed: {result.held_back}", err=True)
        sys.exit(4)
    if result.quarantined:
        sys.exit(3)


def _raw_relative(raw_dir: Path, name: str) -> str:
    path = Path(name)
    if path.is_absolute() or path.exists():
        try:
            return str(path.resolve().relative_to(raw_dir.resolve()))
        except ValueError:
            raise click.BadParameter(f"{name} is not under {raw_dir}") from None
    return name


def warehouse_scope(
    inventory: Path | None,
    warehouse: Path | None,
    start: str | None,
    end: str | None,
    sensors: tuple[str, ...],
    tags: tuple[str, ...],
) -> tuple[Inventory | None, Path, dict[str, SensorInfo], ReportFilter]:
    """The inventory, the warehouse, the sensors' tags and the filter a reader asked for."""
    inv = _inventory(inventory)
    warehouse = warehouse or (inv.central.data_dir / "warehouse" if inv else None)
    if warehouse is None:
        raise click.UsageError("give --inventory or --warehouse")
    if not warehouse.is_dir():
        raise click.ClickException(f"{warehouse} is not a warehouse (run spampot ingest first)")
    flt = ReportFilter(_date(start), _date(end), sensors, tags)
    if flt.start and flt.end and flt.start > flt.end:
        raise click.BadParameter("--from is after --to")
    return inv, warehouse, sensor_info(inv), flt


def _date(value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from exc


@click.command()
@click.option(
    "--inventory",
    type=_FILE,
    help="Central inventory: sensor tags and ISPs, and where the data is.",
)
@click.option(
    "--warehouse", type=_PATH, help="Warehouse directory (default: <data_dir>/warehouse)."
)
@click.option(
    "--raw", "raw_dir", type=_PATH, help="raw/ directory, to read messages for campaigns."
)
@click.option("--from", "start", help="First day (YYYY-MM-DD, UTC), included.")
@click.option("--to", "end", help="Last day (YYYY-MM-DD, UTC), included.")
@click.option("--sensor", "sensors", multiple=True, help="Only this sensor (repeatable).")
@click.option(
    "--tag", "tags", multiple=True, help="Only sensors with this inventory tag (repeatable)."
)
@click.option("--top", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option(
    "--period",
    type=click.Choice(["auto", "day", "week", "month"]),
    default="auto",
    show_default=True,
    help="Time step of the figures.",
)
@click.option(
    "--campaign-sample",
    type=click.IntRange(0),
    default=2000,
    show_default=True,
    help="Emails read for campaign grouping (0: skip).",
)
@click.option(
    "--no-content",
    is_flag=True,
    help="Leave out the content tables and whole-corpus campaigns (faster; for a warehouse"
    " ingested with --no-content).",
)
@click.option(
    "--out",
    "out_dir",
    type=_PATH,
    help="Write CSV and JSON of every table and figure, and report.html, here.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the whole report as JSON instead of tables."
)
@click.option("--quiet", is_flag=True, help="Print nothing but the files written.")
@click.option(
    "--threads", type=click.IntRange(0), default=0, help="DuckDB threads (0: one per core)."
)
@click.option("--memory-limit", default="3GB", show_default=True)
@click.option(
    "--engine",
    type=click.Choice(["duckdb", "spark"]),
    default="duckdb",
    show_default=True,
    help="Run the report's SQL on DuckDB here, or on Apache Spark (pip install spampot[spark]).",
)
@click.option(
    "--spark-master",
    metavar="URL",
    help="Spark master (spark://host:7077, yarn, k8s://...); default: what spark-submit"
    " set, else local[*].",
)
def report(
    inventory: Path | None,
    warehouse: Path | None,
    raw_dir: Path | None,
    start: str | None,
    end: str | None,
    sensors: tuple[str, ...],
    tags: tuple[str, ...],
    top: int,
    period: str,
    campaign_sample: int,
    no_content: bool,
    out_dir: Path | None,
    as_json: bool,
    quiet: bool,
    threads: int,
    memory_limit: str,
    engine: str,
    spark_master: str | None,
) -> None:
    """The paper's Tables 2–6 and Figures 2–3, and more, from the warehouse."""
    from rich.console import Console
    from rich.progress import Progress, TextColumn, TimeElapsedColumn

    from spampot.analysis.render import print_report, report_json, write_report_files
    from spampot.analysis.report import ReportOptions, build_report
    from spampot.analysis.warehouse import open_warehouse

    inv, warehouse, info, flt = warehouse_scope(inventory, warehouse, start, end, sensors, tags)
    raw_dir = raw_dir or (inv.central.raw_dir if inv else None)
    unknown_tags = set(tags) - {t for s in info.values() for t in s.tags}
    if unknown_tags:
        click.echo(f"warning: no sensor has tag(s) {', '.join(sorted(unknown_tags))}", err=True)
    options = ReportOptions(
        top=top,
        period=period,
        campaign_sample=campaign_sample,
        raw_dir=raw_dir,
        content=not no_content,
    )
    started = time.perf_counter()
    if engine == "spark":
        try:
            from spampot.analysis.spark import open_spark_warehouse, spark_session
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise click.ClickException(f"--engine spark needs PySpark: {exc}") from exc
        con: Any = open_spark_warehouse(spark_session(spark_master), warehouse, flt, info)
    else:
        con = open_warehouse(warehouse, flt, info, threads=threads, memory_limit=memory_limit)
    try:
        if _on_terminal() and not quiet:
            with Progress(
                TextColumn("report: {task.description}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            ) as progress:
                task = progress.add_task("starting", total=None)
                result = build_report(
                    con,
                    options,
                    info,
                    flt.describe(),
                    step=lambda name: progress.update(task, description=name),
                )
        else:
            result = build_report(con, options, info, flt.describe())
    finally:
        con.close()
    elapsed = time.perf_counter() - started
    if as_json:
        click.echo(json.dumps(report_json(result), indent=1, ensure_ascii=False))
    elif not quiet:
        # Piped into a file or a pager, wide tables read better unwrapped.
        print_report(result, Console(width=None if sys.stdout.isatty() else 160))
        click.echo(f"(report built in {elapsed:.1f} s)", err=True)
    if out_dir is not None:
        write_report_files(result, out_dir)
        click.echo(f"wrote {out_dir / 'report.html'} and CSV/JSON files in {out_dir}", err=True)
