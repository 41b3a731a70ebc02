"""How ``spampot collect`` shows its work: a live display on a terminal, log lines otherwise."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from spampot.central.collect import Outcome

if TYPE_CHECKING:  # rich is imported by RichReporter only: the timer's runs log lines
    from rich.console import Console
    from rich.progress import TaskID

log = logging.getLogger("spampot.collect")


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def outcome_line(outcome: Outcome) -> str:
    moved = f"{outcome.files} files, {human_bytes(outcome.bytes)} in {outcome.duration_s:.1f} s"
    if outcome.ok:
        return f"{outcome.sensor}: ok, {moved}"
    return f"{outcome.sensor}: FAILED after {moved}: {outcome.error}"


class LogReporter:
    """One log line when a sensor starts and one when it ends (systemd's journal, cron mail)."""

    def __enter__(self) -> LogReporter:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def started(self, sensor: str) -> None:
        log.info("%s: collecting", sensor)

    def progress(self, sensor: str, files: int, nbytes: int) -> None:
        pass

    def finished(self, outcome: Outcome) -> None:
        if outcome.ok:
            log.info("%s", outcome_line(outcome))
        else:
            log.error("%s", outcome_line(outcome))


class RichReporter:
    """A row per sensor with files and bytes so far, rate and elapsed time."""

    def __init__(self, console: Console | None = None) -> None:
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.console = console or Console(stderr=True)
        self._bar = Progress(
            SpinnerColumn(finished_text="•"),
            TextColumn("{task.description}"),
            TextColumn("{task.fields[files]:>9,} files"),
            TextColumn("{task.fields[size]:>9}"),
            TextColumn("{task.fields[rate]:>10}"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"),
            console=self.console,
        )
        self._tasks: dict[str, TaskID] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> RichReporter:
        self._bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._bar.stop()

    def started(self, sensor: str) -> None:
        with self._lock:
            self._tasks[sensor] = self._bar.add_task(
                sensor, total=None, files=0, size="", rate="", status="collecting"
            )

    def progress(self, sensor: str, files: int, nbytes: int) -> None:
        task = self._tasks.get(sensor)
        if task is None:
            return
        elapsed = self._bar.tasks[task].elapsed or 0.0
        rate = f"{files / elapsed:,.0f}/s" if elapsed > 0 else ""
        self._bar.update(task, files=files, size=human_bytes(nbytes), rate=rate)

    def finished(self, outcome: Outcome) -> None:
        task = self._tasks.get(outcome.sensor)
        if task is None:
            return
        status = "[green]ok" if outcome.ok else "[red]FAILED"
        self._bar.update(
            task,
            total=1,
            completed=1,
            files=outcome.files,
            size=human_bytes(outcome.bytes),
            status=status,
        )
        self._bar.stop_task(task)
        if not outcome.ok:
            from rich.markup import escape

            self._bar.console.print(f"[red]{escape(outcome_line(outcome))}")
