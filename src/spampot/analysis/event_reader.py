"""Reading collected event files: whole lines out of gzip, each validated by the contract.

A line that does not match the event contract (not JSON, invalid UTF-8, an unknown
``eventid``, a missing or mistyped field, a recipient given as an object, ...) is not guessed
at: it becomes a :class:`Rejected` record (file, line number, reason, the start of the line)
for the quarantine. A gzip file cut short (a transfer interrupted, a disk full) gives every
whole line it holds; what cannot be read is one more rejected record. Timestamps are parsed
the same way whatever their spelling (``Z`` or ``+00:00``, with or without fractions) and
whatever the file's size, and stored in UTC.

How (:func:`load_batch`): every line is judged by the contract's msgspec decoder (in C, a
few microseconds a line; its reason for what it rejects, its timestamp for what it accepts;
a run of lines in the sensor's own spelling in one call, :func:`_canonical_run`); the lines
of a batch's files become one Arrow column without a Python object per line (the
decompressed bytes, a large file's as they are, and arrays of offsets) and DuckDB reads the
columns of the accepted lines from it (:mod:`spampot.analysis.line_check`, which takes a
line only where its values are certainly the decoder's); the few accepted lines it does not
take are turned into columns from the decoder's objects. The valid events of both are the view
``batch_events``, in the columns of :data:`BATCH_SCHEMA`: the contract's stored fields
(``timestamp`` named ``ts``) and ``raw_sensor``, the sensor directory the file was collected
into. That view is what the ingest's SQL reads.
"""

from __future__ import annotations

import datetime as dt
import functools
import gc
import itertools
import operator
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import duckdb
import msgspec
import numpy as np
import pyarrow as pa
from isal import isal_zlib

from spampot.analysis.line_check import fast_path
from spampot.contract import COLUMNS, DECODER, ENCODER, EVENTS, STORED, Event, eventid

# Bytes of decompressed input decoded in one call (a whole number of lines): large enough
# that the per-call cost vanishes, small enough that one rejected line costs a re-decode of
# little. Bounds memory per file too: a 64 MB rotated file is read in 16 such pieces.
CHUNK_BYTES = 4 * 1024 * 1024
# isal's stubs declare its error as an instance, not a class.
_GZIP_ERROR = cast(type[Exception], isal_zlib.error)
# What a quarantine record keeps of the offending line.
EXCERPT_BYTES = 512


@dataclass(frozen=True, slots=True)
class Rejected:
    """One line (or, with ``line`` 0, the unreadable rest of a file) kept out of the tables."""

    file: str
    line: int
    reason: str
    excerpt: str


def arrow_type(sql: str) -> pa.DataType:
    """The Arrow type of a contract column type (``contract._sql_type``'s spellings)."""
    if sql.endswith("[]"):
        return pa.list_(arrow_type(sql[:-2]))
    if sql.startswith("STRUCT("):
        inner = sql[len("STRUCT(") : -1]
        return pa.struct(
            [
                (name, arrow_type(kind))
                for name, kind in (p.split(" ", 1) for p in inner.split(", "))
            ]
        )
    return {
        "VARCHAR": pa.string(),
        "INTEGER": pa.int32(),
        "BIGINT": pa.int64(),
        "DOUBLE": pa.float64(),
        "TIMESTAMP": pa.timestamp("us"),
    }[sql]


def _batch_schema() -> pa.Schema:
    fields = [
        ("ts" if name == "timestamp" else name, arrow_type(kind)) for name, kind in COLUMNS.items()
    ]
    return pa.schema([*fields, ("raw_sensor", pa.string())])


BATCH_SCHEMA = _batch_schema()
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)

# Per event class: (stored field names in declaration order, its eventid).
_STORED_OF: dict[type[Event], tuple[tuple[str, ...], str]] = {
    cls: (tuple(f for f in cls.__struct_fields__ if f in STORED), eventid(cls)) for cls in EVENTS
}


def _excerpt(line: bytes) -> str:
    return line[:EXCERPT_BYTES].decode("utf-8", "backslashreplace")


