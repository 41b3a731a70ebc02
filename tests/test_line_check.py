"""The ingest's fast path (spampot.analysis.line_check: the decoder's verdict, DuckDB's
columns) against the contract's msgspec decoder, the authority: a line the fast path takes
is one the decoder accepts, with the decoder's values; the lines a sensor writes, of every
event, are the fast path's to take; every line ends up judged as the decoder judges it, and
the batch's events are the decoder's, value for value."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
from unittest import mock

import duckdb
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from spampot import contract
from spampot.analysis import event_reader
from spampot.analysis.event_reader import (
    BATCH_SCHEMA,
    FileEvents,
    drop_batch,
    load_batch,
    rejection_reason,
    to_table,
)
from spampot.analysis.line_check import fast_path
from spampot.sensor.events import Clock, EventBuffer

FUZZ_EXAMPLES = int(os.environ.get("SPAMPOT_FUZZ_EXAMPLES", "300"))
REL = "s1/events/s1-20260302T10.jsonl.gz"
BASE = {
    "session": "4f2a0c1d9e8b",
    "src_ip": "198.51.100.7",
    "src_port": 4000,
    "dst_ip": "192.0.2.1",
    "dst_port": 1080,
}


def sensor_lines() -> list[bytes]:
    """One line of each frequent event, as the sensor's encoder writes it."""
    encode = EventBuffer("br-01", Clock()).encode
    return [
        encode("session.open", BASE, "New connection"),
        encode("session.open", {**BASE, "proxied_by": "127.0.0.2"}, "New connection"),
        encode(
            "proxy.request",
            BASE,
            "CONNECT",
            protocol="socks5",
            version="5",
            method="CONNECT",
            target_host="mx.example",
            target_port=25,
            outcome="smtp",
            reply="granted",
            auth={"method": "userpass", "username": "u", "password": "p"},
        ),
        encode(
            "proxy.request",
            BASE,
            "GET",
            protocol="http",
            version="HTTP/1.1",
            method="GET",
            target_host="example.com",
            target_port=80,
            auth=None,
            outcome="get",
            reply="200",
            error=None,
            headers=[["Host", "example.com"]],
        ),
        encode(
            "smtp.message",
            BASE,
            "Message",
            via="socks5",
            target_host="mx.example",
            target_port=25,
            helo="pc",
            mail_from="a@b.example",
            mail_params=None,
            rcpt_to=["c@d.example", "Ünï@例え.jp"],
            size=3000,
            sha256="0f" * 32,
            queue_id="4F2A0C1D9E",
            file="2026-03-02/1080/198.51.100.7/100000-4F2A0C1D9E.eml.gz",
        ),
        encode(
            "session.close",
            BASE,
            "closed",
            duration_s=1.25,
            bytes_in=9000,
            bytes_out=400,
            reason="quit",
        ),
        encode("smtp.auth", BASE, "AUTH", mechanism="PLAIN", username="u", password=None),
        encode("smtp.reject", BASE, "too big", stage="data", code=552, why="size"),
        encode("smtp.error", BASE, "bad", error="syntax", reply="500 no", input="\x16\x03junk"),
        encode("sensor.stop", dict.fromkeys(BASE), "stop", version="0.1", worker=1),
        encode("session.error", BASE, "reset", error="connection reset"),
        encode(
            "web.request",
            BASE,
            "GET /",
            method="GET",
            host="example.com",
            path="/",
            version="HTTP/1.1",
            headers=[["Host", "example.com"]],
            reply="200",
            error=None,
        ),
        encode(
            "smtp.tls",
            {**BASE, "tls": {"version": "TLSv1.3", "cipher": "TLS_AES_256", "sni": None}},
            "TLS",
            role="smtp",
        ),
        encode(
            "sensor.start",
            dict.fromkeys(BASE),
            "start",
            version="0.1",
            listeners=["smtp:25", "http:8080"],
            worker=0,
            detail=None,
        ),
        encode("sensor.error", dict.fromkeys(BASE), "error", detail="boom"),
        encode(
            "sensor.limit",
            dict.fromkeys(BASE),
            "limit",
            refused={"per_ip": 3},
            top_sources=[["198.51.100.7", 3]],
        ),
        encode(
            "sensor.storage",
            dict.fromkeys(BASE),
            "low",
            state="low",
            why="disk",
            free_bytes=10,
            free_inodes=None,
            used_bytes=5,
        ),
        encode("sensor.reload", dict.fromkeys(BASE), "reload", changed=["smtp"], restart_needed=[]),
    ]


