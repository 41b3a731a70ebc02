"""spampot simulate live against a real sensor on loopback; and offline events checked against
the events a real sensor wrote for the same kinds of sessions."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from spampot.cli import main
from spampot.simulate import clients
from spampot.simulate.live import (
    LiveError,
    LiveOptions,
    MessageSpec,
    SessionSpec,
    Targets,
    plan_sessions,
    play,
    require_loopback,
    run_live,
    summarise,
)
from spampot.simulate.offline import OfflineOptions, simulate_offline
from spampot.simulate.profile import load_profile
from test_simulate_offline import read_events

TRUST_LOOPBACK = '[sensor]\nproxy_protocol = true\nproxy_protocol_from = ["127.0.0.1/32"]'


def trusting_sensor(sensor_factory):
    from conftest import wait_banner

    sensor = sensor_factory(start=False)
    text = sensor.config_path.read_text().replace("[sensor]", TRUST_LOOPBACK)
    sensor.config_path.write_text(text)
    sensor.start(wait=False)
    wait_banner(sensor.smtp_port, host="::1")  # ::1 is not trusted: served directly
    return sensor


def targets_of(sensor) -> Targets:
    p = sensor.ports
    return Targets("127.0.0.1", (p["smtp"],), (p["http"],), (p["socks"],))


def test_live_sessions_are_captured_as_sent(sensor_factory) -> None:
    sensor = trusting_sensor(sensor_factory)
    targets = targets_of(sensor)
    specs = plan_sessions(load_profile(seed=3), targets, "mixed")
    opts = LiveOptions(sessions=40, rate=200, concurrency=8, duration=60, proxy_protocol="mixed")
    results = asyncio.run(run_live(specs, targets, opts))
    assert len(results) == 40
    assert [r.error for r in results if r.error] == []
    counts = summarise(results)
    sent = counts["messages"]
    assert sent > 0
    events = sensor.wait_events(
        lambda ev: sum(e["eventid"] == "spampot.smtp.message" for e in ev) >= sent, timeout=60
    )
    by_source: dict[tuple[str, int], list[dict]] = {}
    for e in events:
        if e["session"] is not None:
            by_source.setdefault((e["src_ip"], e["src_port"]), []).append(e)
    requests: Counter[str] = Counter()
    for r in results:
        spec = r.spec
        assert spec.source is not None and spec.proxy_version in (1, 2)
        mine = by_source[spec.source]
        assert {e["proxied_by"] for e in mine} == {"127.0.0.1"}
        assert mine[0]["eventid"] == "spampot.session.open"
        assert mine[0]["dst_port"] == spec.port
        proxy = [e for e in mine if e["eventid"] == "spampot.proxy.request"]
        if spec.protocol == "smtp":
            assert proxy == []
        else:
            assert [(e["protocol"], e["outcome"]) for e in proxy] == [(spec.protocol, spec.outcome)]
            module = {"http": "http", "unknown": "unknown"}.get(spec.protocol, "socks")
            requests[f"{module}/{spec.outcome}"] += 1
        stored = [e for e in mine if e["eventid"] == "spampot.smtp.message"]
        assert len(stored) == len(r.queued)
        for e, reply in zip(stored, r.queued, strict=True):
            assert e["queue_id"] in reply  # the id the client was given is the one logged
        assert len(stored) == len(spec.messages)
        for e, msg in zip(stored, spec.messages, strict=True):
            assert e["sha256"] == hashlib.sha256(msg.data).hexdigest()
            assert e["rcpt_to"] == list(msg.rcpt_to)
            assert e["mail_from"] == msg.mail_from
            assert e["via"] == spec.protocol
    nested = {f"{m}/{o}": n for m, t in counts["proxy_requests"].items() for o, n in t.items()}
    assert {k: v for k, v in nested.items() if not k.endswith("/total")} == dict(requests)
    assert sum(counts["countries"].values()) == sent


# Profile tables under which every kind of request and outcome is frequent.
EVERY_KIND = """
[http_outcomes]
smtp = 40
other = 20
get = 20
error = 20
[socks_outcomes]
smtp = 40
other = 30
error = 30
[socks_versions]
socks4 = 1
socks4a = 1
socks5 = 1
"""

KINDS = [
    ("smtp", "smtp", "smtp", None),
    ("http", "http", "smtp", None),
    ("http", "http", "other", None),
    ("http", "http", "get", None),
    ("http", "http", "error", None),
    ("http", "unknown", "error", None),
    ("socks", "socks4", "smtp", None),
    ("socks", "socks4", "other", None),
    ("socks", "socks4", "error", None),
    ("socks", "socks4a", "smtp", None),
    ("socks", "socks4a", "other", None),
    ("socks", "socks5", "smtp", None),
    ("socks", "socks5", "smtp", ("user", "secret")),
    ("socks", "socks5", "other", None),
    ("socks", "socks5", "error", None),
]


def kind(event: dict) -> tuple:
    eventid = event["eventid"]
    if eventid == "spampot.proxy.request":
        auth = event["auth"]["method"] if event["auth"] else None
        return eventid, event["protocol"], event["outcome"], auth
    if eventid == "spampot.smtp.message":
        return eventid, event["via"]
    return (eventid,)


def shape(value: object) -> object:
    """Key order and JSON types, nested dicts included; list elements by their types."""
    if isinstance(value, dict):
        return [(k, shape(v)) for k, v in value.items()]
    if isinstance(value, list):
        return ("list", sorted({repr(shape(v)) for v in value}))
    return type(value).__name__


def test_offline_events_have_the_shape_of_a_real_sensor_s(sensor_factory, tmp_path: Path) -> None:
    sensor = sensor_factory()
    targets = targets_of(sensor)
    message = MessageSpec(
        "a@b.example", ("x@y.example", "z@y.example"), b"Subject: hi\r\n\r\nhi\r\n"
    )
    for module, protocol, outcome, userpass in KINDS:
        spec = SessionSpec(
            port=targets.ports(module)[0],
            module=module,
            protocol=protocol,
            outcome=outcome,
            target_host="mx.example.com" if protocol not in ("socks4", "http") else "192.0.2.25",
            target_port={"other": 80, "get": 80}.get(outcome, 25),
            userpass=userpass,
            messages=(message,) if outcome == "smtp" else (),
        )
        result = asyncio.run(play(spec, "127.0.0.1"))
        assert result.error is None, (spec, result.error)

    def all_closed(events: list[dict]) -> bool:
        # Sessions that did something and were closed: the fixture's start-up check (a
        # connection that reads the banner and leaves) is not one of ours.
        bare = ("spampot.session.open", "spampot.session.close")
        acted = {e["session"] for e in events if e["eventid"] not in bare}
        closed = {e["session"] for e in events if e["eventid"] == "spampot.session.close"}
        return len(acted & closed) >= len(KINDS)

    real_events = sensor.wait_events(all_closed, timeout=60)  # slow on a loaded machine
    assert all_closed(real_events)
    real = {kind(e): shape(e) for e in real_events}
    # A profile where every kind is frequent.
    profile_path = tmp_path / "all-kinds.toml"
    profile_path.write_text(
        """
