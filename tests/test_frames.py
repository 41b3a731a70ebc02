"""The writer pipe's frames: every record comes back as sent, however the stream is cut."""

from __future__ import annotations

import contextlib
import os

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spampot.sensor.frames import (
    Acks,
    Close,
    FrameError,
    Lines,
    Message,
    Reopen,
    Sync,
    Synced,
    answer_reader,
    encode,
    request_reader,
)

EXAMPLES = int(os.environ.get("SPAMPOT_FUZZ_EXAMPLES", "300"))
ids = st.integers(0, 2**64 - 1)
requests = st.one_of(
    st.builds(Message, ids, st.text(max_size=80), st.binary(max_size=5000), st.binary()),
    st.builds(Lines, st.binary(max_size=3000)),
    st.builds(Sync, ids),
    st.just(Reopen()),
    st.just(Close()),
)
answers = st.one_of(
    st.builds(
        Acks,
        st.lists(ids, max_size=50),
        st.lists(st.booleans(), max_size=50),
        st.none() | st.text(),
    ),
    st.builds(Synced, ids),
)


def read_in_pieces(reader, data: bytes, cuts: list[int]) -> list:
    out = []
    pos = 0
    for cut in sorted(set(cuts)):
        out += reader.feed(data[pos:cut])
        pos = cut
    return out + reader.feed(data[pos:])


@pytest.mark.parametrize(
    ("records", "reader"), [(requests, request_reader), (answers, answer_reader)]
)
@settings(max_examples=EXAMPLES, deadline=None)
@given(data=st.data())
def test_records_round_trip_whatever_the_reads(records, reader, data):
    frames = data.draw(st.lists(st.lists(records, max_size=8), max_size=4))
    blob = b"".join(encode(batch) for batch in frames)
    cuts = data.draw(st.lists(st.integers(0, len(blob)), max_size=30))
    assert read_in_pieces(reader(), blob, cuts) == [r for batch in frames for r in batch]


def test_a_large_message_arriving_in_small_reads():
    body = os.urandom(3 * 1024 * 1024)
    sent = [Message(7, "2027-01-15/25/192.0.2.1/080000-ABCDEF.eml.gz", body, b"{}\n")]
    blob = bytes(encode(sent) + encode([Lines(b'{"a":1}\n{"b":2}\n')]))
    reader = request_reader()
    out = []
    for i in range(0, len(blob), 65536):
        out += reader.feed(blob[i : i + 65536])
    assert out == [*sent, Lines(b'{"a":1}\n{"b":2}\n')]


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_give_records_or_the_frame_error(data):
    for reader in (request_reader(), answer_reader()):
        with contextlib.suppress(FrameError):
            read_in_pieces(reader, data, [len(data) // 3])


def test_a_record_of_the_wrong_side_or_type_is_a_frame_error():
    with pytest.raises(FrameError):  # the writer never takes an answer
        request_reader().feed(bytes(encode([Synced(1)])))
    with pytest.raises(FrameError):  # nor a field of the wrong type
        payload = msgspec.msgpack.encode([[1, "not an id", "x", b"", b""]])
        request_reader().feed(len(payload).to_bytes(4, "big") + payload)
