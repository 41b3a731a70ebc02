"""The content tables of one ingest batch: every message its events name, read and extracted.

For each ``smtp.message`` event of the batch (``sql/ingest_content_source.sql``), the message
file ``raw/<raw_sensor>/<file>`` is read (gzip, at most ``max_message_bytes`` decompressed)
and extracted (``extract.py``) in worker processes; the three tables of ``schema.py`` come
back as Arrow tables with a ``day`` column, for the ingest to write and commit with the
batch's other tables (so they are incremental and exactly-once like them). Every event gets
a ``message_content`` row: ``ok``; ``mismatch`` (extracted, but the file's SHA-256 is not
the event's); ``missing`` (no file: bodies not kept, or not collected); ``error`` (unreadable
gzip, or a message no parser reads), each with its reason.

The workers come from a ``forkserver`` (a fork of the ingest's process would inherit DuckDB's
threads mid-lock); they start once per :class:`ContentExtractor` and the batch is handed
out in chunks, so memory is one chunk of messages per worker.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import multiprocessing
import os
import zlib
from collections.abc import Iterable
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from spampot.analysis.content.extract import Content, as_row, extract
from spampot.analysis.content.limits import DEFAULT_LIMITS, ContentLimits
from spampot.analysis.content.relay import RelayContext
from spampot.analysis.content.schema import CONTENT_TABLES, arrow_schema
from spampot.analysis.sql import load_sql

EVENT = "spampot.smtp.message"
CHUNK = 200  # messages per task: ~1 MB of bodies, and a tenth of a second of work


class BatchLike(Protocol):
    id: str
    raw_dir: Path


@dataclass(frozen=True, slots=True)
class Source:
    """What a message's event says, as the extraction needs it."""

    ts: dt.datetime
    sensor: str | None
    raw_sensor: str | None
    file: str | None
    src_ip: str | None
    sha256: str | None
    country: str | None
    asn: int | None
    dst_ip: str | None
    dst_port: int | None
    target_host: str | None
    recipients: int


@dataclass(frozen=True, slots=True)
class ContentOptions:
    jobs: int = 0  # worker processes; 0: one per core; 1: in the ingest's own process
    limits: ContentLimits = DEFAULT_LIMITS


def message_path(raw_dir: Path, raw_sensor: str | None, file: str | None) -> Path | None:
    """``raw/<raw_sensor>/<file>``, or None when the event's names would leave ``raw/``."""
    path = _message_file(str(raw_dir), raw_sensor, file)
    return None if path is None else Path(path)


def _message_file(raw_dir: str, raw_sensor: str | None, file: str | None) -> str | None:
    """:func:`message_path` as a string (no Path object: it runs once per message)."""
    if not raw_sensor or not file:
        return None
    if file.startswith("/") or ".." in file.split("/"):
        return None
    if "/" in raw_sensor or raw_sensor in (".", ".."):
        return None
    return f"{raw_dir}/{raw_sensor}/{file}"


def read_message(path: Path, limit: int) -> bytes:
    """The stored message, decompressed, at most ``limit + 1`` bytes (so that more shows)."""
    with gzip.open(path, "rb") as f:
        data: bytes = f.read(limit + 1)
        return data


NO_PATH = "the event names no message file"
NO_FILE = "no message file (not kept, or not collected)"


def extract_one(source: Source, raw_dir: Path, limits: ContentLimits) -> Content:
    path = message_path(raw_dir, source.raw_sensor, source.file)
    if path is None:
        return Content(status="missing", error=NO_PATH)
    try:
        data = read_message(path, limits.max_message_bytes)
    except FileNotFoundError:
        return Content(status="missing", error=NO_FILE)
    except (OSError, EOFError, zlib.error) as exc:
        return Content(status="error", error=f"unreadable message file: {exc}"[:300])
    relay = RelayContext(source.dst_ip, source.dst_port, source.target_host, source.recipients)
    content = extract(data, source.ts, relay, limits)
    if (
        content.status == "ok"
        and source.sha256
        and len(data) <= limits.max_message_bytes
        and hashlib.sha256(data).hexdigest() != source.sha256
    ):
        content.status = "mismatch"
        content.error = "the file's SHA-256 is not the one its event gives"
    return content