def rejection_reason(exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"invalid UTF-8 at byte {exc.start}"
    return str(exc).splitlines()[0][:300]


def gunzip_lines(data: bytes) -> tuple[bytes, str | None]:
    """The whole lines of a gzip file (every member), and why the rest is unreadable if any.

    What a damaged file gives is kept up to its last newline; the cut line and anything the
    decompressor could not read are the caller's to reject.
    """
    out: list[bytes] = []
    problem: str | None = None
    rest = data
    while rest:
        # ISA-L's inflate: the same gzip, about twice as fast as zlib's.
        d = isal_zlib.decompressobj(wbits=31)
        try:
            out.append(d.decompress(rest))
        except _GZIP_ERROR as exc:
            problem = f"gzip data unreadable after {sum(map(len, out)):,} bytes: {exc}"
            break
        if not d.eof:
            out.append(d.flush())
            problem = f"gzip stream cut short after {sum(map(len, out)):,} bytes"
            break
        rest = d.unused_data
    text = out[0] if len(out) == 1 else b"".join(out)  # one member (the sensor's): no copy
    if problem is None:
        return text, None
    end = text.rfind(b"\n") + 1
    if end < len(text):
        problem += f" (a partial line of {len(text) - end:,} bytes dropped)"
    return text[:end], problem


@dataclass(slots=True)
class FileEvents:
    """The valid events of one file, grouped by class, and its rejected lines."""

    rel: str
    raw_sensor: str
    events: dict[type[Event], list[Any]] = field(default_factory=lambda: defaultdict(list))
    rejected: list[Rejected] = field(default_factory=list)
    lines: int = 0
    damaged: str | None = None  # why part of the file could not be read

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.events.values())


def read_events(rel: str, data: bytes, decompressed: bool = False) -> FileEvents:
    """Decode and validate every line of one collected event file (gzip bytes, or its
    whole lines already decompressed) with the contract's decoder alone."""
    out = FileEvents(rel, rel.split("/", 1)[0])
    if decompressed:
        text = data
    else:
        text, problem = gunzip_lines(data)
        if problem is not None:
            out.damaged = problem
            out.rejected.append(Rejected(rel, 0, problem, ""))
    first_line = 1
    for chunk in _chunks(text):
        n = chunk.count(b"\n") + (0 if chunk.endswith(b"\n") else 1)
        _decode_chunk(out, chunk, first_line)
        first_line += n
        out.lines += n
    return out


def _chunks(text: bytes) -> Iterator[bytes]:
    start = 0
    while start < len(text):
        end = text.find(b"\n", start + CHUNK_BYTES)
        end = len(text) if end < 0 else end + 1
        yield text[start:end]
        start = end


def _split(chunk: bytes) -> list[bytes]:
    """A chunk's lines (each without its newline), as the line numbers count them."""
    lines = chunk.split(b"\n")
    if chunk.endswith(b"\n"):
        lines.pop()
    return lines


_DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError)


def _decode_each(
    rel: str, lines: list[bytes], first: int
) -> tuple[list[Event], list[int] | None, list[Rejected]]:
    """Every one of ``lines`` (without their newlines) by the contract's decoder alone,
    ``first`` the line number of the first: the valid lines' events, their indexes in
    ``lines`` (None: every line is valid), and a rejected record for each invalid one (a
    blank line is neither)."""
    decode = DECODER.decode
    try:
        # Line by line, not ``decode_lines``: that reads a stream of values, where two on one
        # line or one over two lines would pass.
        return [decode(line) for line in lines], None, []
    except _DECODE_ERRORS:
        pass  # some line is bad (or blank): find it (and every other) line by line
    events: list[Event] = []
    valid: list[int] = []
    rejected: list[Rejected] = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            events.append(decode(line))
        except _DECODE_ERRORS as exc:
            rejected.append(Rejected(rel, first + i, rejection_reason(exc), _excerpt(line)))
        else:
            valid.append(i)
    return events, valid, rejected


def _decode_chunk(out: FileEvents, chunk: bytes, first_line: int) -> None:
    """The lines of ``chunk`` (a whole line or more), ``first_line`` the number of its
    first, by the contract's decoder: events of ``out``, or rejected records."""
    events, _, rejected = _decode_each(out.rel, _split(chunk), first_line)
    for event in events:
        out.events[type(event)].append(event)
    out.rejected += rejected


