"""The ``spampot collect`` (central server) and ``spampot gate`` (sensor) commands."""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:  # the gate, run at every SSH request of the centre, needs none of it
    from spampot.central.inventory import SensorEntry

_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s?)?")


def parse_duration(text: str) -> float:
    """``15m``, ``1h``, ``1h30m``, ``90s`` or ``90`` (seconds) -> seconds."""
    match = _DURATION.fullmatch(text.strip())
    if not text.strip() or match is None or not any(match.groups()):
        raise ValueError(f"not a duration: {text!r} (examples: 15m, 1h, 90s)")
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise ValueError("the interval must be positive")
    return float(total)


@click.command()
@click.option(
    "--inventory",
    "inventory_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("/etc/spampot/inventory.toml"),
    show_default=True,
    help="The central server's TOML inventory of sensors.",
)
@click.option(
    "--sensor",
    "names",
    multiple=True,
    help="Collect only this sensor (repeatable); default: every enabled sensor.",
)
@click.option("--once", is_flag=True, help="One round, then exit (the default).")
@click.option("--every", help="Run as a daemon: a round every interval (15m, 1h, 90s).")
@click.option(
    "--rounds",
    type=click.IntRange(min=0),
    default=0,
    help="With --every: stop after this many rounds (0 = until SIGTERM).",
)
@click.option("--progress/--no-progress", default=None, help="Live display (default: on a tty).")
def collect(
    inventory_path: Path,
    names: tuple[str, ...],
    once: bool,
    every: str | None,
    rounds: int,
    progress: bool | None,
) -> None:
    """Pull the captures of every sensor into raw/ over rsync and SSH (exit 1 if any failed)."""
    from spampot.central.collect import CollectError, Collector
    from spampot.central.inventory import InventoryError, load_inventory
    from spampot.central.progress import LogReporter, RichReporter

    if once and every:
        raise click.UsageError("--once and --every exclude each other")
    try:
        interval = parse_duration(every) if every else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--every") from exc
    try:
        inventory = load_inventory(inventory_path)
    except InventoryError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        sensors = _select(inventory.sensors, names)
    except KeyError as exc:
        raise click.ClickException(exc.args[0]) from exc

    live = sys.stderr.isatty() if progress is None else progress
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%SZ",
        stream=sys.stderr,
    )
    logging.Formatter.converter = time.gmtime
    log = logging.getLogger("spampot.collect")

    collector = Collector(inventory, LogReporter())
    done = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.warning("signal %d: stopping (running transfers are interrupted safely)", signum)
        done.set()
        collector.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    failed = 0
    round_no = 0
    while not done.is_set():
        round_no += 1
        start = time.monotonic()
        # A fresh display each round: a daemon on a terminal shows the current round only.
        reporter: LogReporter | RichReporter = RichReporter() if live else LogReporter()
        collector.reporter = reporter
        with reporter:
            try:
                outcomes = collector.collect(sensors)
            except (CollectError, OSError) as exc:
                raise click.ClickException(str(exc)) from exc
        failed = sum(not o.ok for o in outcomes)
        if interval is None:
            break
        log.info("round %d: %d sensor(s), %d failed", round_no, len(outcomes), failed)
        if rounds and round_no >= rounds:
            break
        done.wait(max(0.0, start + interval - time.monotonic()))
    sys.exit(1 if failed else 0)


def _select(sensors: tuple[SensorEntry, ...], names: tuple[str, ...]) -> list[SensorEntry]:
    if not names:
        return [s for s in sensors if s.enabled]
    by_name = {s.name: s for s in sensors}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        known = ", ".join(by_name) or "none"
        raise KeyError(f"unknown sensor(s): {', '.join(unknown)} (known: {known})")
    return [by_name[n] for n in dict.fromkeys(names)]


@click.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The sensor's TOML configuration, as the sensor runs with it (required).",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Override sensor.data_dir, as `spampot sensor --data-dir` does (passed to health too).",
)
def gate(config_path: Path | None, data_dir: Path | None) -> None:
    """Forced command for the central server's key in the sensor's authorized_keys.

    Runs what SSH_ORIGINAL_COMMAND asks only when it is the rsync sender of the spool, the
    post-collection prune and marker, or `spampot health --json`; refuses anything else.
    """
    from spampot.central.gate import GateSetup, Refused, configured_data_dir, run_gate

    if config_path is None:
        # Without the sensor's configuration, health would describe the built-in defaults
        # (another data dir, name, listeners and clock sources), not this sensor.
        click.echo(
            "spampot gate: refused: no --config: the gate must be given the sensor's "
            'configuration file (command="spampot gate --config /etc/spampot/sensor.toml")',
            err=True,
        )
        sys.exit(1)
    try:
        configured = configured_data_dir(config_path)
    except Refused as exc:
        click.echo(f"spampot gate: refused: {exc}", err=True)
        sys.exit(1)
    # Not resolve(): the inventory names the data dir as the sensor's config does, symlinks
    # included, and the rsync source must match it exactly.
    setup = GateSetup(
        data_dir=Path(os.path.abspath(data_dir or configured)),
        config_path=Path(os.path.abspath(config_path)),
        data_dir_override=data_dir is not None,
    )
    sys.exit(run_gate(os.environ.get("SSH_ORIGINAL_COMMAND"), setup))
