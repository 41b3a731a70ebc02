"""The ``spampot health`` command."""

from __future__ import annotations

import json
from pathlib import Path

import click

from spampot.config import ConfigError, load_config


@click.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The sensor's TOML configuration file (default: the built-in configuration).",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Override sensor.data_dir, as `spampot sensor --data-dir` does.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for the central server.")
def health(config_path: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """Report this sensor's health: system, disk, clock, processes, traffic, spool, collection."""
    from spampot.sensor.health import health_report

    try:
        config = load_config(config_path, sensor__data_dir=str(data_dir) if data_dir else None)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    report = health_report(config)
    if as_json:
        click.echo(json.dumps(report, sort_keys=True))
        return
    for section, values in report.items():
        if isinstance(values, dict):
            click.echo(f"{section}:")
            for key, value in values.items():
                click.echo(f"  {key}: {json.dumps(value)}")
        else:
            click.echo(f"{section}: {values}")
