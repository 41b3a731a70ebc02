"""Content tables at ingest: every message its events name gets a row, exactly once."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import duckdb
import pytest

from spampot.analysis.enrich import Enricher
from spampot.analysis.ingest import IngestConfig, ingest
from spampot.simulate.bodies import Campaigns
from spampot.simulate.offline import OfflineOptions, simulate_offline
from spampot.simulate.profile import Profile

NO_GEO = Enricher([])


def rows(warehouse: Path, sql: str) -> list[tuple]:
    with duckdb.connect() as con:
        for table in ("message_content", "message_urls", "message_attachments", "messages"):
            if not list((warehouse / table).glob("day=*/*.parquet")):
                continue
            files = str(warehouse / table / "day=*" / "*.parquet")
            con.execute(
                f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{files}',"
                " hive_partitioning = true, union_by_name = true)"
            )
        return con.execute(sql).fetchall()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A small simulated fleet with every body written and many relay tests."""
    root = tmp_path_factory.mktemp("content")
    profile = Profile(messages=3000, days=3, campaigns=20, relay_tests=0.2)
    counts = simulate_offline(profile, OfflineOptions(out=root, bodies="all"))
    config = IngestConfig(root / "raw", root / "warehouse", threads=2, content_jobs=2)
    result = ingest(config, NO_GEO)
    return root, counts, result


def test_every_message_gets_one_content_row(dataset):
    root, counts, result = dataset
    wh = root / "warehouse"
    assert result.rows["message_content"] == counts["messages"]
    assert rows(wh, "SELECT status, COUNT(*) FROM message_content GROUP BY 1") == [
        ("ok", counts["messages"])
    ]
    # keyed to messages: the same (raw_sensor, file) pairs, once each
    assert rows(
        wh,
        "SELECT COUNT(*) FROM messages m FULL JOIN message_content c"
        " USING (raw_sensor, file) WHERE m.file IS NULL OR c.file IS NULL",
    ) == [(0,)]
    again = ingest(IngestConfig(root / "raw", wh, threads=2), NO_GEO)
    assert again.files == 0
    assert rows(wh, "SELECT COUNT(*) FROM message_content") == [(counts["messages"],)]


def test_content_features_are_the_simulated_ones(dataset):
    root, counts, _ = dataset
    wh = root / "warehouse"
    campaigns = Campaigns(Profile().seed, 20)
    advertised = {campaigns.campaign(i).domain for i in range(20)}
    domains = {d for (d,) in rows(wh, "SELECT DISTINCT domain FROM message_urls")}
    assert domains <= advertised and len(domains) > 10
    languages = dict(rows(wh, "SELECT language, COUNT(*) FROM message_content GROUP BY 1"))
    assert languages.get("zh-Hant", 0) > counts["messages"] / 3
    attached = rows(wh, "SELECT COUNT(DISTINCT sha256) FROM message_attachments")[0][0]
    with_attachment = sum(1 for i in range(20) if campaigns.campaign(i).attachment)
    assert attached == with_attachment  # each campaign's attachment: the same bytes each time


def test_relay_tests_found_with_their_mailboxes(dataset):
    root, counts, _ = dataset
    wh = root / "warehouse"
    found = rows(
        wh,
        "SELECT c.relay_evidence, m.rcpt_to FROM message_content c JOIN messages m"
        " USING (raw_sensor, file) WHERE c.relay_evidence IS NOT NULL",
    )
    assert len(found) == counts["relay_tests"] > 50
    mailboxes: dict[str, int] = {}
    for evidence, rcpt in found:
        assert evidence.startswith("short (") and "1 recipient(s)" in evidence
        mailboxes[rcpt[0]] = mailboxes.get(rcpt[0], 0) + 1
    assert mailboxes == counts["relay_mailboxes"]


def test_missing_mismatched_and_unreadable_files(tmp_path):
    profile = Profile(messages=400, days=1, campaigns=5)
    simulate_offline(profile, OfflineOptions(out=tmp_path, bodies="all"))
    files = sorted((tmp_path / "raw").glob("*/*/*/*/*.eml.gz"))
    files[0].unlink()  # not collected
    files[1].write_bytes(gzip.compress(b"Subject: changed\r\n\r\nnot what was captured\r\n"))
    files[2].write_bytes(b"not gzip at all")
    # an event naming a file outside raw/ must not be read
    event_file = sorted((tmp_path / "raw").glob("*/events/*.jsonl.gz"))[0]
    lines = gzip.decompress(event_file.read_bytes()).splitlines()
    for i, line in enumerate(lines):
        event = json.loads(line)
        if event["eventid"] == "spampot.smtp.message":
            event["file"] = "../../../etc/passwd"
            lines[i] = json.dumps(event).encode()
            break
    event_file.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    result = ingest(IngestConfig(tmp_path / "raw", tmp_path / "wh", content_jobs=1), NO_GEO)
    assert result.rows["message_content"] == 400
    got = dict(rows(tmp_path / "wh", "SELECT status, COUNT(*) FROM message_content GROUP BY 1"))
    assert got == {"ok": 396, "missing": 2, "mismatch": 1, "error": 1}
    reasons = {
        r[0]
        for r in rows(tmp_path / "wh", "SELECT error FROM message_content WHERE status <> 'ok'")
    }
    assert any("names no message file" in r for r in reasons)
    assert any("not kept, or not collected" in r for r in reasons)
    assert any("SHA-256" in r for r in reasons)
    assert any("unreadable message file" in r for r in reasons)