def check(lines: list[bytes]) -> tuple[list[tuple[bool, dict]], int, list, list[dict]]:
    """The fast path's verdict and columns per line, the batch's valid count, its rejected
    lines, and the rows of ``batch_events`` (whichever path gave them)."""
    con = duckdb.connect()
    try:
        text = b"".join(lines)
        read = load_batch(con, [(REL, gzip.compress(text), None)])
        names = [f.name for f in BATCH_SCHEMA]
        rows = {
            r[0]: (bool(r[1]), dict(zip(names, r[2:], strict=True)))
            for r in con.execute(
                f"SELECT line_no, ok, {', '.join(names)} FROM batch_checked"
            ).fetchall()
        }
        events = con.sql("SELECT * FROM batch_events").to_arrow_table().to_pylist()
        drop_batch(con)
    finally:
        con.close()
    # A line the decoder rejected, and every line of a file that is not UTF-8 throughout,
    # has no row in batch_checked: the fast path never takes it.
    verdicts = [rows.get(n, (False, {})) for n in range(1, len(lines) + 1)]
    return verdicts, read.valid, [(r.line, r.reason) for r in read.rejected], events


def decoded_row(line: bytes) -> dict | None:
    """The columns the decoder's path gives a line, or None if it rejects the line."""
    events = FileEvents(REL, "s1")
    try:
        event = contract.DECODER.decode(line)
    except (contract.msgspec.DecodeError, contract.msgspec.ValidationError, UnicodeDecodeError):
        return None
    events.events[type(event)].append(event)
    (row,) = to_table([events]).to_pylist()
    return row


def decoded_reason(line: bytes) -> str | None:
    # The reader decodes a line without its newline (a string cut by the line's end is
    # "truncated", not a raw control character). msgspec raises UnicodeDecodeError (not
    # DecodeError) for invalid UTF-8 inside a string.
    try:
        contract.DECODER.decode(line.removesuffix(b"\n"))
    except (
        contract.msgspec.DecodeError,
        contract.msgspec.ValidationError,
        UnicodeDecodeError,
    ) as exc:
        return rejection_reason(exc)
    return None


def _ordered(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=repr)


def assert_all_taken_by_the_sql(lines: list[bytes]) -> None:
    """Every line valid, and each taken by the fast path with the decoder's values."""
    verdicts, valid, rejected, _ = check(lines)
    assert rejected == [] and valid == len(lines)
    for line, (ok, row) in zip(lines, verdicts, strict=True):
        assert ok, line
        assert row == decoded_row(line), line


def test_every_line_a_sensor_writes_is_taken_by_the_sql_with_the_decoders_values():
    assert_all_taken_by_the_sql(sensor_lines())


def test_every_line_a_sensor_writes_is_in_the_canonical_spelling_that_skips_the_key_check():
    # The ingest's speed rests on this: a line the contract's encoder would write as it is
    # needs no key check in DuckDB. A line spelt otherwise (a field the contract does not
    # know, which the decoder ignores) is still valid, and
    # still taken, by the slower check.
    lines = sensor_lines()
    moved = _spell([*_pairs(lines[0]), ("note", '"a field of a later version"')])
    batch = event_reader._BatchText(frozenset(contract.EVENTS))
    assert batch.add(REL, b"".join([*lines, moved]))
    verdicts = batch.files[0].verdicts
    assert verdicts.canonical.tolist() == [True] * len(lines) + [False]
    assert verdicts.rejected == [] and (verdicts.stamps >= 0).all()
    assert_all_taken_by_the_sql([moved])


def test_a_line_from_before_an_optional_field_existed_is_taken_with_its_default():
    """An older sensor's lines lack fields added since (``tls``, ``bdat``): the SQL takes
    them, with the values the decoder gives (null, false), not only the decoder."""
    lines = []
    for line in sensor_lines():
        pairs = [(k, v) for k, v in _pairs(line) if k not in ("tls", "bdat")]
        if len(pairs) < len(_pairs(line)):
            lines.append(_spell(pairs))
    assert any(b'"spampot.smtp.message"' in line for line in lines)
    assert_all_taken_by_the_sql(lines)


def test_the_sensor_lines_here_are_of_every_event():
    ids = {json.loads(line)["eventid"] for line in sensor_lines()}
    assert ids == {contract.eventid(cls) for cls in contract.EVENTS}
    assert set(fast_path().layouts) == ids


