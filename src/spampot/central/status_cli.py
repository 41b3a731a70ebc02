"""The ``spampot status`` command: a table, ``--json``, and monitoring-plugin exit codes."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape

from spampot.central.cli import parse_duration
from spampot.central.inventory import Inventory, InventoryError, SensorEntry, load_inventory
from spampot.central.status import CHECKS, History, SensorStatus, State, check_sensors, worst

_STYLE = {State.OK: "green", State.WARN: "yellow", State.CRIT: "bold red", State.UNKNOWN: "magenta"}


def summary_line(statuses: list[SensorStatus]) -> str:
    """The plugin's first line (what Nagios/Icinga show), with performance data after ``|``."""
    overall = worst([s.state for s in statuses])
    counts = {state: sum(1 for s in statuses if s.state is state) for state in State}
    bad = [f"{s.sensor} {s.state.name}" for s in statuses if s.state is not State.OK]
    text = f"SPAMPOT {overall.name} - {len(statuses)} sensor(s)"
    text += ": " + ", ".join(bad) if bad else ", all OK"
    perf = " ".join(f"{state.name.lower()}={counts[state]}" for state in State)
    return f"{text} | {perf}"


def _console() -> Console:
    # Piped (a monitoring system's long output, a log): wide enough that no table folds.
    return Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)


def render(statuses: list[SensorStatus], verbose: bool) -> None:
    from rich.table import Table

    console = _console()
    table = Table(title=None, show_lines=False)
    table.add_column("sensor")
    for check in CHECKS:
        table.add_column(check)
    for s in statuses:
        table.add_row(
            s.sensor,
            *(f"[{_STYLE[s.checks[c].state]}]{s.checks[c].state.name}[/]" for c in CHECKS),
        )
    console.print(table)
    # Details as plain lines (a plugin's "long output"), not a table that folds them.
    for s in statuses:
        unreachable = s.checks["connectivity"].state is not State.OK
        for check in CHECKS:
            result = s.checks[check]
            if unreachable and check != "connectivity" and not verbose:
                continue  # seven times "sensor unreachable" says nothing more
            if verbose or result.state is not State.OK:
                state = f"[{_STYLE[result.state]}]{result.state.name}[/]"
                console.print(f"{s.sensor} {check}: {state} - {escape(result.summary)}")


HISTORY_FIGURES = (
    ("load5", "load5", "{:.2f}"),
    ("disk %", "disk_used_percent", "{:.0f}"),
    ("offset s", "clock_offset_s", "{:+.3f}"),
    ("emails/15'", "messages_15min", "{:.0f}"),
    ("in pkt/s", "rx_packets_per_s", "{:.0f}"),
    ("backlog", "spool_files", "{:.0f}"),
)


def show_history(
    inventory: Inventory, sensors: list[SensorEntry], count: int, as_json: bool
) -> None:
    from rich.table import Table

    history = History(inventory.central.layout.status_history, inventory.status.history_keep)
    if as_json:
        click.echo(json.dumps({s.name: history.entries(s.name)[-count:] for s in sensors}))
        return
    console = _console()
    for sensor in sensors:
        table = Table(title=sensor.name, title_justify="left")
        for column in ("time", "state", "boot time", *(h for h, _, _ in HISTORY_FIGURES)):
            table.add_column(column)
        for entry in history.entries(sensor.name)[-count:]:
            raw_figures = entry.get("figures")
            figures = raw_figures if isinstance(raw_figures, dict) else {}
            state = str(entry.get("state"))
            style = _STYLE.get(State.__members__.get(state, State.UNKNOWN), "")
            table.add_row(
                str(entry.get("time")),
                f"[{style}]{escape(state)}[/]",
                str(entry.get("boot_time")),
                *(
                    fmt.format(figures[key]) if isinstance(figures.get(key), int | float) else ""
                    for _, key, fmt in HISTORY_FIGURES
                ),
            )
        console.print(table)


def _select(sensors: tuple[SensorEntry, ...], names: tuple[str, ...]) -> list[SensorEntry]:
    if not names:
        return [s for s in sensors if s.enabled]
    known = {s.name: s for s in sensors}
    missing = [n for n in names if n not in known]
    if missing:
        raise click.BadParameter(
            f"not in the inventory: {', '.join(missing)}", param_hint="--sensor"
        )
    return [known[n] for n in names]


@click.command()
@click.option(
    "--inventory",
    "inventory_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("/etc/spampot/inventory.toml"),
    show_default=True,
    help="The central server's TOML inventory of sensors.",
)
@click.option("--sensor", "names", multiple=True, help="Check only this sensor (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per round.")
@click.option("--verbose", "-v", is_flag=True, help="Show every check's detail, not only problems.")
@click.option("--every", help="Check again every interval (15m, 1h, 90s) until SIGTERM.")
@click.option(
    "--rounds",
    type=click.IntRange(min=0),
    default=0,
    help="With --every: stop after this many rounds (0 = no limit).",
)
@click.option(
    "--history",
    "history_count",
    type=click.IntRange(min=1),
    help="Show the last N recorded checks per sensor (no SSH): trends and reboots.",
)
def status(
    inventory_path: Path,
    names: tuple[str, ...],
    as_json: bool,
    verbose: bool,
    every: str | None,
    rounds: int,
    history_count: int | None,
) -> None:
    """Run the eight health checks on every sensor over SSH.

    Exit status as monitoring plugins: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (the worst check;
    UNKNOWN only when nothing is WARNING or CRITICAL).
    """
    try:
        interval = parse_duration(every) if every else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--every") from exc
    try:
        inventory = load_inventory(inventory_path)
    except InventoryError as exc:
        click.echo(f"SPAMPOT UNKNOWN - {exc}")
        sys.exit(State.UNKNOWN.value)
    sensors = _select(inventory.sensors, names)
    if history_count is not None:
        show_history(inventory, sensors, history_count, as_json)
        return
    done = 0
    while True:
        started = time.monotonic()
        statuses = check_sensors(inventory, sensors)
        overall = worst([s.state for s in statuses])
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "state": overall.name,
                        "exit_code": overall.value,
                        "sensors": [s.as_json() for s in statuses],
                    },
                    sort_keys=True,
                )
            )
        else:
            click.echo(summary_line(statuses))
            render(statuses, verbose)
        sys.stdout.flush()
        done += 1
        if interval is None or (rounds and done >= rounds):
            sys.exit(overall.value)
        time.sleep(max(0.0, interval - (time.monotonic() - started)))