Rows = tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]

_CONTENT_COLUMNS = [name for name, _ in CONTENT_TABLES["message_content"]]
_URL_COLUMNS = [name for name, _ in CONTENT_TABLES["message_urls"]]
_ATTACHMENT_COLUMNS = [name for name, _ in CONTENT_TABLES["message_attachments"]]


_KEY_COLUMNS = ("ts", "sensor", "raw_sensor", "file", "src_ip", "sha256", "country", "asn")


def _content_row(source: Source, values: dict[str, Any]) -> tuple[Any, ...]:
    row = dict(values)
    for name in _KEY_COLUMNS:
        row[name] = getattr(source, name)
    return tuple(row[name] for name in _CONTENT_COLUMNS)


# A ``..`` component of a path (``_message_file`` refuses it).
_PARENT = r"(^|/)\.\.(/|$)"


def _named(sources: pa.Table) -> pa.Array:
    """Per row, whether its event names a message file inside ``raw/`` (``_message_file``'s
    rules, as Arrow compute: no Python object per row)."""
    sensor = sources.column("raw_sensor")
    file = sources.column("file")
    refused = [
        pc.starts_with(file, "/"),
        pc.match_substring_regex(file, _PARENT),
        pc.match_substring(sensor, "/"),
        pc.is_in(sensor, pa.array([".", ".."])),
    ]
    named = pc.and_(pc.not_equal(sensor, ""), pc.not_equal(file, ""))
    for test in refused:
        named = pc.and_(named, pc.invert(test))
    return pc.fill_null(named, False).combine_chunks()


def _present(sources: pa.Table, named: pa.Array, root: str) -> pa.Array:
    """Per row, whether its message file is there. Directories are asked of the file system
    level by level, each distinct one once, and only below one that exists (bodies not kept:
    ``raw/<sensor>/<day>`` is not there, and no further name is looked up); then each file
    whose directory is there."""
    present = np.zeros(len(sources), np.bool_)
    rows = np.flatnonzero(named.to_numpy(zero_copy_only=False))
    if not rows.size or not os.path.isdir(root):
        return pa.array(present)
    relative = pc.binary_join_element_wise(
        sources.column("raw_sensor"), sources.column("file"), "/"
    ).combine_chunks()
    parts = pc.split_pattern(relative.take(rows), "/")
    depth = pc.list_value_length(parts).to_numpy(zero_copy_only=False) - 1  # directories
    alive = np.ones(len(rows), np.bool_)
    for level in range(1, int(depth.max()) + 1):
        at = np.flatnonzero(alive & (depth >= level))
        if not at.size:
            break
        prefixes = pc.binary_join(pc.list_slice(parts.take(at), 0, level), "/")
        encoded = prefixes.dictionary_encode()
        known = np.array(
            [os.path.isdir(f"{root}/{p}") for p in encoded.dictionary.to_pylist()], np.bool_
        )
        alive[at] = known[encoded.indices.to_numpy(zero_copy_only=False)]
    candidates = rows[alive]
    present[candidates] = [
        os.path.exists(f"{root}/{p}") for p in relative.take(pa.array(candidates)).to_pylist()
    ]
    return pa.array(present)


def missing_rows(sources: pa.Table, raw_dir: Path) -> tuple[list[Source], pa.Table]:
    """Split off the messages whose file is not there (``sources``: the rows of
    ``ingest_content_source.sql``): their ``message_content`` rows are built here as Arrow
    columns, the event's columns and the missing row's constants, without a Python object
    per row (a warehouse of events whose bodies were not kept has millions). The others
    come back as :class:`Source`, for the extraction."""
    templates = {
        reason: as_row(Content(status="missing", error=reason)) for reason in (NO_PATH, NO_FILE)
    }
    named = _named(sources)
    present = _present(sources, named, str(raw_dir))
    missing = sources.filter(pc.invert(present))
    missing_named = named.filter(pc.invert(present))
    columns = []
    for field in arrow_schema("message_content"):
        if field.name in _KEY_COLUMNS:
            columns.append(missing.column(field.name).cast(field.type))
            continue
        unnamed = pa.scalar(templates[NO_PATH][field.name], field.type)
        absent = pa.scalar(templates[NO_FILE][field.name], field.type)
        if unnamed == absent:
            columns.append(pa.repeat(unnamed, len(missing)))
        else:
            columns.append(pc.if_else(missing_named, absent, unnamed))
    table = pa.table(columns, schema=arrow_schema("message_content"))
    found = [Source(**row) for row in sources.filter(present).to_pylist()]
    return found, _with_day(table)