def _line(eventid: str) -> bytes:
    return next(line for line in sensor_lines() if f'"{eventid}"'.encode() in line)


@pytest.mark.parametrize(
    ("eventid", "change"),
    [
        # A key twice: the decoder keeps the last value, yyjson's transform the first.
        ("spampot.session.open", lambda p: [*p, ("sensor", '"other"')]),
        ("spampot.smtp.message", lambda p: [*p, ("rcpt_to", '["x@y.example"]')]),
        ("spampot.smtp.message", lambda p: [*p, ("size", "7")]),
        # A stored field of another event: the decoder ignores it, the transform would not.
        ("spampot.session.open", lambda p: [*p, ("rcpt_to", '["x@y.example"]')]),
        ("spampot.session.open", lambda p: [*p, ("outcome", '"smtp"')]),
        ("spampot.smtp.auth", lambda p: [("protocol", '"http"'), *p]),
        # A key twice inside a stored object.
        (
            "spampot.proxy.request",
            lambda p: [
                (
                    k,
                    '{"method":"a","username":"u","password":"p","method":"b"}'
                    if k == "auth"
                    else v,
                )
                for k, v in p
            ],
        ),
        # Keys spelt with escapes, fields out of order, a field with its default left out.
        (
            "spampot.session.open",
            lambda p: [("\u0073ensor" if k == "sensor" else k, v) for k, v in p],
        ),
        ("spampot.smtp.message", lambda p: list(reversed(p))),
        ("spampot.proxy.request", lambda p: [(k, v) for k, v in p if k != "module"]),
    ],
)
def test_a_line_the_decoder_reads_otherwise_than_yyjson_gets_the_decoders_values(eventid, change):
    """Each of these is valid and in none is the first value of each key the decoder's: the
    fast path must not take the line as it is (or take it with the decoder's values)."""
    pairs = change(_pairs(_line(eventid)))
    line = ("{" + ",".join(f'"{k}":{v}' for k, v in pairs) + "}\n").encode()
    decoded = decoded_row(line)
    assert decoded is not None, line
    verdicts, valid, rejected, events = check([line])
    assert (valid, rejected, events) == (1, [], [decoded])
    ((ok, row),) = verdicts
    assert not ok or row == decoded


def _spell(pairs: list[tuple[str, str]]) -> bytes:
    return ("{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in pairs) + "}\n").encode(
        "utf-8", "surrogatepass"
    )


def _pairs(line: bytes) -> list[tuple[str, str]]:
    record = json.loads(line)
    return [
        (k, json.dumps(v, ensure_ascii=False, separators=(",", ":"))) for k, v in record.items()
    ]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(
        [
            "2026-03-02T10:00:00.000000Z",
            "2026-03-02T10:00:00Z",
            "2026-03-02T10:00:00+02:00",
            "2026-03-02T24:00:00.000000Z",
            "0000-03-02T10:00:00.000000Z",
            "2026-02-30T10:00:00.000000Z",
            "2026-03-02t10:00:00.000000z",
            "2026-03-02T10:00:00.000000Z\n",
            "a" * 2000,
            "1" * 70,
            "socks5",
            "smtp",
            "0f" * 32,
            "0F" * 32,
        ]
    ),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=6,
)


def _value_text(value: object, ascii_only: bool) -> str:
    return json.dumps(value, ensure_ascii=ascii_only, separators=(",", ":"), allow_nan=True)


