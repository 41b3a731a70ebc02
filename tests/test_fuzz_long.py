"""The long fuzz run (bench/fuzz_long.py) as a slow test: ``pytest -m slow``.

Excluded from the default run (pyproject's addopts deselect ``slow``); the CI profile runs the
same properties with SPAMPOT_FUZZ_EXAMPLES (default 300). SPAMPOT_FUZZ_LONG_EXAMPLES sets the
examples per property here (default 100,000: about half an hour on two idle cores).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "fuzz_long.py"


@pytest.mark.slow
@pytest.mark.timeout(4 * 3600)
def test_every_parser_survives_a_long_fuzz_run(tmp_path):
    examples = int(os.environ.get("SPAMPOT_FUZZ_LONG_EXAMPLES", "100000"))
    out = tmp_path / "fuzz.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--examples", str(examples), "--json-out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-5000:]
    summary = json.loads(out.read_text())
    assert not summary["falsified"]
    for parser, count in summary["per_parser"].items():
        assert count >= examples, (parser, count)
