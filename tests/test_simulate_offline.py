"""spampot simulate offline: the dataset is what sensors and collection write, and its counts
are what the files hold."""

from __future__ import annotations

import bisect
import gzip
import hashlib
import ipaddress
import json
import re
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from spampot.central.inventory import load_inventory
from spampot.cli import main
from spampot.config import table1_module
from spampot.simulate.offline import OfflineOptions, simulate_offline
from spampot.simulate.profile import (
    TABLE3,
    TABLE5,
    TABLE6_HTTP,
    TABLE6_SOCKS,
    Profile,
    ProfileError,
    default_origins,
    load_profile,
    origins_ip2asn,
)

EVENT_FILE = re.compile(r"(?P<sensor>[\w.-]+)-(?P<hour>\d{8}T\d{2})(?:-(?P<n>\d+))?\.jsonl\.gz")
# The queue id is in the style of the persona that answered (Postfix's 10 hex digits on a
# direct port; Exim's, Sendmail's, a provider's in tunnels), as a sensor names its files.
MESSAGE_FILE = re.compile(r"\d{4}-\d{2}-\d{2}/\d{1,5}/[0-9A-Za-z.-]+/\d{6}-[0-9A-Za-z.-]+\.eml\.gz")


def file_order(path: Path) -> tuple[str, int]:
    """Rotated files in the order they were written: by hour, then by size-rotation count."""
    m = EVENT_FILE.fullmatch(path.name)
    assert m, path.name
    return m["hour"], int(m["n"] or 0)


def read_events(base: Path) -> list[dict]:
    events = []
    for path in sorted((base / "events").iterdir(), key=file_order):
        m = EVENT_FILE.fullmatch(path.name)
        assert m["sensor"] == base.name or base.name == "spool"
        lines = gzip.decompress(path.read_bytes()).splitlines()
        stamps = []
        for line in lines:
            event = json.loads(line)
            ts = event["timestamp"]
            # Every line belongs to the hour the file is named after, in time order.
            assert ts[0:4] + ts[5:7] + ts[8:10] + "T" + ts[11:13] == m["hour"]
            stamps.append(ts)
            events.append(event)
        assert stamps == sorted(stamps)
    return events


class Ranges:
    """An AS database built from ``spampot simulate origins`` output, as a test fixture would."""

    def __init__(self, ip2asn: str) -> None:
        self.starts: list[int] = []
        self.rows: list[tuple[int, int, str]] = []
        for line in ip2asn.splitlines():
            start, end, asn, cc, _name = line.split("\t")
            if ":" in start:
                continue
            self.starts.append(int(ipaddress.ip_address(start)))
            self.rows.append((int(ipaddress.ip_address(end)), int(asn), cc))

    def lookup(self, ip: str) -> tuple[int, str] | None:
        value = int(ipaddress.ip_address(ip))
        i = bisect.bisect_right(self.starts, value) - 1
        if i < 0 or value > self.rows[i][0]:
            return None
        return self.rows[i][1], self.rows[i][2]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Profile, Path, dict]:
    out = tmp_path_factory.mktemp("sim")
    profile = load_profile(messages=20_000, days=3, seed=11)
    counts = simulate_offline(
        profile, OfflineOptions(out=out, bodies="sample", bodies_rate=0.05, rotate_bytes=20_000)
    )
    return profile, out, counts