@st.composite
def mutated_lines(draw: st.DrawFn) -> bytes:
    pairs = _pairs(draw(st.sampled_from(sensor_lines())))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(
            st.sampled_from(
                [
                    "value",
                    "drop",
                    "twice",
                    "swap",
                    "extra",
                    "space",
                    "comma",
                    "bytes",
                    "other",
                    "escape",
                    "auth",
                ]
            )
        )
        i = draw(st.integers(0, len(pairs) - 1))
        if kind == "value":
            pairs[i] = (pairs[i][0], _value_text(draw(json_values), draw(st.booleans())))
        elif kind == "drop" and len(pairs) > 1:
            del pairs[i]
        elif kind == "twice":
            pairs.append((pairs[i][0], _value_text(draw(json_values), True)))
        elif kind == "swap":
            j = draw(st.integers(0, len(pairs) - 1))
            pairs[i], pairs[j] = pairs[j], pairs[i]
        elif kind == "extra":
            pairs.insert(i, (draw(st.text(max_size=6)), _value_text(draw(json_values), True)))
        elif kind == "other":
            # A field of some sensor line, with its valid value: a key twice that the decoder
            # takes, or a stored field of another event.
            pairs.insert(
                i, draw(st.sampled_from([p for line in sensor_lines() for p in _pairs(line)]))
            )
        elif kind == "auth":
            keys = draw(st.lists(st.sampled_from(["method", "username", "password"]), max_size=5))
            inner = ",".join(f'"{k}":{_value_text(draw(st.text(max_size=3)), True)}' for k in keys)
            pairs[i] = ("auth", "{" + inner + "}")
    line = _spell(pairs)
    if kind == "escape":
        # A key spelt with an escape: the same key to both parsers.
        key = pairs[i][0]
        if key:
            line = line.replace(
                json.dumps(key).encode(), f'"\\u{ord(key[0]):04x}{key[1:]}"'.encode(), 1
            )
    if kind == "space":
        at = draw(st.integers(0, len(line) - 1))
        line = line[:at] + b" " + line[at:]
    elif kind == "comma":
        line = line.replace(b"]", b",]", 1) if b"]" in line else line.replace(b"}\n", b",}\n")
    elif kind == "bytes":
        at = draw(st.integers(0, len(line) - 2))
        line = line[:at] + draw(st.binary(min_size=0, max_size=3)) + line[at + 1 :]
    return line.replace(b"\n", b" ").rstrip(b" ") + b"\n"


