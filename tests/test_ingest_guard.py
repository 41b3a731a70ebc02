"""An ingest that cannot be fooled: bad lines quarantined with their reasons, damaged files
read up to their last whole line, repaired files re-read exactly once, one run at a time,
and no event line whatever that stops a later report."""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
import zlib
from pathlib import Path

import duckdb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis_data import SensorData, build_known
from spampot.analysis.enrich import Enricher
from spampot.analysis.filters import ReportFilter
from spampot.analysis.ingest import (
    LOCK,
    QUARANTINE,
    IngestConfig,
    ingest,
    warehouse_lock,
)
from spampot.analysis.report import ReportOptions, build_report
from spampot.analysis.warehouse import open_warehouse

NO_GEO = Enricher([])
FUZZ_EXAMPLES = int(os.environ.get("SPAMPOT_FUZZ_EXAMPLES", "300")) // 6


def cfg(root: Path, **kw) -> IngestConfig:
    return IngestConfig(root / "raw", root / "warehouse", threads=2, **kw)


def count(warehouse: Path, table: str, where: str = "TRUE") -> int:
    files = str(warehouse / table / "day=*" / "*.parquet")
    with duckdb.connect() as con:
        row = con.execute(
            f"SELECT COUNT(*) FROM read_parquet('{files}', hive_partitioning = true) WHERE {where}"
        ).fetchone()
    assert row is not None
    return int(row[0])


def spampot(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "spampot", *args], capture_output=True, text=True, timeout=300
    )


def good_message(data: SensorData, when: str = "2026-03-02T10:00:00") -> list[bytes]:
    """The lines of one whole session with one email (open, message, close)."""
    data.message(when, "203.0.113.1", 25, ["a@b.example"])
    lines = [line for hour in sorted(data.lines) for line in data.lines[hour]]
    data.lines.clear()
    return lines


def edit(line: bytes, change) -> bytes:
    record = json.loads(line)
    change(record)
    return json.dumps(record).encode() + b"\n"


def report_of(warehouse: Path):
    con = open_warehouse(warehouse, ReportFilter(), {}, threads=2)
    try:
        return build_report(con, ReportOptions(campaign_sample=0), {})
    finally:
        con.close()


def test_every_bad_line_is_quarantined_with_its_reason_and_the_rest_counted(tmp_path):
    data = SensorData(tmp_path / "raw", "s1")
    open_, message, close = good_message(data)
    bad = [
        edit(message, lambda r: r.pop("timestamp")),
        edit(message, lambda r: r.pop("sensor")),
        edit(message, lambda r: r.update(dst_port=None)),
        edit(message, lambda r: r.update(eventid="spampot.smtp.novelty")),
        edit(message, lambda r: r.update(rcpt_to=[{"user": "a", "domain": "b.example"}])),
        message.replace(b'"helo":"spammer.example"', b'"helo":"spam\xffmer"'),  # not UTF-8
        b'{"eventid": "spampot.smtp.message", "timestamp": \n',  # torn
    ]
    # Valid spellings of the same instant: all read, all the same timestamp.
    stamps = [
        edit(message, lambda r: r.update(timestamp="2026-03-02T10:00:00Z")),
        edit(message, lambda r: r.update(timestamp="2026-03-02T10:00:00+00:00")),
        edit(message, lambda r: r.update(timestamp="2026-03-02T12:00:00+02:00")),
    ]
    lines = [open_, message, *bad, *stamps, close]
    events = tmp_path / "raw" / "s1" / "events"
    events.mkdir(parents=True)
    (events / "s1-20260302T10.jsonl.gz").write_bytes(gzip.compress(b"".join(lines)))
    result = ingest(cfg(tmp_path), NO_GEO)
    assert result.quarantined == len(bad)
    assert result.rows["messages"] == 1 + len(stamps)
    assert count(tmp_path / "warehouse", "messages", "ts = TIMESTAMP '2026-03-02 10:00:00'") == 3
    (kept,) = (tmp_path / "warehouse" / QUARANTINE).glob("*.jsonl")
    records = [json.loads(x) for x in kept.read_text().splitlines()]
    assert [r["line"] for r in records] == [3, 4, 5, 6, 7, 8, 9]
    assert {r["file"] for r in records} == {"s1/events/s1-20260302T10.jsonl.gz"}
    reasons = [r["reason"] for r in records]
    for reason, expected in zip(
        reasons,
        ["timestamp", "sensor", "dst_port", "eventid", "rcpt_to", "UTF-8", "truncated"],
        strict=True,
    ):
        assert expected in reason
    # The report reads what was committed, and says that lines were set aside.
    report = report_of(tmp_path / "warehouse")
    assert report.table("table2_general").records()[4]["value"] == 4
    assert any("7 event lines" in note for note in report.notes)