def test_counts_are_what_the_files_hold(dataset) -> None:
    profile, out, counts = dataset
    ranges = Ranges(origins_ip2asn(profile))
    sensors = sorted(p.name for p in (out / "raw").iterdir())
    assert sensors == sorted(s.name for s in profile.sensors)
    inventory = load_inventory(out / "inventory.toml")
    assert inventory.central.raw_dir == out / "raw"
    assert {s.name: list(s.tags) for s in inventory.sensors} == counts["sensor_tags"]
    assert not any(s.enabled for s in inventory.sensors)
    messages = recipients = 0
    requests: Counter[str] = Counter()
    countries: Counter[str] = Counter()
    ases: Counter[int] = Counter()
    ports: Counter[str] = Counter()
    days: Counter[str] = Counter()
    per_sensor: Counter[str] = Counter()
    ips: set[str] = set()
    sessions: dict[str, list[str]] = {}
    bodies = 0
    for sensor in sensors:
        base = out / "raw" / sensor
        for event in read_events(base):
            assert event["sensor"] == sensor
            kind = event["eventid"]
            if event["session"] is not None:
                sessions.setdefault(event["session"], []).append(kind)
            if kind == "spampot.proxy.request":
                spoken = {"http": "http", "unknown": "unknown"}.get(event["protocol"], "socks")
                module = table1_module(event["dst_port"]) or spoken  # as Table 6 counts
                requests[f"{module}/{event['outcome']}"] += 1
            if kind != "spampot.smtp.message":
                continue
            messages += 1
            recipients += len(event["rcpt_to"])
            assert 1 <= len(event["rcpt_to"]) <= profile.recipients_max
            found = ranges.lookup(event["src_ip"])
            assert found is not None, event["src_ip"]
            ases[found[0]] += 1
            countries[found[1]] += 1
            ports[str(event["dst_port"])] += 1
            days[event["timestamp"][:10]] += 1
            per_sensor[sensor] += 1
            ips.add(event["src_ip"])
            assert MESSAGE_FILE.fullmatch(event["file"]), event["file"]
            day, port, ip_dir, name = event["file"].split("/")
            assert (day, int(port), ip_dir) == (
                event["timestamp"][:10],
                event["dst_port"],
                event["src_ip"],
            )
            assert name[:6] == event["timestamp"][11:19].replace(":", "")
            assert name[7:].removesuffix(".eml.gz") == event["queue_id"]
            body = base / event["file"]
            if body.exists():
                bodies += 1
                data = gzip.decompress(body.read_bytes())
                assert hashlib.sha256(data).hexdigest() == event["sha256"]
                assert len(data) == event["size"]
    assert messages == counts["messages"] == 20_000
    assert recipients == counts["recipients"]
    assert bodies == counts["message_files"] > 0
    assert len(ips) == counts["unique_ips"]
    assert dict(countries) == counts["countries"]
    assert {int(k.split()[0]): v for k, v in counts["ases"].items()} == dict(ases)
    assert dict(ports) == counts["ports"]
    assert dict(days) == counts["messages_per_day"]
    assert dict(per_sensor) == counts["sensors"]
    nested = {f"{m}/{o}": n for m, t in counts["proxy_requests"].items() for o, n in t.items()}
    assert {k: v for k, v in nested.items() if not k.endswith("/total")} == dict(requests)
    # Every session opens, and closes last.
    for kinds in sessions.values():
        assert kinds[0] == "spampot.session.open"
        assert kinds[-1] == "spampot.session.close"
        assert kinds.count("spampot.proxy.request") <= 1
    assert len(sessions) == counts["sessions"]


def test_size_rotation_names_files_like_the_sensor(dataset) -> None:
    _, out, _ = dataset
    names = [p.name for s in (out / "raw").iterdir() for p in (s / "events").iterdir()]
    rotated = [n for n in names if EVENT_FILE.fullmatch(n)["n"]]
    assert rotated, "a 20 kB rotation size must split busy hours"
    for name in rotated:
        m = EVENT_FILE.fullmatch(name)
        assert f"{m['sensor']}-{m['hour']}.jsonl.gz" in names


def test_same_seed_same_bytes_whatever_the_jobs(tmp_path: Path) -> None:
    profile = load_profile(messages=3000, days=2, seed=5)
    a = simulate_offline(profile, OfflineOptions(out=tmp_path / "a"))
    b = simulate_offline(profile, OfflineOptions(out=tmp_path / "b", jobs=2))
    assert a == b
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.gz"))
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.gz"))
    assert files_a == files_b
    for rel in files_a:
        assert gzip.decompress((tmp_path / "a" / rel).read_bytes()) == gzip.decompress(
            (tmp_path / "b" / rel).read_bytes()
        )
    c = simulate_offline(
        load_profile(messages=3000, days=2, seed=6), OfflineOptions(tmp_path / "c")
    )
    assert c != a


def test_spool_layout_is_a_sensor_data_dir(tmp_path: Path) -> None:
    profile = load_profile(messages=500, days=1, seed=3)
    counts = simulate_offline(profile, OfflineOptions(out=tmp_path, layout="spool", bodies="all"))
    for s in profile.sensors:
        assert (tmp_path / s.name / "tmp").is_dir()
        assert (tmp_path / s.name / "events").is_dir()
        assert list((tmp_path / s.name / "spool" / "events").glob(f"{s.name}-*.jsonl.gz"))
    bodies = list(tmp_path.glob("*/spool/*/*/*/*.eml.gz"))
    assert len(bodies) == counts["message_files"] == counts["messages"] == 500