def _column(name: str, values: list[Any]) -> pa.Array:
    kind = BATCH_SCHEMA.field("ts" if name == "timestamp" else name).type
    if name == "timestamp":
        # Microseconds since the epoch by timedelta arithmetic (in C, any UTC offset): a list
        # of aware datetimes would make Arrow call their tzinfo once per value.
        micros = [(d - _EPOCH) // _MICROSECOND for d in values]
        return pa.array(micros, pa.int64()).cast(kind)
    if name == "auth":
        values = [
            None
            if a is None
            else {"method": a.method, "username": a.username, "password": a.password}
            for a in values
        ]
    elif pa.types.is_list(kind):
        # Flat values and offsets: several times cheaper than converting nested lists.
        lengths = [0 if v is None else len(v) for v in values]
        offsets = pa.array([0, *itertools.accumulate(lengths)], pa.int32())
        flat = pa.array([item for v in values if v is not None for item in v], kind.value_type)
        mask = pa.array([v is None for v in values]) if None in values else None
        return pa.ListArray.from_arrays(offsets, flat, type=kind, mask=mask)
    return pa.array(values, kind)


def to_table(files: list[FileEvents], eventids: frozenset[str] | None = None) -> pa.Table:
    """The stored columns of the valid events of ``files`` (those of ``eventids``, if given),
    as ``BATCH_SCHEMA``."""
    parts: list[pa.Table] = []
    by_class: dict[type[Event], list[tuple[str, list[Any]]]] = defaultdict(list)
    for f in files:
        for cls, events in f.events.items():
            if eventids is None or _STORED_OF[cls][1] in eventids:
                by_class[cls].append((f.raw_sensor, events))
    for cls, pieces in by_class.items():
        names, tag = _STORED_OF[cls]
        events = [e for _, piece in pieces for e in piece]
        if not events:
            continue
        n = len(events)
        arrays: dict[str, pa.Array] = {}
        for name in names:
            values = list(map(operator.attrgetter(name), events))
            arrays["ts" if name == "timestamp" else name] = _column(name, values)
        arrays["eventid"] = pa.array([tag] * n, pa.string())
        arrays["raw_sensor"] = pa.array(
            [sensor for sensor, piece in pieces for _ in range(len(piece))], pa.string()
        )
        parts.append(
            pa.table(
                [arrays[f.name] if f.name in arrays else pa.nulls(n, f.type) for f in BATCH_SCHEMA],
                schema=BATCH_SCHEMA,
            )
        )
    if not parts:
        return empty_table(BATCH_SCHEMA)
    return pa.concat_tables(parts)


# --- a batch's lines, checked in DuckDB ------------------------------------------------------


def _bounds(text: bytes) -> np.ndarray:
    """The offsets of ``text``'s lines, from 0 to its length."""
    # A byte-wide mask of a chunk of the text at a time (of all of it at once, hundreds of
    # megabytes of page faults).
    ends = [
        np.flatnonzero(np.frombuffer(text, np.uint8, min(CHUNK_BYTES, len(text) - at), at) == 10)
        + (at + 1)
        for at in range(0, len(text), CHUNK_BYTES)
    ]
    tail = [len(text)] if len(text) and text[-1:] != b"\n" else []
    return np.concatenate([[0], *ends, tail]).astype(np.int64)


def _is_utf8(data: bytes) -> bool:
    if data.isascii():
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@dataclass(slots=True)
class _Verdicts:
    """The decoder's verdict on each line of a file."""

    #: Microseconds since the epoch of the line's timestamp; -1: rejected (or blank).
    stamps: np.ndarray
    #: A valid event of a class some table reads.
    taken: np.ndarray
    #: Valid and spelt as the sensor spells it: exactly the bytes the contract's encoder
    #: makes of the decoded event (every key once, in the contract's order, nothing else),
    #: so any JSON reader takes the decoder's values from it.
    canonical: np.ndarray
    rejected: list[Rejected] = field(default_factory=list)

    def record(
        self,
        at: slice | list[int],
        events: Sequence[Event],
        canonical: bool | list[bool],
        wanted: frozenset[type[Event]],
    ) -> None:
        """The verdicts on the valid ``events`` at indexes ``at``."""
        # Any UTC offset: timedelta arithmetic in C (the contract's timestamps are aware; a
        # naive one is rejected by the decoder).
        self.stamps[at] = [(e.timestamp - _EPOCH) // _MICROSECOND for e in events]
        self.taken[at] = [type(e) in wanted for e in events]
        self.canonical[at] = canonical


def _canonical_run(text: bytes, view: memoryview, start: int, end: int) -> Sequence[Event] | None:
    """The events of the lines ``text[start:end]`` if every one is valid and canonical (see
    :class:`_Verdicts`), else None.

    The lines are decoded as one stream of values and their events encoded back at once:
    where that is the lines' bytes exactly, each line is one value, spelt as the encoder
    spells its event (a line of a sensor's, the usual case), for a fraction of the cost of
    two calls a line. The stream alone would not do: two values on one line, or one over
    two lines, would pass.
    """
    try:
        events = DECODER.decode_lines(view[start:end])
    except _DECODE_ERRORS:
        return None
    encoded = ENCODER.encode_lines(events)
    return events if len(encoded) == end - start and text.startswith(encoded, start) else None


def _judge_lines(
    rel: str,
    lines: list[bytes],
    first: int,
    verdicts: _Verdicts,
    wanted: frozenset[type[Event]],
) -> None:
    """The verdicts on ``lines``, the lines of indexes ``first`` on, one line at a time."""
    events, valid, rejected = _decode_each(rel, lines, first + 1)
    verdicts.rejected += rejected
    at: slice | list[int]
    if valid is None:
        at, spelt = slice(first, first + len(lines)), lines
    else:
        at, spelt = [first + i for i in valid], [lines[i] for i in valid]
    canonical = list(map(operator.eq, map(ENCODER.encode, events), spelt))
    verdicts.record(at, events, canonical, wanted)


def _judge(
    rel: str, text: bytes, bounds: np.ndarray, wanted: frozenset[type[Event]]
) -> _Verdicts | None:
    """The decoder's verdict on every line of a file's ``text``; None if it is not UTF-8
    throughout."""
    n = len(bounds) - 1
    verdicts = _Verdicts(np.full(n, -1, np.int64), np.zeros(n, np.bool_), np.zeros(n, np.bool_))
    # A file is written by one sensor: once a chunk is not all canonical, the rest is read
    # line by line rather than tried as a run first.
    runs = True
    # The decoder makes a Python object per value, none of them in a cycle: the cyclic
    # collector, run every 700 of them, would only walk the chunk's live objects over and
    # over (a fifth of the decoder's time on the sensor's lines).
    collecting = gc.isenabled()
    gc.disable()
    try:
        with memoryview(text) as view:
            start = 0
            while start < n:
                end = int(np.searchsorted(bounds, bounds[start] + CHUNK_BYTES))
                end = min(max(end, start + 1), n)
                first, last = int(bounds[start]), int(bounds[end])
                events = _canonical_run(text, view, first, last) if runs else None
                if events is not None:
                    # Valid UTF-8 too: they are the encoder's bytes.
                    verdicts.record(slice(start, end), events, True, wanted)
                else:
                    runs = False
                    chunk = text[first:last]
                    # A line the decoder accepts may hold invalid UTF-8 where it does not
                    # look (a field it ignores); Arrow and DuckDB take UTF-8 only.
                    if not _is_utf8(chunk):
                        return None
                    _judge_lines(rel, _split(chunk), start, verdicts, wanted)
                del events
                start = end
    finally:
        if collecting:
            gc.enable()
    return verdicts


# A file's text of at least this size is a chunk of the Arrow column by itself (no copy);
# smaller ones share a buffer up to it: DuckDB's scan pays per chunk (a quiet fleet's hour
# has thousands of small files).
_PIECE_BYTES = CHUNK_BYTES


@dataclass(slots=True)
class _Lines:
    """One file's whole lines within the batch, and the decoder's verdicts on them: line i
    (1-based) is ``pieces[piece][base + bounds[i - 1] : base + bounds[i]]``, its newline
    included."""

    rel: str
    raw_sensor: str
    piece: int
    base: int
    bounds: np.ndarray  # int64, from 0 to the file's length
    verdicts: _Verdicts


def _arrow(values: np.ndarray, kind: pa.DataType, valid: np.ndarray | None = None) -> pa.Array:
    """A numpy array as an Arrow one of ``kind`` (``valid``: where it is not null).

    Not ``pa.array``: it imports pandas, where installed, to ask whether its argument is a
    Series (about 0.3 CPU-s).
    """
    bits = functools.partial(np.packbits, bitorder="little")
    data = bits(values) if kind == pa.bool_() else np.ascontiguousarray(values)
    mask = None if valid is None else pa.py_buffer(bits(valid))
    return pa.Array.from_buffers(kind, len(values), [mask, pa.py_buffer(data)])


def empty_table(schema: pa.Schema) -> pa.Table:
    """A table of ``schema`` with no rows (``schema.empty_table()`` uses ``pa.array``: see
    :func:`_arrow`)."""
    return pa.Table.from_batches([], schema=schema)


def _strings(values: list[str]) -> pa.Array:
    """``values`` as an Arrow string array (without ``pa.array``: see :func:`_arrow`)."""
    encoded = [v.encode() for v in values]
    offsets = np.cumsum([0, *map(len, encoded)], dtype=np.int32)
    return pa.Array.from_buffers(
        pa.string(), len(values), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))]
    )


