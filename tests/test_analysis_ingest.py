"""The warehouse: idempotent, incremental, crash-safe ingest that never chokes on bad input."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import duckdb
import pytest

from analysis_data import SensorData, build_known
from spampot.analysis.enrich import Enricher
from spampot.analysis.ingest import (
    MANIFEST,
    QUARANTINE,
    STAGING,
    BatchTable,
    IngestConfig,
    Ingester,
    Manifest,
    ingest,
)

NO_GEO = Enricher([])  # these tests are about files and rows, not addresses

FUZZ_EXAMPLES = int(os.environ.get("SPAMPOT_FUZZ_EXAMPLES", "300")) // 10


def parquet_files(warehouse: Path) -> list[str]:
    return sorted(str(p.relative_to(warehouse)) for p in warehouse.glob("*/day=*/*.parquet"))


def count(warehouse: Path, table: str) -> int:
    files = str(warehouse / table / "day=*" / "*.parquet")
    return query(f"SELECT COUNT(*) FROM read_parquet('{files}')")[0]


def query(sql: str) -> tuple:
    with duckdb.connect() as con:
        return con.execute(sql).fetchone()


def cfg(root: Path, **kw) -> IngestConfig:
    return IngestConfig(root / "raw", root / "warehouse", threads=2, **kw)


def test_rerun_adds_nothing(tmp_path):
    build_known(tmp_path / "raw")
    first = ingest(cfg(tmp_path), NO_GEO)
    files = parquet_files(tmp_path / "warehouse")
    assert first.files == 12 and first.rows["messages"] == 12
    again = ingest(cfg(tmp_path), NO_GEO)
    assert again.files == 0 and again.events == 0
    assert parquet_files(tmp_path / "warehouse") == files
    assert count(tmp_path / "warehouse", "messages") == 12
    assert not (tmp_path / "warehouse" / STAGING).exists()


def test_new_files_only(tmp_path):
    build_known(tmp_path / "raw")
    ingest(cfg(tmp_path), NO_GEO)
    late = SensorData(tmp_path / "raw", "late-1")
    late.message("2026-03-04T10:00:00", "203.0.113.9", 25, ["a@b.example"])
    late.write()
    result = ingest(cfg(tmp_path), NO_GEO)
    assert result.files == 1 and result.rows["messages"] == 1
    assert count(tmp_path / "warehouse", "messages") == 13


def test_one_file_per_batch_gives_the_same_rows(tmp_path):
    build_known(tmp_path / "raw")
    result = ingest(cfg(tmp_path, batch_bytes=1), NO_GEO)
    assert result.batches == 12
    assert count(tmp_path / "warehouse", "messages") == 12
    assert count(tmp_path / "warehouse", "proxy_requests") == 18


def test_crash_before_commit_leaves_nothing_twice(tmp_path, monkeypatch):
    build_known(tmp_path / "raw")
    calls = {"n": 0}
    real_commit = Manifest.commit

    def crash_on_second(self, batch, files, detail):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed between moving files and the manifest line")
        return real_commit(self, batch, files, detail)

    monkeypatch.setattr(Manifest, "commit", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        ingest(cfg(tmp_path, batch_bytes=1), NO_GEO)
    monkeypatch.setattr(Manifest, "commit", real_commit)
    # The second batch's Parquet files are in place but uncommitted: the next run removes
    # them and reads those event files again.
    result = ingest(cfg(tmp_path, batch_bytes=1), NO_GEO)
    assert result.files == 11
    assert count(tmp_path / "warehouse", "messages") == 12
    assert count(tmp_path / "warehouse", "sessions") == 20


def test_changed_file_is_reported_not_reread(tmp_path):
    build_known(tmp_path / "raw")
    ingest(cfg(tmp_path), NO_GEO)
    victim = sorted((tmp_path / "raw" / "biz-1" / "events").iterdir())[0]
    victim.write_bytes(victim.read_bytes() + gzip.compress(b"\n"))
    result = ingest(cfg(tmp_path), NO_GEO)
    assert result.changed == [f"biz-1/events/{victim.name}"]
    assert result.files == 0
    assert count(tmp_path / "warehouse", "messages") == 12


def test_unreadable_file_is_set_aside(tmp_path):
    build_known(tmp_path / "raw")
    bad = tmp_path / "raw" / "res-1" / "events" / "res-1-20260301T00.jsonl.gz"
    bad.write_bytes(b"this is not gzip at all")
    result = ingest(cfg(tmp_path), NO_GEO)
    assert [rel for rel, _ in result.damaged] == ["res-1/events/res-1-20260301T00.jsonl.gz"]
    assert result.quarantined == 1
    assert count(tmp_path / "warehouse", "messages") == 12  # every good file made it
    again = ingest(cfg(tmp_path), NO_GEO)
    assert again.damaged == [] and again.quarantined == 0  # set aside once, not retried
    (kept,) = (tmp_path / "warehouse" / QUARANTINE).glob("*.jsonl")
    record = json.loads(kept.read_text())
    assert record["file"] == "res-1/events/res-1-20260301T00.jsonl.gz" and record["line"] == 0


def test_files_in_transfer_are_not_read(tmp_path):
    """What a collection in progress, or one killed outright, leaves under raw/: rsync's files
    in transfer (``.<name>.XXXXXX`` beside their final name, cut short). The ingest reads only
    the sensor's own names, and the message files their events name, never one of these."""
    from spampot.central.collect import IN_TRANSFER, sweep_transfers

    build_known(tmp_path / "raw")
    events = tmp_path / "raw" / "res-1" / "events"
    whole = sorted(events.glob("*.jsonl.gz"))[0]
    partial = whole.read_bytes()[: len(whole.read_bytes()) // 2]
    leftovers = [
        events / f".res-1-20260302T00.jsonl.gz.{suffix}" for suffix in ("Ab12Cd", "x9Y8z7")
    ] + [events / ".late.jsonl.gz"]
    for path in leftovers:
        path.write_bytes(partial)
    assert [IN_TRANSFER.fullmatch(p.name) is not None for p in leftovers] == [True, True, False]
    result = ingest(cfg(tmp_path), NO_GEO)
    assert result.files == 12 and result.damaged == [] and result.quarantined == 0
    assert count(tmp_path / "warehouse", "messages") == 12
    # The next collection sweeps rsync's leftovers; the ingest never needed it to.
    assert sweep_transfers(tmp_path / "raw") == 2


def test_torn_manifest_line_is_not_a_commit(tmp_path):
    build_known(tmp_path / "raw")
    ingest(cfg(tmp_path), NO_GEO)
    manifest = tmp_path / "warehouse" / MANIFEST
    manifest.write_text(manifest.read_text()[:-20])  # the last line cut short
    result = ingest(cfg(tmp_path), NO_GEO)
    assert result.files == 12  # the one batch is redone
    assert count(tmp_path / "warehouse", "messages") == 12


def test_sensor_name_from_events_and_dir(tmp_path):
    data = SensorData(tmp_path / "raw", "br-01")
    rel = data.message("2026-03-02T10:00:00", "2001:db8::1", 25, ["a@b.example"])
    data.write()
    ingest(cfg(tmp_path), NO_GEO)
    row = query(
        "SELECT sensor, raw_sensor, file, src_ip, rcpt_count, day FROM read_parquet("
        f"'{tmp_path}/warehouse/messages/*/*.parquet', hive_partitioning = true)"
    )
    assert row[0] == "br-01" and row[1] == "br-01"
    assert f"{row[1]}/{row[2]}" == rel
    assert (tmp_path / "raw" / rel).exists()
    assert row[3] == "2001:db8::1" and row[4] == 1
    assert str(row[5]) == "2026-03-02"


def _rows(warehouse: Path, table: str) -> list[tuple]:
    files = str(warehouse / table / "day=*" / "*.parquet")
    with duckdb.connect() as con:
        return con.execute(
            f"SELECT * FROM read_parquet('{files}', hive_partitioning = true) ORDER BY ALL"
        ).fetchall()


def _columns(warehouse: Path, table: str) -> set[tuple]:
    with duckdb.connect() as con:
        return {
            tuple(
                con.execute(
                    f"DESCRIBE SELECT * FROM read_parquet('{part}', hive_partitioning = false)"
                ).fetchall()
            )
            for part in (warehouse / table).glob("day=*/*.parquet")
        }


def test_a_batch_of_one_day_is_written_as_a_batch_of_several_days(tmp_path):
    """A batch whose events share a day is written as one plain file per table (cheaper than
    DuckDB's PARTITION_BY): the same rows and columns, in the same place, as when a batch
    spans days and is partitioned."""
    build_known(tmp_path / "raw")
    several = ingest(IngestConfig(tmp_path / "raw", tmp_path / "a", threads=1), NO_GEO)
    single = ingest(
        IngestConfig(tmp_path / "raw", tmp_path / "b", threads=1, batch_bytes=1), NO_GEO
    )
    assert several.batches == 1 and single.batches == 12
    assert len(list((tmp_path / "a" / "messages").glob("day=*"))) > 1
    for table in ("messages", "proxy_requests", "sessions", "smtp_events", "message_content"):
        assert _rows(tmp_path / "a", table) == _rows(tmp_path / "b", table) != []
        assert _columns(tmp_path / "a", table) == _columns(tmp_path / "b", table)
        assert all("-" in p.name for p in (tmp_path / "b" / table).glob("day=*/*.parquet"))
    # A table without rows in a batch leaves no file, as PARTITION_BY does.
    assert not list((tmp_path / "b" / "message_attachments").glob("day=*/*.parquet"))


def test_a_table_whose_days_are_not_its_events_is_partitioned_by_its_own(tmp_path):
    data = SensorData(tmp_path / "raw", "one-day")
    data.message("2026-03-04T10:00:00", "203.0.113.9", 25, ["a@b.example"])
    data.write()
    shifted = BatchTable(
        "shifted",
        lambda _con, _batch: (
            "SELECT ts, CAST(ts AS DATE) + CAST(ts::TIME > TIME '09:00' AS INTEGER) AS day"
            " FROM batch_events"
        ),
        frozenset({"spampot.smtp.message"}),
    )
    config = IngestConfig(tmp_path / "raw", tmp_path / "wh", threads=1, content=False)
    with Ingester(config, NO_GEO, tables=(shifted,)) as ingester:
        result = ingester.run()
    assert result.events >= 1
    days = sorted(p.parent.name for p in (tmp_path / "wh" / "shifted").glob("day=*/*.parquet"))
    assert "day=2026-03-05" in days
    assert set(days) <= {"day=2026-03-04", "day=2026-03-05"}
