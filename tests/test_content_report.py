"""The report's content tables and whole-corpus campaigns, on a simulated fleet whose
campaigns, advertised domains, attachments and relay tests are known."""

from __future__ import annotations

import html
import re
import subprocess
from collections import Counter, defaultdict

import pytest

from conftest import need_tool
from spampot.analysis.content_report import cluster
from spampot.analysis.enrich import Enricher
from spampot.analysis.filters import ReportFilter
from spampot.analysis.ingest import IngestConfig, ingest
from spampot.analysis.report import ReportOptions, build_report
from spampot.analysis.warehouse import open_warehouse
from spampot.simulate.bodies import Campaigns
from spampot.simulate.offline import OfflineOptions, simulate_offline
from spampot.simulate.profile import Profile

CAMPAIGNS = 20  # two of them carry an attachment


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("content-report")
    profile = Profile(messages=2000, days=2, campaigns=CAMPAIGNS, relay_tests=0.15)
    counts = simulate_offline(profile, OfflineOptions(out=root, bodies="all"))
    ingest(IngestConfig(root / "raw", root / "warehouse", threads=2, content_jobs=1), Enricher([]))
    con = open_warehouse(root / "warehouse", ReportFilter(), {}, threads=2)
    report = build_report(con, ReportOptions(campaign_sample=0, top=50), {})
    yield {"root": root, "counts": counts, "con": con, "report": report, "profile": profile}
    con.close()


def test_content_tables_are_in_the_report(site):
    report = site["report"]
    keys = [t.key for t in report.tables]
    for key in (
        "content_summary",
        "content_domains",
        "content_hosts",
        "content_urls",
        "content_attachment_types",
        "content_attachment_hashes",
        "content_mailers",
        "content_subjects",
        "content_languages",
        "relay_test_mailboxes",
        "relay_tests",
        "content_campaigns",
    ):
        assert key in keys
    summary = report.table("content_summary").records()
    assert sum(r["messages"] for r in summary) == site["counts"]["messages"]
    campaigns = Campaigns(site["profile"].seed, CAMPAIGNS)
    domains = {r["domain"] for r in report.table("content_domains").records()}
    assert domains == {campaigns.campaign(i).domain for i in range(CAMPAIGNS)}
    hashes = report.table("content_attachment_hashes").records()
    assert len(hashes) == sum(1 for i in range(CAMPAIGNS) if campaigns.campaign(i).attachment)


def test_relay_mailboxes_are_the_testers(site):
    counts = site["counts"]
    table = site["report"].table("relay_test_mailboxes").records()
    assert {r["mailbox"]: r["tests"] for r in table} == counts["relay_mailboxes"]
    examples = site["report"].table("relay_tests").records()
    assert examples and all(r["evidence"].startswith("short (") for r in examples)


def test_campaigns_are_the_simulated_ones(site):
    """Every simulated campaign is one cluster, and no cluster mixes two (by domain)."""
    con = site["con"]
    labels, steps, settled = cluster(con)
    assert settled and steps >= 2
    rows = con.execute(
        f"SELECT l.label, u.domain FROM {labels} AS l JOIN message_urls AS u"
        " ON l.msg = concat(u.raw_sensor, '/', u.file)"
    ).fetchall()
    domains_of: dict[str, set[str]] = defaultdict(set)
    labels_of: dict[str, set[str]] = defaultdict(set)
    for label, domain in rows:
        domains_of[label].add(domain)
        labels_of[domain].add(label)
    assert all(len(d) == 1 for d in domains_of.values())  # no cluster mixes campaigns
    assert all(len(ls) == 1 for ls in labels_of.values())  # no campaign is split
    table = site["report"].table("content_campaigns").records()
    by_domain = Counter({r["domain"]: r["messages"] for r in table if r["domain"]})
    sizes = Counter(d for _label, d in rows)
    assert by_domain == sizes  # each campaign's size, as many messages as link its domain


def test_content_tables_render_in_chromium(site, tmp_path):
    """The HTML page as a browser builds it: each content table with its rows."""
    from spampot.analysis.render import write_report_files

    chromium = need_tool("chromium")
    write_report_files(site["report"], tmp_path / "out")
    assert (tmp_path / "out" / "content_campaigns.csv").exists()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             f"--user-data-dir={tmp_path / 'profile'}"]  # fmt: skip
    page = (tmp_path / "out" / "report.html").as_uri()
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", page], capture_output=True, text=True, timeout=120
    ).stdout
    tables = {
        m.group(1): m.group(2)
        for m in re.finditer(r"<h2[^>]*>([^<]+)</h2>(.*?)</table>", dom, re.S)
    }
    report = site["report"]
    for key in ("content_domains", "relay_test_mailboxes", "content_campaigns"):
        table = report.table(key)
        body = tables[html.escape(table.title, quote=False)]
        assert body.count("<tr") == len(table.rows) + 1  # the header row, then each row
        first = str(table.rows[0][1])
        assert html.escape(first, quote=False) in body
