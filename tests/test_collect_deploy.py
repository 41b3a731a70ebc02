"""deploy/spampot-collect.{service,timer}: they verify, the service is locked down, and its
command line is one `spampot collect` accepts."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import need_tool

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
SERVICE = DEPLOY / "spampot-collect.service"
TIMER = DEPLOY / "spampot-collect.timer"


def units_for_this_machine(tmp_path: Path) -> tuple[Path, Path]:
    spampot = shutil.which("spampot") or str(Path(sys.executable).parent / "spampot")
    service = tmp_path / SERVICE.name
    service.write_text(SERVICE.read_text().replace("/usr/local/bin/spampot", spampot))
    timer = tmp_path / TIMER.name
    timer.write_text(TIMER.read_text())
    return service, timer


def test_units_verify_clean(tmp_path):
    need_tool("systemd-analyze")
    service, timer = units_for_this_machine(tmp_path)
    done = subprocess.run(
        ["systemd-analyze", "verify", str(service), str(timer)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_service_is_locked_down(tmp_path):
    need_tool("systemd-analyze")
    service, _ = units_for_this_machine(tmp_path)
    text = SERVICE.read_text()
    for line in (
        "User=spampot-central",
        "StateDirectory=spampot-central",
        "Type=oneshot",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
    ):
        assert re.search(f"^{re.escape(line)}$", text, re.M), line
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--threshold=25", str(service)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:]


def test_exec_start_is_a_valid_collect_command_line(tmp_path):
    found = re.search(r"^ExecStart=(.*)$", SERVICE.read_text(), re.M)
    assert found is not None
    argv = found.group(1).split()
    assert argv[:3] == ["/usr/local/bin/spampot", "collect", "--once"]
    inventory = tmp_path / "inventory.toml"
    inventory.write_text(f'[central]\ndata_dir = "{tmp_path / "central"}"\n')
    argv[argv.index("--inventory") + 1] = str(inventory)
    done = subprocess.run(
        [sys.executable, "-m", "spampot", *argv[1:]], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr  # no sensors: nothing to do, nothing failed


def test_timer_runs_every_quarter_hour():
    text = TIMER.read_text()
    assert re.search(r"^OnCalendar=\*:0/15$", text, re.M)
    assert re.search(r"^Persistent=true$", text, re.M)