def test_no_content_option(tmp_path):
    simulate_offline(Profile(messages=50, days=1), OfflineOptions(out=tmp_path, bodies="all"))
    result = ingest(IngestConfig(tmp_path / "raw", tmp_path / "wh", content=False), NO_GEO)
    assert "message_content" not in result.rows and result.rows["messages"] == 50
    assert not (tmp_path / "wh" / "message_content").exists()


def test_which_messages_are_missing_is_told_by_the_file_system(tmp_path, monkeypatch):
    """A message file present, one absent from a directory that exists, one whose directory
    is absent, one naming a path outside raw/: missing rows for the last three, with their
    reasons and the event's columns, and the present one handed to the extraction; with a
    relative raw directory too (the ingest takes the path as given)."""
    import datetime as dt

    import pyarrow as pa

    from spampot.analysis.content.batch import NO_FILE, NO_PATH, missing_rows

    (tmp_path / "raw" / "s1" / "d").mkdir(parents=True)
    (tmp_path / "raw" / "s1" / "d" / "here.eml.gz").write_bytes(gzip.compress(b"Subject: x\n\n"))
    files = ["d/here.eml.gz", "d/gone.eml.gz", "nodir/gone.eml.gz", "../../etc/passwd"]
    n = len(files)
    ts = dt.datetime(2026, 3, 2, 10)
    sources = pa.table(
        {
            "ts": [ts] * n, "sensor": ["s1"] * n, "raw_sensor": ["s1"] * n, "file": files,
            "src_ip": [f"192.0.2.{i}" for i in range(n)], "sha256": ["ab" * 32] * n,
            "country": ["TW"] * n, "asn": [9924] * n, "dst_ip": ["192.0.2.10"] * n,
            "dst_port": [25] * n, "target_host": [None] * n, "recipients": [1] * n,
        }
    )  # fmt: skip
    monkeypatch.chdir(tmp_path)
    for raw in (tmp_path / "raw", Path("raw")):
        present, missing = missing_rows(sources, raw)
        assert [s.file for s in present] == ["d/here.eml.gz"]
        assert present[0].ts == ts and present[0].recipients == 1
        got = missing.select(["file", "src_ip", "status", "error", "day"]).to_pylist()
        assert got == [
            {"file": f, "src_ip": f"192.0.2.{i + 1}", "status": "missing", "error": why,
             "day": ts.date()}
            for i, (f, why) in enumerate(zip(files[1:], [NO_FILE, NO_FILE, NO_PATH], strict=True))
        ]  # fmt: skip


def test_missing_rows_agree_with_the_file_system_path_by_path(tmp_path):
    """Every kind of name an event may give, against a tree of real files: a row is missing
    exactly when ``raw/<raw_sensor>/<file>`` is not a path inside raw/ or does not exist."""
    import datetime as dt
    import os

    import pyarrow as pa

    from spampot.analysis.content.batch import NO_FILE, NO_PATH, _message_file, missing_rows

    raw = tmp_path / "raw"
    for rel in ("s1/a/b/c/deep.eml.gz", "s1/top.eml.gz", "s2/d/x.eml.gz", "s1/a/file"):
        (raw / rel).parent.mkdir(parents=True, exist_ok=True)
        (raw / rel).write_bytes(gzip.compress(b"Subject: x\n\n"))
    names = [
        ("s1", "a/b/c/deep.eml.gz"), ("s1", "a/b/c/none.eml.gz"), ("s1", "a/b/none/x.eml.gz"),
        ("s1", "top.eml.gz"), ("s1", "a//b/c/deep.eml.gz"), ("s1", "./a/b/c/deep.eml.gz"),
        ("s1", "a/file/x.eml.gz"), ("s1", "a/file"), ("s1", "a"), ("s2", "d/x.eml.gz"),
        ("s2", "top.eml.gz"), ("s3", "d/x.eml.gz"), (".", "s1/top.eml.gz"), ("..", "x"),
        ("s1/a", "file"), ("s1", "/etc/passwd"), ("s1", "a/../top.eml.gz"), ("s1", ".."),
        ("s1", ""), ("", "top.eml.gz"), (None, "top.eml.gz"), ("s1", None), ("s1", "a/b/"),
    ]  # fmt: skip
    n = len(names)
    sources = pa.table(
        {
            "ts": [dt.datetime(2026, 3, 2, 10)] * n, "sensor": ["s"] * n,
            "raw_sensor": [s for s, _ in names], "file": [f for _, f in names],
            "src_ip": [str(i) for i in range(n)], "sha256": [None] * n, "country": [None] * n,
            "asn": pa.array([None] * n, pa.int64()), "dst_ip": [None] * n,
            "dst_port": pa.array([None] * n, pa.int64()), "target_host": [None] * n,
            "recipients": [1] * n,
        }
    )  # fmt: skip
    present, missing = missing_rows(sources, raw)
    expected_present, expected_missing = [], []
    for i, (sensor, file) in enumerate(names):
        path = _message_file(str(raw), sensor, file)
        if path is None:
            expected_missing.append((str(i), NO_PATH))
        elif os.path.exists(path):
            expected_present.append(str(i))
        else:
            expected_missing.append((str(i), NO_FILE))
    assert [s.src_ip for s in present] == expected_present
    got = [(r["src_ip"], r["error"]) for r in missing.select(["src_ip", "error"]).to_pylist()]
    assert got == expected_missing
    assert len(expected_present) >= 4 and len(expected_missing) >= 10