messages = 3000
days = 1
socks5_auth = 0.5
"""
        + EVERY_KIND
    )
    out = tmp_path / "out"
    simulate_offline(load_profile(profile_path), OfflineOptions(out=out))
    simulated: dict[tuple, object] = {}
    for base in (out / "raw").iterdir():
        for e in read_events(base):
            simulated.setdefault(kind(e), shape(e))
    assert set(simulated) <= set(real), set(simulated) - set(real)
    assert len(simulated) >= len(KINDS)
    for k, s in simulated.items():
        assert s == real[k], k


def test_only_loopback_targets() -> None:
    for host in ("192.0.2.1", "10.0.0.1", "localhost", "2001:db8::1"):
        with pytest.raises(LiveError):
            require_loopback(host)
    assert require_loopback("127.0.0.2") == "127.0.0.2"
    assert require_loopback("::1") == "::1"
    spec = SessionSpec(port=25, module="smtp", protocol="smtp", outcome="smtp")
    with pytest.raises(LiveError):
        asyncio.run(play(spec, "192.0.2.1"))
    result = CliRunner().invoke(main, ["simulate", "live", "--host", "192.0.2.1",
                                       "--smtp-port", "25"])  # fmt: skip
    assert result.exit_code != 0 and "loopback" in result.output


def test_live_stops_at_its_duration(sensor_factory) -> None:
    sensor = sensor_factory()
    targets = targets_of(sensor)
    opts = LiveOptions(sessions=10_000, rate=20, duration=0.5, concurrency=4)
    results = asyncio.run(run_live(plan_sessions(load_profile(), targets), targets, opts))
    assert 1 <= len(results) <= 12


def test_cli_live_reads_the_sensor_config(sensor_factory) -> None:
    sensor = trusting_sensor(sensor_factory)
    result = CliRunner().invoke(
        main,
        ["simulate", "live", "--config", str(sensor.config_path), "--sessions", "12",
         "--rate", "100"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    counts = json.loads(result.output)
    assert counts["proxy_protocol"] == "mixed"
    assert counts["sessions"] == 12 and counts["failed"] == 0
    events = sensor.wait_events(
        lambda ev: sum(e["eventid"] == "spampot.smtp.message" for e in ev) >= counts["messages"],
        timeout=60,
    )
    stored = [e for e in events if e["eventid"] == "spampot.smtp.message"]
    assert len(stored) == counts["messages"]
    assert all(e["src_ip"] != "127.0.0.1" and e["proxied_by"] == "127.0.0.1" for e in stored)


def test_offline_byte_counts_are_what_a_real_sensor_counts(sensor_factory, tmp_path: Path):
    """Each simulated session, played to a real sensor configured as the simulator assumes
    (its name as host name, the default personas): the sensor's session.close counts the
    same bytes each way (less the PROXY header that presents the simulated source), and
    stores each message with the size and SHA-256 the simulated event gives."""
    from conftest import wait_banner

    sensor = sensor_factory(start=False)
    text = sensor.config_path.read_text().replace("[sensor]", TRUST_LOOPBACK)
    text = text.replace('hostname = "mx.sensor.example"', 'hostname = "test-sensor"')
    sensor.config_path.write_text(text)
    sensor.start(wait=False)
    wait_banner(sensor.smtp_port, host="::1")  # ::1 is not trusted: served directly
    ports = sensor.ports
    profile_path = tmp_path / "wire.toml"
    profile_path.write_text(
        f"""
