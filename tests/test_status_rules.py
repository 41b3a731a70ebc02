"""The status rules on plain values, and on whatever bytes a sensor might send back."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from spampot.central.inventory import StatusSection
from spampot.central.status import CHECKS, SshResult, State, check_clock, evaluate, worst

NOW = 1_800_000_000.0
TH = StatusSection()


def report(**changes) -> dict:
    base = {
        "system": {
            "boot_time": "2026-01-01T00:00:00Z",
            "uptime_s": 100.0,
            "load": [0.1, 0.2, 0.3],
            "cpus": 2,
        },
        "disk": {"used_percent": 10.0, "inodes_used_percent": 1.0, "avail_bytes": 10 * 2**30},
        "clock": {"offset_s": 0.01, "servers": [{}], "synchronised": None, "sync_source": None},
        "processes": {
            "daemon": {"alive": True, "workers_expected": 1},
            "workers": [{"fresh": True}],
            "listeners": [{"address": "127.0.0.1", "port": 25, "accepting": True}],
        },
        "traffic": {
            "messages": 5,
            "window_s": 900.0,
            "last_message": "2027-01-15T07:59:00Z",
            "since": "2027-01-01T00:00:00Z",
            "interface": {"name": "eth0"},
        },
        "spool": {"files": 3, "bytes": 300},
        "collection": {"age_s": 60.0},
    }
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = base
        for p in parents:
            node = node[p]
        node[last] = value
    return base


def judge(data, previous=None) -> dict[str, State]:
    ssh = SshResult(0, json.dumps(data).encode(), b"", 0.1)
    status = evaluate("s", ssh, previous, TH, NOW)
    return {k: v.state for k, v in status.checks.items()}


def test_a_healthy_report_is_all_ok():
    assert judge(report()) == dict.fromkeys(CHECKS, State.OK)


def test_thresholds():
    assert judge(report(system__load=[9.0, 5.0, 1.0]))["load"] == State.WARN  # 2.5 per CPU
    assert judge(report(system__load=[9.0, 9.0, 1.0]))["load"] == State.CRIT
    assert judge(report(disk__used_percent=85.0))["disk"] == State.WARN
    assert judge(report(disk__inodes_used_percent=95.0))["disk"] == State.CRIT
    assert judge(report(clock__offset_s=-2.0))["clock"] == State.WARN
    assert judge(report(clock__offset_s=-20.0))["clock"] == State.CRIT
    assert (
        judge(report(clock__synchronised=False, clock__sync_source="chronyc"))["clock"]
        == State.WARN
    )
    assert judge(report(clock__offset_s=None))["clock"] == State.UNKNOWN
    lost = report(clock__offset_s=None, clock__synchronised=False, clock__sync_source="chronyc")
    assert judge(lost)["clock"] == State.WARN


def test_an_unknown_clock_says_why():
    why = "no [health] ntp_servers, and the local daemon gave no offset: chronyc: no answer\x1b"
    result = check_clock(report(clock__offset_s=None, clock__error=why), StatusSection())
    assert result.state == State.UNKNOWN
    assert "chronyc: no answer\\x1b" in result.summary  # shown, escaped
    assert judge(report(collection__age_s=None))["sync"] == State.WARN
    assert judge(report(collection__age_s=90000.0))["sync"] == State.CRIT
    assert judge(report(traffic__last_message=None))["capture"] == State.WARN  # since Jan 1
    assert judge(report(processes__daemon={"alive": False}))["processes"] == State.CRIT
    assert judge(report(processes__workers=[{"fresh": False}]))["processes"] == State.WARN


def test_silence_is_measured_on_the_sensors_clock():
    # The report was written a minute after the last email, whatever the centre's clock says.
    late = report(time="2027-01-15T08:00:00Z")
    late["traffic"]["last_message"] = "2027-01-15T07:59:00Z"
    assert judge(late)["capture"] == State.OK
    late["traffic"]["last_message"] = "2027-01-15T05:00:00Z"
    assert judge(late)["capture"] == State.WARN


def test_a_restarting_daemon_does_not_hide_silence():
    restarted = report(traffic__last_message=None, traffic__since="2027-01-15T07:59:00Z")
    restarted["time"] = "2027-01-15T08:00:00Z"
    assert judge(restarted)["capture"] == State.OK  # only the current run known: just started
    restarted["traffic"]["first_start"] = "2027-01-14T08:00:00Z"
    assert judge(restarted)["capture"] == State.WARN  # silent since the first run a day ago


def test_reboot_against_the_previous_boot_time():
    boot = 1767225600.0  # 2026-01-01T00:00:00Z
    assert judge(report(), {"boot_time": boot + 30})["uptime"] == State.OK  # within tolerance
    assert judge(report(), {"boot_time": boot - 3600})["uptime"] == State.WARN


def test_ssh_failures():
    for ssh, connectivity in (
        (SshResult(None, b"", b"", 60.0), State.CRIT),
        (SshResult(255, b"", b"Connection refused\n", 0.1), State.CRIT),
        (SshResult(1, b"", b"spampot gate: refused\n", 0.1), State.OK),
        (SshResult(0, b"not json", b"", 0.1), State.OK),
        (SshResult(0, b"[1, 2]", b"", 0.1), State.OK),
    ):
        checks = evaluate("s", ssh, None, TH, NOW).checks
        assert checks["connectivity"].state == connectivity
        assert all(checks[c].state == State.UNKNOWN for c in CHECKS[1:])


def test_worst_order():
    assert worst([State.OK, State.UNKNOWN]) == State.UNKNOWN
    assert worst([State.UNKNOWN, State.WARN]) == State.WARN
    assert worst([State.WARN, State.CRIT, State.UNKNOWN]) == State.CRIT
    assert worst([]) == State.OK


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from([*report(), *report()["system"], *report()["traffic"], "x"]),
            children,
            max_size=6,
        )
    ),
    max_leaves=30,
)


@settings(max_examples=500, deadline=None)
@given(json_values)
def test_any_json_from_a_sensor_is_judged_without_a_traceback(data):
    judged = judge(data)
    assert set(judged) == set(CHECKS)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(report())), json_values)
def test_one_malformed_section_leaves_the_others_judged(section, value):
    data = report()
    data[section] = value
    judged = judge(data)
    assert set(judged) == set(CHECKS)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_from_a_sensor(data):
    status = evaluate("s", SshResult(0, data, data, 0.1), None, TH, NOW)
    assert set(status.checks) == set(CHECKS)


def test_every_status_key_is_in_the_readme():
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme[readme.index("`[status]` in the inventory:") :]
    for key in dataclasses.fields(StatusSection):
        assert f"| `{key.name}` |" in section, f"[status] {key.name} not in the README"


def test_every_field_of_the_status_schema_is_in_the_readme():
    """Finding 9 of issue 14: `status --json` was not documented."""
    root = Path(__file__).parent.parent
    schema = json.loads((root / "src/spampot/central/status.schema.json").read_text())
    readme = (root / "README.md").read_text()
    section = readme[readme.index("`--json` prints one JSON object per round") :]
    section = section[: section.index("The exit status is")]
    sensor = schema["properties"]["sensors"]["items"]["properties"]
    for name in schema["properties"]:
        assert f"| `{name}` |" in section, name
    for name in sensor:
        assert f"| `sensors[].{name}` |" in section, name
    for name in (*sensor["checks"]["properties"], *sensor["figures"]["properties"]):
        assert f"`{name}`" in section, name
