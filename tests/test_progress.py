"""The live display of ``spampot collect``: a row per sensor, updated as files arrive."""

from __future__ import annotations

import io

from rich.console import Console

from spampot.central.collect import Outcome
from spampot.central.progress import RichReporter


def test_rich_reporter_shows_progress_and_failures():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=160, color_system=None)
    with RichReporter(console) as reporter:
        reporter.started("s1")
        reporter.started("s2")
        reporter.progress("s1", 1234, 5_000_000)
        reporter.progress("unknown", 1, 1)  # a sensor it never started: ignored
        reporter.finished(Outcome("s1", True, 0.0, 1.5, 2000, 6_000_000))
        reporter.finished(Outcome("s2", False, 0.0, 0.5, 0, 0, error="ssh: connection refused"))
    text = out.getvalue()
    assert "2,000 files" in text
    assert "6.0 MB" in text
    assert "s2: FAILED after 0 files" in text
    assert "ssh: connection refused" in text
