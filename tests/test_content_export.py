"""spampot export: lists, a MISP feed PyMISP loads, a STIX 2.1 bundle the stix2 parser reads;
and never a sensor's own address or name, even where messages carry them."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from spampot.analysis.enrich import Enricher
from spampot.analysis.ingest import IngestConfig, ingest
from spampot.simulate.bodies import Campaigns
from spampot.simulate.offline import OfflineOptions, simulate_offline
from spampot.simulate.profile import Profile

CAMPAIGNS = 20  # two of them carry an attachment
SENSOR = "br-01"
SENSOR_HOST = "br-01.sim.invalid"  # the inventory's host for br-01 (simulate offline)
SENSOR_IP = "192.0.2.10"  # the profile's sensor_address: every event's dst_ip
NAT_ADDRESS = "203.0.113.77"  # a public address behind NAT, given with --exclude
# and the host's registered domain, which names the sensor's operator
IDENTITIES = (SENSOR, SENSOR_HOST, SENSOR_IP, NAT_ADDRESS, "sim.invalid")

# Messages that name the sensor in every place a feed takes values from.
PLANTED = [
    (
        f"Subject: proxy {SENSOR_IP}:8080 ok\r\nFrom: t@tester.example\r\n\r\n"
        f"works via {SENSOR_HOST} http://{SENSOR_IP}:8080/check\r\n",
        [f"probe@{SENSOR_HOST}"],
    ),
    (
        f"Subject: {SENSOR} {NAT_ADDRESS}\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        f"--b\r\nContent-Type: text/plain\r\n\r\nsee http://{SENSOR_HOST}/x and"
        f" http://{NAT_ADDRESS}/y and http://planted-ok.example.org/z\r\n--b\r\n"
        f'Content-Type: application/octet-stream; name="{SENSOR}-report.zip"\r\n'
        f"Content-Transfer-Encoding: base64\r\n\r\nUEsFBgAAAAAAAAAAAAAAAAAAAAAAAA==\r\n--b--\r\n",
        ["victim@example.net"],
    ),
]


def _plant(raw: Path) -> None:
    """Add events and message files for the planted messages to br-01's collected data."""
    template = None
    for path in sorted((raw / SENSOR / "events").glob("*.jsonl.gz")):
        for line in gzip.decompress(path.read_bytes()).splitlines():
            event = json.loads(line)
            if event["eventid"] == "spampot.smtp.message":
                template = event
                break
        if template:
            break
    assert template is not None
    lines = []
    for i, (text, rcpt) in enumerate(PLANTED):
        data = text.encode()
        rel = f"2006-06-10/8080/{SENSOR_IP}/23590{i}-PLANTED{i:03d}.eml.gz"
        target = raw / SENSOR / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(gzip.compress(data))
        event = dict(
            template,
            timestamp=f"2006-06-10T23:59:0{i}.000000Z",
            src_ip=SENSOR_IP,  # the sensor itself as a source (a local test, a loop)
            rcpt_to=rcpt,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            file=rel,
            queue_id=f"PLANTED{i:03d}",
        )
        lines.append(json.dumps(event).encode())
    (raw / SENSOR / "events" / f"{SENSOR}-20060610T23-9.jsonl.gz").write_bytes(
        gzip.compress(b"\n".join(lines) + b"\n")
    )


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    profile = Profile(messages=1500, days=2, campaigns=CAMPAIGNS, relay_tests=0.1)
    counts = simulate_offline(profile, OfflineOptions(out=root, bodies="all"))
    _plant(root / "raw")
    ingest(IngestConfig(root / "raw", root / "warehouse", threads=2, content_jobs=1), Enricher([]))
    summaries = {}
    for fmt in ("lists", "misp", "stix"):
        done = subprocess.run(
            [
                sys.executable, "-m", "spampot", "export", fmt, str(root / fmt),
                "--inventory", str(root / "inventory.toml"), "--exclude", NAT_ADDRESS,
            ],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        summaries[fmt] = json.loads(done.stdout)
    return {"root": root, "counts": counts, "summaries": summaries, "profile": profile}


def _all_text(directory: Path) -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(directory.iterdir()))


@pytest.mark.parametrize("fmt", ["lists", "misp", "stix"])
def test_no_sensor_identity_in_any_export(exported, fmt):
    text = _all_text(exported["root"] / fmt).lower()
    for identity in IDENTITIES:
        assert identity.lower() not in text, (fmt, identity)
    left_out = exported["summaries"][fmt]["left_out"]
    assert sum(left_out.values()) > 0  # the planted values were there, and were left out
    # what is not the sensor's stays: the planted message's other link
    if fmt in ("lists", "misp"):
        assert "planted-ok.example.org" in text


def test_lists(exported):
    root = exported["root"] / "lists"
    campaigns = Campaigns(exported["profile"].seed, CAMPAIGNS)
    domains = [ln for ln in (root / "domains.txt").read_text().splitlines() if ln[:1] != "#"]
    expected = {campaigns.campaign(i).domain for i in range(CAMPAIGNS)} | {"example.org"}
    assert set(domains) == expected
    with open(root / "domains.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["value"] for r in rows} == expected
    assert all(int(r["count"]) >= 1 and r["first_seen"] <= r["last_seen"] for r in rows)
    boxes = [ln for ln in (root / "mailboxes.txt").read_text().splitlines() if ln[:1] != "#"]
    assert set(boxes) == set(exported["counts"]["relay_mailboxes"])
    sources = [ln for ln in (root / "sources.txt").read_text().splitlines() if ln[:1] != "#"]
    assert len(sources) == exported["counts"]["unique_ips"]


def test_misp_feed_loads_with_pymisp(exported):
    from pymisp import MISPEvent

    root = exported["root"] / "misp"
    manifest = json.loads((root / "manifest.json").read_text())
    events = {}
    for path in root.glob("*.json"):
        if path.name == "manifest.json":
            continue
        event = MISPEvent()
        event.load_file(str(path))
        events[event.uuid] = event
    assert set(manifest) == set(events) and len(events) == exported["profile"].days
    types = {a.type for e in events.values() for a in e.attributes}
    assert {"ip-src", "domain", "url", "sha256", "email-dst"} <= types
    hashes = [line.split(",") for line in (root / "hashes.csv").read_text().splitlines()]
    first = events[hashes[0][1]].attributes
    assert hashes[0][0] in {hashlib.md5(a.value.encode()).hexdigest() for a in first}


def test_stix_bundle_parses_with_stix2(exported):
    import stix2

    text = (exported["root"] / "stix" / "bundle.json").read_text()
    bundle = stix2.parse(text, allow_custom=False)
    kinds = {o.type for o in bundle.objects}
    assert {"identity", "indicator", "observed-data", "ipv4-addr", "file", "email-message"} <= kinds
    campaigns = Campaigns(exported["profile"].seed, CAMPAIGNS)
    patterns = {o.pattern for o in bundle.objects if o.type == "indicator"}
    for i in range(CAMPAIGNS):
        assert f"[domain-name:value = '{campaigns.campaign(i).domain}']" in patterns
    observed = [o for o in bundle.objects if o.type == "observed-data"]
    assert all(o.first_observed <= o.last_observed and o.number_observed >= 1 for o in observed)