class _BatchText:
    """The whole lines of a batch's files, each file judged by the decoder as it is added,
    and the Arrow column of them: a large file's text is a chunk of its own, small ones
    share one, so the chunks are few whatever the number of files (a quiet fleet's hour
    has thousands of small ones) and no large text is copied."""

    def __init__(self, wanted: frozenset[type[Event]]) -> None:
        #: The event classes some table reads.
        self.wanted = wanted
        self.pieces: list[bytes | bytearray] = []
        self.files: list[_Lines] = []

    def add(self, rel: str, text: bytes) -> bool:
        """Judge a file's lines and append them; False (nothing appended) if it is not UTF-8
        throughout."""
        bounds = _bounds(text)
        verdicts = _judge(rel, text, bounds, self.wanted)
        if verdicts is None:
            return False
        shared = self.pieces[-1] if self.pieces else None
        if (
            len(text) < _PIECE_BYTES
            and isinstance(shared, bytearray)
            and len(shared) < _PIECE_BYTES
        ):
            base = len(shared)
            shared += text
        else:
            self.pieces.append(text if len(text) >= _PIECE_BYTES else bytearray(text))
            base = 0
        piece = len(self.pieces) - 1
        self.files.append(_Lines(rel, rel.split("/", 1)[0], piece, base, bounds, verdicts))
        return True

    def line(self, file: int, number: int) -> bytes:
        f = self.files[file]
        start, end = f.base + int(f.bounds[number - 1]), f.base + int(f.bounds[number])
        return bytes(self.pieces[f.piece][start:end])

    def table(self) -> pa.Table:
        """The lines, ``ts``: the decoder's timestamp where the line is taken (null where
        not: rejected, or an event no table reads), and whether it is ``canonical``."""
        if not self.files:
            return empty_table(_LINES_SCHEMA)
        counts = np.array([len(f.bounds) - 1 for f in self.files], np.int64)
        n = int(counts.sum())
        firsts = np.repeat(np.cumsum(counts) - counts, counts)
        lines = []
        for piece, group in itertools.groupby(self.files, operator.attrgetter("piece")):
            files = list(group)
            offsets = np.concatenate([[0], *(f.bounds[1:] + f.base for f in files)])
            lines.append(
                pa.LargeStringArray.from_buffers(
                    len(offsets) - 1,
                    pa.py_buffer(offsets.astype(np.int64)),
                    pa.py_buffer(self.pieces[piece]),
                )
            )
        sensors = sorted({f.raw_sensor for f in self.files})
        sensor_of = np.array([sensors.index(f.raw_sensor) for f in self.files], np.int32)
        verdicts = [f.verdicts for f in self.files]
        return pa.table(
            [
                _arrow(np.repeat(np.arange(len(self.files), dtype=np.int32), counts), pa.int32()),
                _arrow((np.arange(n) - firsts + 1).astype(np.int32), pa.int32()),
                pa.chunked_array(lines, pa.large_string()),
                pa.DictionaryArray.from_arrays(
                    _arrow(np.repeat(sensor_of, counts), pa.int32()), _strings(sensors)
                ),
                _arrow(
                    np.concatenate([v.stamps for v in verdicts]),
                    pa.timestamp("us"),
                    valid=np.concatenate([v.taken for v in verdicts]),
                ),
                _arrow(np.concatenate([v.canonical for v in verdicts]), pa.bool_()),
            ],
            schema=_LINES_SCHEMA,
        )