messages = 40
days = 1
socks5_auth = 0.5
recipients_mean = 3
sensor_address = "127.0.0.1"
{EVERY_KIND}
[[sensor]]
name = "test-sensor"
[[port]]
port = {ports["smtp"]}
protocol = "smtp"
share = 30
[[port]]
port = {ports["http"]}
protocol = "http"
share = 35
[[port]]
port = {ports["socks"]}
protocol = "socks"
share = 35
"""
    )
    out = tmp_path / "out"
    simulate_offline(load_profile(profile_path), OfflineOptions(out=out, bodies="all"))
    base = out / "raw" / "test-sensor"
    sessions: dict[str, list[dict]] = {}
    for e in read_events(base):
        if e["session"] is not None:
            sessions.setdefault(e["session"], []).append(e)
    module = {ports["smtp"]: "smtp", ports["http"]: "http", ports["socks"]: "socks"}
    specs = []
    for events in sessions.values():
        first = events[0]
        request = next((e for e in events if e["eventid"] == "spampot.proxy.request"), None)
        mails = [e for e in events if e["eventid"] == "spampot.smtp.message"]
        auth = request["auth"] if request else None
        specs.append(
            SessionSpec(
                port=first["dst_port"],
                module=module[first["dst_port"]],
                protocol=request["protocol"] if request else "smtp",
                outcome=request["outcome"] if request else "smtp",
                # A refused command's event names no target: an address, as the simulator sends.
                target_host=(request["target_host"] or "198.51.100.25") if request else "",
                target_port=(request["target_port"] or 25) if request else 25,
                source=(first["src_ip"], first["src_port"]),
                proxy_version=1,
                userpass=(auth["username"], auth["password"])
                if auth and auth["method"] == "userpass"
                else None,
                helo=mails[0]["helo"] if mails else "client.example",
                messages=tuple(
                    MessageSpec(
                        m["mail_from"],
                        tuple(m["rcpt_to"]),
                        gzip.decompress((base / m["file"]).read_bytes()),
                    )
                    for m in mails
                ),
            )
        )
    kinds = Counter((s.protocol, s.outcome) for s in specs)
    assert len(kinds) >= 8 and kinds[("smtp", "smtp")] and kinds[("socks5", "smtp")], kinds
    results = [asyncio.run(play(spec, "127.0.0.1")) for spec in specs]
    assert [r.error for r in results if r.error] == []
    closed = sensor.wait_events(
        lambda ev: sum(e["eventid"] == "spampot.session.close" for e in ev) > len(specs),
        timeout=60,
    )
    real: dict[tuple[str, int], list[dict]] = {}
    for e in closed:
        if e["session"] is not None:
            real.setdefault((e["src_ip"], e["src_port"]), []).append(e)
    compared = 0
    for spec, events in zip(specs, sessions.values(), strict=True):
        assert spec.source is not None
        theirs = real[spec.source]
        header = clients.proxy_header(1, *spec.source, "127.0.0.1", spec.port)
        mine_close = next(e for e in events if e["eventid"] == "spampot.session.close")
        real_close = next(e for e in theirs if e["eventid"] == "spampot.session.close")
        assert (mine_close["bytes_in"], mine_close["bytes_out"]) == (
            real_close["bytes_in"] - len(header),
            real_close["bytes_out"],
        ), (spec.protocol, spec.outcome, spec.target_host)
        mine_msgs = [e for e in events if e["eventid"] == "spampot.smtp.message"]
        real_msgs = [e for e in theirs if e["eventid"] == "spampot.smtp.message"]
        assert [(e["size"], e["sha256"]) for e in mine_msgs] == [
            (e["size"], e["sha256"]) for e in real_msgs
        ]
        assert [len(e["queue_id"]) for e in mine_msgs] == [len(e["queue_id"]) for e in real_msgs]
        compared += 1 + len(mine_msgs)
    assert compared > len(specs)