def test_timestamps_parse_the_same_in_small_and_large_files(tmp_path):
    data = SensorData(tmp_path / "raw", "s1")
    _, message, _ = good_message(data)
    spellings = ["2026-03-02T10:00:00Z", "2026-03-02T10:00:00+00:00", "2026-03-02T10:00:00.5Z"]
    events = tmp_path / "raw" / "s1" / "events"
    events.mkdir(parents=True)
    small = [edit(message, lambda r, s=s: r.update(timestamp=s)) for s in spellings]
    (events / "s1-20260302T10.jsonl.gz").write_bytes(gzip.compress(b"".join(small)))
    # Over 512 KB of gzip: each line carries an incompressible filler.
    large = [
        edit(
            message,
            lambda r, i=i: r.update(timestamp=spellings[i % 3], message=os.urandom(400).hex()),
        )
        for i in range(1200)
    ]
    blob = gzip.compress(b"".join(large))
    assert len(blob) > 512 * 1024
    (events / "s1-20260302T11.jsonl.gz").write_bytes(blob)
    result = ingest(cfg(tmp_path), NO_GEO)
    assert result.quarantined == 0 and result.rows["messages"] == 1203
    assert count(tmp_path / "warehouse", "messages", "ts IS NULL") == 0
    assert count(tmp_path / "warehouse", "messages", "ts = TIMESTAMP '2026-03-02 10:00:00'") == 802


def _many_messages(root: Path, n: int) -> tuple[Path, bytes]:
    data = SensorData(root / "raw", "s1")
    for i in range(n):
        data.message(
            f"2026-03-02T10:{i // 60 % 60:02d}:{i % 60:02d}", "203.0.113.1", 25, ["a@b.example"]
        )
    (path,) = data.write()
    return path, path.read_bytes()