def extract_chunk(sources: list[Source], raw_dir: Path, limits: ContentLimits) -> Rows:
    """The rows of the three tables for ``sources`` (run in a worker)."""
    content_rows: list[tuple[Any, ...]] = []
    url_rows: list[tuple[Any, ...]] = []
    attachment_rows: list[tuple[Any, ...]] = []
    for s in sources:
        c = extract_one(s, raw_dir, limits)
        keys = (s.ts, s.sensor, s.raw_sensor, s.file, s.src_ip)
        content_rows.append(_content_row(s, as_row(c)))
        for u in c.urls:
            url_rows.append((*keys, u.url, u.host, u.domain, u.source, u.obfuscated))
        for a in c.attachments:
            attachment_rows.append(
                (
                    *keys,
                    a.filename,
                    a.declared_type,
                    a.sniffed_type,
                    a.size,
                    a.sha256,
                    a.tlsh,
                    a.archive_members,
                )
            )
    return content_rows, url_rows, attachment_rows


def _table(name: str, rows: list[tuple[Any, ...]]) -> pa.Table:
    schema = arrow_schema(name)
    columns: list[list[Any]] = [list(col) for col in zip(*rows, strict=True)]
    if not rows:
        columns = [[] for _ in schema]
    table = pa.table(
        [pa.array(col, type=f.type) for col, f in zip(columns, schema, strict=True)],
        schema=schema,
    )
    return _with_day(table)


def _with_day(table: pa.Table) -> pa.Table:
    return table.append_column("day", pc.cast(table.column("ts"), pa.date32()))


class ContentExtractor:
    """Builds the content tables of each batch once, and hands them to the ingest by name."""

    def __init__(self, options: ContentOptions = ContentOptions()) -> None:
        self.options = options
        self._executor: Executor | None = None
        self._batch: str | None = None
        self._tables: dict[str, pa.Table] = {}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(CONTENT_TABLES)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown()
            self._executor = None
        self._tables = {}

    def table(self, name: str, con: duckdb.DuckDBPyConnection, batch: BatchLike) -> pa.Table:
        if self._batch != batch.id or name not in self._tables:
            self._tables = self._extract(con, batch)
            self._batch = batch.id
        return self._tables.pop(name)  # handed over once: memory is one batch's tables

    def _extract(self, con: duckdb.DuckDBPyConnection, batch: BatchLike) -> dict[str, pa.Table]:
        rows = con.sql(load_sql("ingest_content_source")).to_arrow_table()
        sources, missing = missing_rows(rows, batch.raw_dir)
        del rows
        chunks = [sources[i : i + CHUNK] for i in range(0, len(sources), CHUNK)]
        results = self._map(chunks, batch.raw_dir)
        content: list[tuple[Any, ...]] = []
        urls: list[tuple[Any, ...]] = []
        attachments: list[tuple[Any, ...]] = []
        for c, u, a in results:
            content += c
            urls += u
            attachments += a
        return {
            "message_content": pa.concat_tables([missing, _table("message_content", content)]),
            "message_urls": _table("message_urls", urls),
            "message_attachments": _table("message_attachments", attachments),
        }

    def _map(self, chunks: list[list[Source]], raw_dir: Path) -> Iterable[Rows]:
        limits = self.options.limits
        jobs = self.options.jobs or os.cpu_count() or 1
        if jobs == 1 or len(chunks) <= 1:
            return [extract_chunk(chunk, raw_dir, limits) for chunk in chunks]
        if self._executor is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["spampot.analysis.content.batch"])
            self._executor = ProcessPoolExecutor(jobs, mp_context=context)
        executor = self._executor
        return executor.map(extract_chunk, chunks, [raw_dir] * len(chunks), [limits] * len(chunks))
