"""The ``spampot`` command."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from spampot import __version__

if TYPE_CHECKING:
    from spampot.config import Config

# Commands that live in their own modules, imported only when run: the sensor (and the gate,
# run once per SSH command) must not pay for rich, DuckDB or numpy at every start.
LAZY_COMMANDS = {
    "collect": "spampot.central.cli:collect",
    "export": "spampot.analysis.export_cli:export",
    "gate": "spampot.central.cli:gate",
    "health": "spampot.sensor.health_cli:health",
    "ingest": "spampot.analysis.cli:ingest",
    "report": "spampot.analysis.cli:report",
    "simulate": "spampot.simulate.cli:simulate",
    "status": "spampot.central.status_cli:status",
}
# Commands of the central server: they need the "central" extra (spampot.extras), which a
# sensor does not install.
CENTRAL_COMMANDS = frozenset({"collect", "export", "ingest", "report", "simulate", "status"})


class LazyGroup(click.Group):
    """A click group whose LAZY_COMMANDS are imported on first use (click's documented way)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *LAZY_COMMANDS])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY_COMMANDS:
            import importlib

            if cmd_name in CENTRAL_COMMANDS:
                from spampot import extras

                try:
                    extras.require(extras.CENTRAL, cmd_name)
                except extras.ExtraMissing as exc:
                    return _unavailable(cmd_name, extras.CENTRAL, str(exc))

            module, attr = LAZY_COMMANDS[cmd_name].split(":")
            command: click.Command = getattr(importlib.import_module(module), attr)
            return command
        return super().get_command(ctx, cmd_name)


def _unavailable(name: str, extra: str, why: str) -> click.Command:
    """A stand-in for a command whose extra is not installed: listed in ``--help``, and
    saying what to install when run (exit status 1)."""

    def refuse(**_: object) -> None:
        raise click.ClickException(why)

    return click.Command(
        name,
        callback=refuse,
        help=f"(not installed here: needs spampot[{extra}])",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        add_help_option=False,
    )


@click.group(cls=LazyGroup)
@click.version_option(__version__, prog_name="spampot")
def main() -> None:
    """spampot: a honeypot sensor that captures spam sent through open relays and proxies."""


def _load(config_path: Path | None, **overrides: object) -> Config:
    # Imported here: the configuration's defaults import the protocol machines (about 0.1
    # CPU-second), which the commands of the central server and most of the gate's never use.
    from spampot.config import ConfigError, load_config

    try:
        return load_config(config_path, **overrides)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


@main.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="TOML configuration file (default: the built-in configuration).",
)
@click.option("--bind", multiple=True, help="Address to listen on; repeat for several.")
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--workers", type=int, help="Worker processes sharing the ports (SO_REUSEPORT).")
@click.option(
    "--allow-partial-bind",
    is_flag=True,
    default=None,
    help="Run on the ports that could be bound instead of refusing to start.",
)
def sensor(
    config_path: Path | None,
    bind: tuple[str, ...],
    data_dir: Path | None,
    workers: int | None,
    allow_partial_bind: bool | None,
) -> None:
    """Run a sensor in the foreground until SIGTERM or Ctrl-C."""
    from spampot.config import load_config
    from spampot.sensor.daemon import run_sensor

    overrides = {
        "sensor__bind": list(bind) or None,
        "sensor__data_dir": str(data_dir) if data_dir else None,
        "sensor__workers": workers,
        "sensor__allow_partial_bind": allow_partial_bind,
    }
    config = _load(config_path, **overrides)
    sys.exit(run_sensor(config, reload=lambda: load_config(config_path, **overrides)))


@main.command("config")
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False))
def show_config(config_path: Path | None) -> None:
    """Print the configuration in force (the defaults, or a file merged over them) as TOML."""
    config = _load(config_path)
    for section in dataclasses.fields(config):
        click.echo(f"[{section.name}]")
        values = getattr(config, section.name)
        for item in dataclasses.fields(values):
            click.echo(f"{item.name} = {_toml(getattr(values, item.name))}")
        click.echo()


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)
