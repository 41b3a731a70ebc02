"""``spampot health`` and the Prometheus endpoint against real sensors on loopback."""

from __future__ import annotations

import json
import re
import smtplib
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import socks
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from conftest import free_port, need_tool
from spampot.config import ConfigError, load_config
from spampot.sensor import health, metrics
from spampot.sensor.exporter import families
from spampot.sensor.health import clock, health_report

ROOT = Path(__file__).parent.parent
ALERT_RULES = ROOT / "deploy" / "spampot-alerts.yml"

FAST = """
[health]
interface = "lo"
sample_interval = 0.2
ntp_servers = []
"""


def run_health(config_path: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "spampot", "health", "--json", "--config", str(config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(out.stdout)


def send_mail(port: int, n: int) -> None:
    for k in range(n):
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("a@spam.example", [f"v{k}@example.org"], b"Subject: hi\r\n\r\nbody\r\n")


def socks5_smtp(port: int) -> None:
    """A SOCKS5 CONNECT to port 25 (handed to the SMTP emulator), then QUIT."""
    s = socks.socksocket()
    s.set_proxy(socks.SOCKS5, "127.0.0.1", port)
    s.settimeout(10)
    s.connect(("mx.example.org", 25))
    s.recv(512)
    s.sendall(b"QUIT\r\n")
    s.recv(512)
    s.close()


def wait_for(pred, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def sensor_keys(sensor, keys: str) -> None:
    """Add keys to the [sensor] table of a test sensor's configuration."""
    text = sensor.config_path.read_text()
    sensor.config_path.write_text(text.replace("[sensor]\n", f"[sensor]\n{keys}\n", 1))


def test_health_counts_add_up_across_workers(sensor_factory):
    sensor = sensor_factory(FAST, start=False)
    sensor_keys(sensor, "workers = 2")
    sensor.start()
    send_mail(sensor.smtp_port, 6)
    for _ in range(3):
        socks5_smtp(sensor.ports["socks"])
    config = load_config(sensor.config_path)

    def counted() -> dict | None:
        report = health_report(config, live=False)
        return report if report["traffic"]["totals"]["messages"] == 6 else None

    assert wait_for(counted), "the workers' counters never added up to 6 messages"
    time.sleep(0.5)
    report = run_health(sensor.config_path)

    traffic = report["traffic"]
    totals = traffic["totals"]
    assert totals["messages"] == 6
    assert totals["sessions"] >= 9  # 6 SMTP + 3 SOCKS (the probes of other runs add more)
    assert totals["proxy_requests"] == {"socks5/smtp": 3}
    assert totals["bytes_in"] > 6 * 40 and totals["bytes_out"] > 6 * 100
    assert traffic["messages"] == 6  # all within the last 15 minutes
    assert traffic["last_message"] is not None
    assert 0 < traffic["window_s"] < 60
    iface = traffic["interface"]
    assert iface["name"] == "lo"
    assert iface["rx_packets_per_s"] > 0 and iface["rx_bytes_per_s"] > 0
    assert iface["tx_packets_per_s"] > 0 and iface["tx_bytes_per_s"] > 0

    procs = report["processes"]
    assert procs["daemon"]["alive"] and procs["daemon"]["pid"] == sensor.proc.pid
    assert sorted(w["worker"] for w in procs["workers"]) == [0, 1]
    assert all(w["alive"] and w["fresh"] for w in procs["workers"])
    listeners = procs["listeners"]
    assert len(listeners) == 6  # 3 ports x 2 addresses
    assert all(entry["accepting"] for entry in listeners), listeners

    assert report["spool"]["files"] >= 6 and report["spool"]["bytes"] > 0
    assert report["collection"] == {"time": None, "age_s": None}
    assert report["system"]["boot_time"] and report["system"]["uptime_s"] > 0
    assert len(report["system"]["load"]) == 3
    assert 0 < report["disk"]["used_percent"] <= 100
    assert report["clock"]["offset_s"] is None and report["clock"]["servers"] == []

    (sensor.data_dir / "state" / "last-collection.json").write_text(
        json.dumps({"time": "2020-01-02T03:04:05Z", "files": 3, "bytes": 99})
    )
    collection = health_report(config, live=False)["collection"]
    assert collection["time"] == "2020-01-02T03:04:05.000000Z"
    assert collection["files"] == 3 and collection["age_s"] > 365 * 86400

    assert sensor.stop() == 0
    after = health_report(config)
    assert not after["processes"]["daemon"]["alive"]
    assert not any(entry["accepting"] for entry in after["processes"]["listeners"])
    # The last counts stay readable after the daemon is gone.
    assert after["traffic"]["totals"]["messages"] == 6


def test_a_new_run_does_not_add_an_old_runs_workers(sensor_factory):
    sensor = sensor_factory(FAST)
    stale = sensor.data_dir / "state" / "worker-5.json"
    sensor.stop()
    stale.write_text(json.dumps({"counters": {"messages": 1000}, "worker": 5}))
    sensor.start()
    send_mail(sensor.smtp_port, 1)
    config = load_config(sensor.config_path)
    assert wait_for(lambda: health_report(config, live=False)["traffic"]["totals"]["messages"] == 1)
    assert not stale.exists()


def test_the_last_capture_and_first_start_survive_restarts(sensor_factory):
    sensor = sensor_factory(FAST)
    send_mail(sensor.smtp_port, 1)
    config = load_config(sensor.config_path)
    assert wait_for(lambda: health_report(config, live=False)["traffic"]["last_message"])
    first = health_report(config, live=False)["traffic"]
    for _ in range(2):  # twice: what was carried is carried again
        sensor.stop()
        sensor.start()
        assert wait_for(
            lambda: health_report(config, live=False)["traffic"]["since"] != first["since"]
        )
        again = health_report(config, live=False)["traffic"]
        assert again["totals"]["messages"] == 0  # counters are per run
        assert again["last_message"] == first["last_message"]
        assert again["first_start"] == first["since"] < again["since"]


def test_listener_down_is_reported(sensor_factory):
    # A port bound without listen(): the sensor cannot take it, and connections are refused.
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    taken = blocker.getsockname()[1]
    try:
        sensor = sensor_factory(FAST, start=False)
        text = sensor.config_path.read_text()
        text = text.replace(f"http = [{sensor.ports['http']}]", f"http = [{taken}]")
        sensor.config_path.write_text(text.replace('bind = ["127.0.0.1", "::1"]', ""))
        sensor_keys(sensor, 'bind = ["127.0.0.1"]\nallow_partial_bind = true')
        sensor.start()
        report = run_health(sensor.config_path)
        by_port = {e["port"]: e for e in report["processes"]["listeners"]}
        assert not by_port[taken]["accepting"] and by_port[taken]["error"]
        assert by_port[sensor.smtp_port]["accepting"]
        assert report["processes"]["daemon"]["alive"]
    finally:
        blocker.close()


def test_prometheus_endpoint_is_scraped_and_parses(sensor_factory):
    port = free_port()
    sensor = sensor_factory(FAST + f"\n[metrics]\nenabled = true\nport = {port}\n")
    send_mail(sensor.smtp_port, 2)
    socks5_smtp(sensor.ports["socks"])
    url = f"http://127.0.0.1:{port}/metrics"

    def scrape() -> dict:
        with urllib.request.urlopen(url, timeout=10) as reply:
            assert reply.status == 200
            assert reply.headers["Content-Type"].startswith("text/plain")
            text = reply.read().decode()
        return {f.name: f for f in text_string_to_metric_families(text)}

    assert wait_for(lambda: scrape()["spampot_messages"].samples[0].value == 2)
    families = scrape()
    assert families["spampot_messages"].type == "counter"
    assert families["spampot_messages"].samples[0].name == "spampot_messages_total"
    assert families["spampot_sessions"].samples[0].value >= 3
    requests = families["spampot_proxy_requests"].samples
    assert [(s.labels, s.value) for s in requests] == [
        ({"protocol": "socks5", "outcome": "smtp"}, 1.0)
    ]
    assert families["spampot_received_bytes"].samples[0].value > 0
    assert families["spampot_interface_receive_packets"].samples[0].labels == {"interface": "lo"}
    assert families["spampot_spool_files"].samples[0].value >= 2
    assert families["spampot_boot_timestamp_seconds"].samples[0].value > 1e9
    assert families["spampot_data_dir_avail_bytes"].samples[0].value > 0
    assert families["spampot_listeners"].samples[0].value == 6
    assert families["spampot_workers_fresh"].samples[0].value == 1
    assert "spampot_last_collection_timestamp_seconds" not in families
    (sensor.data_dir / "state" / "last-collection.json").write_text(
        json.dumps({"time": "2026-01-02T03:04:05Z", "files": 3, "bytes": 99})
    )
    samples = {s.name: s.value for f in scrape().values() for s in f.samples}
    assert samples["spampot_last_collection_timestamp_seconds"] == 1767323045.0
    # Every spampot metric the example alerting rules use is one the sensor exports.
    used = set(re.findall(r"\bspampot_[a-z0-9_]+", ALERT_RULES.read_text()))
    assert used and used <= set(samples), used - set(samples)
    assert "process_resident_memory_bytes" in {s.name for f in families.values() for s in f.samples}


def test_alert_rules_are_valid_and_pass_their_unit_tests():
    promtool = need_tool("promtool")
    for args in (
        ["check", "rules", str(ALERT_RULES)],
        ["test", "rules", str(ROOT / "tests" / "alerts" / "spampot-alerts.test.yml")],
    ):
        done = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr


def test_metrics_listener_is_off_by_default(sensor_factory):
    port = free_port()
    sensor = sensor_factory(FAST + f"\n[metrics]\nport = {port}\n")
    assert sensor.proc.poll() is None
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


def test_clock_offset_from_real_ntp_servers(ntp_server, tmp_path):
    good = ntp_server()
    ahead = ntp_server(offset=120)
    path = tmp_path / "c.toml"
    path.write_text(
        f'[sensor]\ndata_dir = "{tmp_path}"\n[health]\n'
        f'ntp_servers = ["{ahead.address}", "127.0.0.1:{free_port()}"]\nntp_timeout = 0.5\n'
    )
    result = clock(load_config(path))
    # The sensor is 120 s *behind* the server's clock: offset is server minus local.
    assert result["offset_s"] == pytest.approx(120, abs=2)
    assert "error" in result["servers"][1]
    path.write_text(
        f'[sensor]\ndata_dir = "{tmp_path}"\n[health]\nntp_servers = ["{good.address}"]\n'
    )
    assert abs(clock(load_config(path))["offset_s"]) < 0.5


def test_local_clock_daemon_synchronised_or_not(ntp_server, chrony_client, tmp_path):
    server = ntp_server()
    synced = chrony_client(server.port)
    lost = chrony_client(free_port())  # its server never answers
    for client, expected in ((synced, True), (lost, False)):
        path = tmp_path / "c.toml"
        path.write_text(
            f'[sensor]\ndata_dir = "{tmp_path}"\n[health]\nntp_servers = []\n'
            f'chrony_socket = "{client.socket}"\n'
        )
        config = load_config(path)
        result = wait_for(lambda c=config, e=expected: clock(c)["synchronised"] is e, timeout=15)
        assert result, clock(config)
        assert clock(config)["sync_source"] == "chronyc"


def test_clock_without_dns_by_default_asks_the_local_daemon(ntp_server, chrony_client, tmp_path):
    """Finding 7 of issue 14: the default asked pool.ntp.org, a name the shipped firewall
    cannot resolve, so a healthy sensor's clock was UNKNOWN. Now the default has no server
    and the offset comes from the local chronyd (its own servers, by address)."""
    assert load_config(None).health.ntp_servers == ()
    ahead = ntp_server(offset=120)
    client = chrony_client(ahead.port)
    path = tmp_path / "c.toml"
    path.write_text(
        f'[sensor]\ndata_dir = "{tmp_path}"\n[health]\nchrony_socket = "{client.socket}"\n'
    )
    config = load_config(path)
    result = wait_for(lambda: clock(config)["offset_s"] is not None, timeout=20)
    assert result, clock(config)
    result = clock(config)
    assert result["offset_source"] == "chronyc" and result["servers"] == []
    # chronyd (-x: it leaves the clock alone) measures this clock 120 s behind its server.
    assert result["offset_s"] == pytest.approx(120, abs=5), result
    assert result["error"] is None


def test_clock_says_why_it_has_no_offset(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(
        f'[sensor]\ndata_dir = "{tmp_path}"\n[health]\nchrony_socket = "{tmp_path}/none.sock"\n'
    )
    result = clock(load_config(path))
    assert result["offset_s"] is None
    assert result["error"].startswith("no [health] ntp_servers, and the local daemon")


@pytest.mark.parametrize("name", ["pool.ntp.org", "ntp.example:123", "[::1]:0"])
def test_ntp_servers_are_addresses(tmp_path, name):
    path = tmp_path / "c.toml"
    path.write_text(f'[health]\nntp_servers = ["{name}"]\n')
    with pytest.raises(ConfigError, match="ntp_servers"):
        load_config(path)


def test_chrony_and_ntpq_answers_are_read():
    chrony = (
        "Reference ID    : 7F000001 (127.0.0.1)\n"
        "System time     : 0.250000000 seconds fast of NTP time\n"
        "Leap status     : Normal\n"
    )
    assert health._chrony_tracking(chrony)["offset_s"] == -0.25
    slow = chrony.replace("fast", "slow")
    assert health._chrony_tracking(slow)["offset_s"] == 0.25
    lost = chrony.replace("Normal", "Not synchronised")
    assert health._chrony_tracking(lost) == {
        "synchronised": False,
        "offset_s": None,
        "source": "chronyc",
        "error": "chronyd is not synchronised to any server",
    }
    assert health._ntpq_variables("leap=00, offset=-12.5\n")["offset_s"] == -0.0125
    assert health._ntpq_variables("leap=11, offset=0.000\n")["synchronised"] is False


# --- the pieces -----------------------------------------------------------------------------


def test_split_server():
    assert health.split_server("pool.ntp.org") == ("pool.ntp.org", 123)
    assert health.split_server("127.0.0.1:1123") == ("127.0.0.1", 1123)
    assert health.split_server("[::1]:1123") == ("::1", 1123)
    assert health.split_server("[::1]") == ("::1", 123)
    assert health.split_server("2001:db8::1") == ("2001:db8::1", 123)


def test_proc_files_read_from_a_given_procfs(tmp_path):
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "route").write_text(
        "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n"
        "eth1\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
        "eth1\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
    )
    (tmp_path / "net" / "dev").write_text(
        "Inter-|   Receive    |  Transmit\n"
        " face |bytes packets errs drop fifo frame compressed multicast|bytes packets ...\n"
        "    lo: 10 1 0 0 0 0 0 0 10 1 0 0 0 0 0 0\n"
        "  eth1: 5000 40 0 0 0 0 0 0 700 9 0 0 0 0 0 0\n"
    )
    (tmp_path / "stat").write_text("cpu 1 2 3\nbtime 1700000000\nprocesses 5\n")
    assert metrics.default_interface(tmp_path) == "eth1"
    sample = metrics.read_interface(tmp_path, "eth1", now=5.0)
    assert sample == metrics.InterfaceSample(5.0, 5000, 40, 700, 9)
    assert metrics.read_interface(tmp_path, "eth9") is None
    assert health.boot_time(tmp_path) == 1700000000.0
    assert metrics.default_interface(tmp_path / "missing") is None


def test_history_keeps_one_sample_before_the_window():
    samples = [[float(t), t] for t in range(0, 2000, 10)]
    metrics._trim(samples, keep_after=1000.0)
    assert samples[0][0] == 1000.0 and samples[-1][0] == 1990.0
    assert health._baseline(samples, since=1005.0) == [1000.0, 1000]
    assert health._baseline(samples, since=0.0) == [1000.0, 1000]  # shorter window: oldest


def test_spool_backlog_is_bounded(tmp_path):
    for day in range(3):
        d = tmp_path / f"2026-01-0{day + 1}" / "25"
        d.mkdir(parents=True)
        for k in range(4):
            (d / f"{k}.eml.gz").write_bytes(b"x" * 10)
    assert health.spool_backlog(tmp_path, 1000) == {"files": 12, "bytes": 120, "truncated": False}
    limited = health.spool_backlog(tmp_path, 5)
    assert limited["truncated"] and limited["files"] <= 5
    assert health.spool_backlog(tmp_path / "none", 10) == {
        "files": 0,
        "bytes": 0,
        "truncated": False,
    }


def test_the_daemons_own_records_are_valid(sensor_factory):
    sensor = sensor_factory(FAST)
    send_mail(sensor.smtp_port, 1)
    socks5_smtp(sensor.ports["socks"])
    config = load_config(sensor.config_path)
    assert wait_for(lambda: health_report(config, live=False)["traffic"]["totals"]["messages"])
    raw = json.loads((sensor.data_dir / "state" / "worker-0.json").read_text())
    assert metrics.valid_worker_state(raw)
    assert raw["interface"]["samples"] and raw["history"]


STATE_KEYS = [
    *("counters", "sessions", "messages", "proxy_requests", "protocol", "outcome", "count"),
    *("rejects", "history", "interface", "name", "samples", "last_message", "started"),
    *("updated", "pid", "worker", "bytes_in"),
]
state_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.sampled_from(STATE_KEYS), children, max_size=8)
    ),
    max_leaves=40,
)
VALID_STATE = {
    "pid": 10,
    "worker": 0,
    "started": 1.7e9,
    "updated": 1.7e9 + 60,
    "counters": {
        "sessions": 3,
        "messages": 2,
        "bytes_in": 100,
        "bytes_out": 50,
        "proxy_requests": [{"protocol": "socks5", "outcome": "smtp", "count": 1}],
        "rejects": {"size": 1},
    },
    "last_message": 1.7e9 + 30,
    "history": [[1.7e9, 0], [1.7e9 + 60, 2]],
    "interface": {"name": "lo", "samples": [[1.7e9, 1, 1, 1, 1], [1.7e9 + 60, 9, 9, 9, 9]]},
}


