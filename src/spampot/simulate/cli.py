"""``spampot simulate``: synthetic spammer traffic, offline (files) or live (a running sensor)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from spampot.simulate.profile import ProfileError, load_profile, origins_ip2asn


def _profile(path: Path | None, **overrides: object):
    try:
        return load_profile(path, **overrides)
    except ProfileError as exc:
        raise click.ClickException(str(exc)) from exc


_PROFILE = click.option(
    "--profile",
    "profile_path",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="TOML profile (default: calibrated on the paper's tables).",
)


@click.group()
def simulate() -> None:
    """Synthetic spammer traffic: datasets on disk, or live traffic to a sensor on loopback."""


@simulate.command()
@click.argument("out", type=click.Path(path_type=Path, file_okay=False))
@_PROFILE
@click.option("--messages", type=int, help="Total messages (default 100,000).")
@click.option("--days", type=int, help="Days from --start (default 30).")
@click.option("--start", help="First day, YYYY-MM-DD (default the paper's 2006-06-10).")
@click.option("--seed", type=int, help="Random seed; the same seed gives the same dataset.")
@click.option(
    "--layout",
    type=click.Choice(["raw", "spool"]),
    default="raw",
    show_default=True,
    help="raw: OUT/raw/<sensor>/ as collected; spool: OUT/<sensor>/spool/ as on a sensor.",
)
@click.option(
    "--bodies",
    type=click.Choice(["none", "sample", "all"]),
    default="none",
    show_default=True,
    help="Which messages get their .eml.gz file.",
)
@click.option("--bodies-rate", type=float, default=0.01, show_default=True)
@click.option("--compress-level", type=click.IntRange(0, 9), default=6, show_default=True)
@click.option("--rotate-bytes", type=click.IntRange(min=1), default=64 * 1024 * 1024)
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--counts",
    "counts_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write the counts (JSON) to this file.",
)
def offline(
    out: Path,
    profile_path: Path | None,
    messages: int | None,
    days: int | None,
    start: str | None,
    seed: int | None,
    layout: str,
    bodies: str,
    bodies_rate: float,
    compress_level: int,
    rotate_bytes: int,
    jobs: int,
    counts_path: Path | None,
) -> None:
    """Write a sensor-shaped dataset under OUT; print the counts of what was made (JSON)."""
    from spampot.simulate.offline import OfflineOptions, simulate_offline

    profile = _profile(profile_path, messages=messages, days=days, start=start, seed=seed)
    opts = OfflineOptions(
        out=out,
        layout=layout,
        bodies=bodies,
        bodies_rate=bodies_rate,
        compress_level=compress_level,
        rotate_bytes=rotate_bytes,
        jobs=jobs,
    )
    began = time.perf_counter()
    counts = simulate_offline(profile, opts)
    counts["seconds"] = round(time.perf_counter() - began, 3)
    text = json.dumps(counts, indent=2)
    if counts_path is not None:
        counts_path.write_text(text + "\n")
    click.echo(text)


@simulate.command()
@_PROFILE
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["ip2asn", "json"]),
    default="ip2asn",
    show_default=True,
)
def origins(profile_path: Path | None, fmt: str) -> None:
    """Print the source networks the profile draws from, with their country and AS.

    ``ip2asn`` is the public ip2asn TSV format (start, end, AS number, country, name), which
    the analysis reads as an AS database: a test or a demo can build a database that agrees
    with the simulator.
    """
    profile = _profile(profile_path)
    if fmt == "ip2asn":
        sys.stdout.write(origins_ip2asn(profile))
        return
    rows = [
        {
            "country": o.country,
            "asn": o.asn,
            "as_name": o.as_name,
            "share": o.share,
            "networks": list(o.networks),
        }
        for o in profile.origins
    ]
    click.echo(json.dumps(rows, indent=1))
