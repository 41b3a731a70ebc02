"""bench/session_cost.py keeps working as the session path changes: it drives the real
SensorSession, SMTP machine, event encoder and writer frames, and says what it measured."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "session_cost.py"
SRC = BENCH.parent.parent / "src"


def test_the_session_cost_bench_runs_whole_sessions_and_reports_them(tmp_path):
    # Each child run raises unless every session's QUIT closed the connection and every
    # message was acknowledged by the writer: a broken path cannot pass for a cheap one.
    out = tmp_path / "cost.json"
    subprocess.run(
        [sys.executable, str(BENCH), "--sessions", "50", "--rounds", "2", "--json-out", str(out)],
        check=True,
        timeout=120,
        capture_output=True,
    )
    result = json.loads(out.read_text())
    assert result["sessions"] == 50
    assert result["trees"] == {"this": str(SRC)}
    assert len(result["us_rounds"]["this"]) == 2
    assert 0 < result["us_per_session"]["this"] < 100_000
