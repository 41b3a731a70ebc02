"""``spampot ingest`` and ``spampot report`` as a user runs them, and the HTML in Chromium."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from analysis_data import build_known, write_inventory, write_ip2asn, write_mmdbs
from conftest import need_tool
from spampot.analysis.figures import PALETTE


def spampot(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spampot", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("central")
    build_known(root / "raw")
    country, asn = write_mmdbs(root)
    inventory = write_inventory(root / "inventory.toml")
    ip2asn = write_ip2asn(root / "ip2asn.tsv.gz")
    done = spampot(
        "ingest", "--inventory", inventory, "--country-mmdb", country, "--asn-mmdb", asn,
        "--ip2asn", ip2asn, "--threads", "2",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "12 emails, 18 proxy requests, 20 sessions" in done.stdout
    again = spampot("ingest", "--inventory", inventory)
    assert again.returncode == 0 and "ingested 0 files" in again.stdout
    return root


def test_report_terminal_and_files(site):
    out = site / "out"
    done = spampot("report", "--inventory", site / "inventory.toml", "--out", out)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    for title in ("Table 2", "Table 3", "Table 4", "Table 5", "Table 6", "Figure 2", "Figure 3"):
        assert title in text
    assert "TFN-TW" in text and "Replica watches" in text and "residential" in text
    assert {"report.html", "report.json", "table3_countries.csv", "campaigns.json"} <= {
        p.name for p in out.iterdir()
    }


def test_report_json_with_filters(site):
    done = spampot(
        "report", "--inventory", site / "inventory.toml", "--json", "--tag", "residential",
        "--from", "2026-03-03", "--to", "2026-03-03", "--campaign-sample", "0",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    general = {r["statistic"]: r["value"] for r in report["tables"][0]["rows"]}
    assert general["Total emails collected"] == 3  # res-2's two and res-1's one on that day
    assert "tags residential" in report["scope"]


def test_report_bad_dates(site):
    done = spampot("report", "--inventory", site / "inventory.toml", "--from", "yesterday")
    assert done.returncode != 0 and "not a date" in done.stderr


def test_html_figures_render_in_chromium(site, tmp_path):
    chromium = need_tool("chromium")
    out = site / "html"
    assert spampot("report", "--inventory", site / "inventory.toml", "--out", out,
                   "--quiet").returncode == 0  # fmt: skip
    page = (out / "report.html").as_uri()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             f"--user-data-dir={tmp_path / 'profile'}"]  # fmt: skip
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", page], capture_output=True, text=True, timeout=120
    ).stdout
    assert dom.count('<svg xmlns="http://www.w3.org/2000/svg" class="figure"') == 3
    assert dom.count('class="mark"') > 10
    shot = tmp_path / "shot.png"
    subprocess.run(
        [chromium, *flags, "--window-size=1100,6000", f"--screenshot={shot}", page],
        capture_output=True,
        timeout=120,
        check=False,
    )
    from PIL import Image

    image = Image.open(shot).convert("RGB")
    width, height = image.size
    colours = {tuple(int(c[i : i + 2], 16) for i in (1, 3, 5)) for c in PALETTE}
    pixels = image.load()
    # Rows of the page where the drawn marks (palette colours) fill a good part of the width:
    # each share figure is a band of such rows about as tall as its plot.
    rows = [
        sum(1 for x in range(0, width, 2) if pixels[x, y] in colours) > 40 for y in range(height)
    ]
    bands = []
    start = None
    for y, full in enumerate([*rows, False]):
        if full and start is None:
            start = y
        elif not full and start is not None:
            bands.append(y - start)
            start = None
    assert len([b for b in bands if b >= 150]) >= 2, bands  # Figures 2 and 3 drawn


def test_html_navigation_reaches_every_table_and_each_legend_is_drawn_once(site, tmp_path):
    import re

    chromium = need_tool("chromium")
    out = site / "html-nav"
    assert spampot("report", "--inventory", site / "inventory.toml", "--out", out,
                   "--quiet").returncode == 0  # fmt: skip
    flags = ["--headless", "--no-sandbox", "--disable-gpu",
             f"--user-data-dir={tmp_path / 'profile'}"]  # fmt: skip
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", (out / "report.html").as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    report = json.loads((out / "report.json").read_text())
    nav = re.search(r"<nav>(.*?)</nav>", dom, re.S)
    assert nav is not None
    linked = set(re.findall(r'href="#([^"]+)"', nav.group(1)))
    sections = set(re.findall(r'<section id="([^"]+)"', dom))
    shown = {t["key"] for t in report["tables"]} | {f["key"] for f in report["figures"]}
    assert sections <= shown and linked == sections, (sections - linked, linked - sections)
    for key in ("sensor_tags", "sensor_isps", "sensors", "top_recipient_domains"):
        assert key in linked  # the tables beyond the paper too
    # One legend per figure, the one drawn in the SVG beside the plot.
    for figure in report["figures"]:
        section = re.search(rf'<section id="{figure["key"]}">(.*?)</section>', dom, re.S)
        assert section is not None
        for series in figure["series"]:
            label = series["label"][:22]
            assert section.group(1).count(f">{label}</text>") == 1, (figure["key"], label)
        assert "■" not in section.group(1)
    # Table 4: no column repeating two others; the unknown AS has no country.
    table4 = re.search(r'<section id="table4_ases">(.*?)</section>', dom, re.S)
    assert table4 is not None
    heads = re.findall(r"<th>(.*?)</th>", table4.group(1))
    assert heads == ["#", "ASN", "AS Name", "AS CC", "Emails", "%"]
    unknown = re.search(r"<tr>((?:(?!</tr>).)*>unknown<(?:(?!</tr>).)*)</tr>", table4.group(1))
    assert unknown is not None
    cells = re.findall(r"<td[^>]*>(.*?)</td>", unknown.group(1))
    assert cells[2:4] == ["unknown", "—"]
