"""Address enrichment from fixture databases built here (no downloads), and the default one."""

from __future__ import annotations

import gzip
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis_data import SensorData, write_ip2asn, write_mmdbs
from spampot.analysis.campaigns import MAX_TEXT_CHARS, message_text, shingles, tokens_of
from spampot.analysis.enrich import (
    Enricher,
    GeoInfo,
    Geoip2fastSource,
    GeoSourceError,
    Ip2AsnSource,
    MaxMindSource,
    build_enricher,
)
from spampot.analysis.filters import ReportFilter
from spampot.analysis.ingest import IngestConfig, ingest
from spampot.analysis.report import ReportOptions, build_report
from spampot.analysis.warehouse import open_warehouse

FUZZ_EXAMPLES = int(os.environ.get("SPAMPOT_FUZZ_EXAMPLES", "300"))


@pytest.fixture(scope="module")
def dbs(tmp_path_factory):
    root = tmp_path_factory.mktemp("geo")
    country, asn = write_mmdbs(root)
    return {"country": country, "asn": asn, "ip2asn": write_ip2asn(root / "ip2asn.tsv.gz")}


def test_maxmind_country_and_asn(dbs):
    country = MaxMindSource(dbs["country"])
    asn = MaxMindSource(dbs["asn"])
    assert country.provides == {"country"} and asn.provides == {"asn", "as_name"}
    assert country.label.startswith("GeoLite2-Country ")
    assert country.lookup("203.0.113.200") == {"country": "TW"}
    assert country.lookup("2001:db8:1::abcd") == {"country": "US"}
    assert asn.lookup("198.51.100.1") == {"asn": 4837, "as_name": "CHINA169"}
    assert country.lookup("192.0.2.1") == {}
    assert asn.lookup("2001:db8:ffff::1") == {}
    assert country.lookup("not an address") == {}


def test_ip2asn(dbs):
    source = Ip2AsnSource(dbs["ip2asn"])
    assert source.lookup("203.0.113.0") == {"asn": 9924, "as_name": "TFN-TW", "as_country": "TW"}
    assert source.lookup("203.0.113.255")["asn"] == 9924
    assert source.lookup("203.0.114.0") == {}
    assert source.lookup("0.1.2.3") == {}  # "Not routed" is unknown
    assert source.lookup("2001:db8:1:ffff::1")["as_name"] == "NDCHOST"
    assert source.lookup("::1") == {}
    assert source.lookup("nonsense") == {}


def test_ip2asn_plain_text(tmp_path, dbs):
    plain = tmp_path / "ip2asn.tsv"
    plain.write_bytes(gzip.decompress(dbs["ip2asn"].read_bytes()))
    assert Ip2AsnSource(plain).lookup("100.64.200.1")["as_name"] == "CLARO"


