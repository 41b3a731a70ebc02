"""What the event loop and the writer process say to each other: typed records in frames.

A frame is a 4-byte length and a MessagePack array of records; each record is a tagged
``msgspec.Struct`` (an array whose first item names its type), untracked by the garbage
collector (``gc=False``: records hold bytes, strings and numbers, never a cycle, and thousands
are made a second). Decoding checks every record
against its declared type, so a bug on one side is a :class:`FrameError` on the other, and
nothing is unpickled: the frames carry data only. msgspec does it in C: a batch costs less
than the pickle of tuples it replaced, on both sides (``bench/frames_bench.py``).

Event loop -> writer (:data:`Request`): :class:`Message` (stage this message, with its event
line), :class:`Lines` (event lines, whole, in order), :class:`Sync` (answer once everything
before is written), :class:`Reopen` (SIGHUP), :class:`Close` (the stop).
Writer -> event loop (:data:`Answer`): :class:`Acks` (which messages are stored, and the
storage error if any), :class:`Synced`.
"""

from __future__ import annotations

import struct
from typing import Generic, TypeVar

import msgspec

_LENGTH = struct.Struct("!I")


class FrameError(ValueError):
    """Bytes that are not a frame of this module: a bug in the sensor, never client input."""


class Message(msgspec.Struct, frozen=True, array_like=True, gc=False, tag=1):
    id: int
    relpath: str  # relative to spool/, made safe by the session
    data: bytes
    line: bytes  # its smtp.message event line


class Lines(msgspec.Struct, frozen=True, array_like=True, gc=False, tag=2):
    blob: bytes  # whole event lines, each ending in "\n"


class Sync(msgspec.Struct, frozen=True, array_like=True, gc=False, tag=3):
    token: int


class Reopen(msgspec.Struct, frozen=True, array_like=True, gc=False, tag=4):
    pass


class Close(msgspec.Struct, frozen=True, array_like=True, gc=False, tag=5):
    pass


class Acks(msgspec.Struct, frozen=True, array_like=True, gc=False, tag=6):
    ids: list[int]  # the messages of the batches just committed, in the order they came
    stored: list[bool]  # stored[i]: message ids[i] and its event are on disk
    error: str | None  # the batches' storage error, if any


class Synced(msgspec.Struct, frozen=True, array_like=True, gc=False, tag=7):
    token: int


Request = Message | Lines | Sync | Reopen | Close
Answer = Acks | Synced
R = TypeVar("R", Request, Answer)

_ENCODER = msgspec.msgpack.Encoder()


def encode(records: list[Request] | list[Answer]) -> bytearray:
    """One frame holding ``records``; a new buffer each time (the transport may keep it)."""
    frame = bytearray(_LENGTH.size)
    _ENCODER.encode_into(records, frame, _LENGTH.size)
    _LENGTH.pack_into(frame, 0, len(frame) - _LENGTH.size)
    return frame


class FrameReader(Generic[R]):
    """Splits a byte stream into frames and decodes their records."""

    def __init__(self, decoder: msgspec.msgpack.Decoder[list[R]]) -> None:
        self._decoder: msgspec.msgpack.Decoder[list[R]] = decoder
        self._buf = bytearray()
        self._need = 0  # the whole size of the frame at the head, once its length is read

    def feed(self, data: bytes) -> list[R]:
        buf = self._buf
        buf += data
        if len(buf) < self._need:
            return []  # a large message still arriving: nothing to decode yet
        out: list[R] = []
        pos = self._need = 0
        end = len(buf)
        with memoryview(buf) as view:
            while end - pos >= _LENGTH.size:
                stop = pos + _LENGTH.size + _LENGTH.unpack_from(view, pos)[0]
                if stop > end:
                    self._need = stop - pos
                    break
                try:
                    out += self._decoder.decode(view[pos + _LENGTH.size : stop])
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    raise FrameError(f"malformed frame: {exc}") from exc
                pos = stop
        del buf[:pos]
        return out


def request_reader() -> FrameReader[Request]:
    """The writer's reader of what the event loop sends."""
    return FrameReader(msgspec.msgpack.Decoder(list[Request]))


def answer_reader() -> FrameReader[Answer]:
    """The event loop's reader of the writer's answers."""
    return FrameReader(msgspec.msgpack.Decoder(list[Answer]))