@dataclass(slots=True)
class BatchRead:
    """What :func:`load_batch` found: valid events (stored or not) and the rejected lines."""

    valid: int = 0
    rejected: list[Rejected] = field(default_factory=list)


_LINES_SCHEMA = pa.schema(
    [
        ("line_file", pa.int32()),
        ("line_no", pa.int32()),
        ("line", pa.large_string()),
        ("raw_sensor", pa.dictionary(pa.int32(), pa.string())),
        ("ts", pa.timestamp("us")),
        ("canonical", pa.bool_()),
    ]
)


def load_batch(
    con: duckdb.DuckDBPyConnection,
    files: list[tuple[str, bytes | None, str | None]],
    eventids: frozenset[str] | None = None,
) -> BatchRead:
    """Validate every line of ``files`` (path under raw/, gzip bytes or None, why unreadable)
    and make the valid events (those of ``eventids``, if given) the view ``batch_events``.

    The caller drops the view and the tables ``batch_checked`` and ``batch_slow`` when done
    (:func:`drop_batch`).
    """
    result = BatchRead()
    wanted = frozenset(c for c in EVENTS if eventids is None or eventid(c) in eventids)
    batch = _BatchText(wanted)
    slow: list[FileEvents] = []  # files read by the decoder alone (invalid UTF-8)
    problems: dict[str, str] = {}
    for rel, data, unreadable in files:
        if data is None:
            problems[rel] = unreadable or "cannot read the file"
            continue
        text, problem = gunzip_lines(data)
        if problem is not None:
            problems[rel] = problem
        if not batch.add(rel, text):
            slow.append(read_events(rel, text, decompressed=True))
        del text
    rejected = [r for f in batch.files for r in f.verdicts.rejected]
    # Every line the decoder accepted is valid; the query reads those some table reads.
    result.valid = sum(int(np.count_nonzero(f.verdicts.stamps >= 0)) for f in batch.files)
    result.valid += sum(f.count for f in slow)
    con.register("batch_lines", batch.table())
    try:
        try:
            con.execute(f"CREATE OR REPLACE TEMP TABLE batch_checked AS {fast_path(False).query}")
        except duckdb.InvalidInputException:  # a line yyjson does not parse: check each first
            con.execute(f"CREATE OR REPLACE TEMP TABLE batch_checked AS {fast_path().query}")
    finally:
        con.unregister("batch_lines")
    # Lines the decoder accepted that the query did not take: columns from its objects.
    by_file: dict[int, FileEvents] = {}
    for index, number in con.execute(
        "SELECT line_file, line_no FROM batch_checked WHERE NOT ok ORDER BY line_file, line_no"
    ).fetchall():
        lines = batch.files[index]
        events = by_file.setdefault(index, FileEvents(lines.rel, lines.raw_sensor))
        _decode_chunk(events, batch.line(index, number), number)
    slow += by_file.values()
    rejected += [r for f in slow for r in f.rejected]
    rejected += [Rejected(rel, 0, why, "") for rel, why in problems.items()]
    order = {rel: i for i, (rel, _, _) in enumerate(files)}
    result.rejected = sorted(rejected, key=lambda r: (order.get(r.file, -1), r.line))
    con.register("batch_slow_arrow", to_table(slow, eventids))
    try:
        con.execute("CREATE OR REPLACE TEMP TABLE batch_slow AS SELECT * FROM batch_slow_arrow")
    finally:
        con.unregister("batch_slow_arrow")
    columns = ", ".join(f.name for f in BATCH_SCHEMA)
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW batch_events AS SELECT {columns} FROM batch_checked"
        f" WHERE ok UNION ALL SELECT {columns} FROM batch_slow"
    )
    return result


def drop_batch(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("DROP VIEW IF EXISTS batch_events")
    con.execute("DROP TABLE IF EXISTS batch_checked")
    con.execute("DROP TABLE IF EXISTS batch_slow")