def test_default_profile_follows_the_paper(tmp_path: Path) -> None:
    """Shares over a larger run land near Tables 3, 5 and 6 and 9.16 recipients per spam."""
    counts = simulate_offline(
        load_profile(messages=100_000, days=5, seed=1), OfflineOptions(out=tmp_path)
    )
    total = counts["messages"]
    assert total == 100_000
    for cc, share in TABLE3.items():
        assert counts["countries"][cc] / total * 100 == pytest.approx(share, abs=1.0 + share / 20)
    for port, _, share in TABLE5:
        assert counts["ports"][str(port)] / total * 100 == pytest.approx(
            share, abs=0.5 + share / 20
        )
    assert counts["recipients_per_message"] == pytest.approx(9.16, abs=0.15)
    requests = counts["proxy_requests"]
    http = requests["http"]
    socks = requests["socks"]
    # By the module of the port (junk included in its errors), as the paper counts.
    assert "unknown" not in requests
    assert http["smtp"] / http["total"] * 100 == pytest.approx(TABLE6_HTTP["smtp"], abs=1.0)
    assert socks["smtp"] / socks["total"] * 100 == pytest.approx(TABLE6_SOCKS["smtp"], abs=1.0)
    assert counts["unique_countries"] > 60  # the last 0.5 % spread over 155 countries


def test_default_origins_cover_tables_3_and_4() -> None:
    origins = default_origins()
    assert sum(o.share for o in origins) == pytest.approx(100.0, abs=0.01)
    by_asn = {o.asn: o for o in origins}
    for asn, name, cc, share in (
        (9924, "TFN-TW", "TW", 32.60),
        (3462, "HINET", "TW", 25.04),
        (7271, "LOOKAS", "CA", 1.07),
    ):
        assert (by_asn[asn].as_name, by_asn[asn].country, by_asn[asn].share) == (name, cc, share)
    for cc, share in TABLE3.items():
        assert sum(o.share for o in origins if o.country == cc) == pytest.approx(share)
    assert len({o.country for o in origins}) == 165


def test_default_networks_are_where_geolite2_puts_them() -> None:
    """The default networks came from geoip2fast's GeoLite2 data; it still agrees."""
    geoip2fast = pytest.importorskip("geoip2fast")
    geo = geoip2fast.GeoIP2Fast(geoip2fast_data_file="geoip2fast-asn.dat.gz", verbose=False)
    for origin in default_origins()[:60]:
        for net in origin.networks:
            first = ipaddress.ip_network(net)[1]
            assert geo.lookup(str(first)).country_code == origin.country, (origin, net)


