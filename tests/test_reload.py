"""SIGHUP reloads what a running sensor can change, and says what needs a restart."""

from __future__ import annotations

import signal
import smtplib

from conftest import Sensor


def _reloads(sensor: Sensor) -> list[dict]:
    return [e for e in sensor.events() if e["eventid"] == "spampot.sensor.reload"]


def test_sighup_applies_limits_and_names_restart_only_keys(sensor_factory):
    sensor = sensor_factory("[smtp]\nmax_recipients = 5\n")
    with smtplib.SMTP("127.0.0.1", sensor.smtp_port, timeout=10) as client:
        client.mail("a@spam.example")
        for k in range(3):
            assert client.rcpt(f"v{k}@example.org")[0] == 250
    text = sensor.config_path.read_text()
    text = text.replace("max_recipients = 5", "max_recipients = 2")
    text = text.replace('name = "test-sensor"', 'name = "renamed"')  # restart-only
    sensor.config_path.write_text(text)
    assert sensor.proc is not None
    sensor.proc.send_signal(signal.SIGHUP)
    sensor.wait_events(lambda ev: any(e["eventid"] == "spampot.sensor.reload" for e in ev))
    reload = _reloads(sensor)[0]
    assert reload["changed"] == ["smtp"]
    assert reload["restart_needed"] == ["sensor.name"]
    with smtplib.SMTP("127.0.0.1", sensor.smtp_port, timeout=10) as client:
        client.mail("a@spam.example")
        assert client.rcpt("v0@example.org")[0] == 250
        assert client.rcpt("v1@example.org")[0] == 250
        assert client.rcpt("v2@example.org")[0] == 452  # the new limit
    # The running name is kept until a restart.
    assert sensor.events()[-1]["sensor"] == "test-sensor"


def test_sighup_with_a_broken_file_keeps_the_running_configuration(sensor_factory):
    sensor = sensor_factory()
    sensor.config_path.write_text(sensor.config_path.read_text() + "\n[smtp]\nno_such_key = 1\n")
    assert sensor.proc is not None
    sensor.proc.send_signal(signal.SIGHUP)
    events = sensor.wait_events(lambda ev: any("Reload failed" in e.get("message", "") for e in ev))
    error = next(e for e in events if "Reload failed" in e.get("message", ""))
    assert error["eventid"] == "spampot.sensor.error"
    assert "no_such_key" in error["detail"]
    assert not _reloads(sensor)
    with smtplib.SMTP("127.0.0.1", sensor.smtp_port, timeout=10) as client:
        assert client.noop()[0] == 250
    assert sensor.stop() == 0