def read_state(tmp_path: Path, state: object) -> dict:
    (tmp_path / "state").mkdir(exist_ok=True)
    (tmp_path / "state" / "worker-0.json").write_text(json.dumps(state))
    path = tmp_path / "c.toml"
    path.write_text(f'[sensor]\ndata_dir = "{tmp_path}"\n[health]\ninterface = "lo"\n')
    report = health_report(load_config(path), live=False)
    list(families(report))  # and the metrics built from it
    return report


def test_a_valid_worker_file_counts(tmp_path):
    report = read_state(tmp_path, VALID_STATE)
    assert report["traffic"]["totals"]["proxy_requests"] == {"socks5/smtp": 1}


FUZZ = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FUZZ
@given(state=state_values)
def test_any_worker_file_is_read_without_a_traceback(tmp_path, state):
    report = read_state(tmp_path, state)
    # Whatever the file held, the totals are counts: never negative, never a foreign type.
    totals = report["traffic"]["totals"]
    assert isinstance(totals["messages"], int) and totals["messages"] >= 0
    assert all(
        isinstance(k, str) and isinstance(v, int) and v >= 0
        for k, v in totals["proxy_requests"].items()
    )


@FUZZ
@given(data=st.data())
def test_a_worker_file_with_one_bad_value_is_skipped(tmp_path, data):
    state = json.loads(json.dumps(VALID_STATE))
    node = state
    while isinstance(node, dict | list) and node:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        key = data.draw(st.sampled_from(keys))
        if not isinstance(node[key], dict | list) or data.draw(st.booleans()):
            node[key] = data.draw(state_values)
            break
        node = node[key]
    report = read_state(tmp_path, state)
    assert report["traffic"]["totals"]["messages"] in (0, 2)