def test_profile_file_replaces_tables(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(
        """
seed = 9
messages = 400
days = 1
start = "2024-02-29"
[[sensor]]
name = "lab-1"
tags = ["business"]
[[origin]]
country = "ZZ"
asn = 0
as_name = "nowhere"
share = 1
networks = ["2001:db8::/64", "192.0.2.0/24"]
[[port]]
port = 1080
protocol = "socks"
share = 1
[socks_versions]
socks5 = 1
[socks_outcomes]
smtp = 100
"""
    )
    profile = load_profile(path)
    counts = simulate_offline(profile, OfflineOptions(out=tmp_path / "out"))
    assert counts["sensors"] == {"lab-1": 400}
    assert counts["countries"] == {"ZZ": 400}
    assert counts["ports"] == {"1080": 400}
    assert counts["proxy_protocols"] == {"socks5": counts["sessions"]}
    events = read_events(tmp_path / "out" / "raw" / "lab-1")
    sources = {e["src_ip"] for e in events if e["src_ip"]}
    assert any(":" in ip for ip in sources)
    assert all(ipaddress.ip_address(ip) in ipaddress.ip_network("2001:db8::/64")
               or ipaddress.ip_address(ip) in ipaddress.ip_network("192.0.2.0/24")
               for ip in sources)  # fmt: skip
    files = [e["file"] for e in events if e["eventid"] == "spampot.smtp.message"]
    assert any("2001-db8--" in f for f in files)
    assert all(f.startswith("2024-02-29/") or f.startswith("2024-03-01/") for f in files)


@pytest.mark.parametrize(
    "text",
    ["colour = 1", "[[port]]\nport = 1\nprotocol = 'ftp'\nshare = 1", "days = 0",
     "[[origin]]\ncountry='X'\nasn=1\nas_name='x'\nshare=1\nnetworks=['not a net']",
     "[http_outcomes]\nwhatever = 1", "recipients_mean = 'many'"],
)  # fmt: skip
def test_profile_errors_name_the_key(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ProfileError):
        load_profile(path)


def test_cli_offline_and_origins(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        main,
        ["simulate", "offline", str(tmp_path / "d"), "--messages", "300", "--days", "1",
         "--counts", str(tmp_path / "counts.json")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert printed["messages"] == 300
    assert json.loads((tmp_path / "counts.json").read_text())["messages"] == 300
    result = runner.invoke(main, ["simulate", "origins"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert len(lines) == sum(len(o.networks) for o in default_origins())
    start, end, asn, _cc, name = lines[0].split("\t")
    assert ipaddress.ip_address(start) <= ipaddress.ip_address(end) and int(asn) >= 0 and name
    bad = tmp_path / "bad.toml"
    bad.write_text("nope = 1")
    result = runner.invoke(
        main, ["simulate", "offline", str(tmp_path / "e"), "--profile", str(bad)]
    )
    assert result.exit_code != 0 and "nope" in result.output


def test_a_report_over_the_dataset_shows_the_simulators_own_counts(dataset, tmp_path) -> None:
    """Ingested with the bundled geoip2fast data (countries) and the simulator's origins as
    the AS database, the report's countries and ASes are the simulator's counts, exactly: every
    origin network lies wholly in its country."""
    from spampot.analysis.enrich import build_enricher
    from spampot.analysis.filters import ReportFilter
    from spampot.analysis.ingest import IngestConfig, ingest
    from spampot.analysis.report import ReportOptions, build_report
    from spampot.analysis.warehouse import open_warehouse
    from spampot.simulate.profile import origins_ip2asn

    profile, out, counts = dataset
    ip2asn = tmp_path / "origins.tsv"
    ip2asn.write_text(origins_ip2asn(profile))
    ingest(IngestConfig(out / "raw", tmp_path / "wh", threads=2), build_enricher(ip2asn=ip2asn))
    con = open_warehouse(tmp_path / "wh", ReportFilter(), {}, threads=2)
    try:
        report = build_report(con, ReportOptions(top=500, campaign_sample=0), {})
        by_asn = dict(con.execute("SELECT asn, COUNT(*) FROM messages GROUP BY asn").fetchall())
    finally:
        con.close()
    countries = {r[1]: r[2] for r in report.table("table3_countries").rows}
    assert countries == counts["countries"]
    assert by_asn == {int(k.split()[0]): v for k, v in counts["ases"].items()}
    general = dict(report.table("table2_general").rows)
    assert general["Unique ASes sending spam"] == len(counts["ases"])


def test_every_origin_network_lies_wholly_in_its_country() -> None:
    """What tools/derive_sim_origins.py checks, checked again at every /24 (at most 256 spread
    over each network): geoip2fast places each address where the simulator counts it."""
    from spampot.analysis.enrich import Geoip2fastSource

    geo = Geoip2fastSource()  # the data the ingest places addresses with
    for origin in default_origins():
        for text in origin.networks:
            net = ipaddress.ip_network(text)
            step = max(256, net.num_addresses // 256)
            first = int(net.network_address)
            for offset in [*range(0, net.num_addresses, step), net.num_addresses - 1]:
                address = str(ipaddress.ip_address(first + offset))
                assert geo.lookup(address).get("country") == origin.country, (text, address)


def test_the_origins_give_a_plausible_number_of_ases() -> None:
    """The paper saw 3,006 ASes in 165 countries (216,888 addresses, 525 million emails):
    the default origins have about as many, and at the paper's scale nearly all are seen."""
    origins = default_origins()
    ases = {o.asn for o in origins}
    assert 2_500 <= len(ases) <= 3_500
    assert len({o.country for o in origins}) == 165
    total = sum(o.share for o in origins)
    sessions = 524_585_779 / 3.5  # emails over the profile's mean emails per session
    seen = sum(1 - (1 - o.share / total) ** sessions for o in origins)
    assert seen > 0.95 * len(ases)