@settings(
    max_examples=max(FUZZ_EXAMPLES // 3, 20),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(lines=st.lists(mutated_lines(), min_size=1, max_size=12))
def test_a_line_the_sql_accepts_is_one_the_decoder_accepts_with_the_same_values(lines):
    verdicts, valid, rejected, events = check(lines)
    expected = []
    reasons = []
    for number, (line, (ok, row)) in enumerate(zip(lines, verdicts, strict=True), 1):
        decoded = decoded_row(line)
        if decoded is not None:
            expected.append(decoded)
        elif line.strip():
            reasons.append((number, decoded_reason(line)))
        if ok:
            assert decoded is not None, line
            assert row == decoded, line
    # And the batch as a whole: the decoder's verdict on every line (its reasons), and its
    # values for every event, whichever path gave them.
    assert valid == len(expected)
    assert rejected == reasons
    assert _ordered(events) == _ordered(expected)


def per_line_verdicts(lines: list[bytes]) -> tuple[list[int], list[bool], list[tuple]]:
    """Each line's timestamp (-1: rejected or blank), whether the contract's encoder spells
    its event as it is, and the rejected lines' numbers and reasons: the decoder, a line at
    a time."""
    stamps, canonical, rejected = [], [], []
    for number, line in enumerate(lines, 1):
        body = line.rstrip(b"\n")
        try:
            event = contract.DECODER.decode(body)
        except (contract.msgspec.DecodeError, contract.msgspec.ValidationError) as exc:
            stamps.append(-1)
            canonical.append(False)
            if body.strip():
                rejected.append((number, rejection_reason(exc)))
        else:
            epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
            stamps.append((event.timestamp - epoch) // dt.timedelta(microseconds=1))
            canonical.append(contract.ENCODER.encode(event) == body)
    return stamps, canonical, rejected


def judged(lines: list[bytes], chunk_bytes: int) -> event_reader._Verdicts | None:
    with mock.patch.object(event_reader, "CHUNK_BYTES", chunk_bytes):
        batch = event_reader._BatchText(frozenset(contract.EVENTS))
        if not batch.add(REL, b"".join(lines)):
            return None
    return batch.files[0].verdicts


@settings(
    max_examples=max(FUZZ_EXAMPLES // 3, 20),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    lines=st.lists(
        st.one_of(
            st.sampled_from(sensor_lines()),
            mutated_lines(),
            # Two values on one line, one over two lines, a blank line: a stream of values
            # that the lines' encoding would match, were it not for the line breaks.
            st.sampled_from(sensor_lines()).map(lambda line: line.rstrip(b"\n") * 2 + b"\n"),
            st.sampled_from(sensor_lines()).map(lambda line: line.replace(b",", b"\n,", 1)),
            st.just(b"\n"),
        ),
        min_size=1,
        max_size=40,
    ),
    chunk_bytes=st.integers(1, 8000),
)
# A CR inside a line (here where its "{" was) does not end it.
@example(lines=[b"\r" + sensor_lines()[0][1:]], chunk_bytes=1)
def test_every_line_is_judged_as_the_decoder_judges_it_alone_whatever_the_chunks(
    lines, chunk_bytes
):
    # Lines are decoded a run at a time where the run is in the sensor's spelling: the
    # verdicts must be the decoder's on each line alone, wherever the runs begin and end.
    verdicts = judged(lines, chunk_bytes)
    try:
        b"".join(lines).decode()
    except UnicodeDecodeError:
        assert verdicts is None  # the file is the decoder's alone (see the test below)
        return
    assert verdicts is not None
    # Lines end at LF only, as the reader reads them (bytes.splitlines would also end one at
    # a CR, which a hostile line may hold inside); the last may lack its LF.
    *whole, tail = b"".join(lines).split(b"\n")
    stamps, canonical, rejected = per_line_verdicts(
        [line + b"\n" for line in whole] + ([tail] if tail else [])
    )
    assert verdicts.stamps.tolist() == stamps
    assert verdicts.canonical.tolist() == canonical
    assert [(r.line, r.reason) for r in verdicts.rejected] == rejected


def test_a_canonical_run_of_lines_is_one_decode_and_one_encode(monkeypatch):
    calls = []
    monkeypatch.setattr(event_reader, "_judge_lines", lambda *args: calls.append(args) or None)
    lines = sensor_lines() * 20
    verdicts = judged(lines, 4096)
    assert calls == [] and verdicts is not None and verdicts.canonical.all()


def test_invalid_utf8_where_the_decoder_does_not_look_sends_the_file_to_the_decoder_alone():
    # The decoder skips a field it does not know without reading its bytes; the column that
    # DuckDB reads must be UTF-8 all the same, so the file is read by the decoder alone.
    lines = sensor_lines() * 10
    odd = lines[0].replace(b'"eventid"', b'"note":"\xff","eventid"', 1)
    assert contract.DECODER.decode(odd.rstrip(b"\n"))  # valid to the decoder
    assert judged([*lines, odd], 1024) is None
    verdicts, valid, rejected, events = check([*lines, odd])
    assert valid == len(lines) + 1 and rejected == []
    assert not any(ok for ok, _ in verdicts)
    assert len(events) == valid


def test_the_column_holds_every_files_lines_small_files_sharing_a_chunk(monkeypatch):
    lines = sensor_lines()
    monkeypatch.setattr(event_reader, "_PIECE_BYTES", 3 * max(map(len, lines)))
    sizes = [1, 2, 9, 1, 1, 1, 1, 12, 2, 0, 1]
    files = [
        (f"s{i % 3}/events/f{i}.jsonl.gz", [lines[(i + k) % len(lines)] for k in range(n)])
        for i, n in enumerate(sizes)
    ]
    batch = event_reader._BatchText(frozenset(contract.EVENTS))
    for rel, text in files:
        assert batch.add(rel, b"".join(text))
    table = batch.table()
    expected = [(i, k, line) for i, (_, text) in enumerate(files) for k, line in enumerate(text, 1)]
    assert table.column("line").to_pylist() == [line.decode() for _, _, line in expected]
    assert table.column("line_file").to_pylist() == [i for i, _, _ in expected]
    assert table.column("line_no").to_pylist() == [k for _, k, _ in expected]
    assert table.column("raw_sensor").to_pylist() == [
        files[i][0].split("/")[0] for i, _, _ in expected
    ]
    assert all(batch.line(i, k) == line for i, k, line in expected)
    # The large files are chunks of their own; the small ones share.
    assert table.column("line").num_chunks < len(files) - 3


@pytest.mark.parametrize(
    "stamp",
    ["2026-03-02T10:00:00.000000Z", "2026-03-02T10:00:00Z", "2026-03-02T12:00:00+02:00"],
)
def test_every_spelling_of_an_instant_is_the_same_timestamp(stamp):
    pairs = [
        (k, json.dumps(stamp) if k == "timestamp" else v) for k, v in _pairs(sensor_lines()[0])
    ]
    line = _spell(pairs)
    con = duckdb.connect()
    try:
        read = load_batch(con, [(REL, gzip.compress(line), None)])
        assert read.valid == 1 and read.rejected == []
        row = con.execute("SELECT ts FROM batch_events").fetchone()
    finally:
        con.close()
    assert row == (dt.datetime(2026, 3, 2, 10, 0),)
