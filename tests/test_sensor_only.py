"""A sensor installs the core only: it runs, captures and answers its gate without the
central server's analysis stack, and the central commands say which extra they need.

The sensor-only environment is a real virtual environment holding exactly the distributions
spampot requires without an extra (and what they require), taken from this test run's own
installation: no download, and nothing of the ``central`` extra is importable in it.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import smtplib
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spampot import extras


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def core_distributions() -> dict[str, importlib.metadata.Distribution]:
    """spampot and everything it requires without an extra, as installed here."""
    found: dict[str, importlib.metadata.Distribution] = {}
    todo = [extras.DISTRIBUTION]
    while todo:
        name = _canonical(todo.pop())
        if name in found:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # a requirement whose marker excludes this platform
        found[name] = dist
        for requirement in dist.requires or []:
            spec, _, marker = requirement.partition(";")
            if "extra" not in marker:
                todo.append(re.match(r"\s*([A-Za-z0-9._-]+)", spec).group(1))
    return found


@pytest.fixture(scope="module")
def core_python(tmp_path_factory) -> str:
    """A venv with the core distributions only (their installed files, linked)."""
    venv = tmp_path_factory.mktemp("sensor-only") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    )  # fmt: skip
    for dist in core_distributions().values():
        for file in dist.files or []:
            if file.parts[0] == "..":
                continue  # scripts in bin/: the tests run `python -m spampot`
            source = Path(dist.locate_file(file))
            target = site / file
            if source.exists() and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(source, target)
    return python


def run(python: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [python, "-m", "spampot", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_the_core_has_no_analysis_stack(core_python):
    central = extras.requirements(extras.CENTRAL)
    assert {"duckdb", "pyarrow", "numpy", "rich", "py-tlsh"} <= set(central), central
    core = set(core_distributions())
    assert not core & {_canonical(n) for n in central}, core
    # The environment really lacks them (the test below could not pass by accident).
    for module in ("duckdb", "pyarrow", "numpy", "rich", "tlsh"):
        done = subprocess.run([core_python, "-c", f"import {module}"], capture_output=True)
        assert done.returncode != 0, module


def test_sensor_only_install_captures_and_answers_its_gate(core_python, sensor_factory):
    sensor = sensor_factory(start=False)
    sensor.python = core_python
    sensor.start()
    try:
        with smtplib.SMTP("127.0.0.1", sensor.smtp_port, timeout=20) as client:
            client.sendmail("a@spam.example", ["v@example.org"], b"Subject: core\r\n\r\nhi\r\n")
        deadline = time.monotonic() + 30
        while not list((sensor.data_dir / "spool").rglob("*.eml.gz")):
            assert time.monotonic() < deadline, sensor.stderr()
            time.sleep(0.1)
        gate = ["gate", "--config", str(sensor.config_path)]
        health = run(core_python, *gate, env={"SSH_ORIGINAL_COMMAND": "spampot health --json"})
        assert health.returncode == 0, health.stderr
        report = json.loads(health.stdout)
        assert report["sensor"] == "test-sensor" and report["spool"]["files"] >= 1, report
        collected = run(
            core_python,
            *gate,
            env={"SSH_ORIGINAL_COMMAND": "spampot collected --files 1 --bytes 1 --remove"},
        )
        assert collected.returncode == 0, collected.stderr
        assert json.loads(collected.stdout)["removed"] == 0
    finally:
        assert sensor.stop() == 0
    assert "Traceback" not in sensor.stderr(), sensor.stderr()


@pytest.mark.parametrize("command", ["ingest", "report", "export", "collect", "status", "simulate"])
def test_central_commands_name_the_extra(core_python, command):
    done = run(core_python, command, "--help")
    assert done.returncode == 1, (done.stdout, done.stderr)
    text = done.stderr.decode()
    assert "spampot[central]" in text and "deploy/install.sh --central" in text, text
    assert "Traceback" not in text, text
    listing = run(core_python, "--help")
    assert listing.returncode == 0, listing.stderr
    assert re.search(rf"{command}\s+\(not installed here: needs spampot\[central\]\)",
                     listing.stdout.decode()), listing.stdout  # fmt: skip


def test_central_commands_run_where_the_extra_is_installed():
    assert extras.missing(extras.CENTRAL) == []
    done = run(sys.executable, "ingest", "--help")
    assert done.returncode == 0 and b"not installed" not in done.stdout, done.stderr


def test_importing_the_sensor_never_imports_the_analysis_stack():
    """In the full installation too: the sensor's, gate's and health's modules import none
    of the central extra's packages (a slow start, and a dependency a sensor lacks)."""
    modules = importlib.metadata.packages_distributions()
    central = {_canonical(n) for n in extras.requirements(extras.CENTRAL)}
    heavy = sorted(m for m, dists in modules.items() if {_canonical(d) for d in dists} & central)
    assert "duckdb" in heavy and "tlsh" in heavy, heavy
    code = (
        "import sys, json\n"
        "import spampot.cli, spampot.sensor.daemon, spampot.sensor.worker, spampot.sensor.writer\n"
        "import spampot.central.gate, spampot.central.cli, spampot.sensor.health_cli\n"
        "print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert not set(json.loads(done.stdout)) & set(heavy), done.stdout
