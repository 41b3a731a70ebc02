"""``spampot export``: MISP feed, STIX 2.1 bundle or plain lists from the warehouse."""

from __future__ import annotations

import json
from pathlib import Path

import click

from spampot.analysis.cli import warehouse_scope
from spampot.analysis.filters import ReportFilter

_PATH = click.Path(path_type=Path)
_FILE = click.Path(path_type=Path, dir_okay=False, exists=True)


@click.command()
@click.argument("fmt", metavar="FORMAT", type=click.Choice(["lists", "misp", "stix"]))
@click.argument("out", type=_PATH)
@click.option("--inventory", type=_FILE, help="Central inventory: the warehouse, sensor names,")
@click.option(
    "--warehouse", type=_PATH, help="Warehouse directory (default: <data_dir>/warehouse)."
)
@click.option("--from", "start", help="First day (YYYY-MM-DD, UTC), included.")
@click.option("--to", "end", help="Last day (YYYY-MM-DD, UTC), included.")
@click.option("--sensor", "sensors", multiple=True, help="Only this sensor (repeatable).")
@click.option("--tag", "tags", multiple=True, help="Only sensors with this tag (repeatable).")
@click.option(
    "--exclude",
    multiple=True,
    metavar="VALUE",
    help="Also leave out values naming this (a sensor's public address behind NAT, a"
    " hostname); repeatable. The sensors' own addresses and names always are.",
)
@click.option(
    "--stix-limit",
    type=click.IntRange(0),
    default=10_000,
    show_default=True,
    help="Indicators (and addresses) per kind in a STIX bundle, the most frequent; 0: all.",
)
def export(
    fmt: str,
    out: Path,
    inventory: Path | None,
    warehouse: Path | None,
    start: str | None,
    end: str | None,
    sensors: tuple[str, ...],
    tags: tuple[str, ...],
    exclude: tuple[str, ...],
    stix_limit: int,
) -> None:
    """Write FORMAT (lists, misp or stix) for the period and sensors into the directory OUT."""
    from spampot.analysis.export import Redactor, export, sensor_identities
    from spampot.analysis.warehouse import open_warehouse

    inv, warehouse, info, flt = warehouse_scope(inventory, warehouse, start, end, sensors, tags)
    con = open_warehouse(warehouse, flt, info)
    try:
        names = [s.name for s in inv.sensors] + [s.host for s in inv.sensors] if inv else []
        redactor = Redactor(sensor_identities(con, names, exclude))
        # The feeds say which days they cover, never which sensors.
        scope = ReportFilter(flt.start, flt.end).describe()
        written = export(con, fmt, out, redactor, scope, stix_limit)
    finally:
        con.close()
    summary = {
        "format": fmt,
        "out": str(out),
        "written": written,
        "left_out": dict(redactor.dropped),
    }
    click.echo(json.dumps(summary))
