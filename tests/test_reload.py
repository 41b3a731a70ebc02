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


def test_restart_only_keys_are_declared_once_and_documented():
    """config.py declares them (whole sections, single fields); the reload and the README's
    SIGHUP paragraph follow the declaration."""
    import dataclasses
    from pathlib import Path

    from spampot.config import Config, restart_only_keys

    keys = restart_only_keys()
    writer_keys = {"spool.compress_level", "spool.fsync", "events.rotate_bytes"}
    assert writer_keys <= set(keys)
    assert {k.split(".")[0] for k in keys} == {"sensor", "ports", "spool", "events", "health",
                                               "metrics"}  # fmt: skip
    assert "spool.min_free_bytes" not in keys and "events.flush_interval" not in keys
    text = (Path(__file__).parent.parent / "README.md").read_text()
    paragraph = text[text.index("`SIGHUP` reloads the file") :].split("\n\n", 1)[0]
    for section in dataclasses.fields(Config):
        names = [f.name for f in dataclasses.fields(getattr(Config(), section.name))]
        restart = [n for n in names if f"{section.name}.{n}" in keys]
        if restart and restart == names:
            assert f"`[{section.name}]`" in paragraph, section.name
        for name in restart if restart != names else ():
            assert f"`{section.name}.{name}`" in paragraph, name


def test_a_reload_keeps_the_running_values_of_restart_only_keys():
    import dataclasses

    from spampot.config import keep_restart_only, load_config, restart_needed

    running = load_config(sensor__name="a", spool__fsync=True, spool__min_free_bytes=5)
    new = load_config(
        sensor__name="b", spool__fsync=False, spool__min_free_bytes=7, smtp__max_recipients=3
    )
    assert restart_needed(running, new) == ["sensor.name", "spool.fsync"]
    applied = keep_restart_only(new, running)
    assert applied.sensor == running.sensor
    assert applied.spool == dataclasses.replace(running.spool, min_free_bytes=7)
    assert applied.smtp.max_recipients == 3
    assert restart_needed(running, applied) == []