def test_truncated_gzip_gives_its_whole_lines_then_a_repair_is_reingested_exactly_once(tmp_path):
    path, whole = _many_messages(tmp_path, 300)
    cut = whole[: len(whole) // 2]
    path.write_bytes(cut)
    readable = zlib.decompressobj(wbits=31).decompress(cut)
    whole_lines = readable[: readable.rfind(b"\n") + 1].splitlines()
    expected = sum(b'"spampot.smtp.message"' in line for line in whole_lines)
    assert 0 < expected < 300
    run = spampot("ingest", "--raw", str(tmp_path / "raw"), "--warehouse", str(tmp_path / "wh"))
    assert run.returncode == 3, run.stderr
    assert "cut short" in run.stderr and "its whole lines were read" in run.stderr
    assert count(tmp_path / "wh", "messages") == expected
    # Repaired (collected again, whole): a plain run does not read it twice, and says so.
    path.write_bytes(whole)
    run = spampot("ingest", "--raw", str(tmp_path / "raw"), "--warehouse", str(tmp_path / "wh"))
    assert run.returncode == 0 and "--reingest" in run.stderr
    assert count(tmp_path / "wh", "messages") == expected
    run = spampot(
        "ingest", "--raw", str(tmp_path / "raw"), "--warehouse", str(tmp_path / "wh"),
        "--reingest", str(path),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert count(tmp_path / "wh", "messages") == 300
    assert count(tmp_path / "wh", "sessions") == 300
    assert not list((tmp_path / "wh" / QUARANTINE).glob("*.jsonl"))  # the old batch's, gone
    run = spampot("ingest", "--raw", str(tmp_path / "raw"), "--warehouse", str(tmp_path / "wh"))
    assert run.returncode == 0 and count(tmp_path / "wh", "messages") == 300


def test_strict_commits_nothing_of_a_batch_with_a_bad_line(tmp_path):
    data = SensorData(tmp_path / "raw", "s1")
    lines = good_message(data)
    events = tmp_path / "raw" / "s1" / "events"
    events.mkdir(parents=True)
    (events / "s1-20260302T10.jsonl.gz").write_bytes(gzip.compress(b"".join([*lines, b"{}\n"])))
    args = ["ingest", "--raw", str(tmp_path / "raw"), "--warehouse", str(tmp_path / "wh")]
    run = spampot(*args, "--strict")
    assert run.returncode == 4 and "line 4" in run.stderr
    assert not list((tmp_path / "wh").glob("messages/day=*/*.parquet"))
    run = spampot(*args)
    assert run.returncode == 3 and count(tmp_path / "wh", "messages") == 1


def test_two_ingests_at_once_count_every_event_once(tmp_path):
    for n in range(4):
        data = SensorData(tmp_path / "raw", f"s{n}")
        for i in range(50):
            data.message(
                f"2026-03-0{1 + i % 3}T10:00:{i % 60:02d}", "203.0.113.1", 25, ["a@b.example"]
            )
        data.write()
    args = [
        sys.executable, "-m", "spampot", "ingest", "--raw", str(tmp_path / "raw"),
        "--warehouse", str(tmp_path / "wh"), "--batch-mb", "1", "--no-geoip2fast",
    ]  # fmt: skip
    procs = [
        subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert count(tmp_path / "wh", "messages") == 200
    assert count(tmp_path / "wh", "sessions") == 200
    # The lock made the second run wait for the first, then find nothing new.
    emails = sorted(
        int(m.group(1).replace(b",", b""))
        for out, _ in outs
        if (m := re.search(rb"([\d,]+) emails", out))
    )
    assert emails == [0, 200]


def test_a_second_run_told_not_to_wait_says_who_holds_the_warehouse(tmp_path):
    build_known(tmp_path / "raw")
    with warehouse_lock(tmp_path / "wh"):
        run = spampot(
            "ingest",
            "--raw",
            str(tmp_path / "raw"),
            "--warehouse",
            str(tmp_path / "wh"),
            "--no-wait",
        )
        holder = (tmp_path / "wh" / LOCK).read_text()
    assert run.returncode == 75
    assert f"pid {os.getpid()}" in holder and f"pid {os.getpid()}" in run.stderr


@settings(
    max_examples=max(FUZZ_EXAMPLES, 10),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    junk=st.lists(
        st.one_of(
            st.binary(max_size=200),
            st.dictionaries(
                st.sampled_from(
                    [
                        "eventid",
                        "timestamp",
                        "sensor",
                        "session",
                        "src_ip",
                        "dst_port",
                        "rcpt_to",
                        "outcome",
                        "protocol",
                    ]
                ),
                st.one_of(
                    st.none(),
                    st.integers(),
                    st.text(max_size=20),
                    st.lists(st.text(max_size=5), max_size=3),
                ),
            ).map(lambda d: json.dumps(d).encode()),
        ),
        max_size=8,
    )
)
def test_fuzzed_lines_never_reach_the_tables_nor_stop_a_report(tmp_path, junk):
    root = tmp_path / "fuzz"
    import shutil

    shutil.rmtree(root, ignore_errors=True)
    data = SensorData(root / "raw", "s1")
    good = good_message(data)
    events = root / "raw" / "s1" / "events"
    events.mkdir(parents=True)
    lines = [line.replace(b"\n", b" ") for line in junk]
    (events / "s1-20260302T10.jsonl.gz").write_bytes(
        gzip.compress(b"\n".join([*lines, *[g.rstrip(b"\n") for g in good]]) + b"\n")
    )
    result = ingest(cfg(root), NO_GEO)
    # No junk line is a whole valid event (the objects lack required fields): every one that
    # is not blank is set aside, and the good session is read all the same.
    assert result.quarantined == sum(1 for line in lines if line.strip())
    assert result.rows["messages"] == 1 and result.rows["sessions"] == 1
    report = report_of(root / "warehouse")
    assert report.table("table2_general").records()[4]["value"] == 1