def test_ip2asn_malformed(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("1.0.0.0\t1.0.0.255\tnot-a-number\tAU\tX\n")
    with pytest.raises(GeoSourceError, match=r"bad\.tsv:1"):
        Ip2AsnSource(bad)
    with pytest.raises(GeoSourceError):
        Ip2AsnSource(tmp_path / "missing.tsv")


@settings(max_examples=FUZZ_EXAMPLES // 3, deadline=None)
@given(st.binary(max_size=400))
def test_ip2asn_arbitrary_bytes(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("tsv") / "x.tsv"
    path.write_bytes(data)
    try:
        source = Ip2AsnSource(path)
    except GeoSourceError:
        return
    # Loaded: the first address of every range it kept is found, with an AS number; text
    # that is no address is found nowhere.
    import ipaddress

    for version, ranges in source._ranges.items():
        for start, end, _asn, _country, _name in ranges:
            assert start <= end
            address = ipaddress.IPv6Address(start) if version == 6 else ipaddress.IPv4Address(start)
            found = source.lookup(str(address))
            assert isinstance(found.get("asn"), int), (version, start, found)
    assert source.lookup("not an address") == {}


def test_precedence_and_label(dbs):
    enricher = build_enricher(
        country_mmdb=dbs["country"], asn_mmdb=dbs["asn"], ip2asn=dbs["ip2asn"], geoip2fast=True
    )
    assert enricher.lookup("203.0.113.5") == GeoInfo("TW", 9924, "TFN-TW", "TW")
    assert enricher.lookup("192.0.2.1") == GeoInfo()  # unknown everywhere, kept as unknown
    parts = enricher.label.split("; ")
    assert parts[0].startswith("country: GeoLite2-Country")
    assert parts[1].startswith("asn+as_name: GeoLite2-ASN")
    assert parts[2].startswith("as_country: ip2asn ip2asn.tsv.gz")
    assert "geoip2fast" not in enricher.label  # every field came from a better source


def test_geoip2fast_default_ipv4_ipv6():
    source = Geoip2fastSource()
    assert source.provides == {"country", "as_name"}
    google = source.lookup("8.8.8.8")
    assert google["country"] == "US" and google["as_name"]
    assert source.lookup("2001:4860:4860::8888")["country"] == "US"
    assert source.lookup("192.0.2.1")["country"] is None  # documentation range: no country
    assert source.lookup("not-an-address") in ({}, {"country": None, "as_name": None})
    enricher = Enricher([source])
    assert not enricher.has_asn_numbers
    assert enricher.label.startswith("country+as_name: geoip2fast ")


def test_default_source_report_says_no_as_numbers(tmp_path):
    data = SensorData(tmp_path / "raw", "s1")
    data.message("2026-03-02T10:00:00", "8.8.8.8", 25, ["a@b.example"])
    data.message("2026-03-02T10:00:05", "2001:4860:4860::8888", 25, ["a@b.example"])
    data.message("2026-03-02T10:00:09", "192.0.2.44", 25, ["a@b.example"])
    data.write()
    ingest(IngestConfig(tmp_path / "raw", tmp_path / "wh", threads=2), build_enricher())
    con = open_warehouse(tmp_path / "wh", ReportFilter(), {})
    report = build_report(con, ReportOptions(campaign_sample=0), {})
    con.close()
    countries = report.table("table3_countries").rows
    assert countries == [(1, "US", 2, 66.67), (2, "unknown", 1, 33.33)]
    ases = report.table("table4_ases")
    assert ases.rows[0][1] is None and ases.rows[0][4] == 2  # a name, no number
    assert any("No AS numbers" in note for note in ases.notes)
    assert any("geoip2fast" in note for note in report.notes)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(st.binary(max_size=2000))
def test_message_text_arbitrary_bytes(raw):
    subject, text = message_text(raw)
    assert isinstance(subject, str) and isinstance(text, str)
    shingles(tokens_of(subject, text))


@settings(max_examples=FUZZ_EXAMPLES // 3, deadline=None)
@given(
    st.sampled_from(["base64", "quoted-printable", "8bit", "x-nonsense"]),
    st.sampled_from(["utf-8", "latin-1", "x-no-such-charset", "utf-7"]),
    st.binary(max_size=500),
)
def test_message_text_odd_encodings(encoding, charset, body):
    raw = (
        b"Subject: =?" + charset.encode() + b"?B?aGVsbG8=?=\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/alternative; boundary=XX\r\n\r\n--XX\r\n"
        b"Content-Type: text/html; charset=" + charset.encode() + b"\r\n"
        b"Content-Transfer-Encoding: " + encoding.encode() + b"\r\n\r\n" + body + b"\r\n--XX--\r\n"
    )
    subject, text = message_text(raw)
    # The encoded word says "hello" in every charset Python knows; an unknown one is read as
    # Latin-1, which still spells it.
    assert subject == "hello"
    assert isinstance(text, str) and len(text) <= MAX_TEXT_CHARS
    if encoding == "8bit" and charset in ("utf-8", "latin-1") and b"<" not in body:
        assert body.decode(charset, "replace").strip() in text or b"--XX" in body


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            "=?big5?B?" + __import__("base64").b64encode("發票".encode("big5")).decode() + "?=",
            "發票",
        ),
        (
            "=?gb2312?B?" + __import__("base64").b64encode("发票".encode("gb2312")).decode() + "?=",
            "发票",
        ),
        ("=?utf-8?Q?caf=C3=A9?= ok", "café ok"),
    ],
)
def test_subjects_are_decoded(header, expected):
    raw = b"Subject: " + header.encode() + b"\r\n\r\nbody\r\n"
    assert message_text(raw)[0] == expected


# Big5 without a label cannot be told from GB 18030 (which decodes almost any bytes).
@pytest.mark.parametrize("charset", ["utf-8", "gb18030"])
def test_raw_subject_bytes_are_decoded(charset):
    raw = b"Subject: " + "優惠 發票".encode(charset) + b"\r\n\r\nbody\r\n"
    assert message_text(raw)[0] == "優惠 發票"
