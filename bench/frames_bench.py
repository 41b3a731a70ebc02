#!/usr/bin/env python3
"""The writer pipe's encoding: msgspec frames (spampot.sensor.frames) against pickle.

One loop turn's batch as the event loop sends it under load (``--messages`` messages of
``--body-size`` bytes, each with its event line and six other event lines), encoded on the
event loop's side and decoded on the writer's, and the writer's answer (acks) the other way.
The pickle side is what the writer pipe used before: a 4-byte length and a pickle of tuples.
Rounds alternate between the two; the medians are reported in microseconds per message.
No network, no files.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import struct
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from spampot.sensor import frames

HEADER = struct.Struct("!I")
RELPATH = "2026-11-29/25/198.51.100.7/085959-9CDAA361FE.eml.gz"


def batch(n: int, body_size: int) -> tuple[list[bytes], list[bytes], list[list[bytes]]]:
    bodies = [os.urandom(body_size) for _ in range(n)]
    lines = [b'{"eventid":"spampot.smtp.message",' + os.urandom(200).hex().encode() + b"}\n"
             for _ in range(n)]  # fmt: skip
    others = [[b'{"eventid":"spampot.session.open",' + os.urandom(120).hex().encode() + b"}\n"
               for _ in range(6)] for _ in range(n)]  # fmt: skip
    return bodies, lines, others


def cases(n: int, body_size: int) -> dict[str, Callable[[], object]]:
    bodies, lines, others = batch(n, body_size)

    def pickle_encode() -> bytes:
        queue: list[tuple] = []
        for i in range(n):
            queue.append(("lines", others[i]))
            queue.append(("msg", i, RELPATH, bodies[i], lines[i]))
        payload = pickle.dumps(queue, protocol=pickle.HIGHEST_PROTOCOL)
        return HEADER.pack(len(payload)) + payload

    def frames_encode() -> bytes:
        queue: list[frames.Request] = []
        for i in range(n):
            queue.append(frames.Lines(b"".join(others[i])))
            queue.append(frames.Message(i, RELPATH, bodies[i], lines[i]))
        return bytes(frames.encode(queue))

    pickled, framed = pickle_encode(), frames_encode()
    acks = [(i, True) for i in range(n)]
    pickled_acks = pickle.dumps(("acks", acks, None), protocol=pickle.HIGHEST_PROTOCOL)
    framed_acks = bytes(frames.encode([frames.Acks(list(range(n)), [True] * n, None)]))

    def pickle_decode() -> object:
        buf = bytearray(pickled)
        (size,) = HEADER.unpack_from(buf)
        return pickle.loads(buf[4 : 4 + size])

    requests, answers = frames.request_reader(), frames.answer_reader()

    def frames_decode() -> object:
        return requests.feed(framed)

    def pickle_acks() -> object:
        _, stored, _ = pickle.loads(pickled_acks)
        return [ok for _, ok in stored]

    def frames_acks() -> object:
        (record,) = answers.feed(framed_acks)
        assert isinstance(record, frames.Acks)
        return [ok for _, ok in zip(record.ids, record.stored, strict=True)]

    return {
        "pickle encode": pickle_encode,
        "frames encode": frames_encode,
        "pickle decode": pickle_decode,
        "frames decode": frames_decode,
        "pickle acks": pickle_acks,
        "frames acks": frames_acks,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=10, help="messages per batch")
    p.add_argument("--body-size", type=int, default=3072)
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--number", type=int, default=2000, help="batches per round and case")
    p.add_argument("--json-out", type=Path)
    args = p.parse_args(argv)
    if not (1 <= args.rounds <= 100 and 1 <= args.number <= 1_000_000):
        p.error("need 1 <= rounds <= 100 and 1 <= number <= 1,000,000")
    runs: dict[str, list[float]] = {}
    table = cases(args.messages, args.body_size)
    for _ in range(args.rounds):
        for name, fn in table.items():
            seconds = timeit.timeit(fn, number=args.number)
            runs.setdefault(name, []).append(seconds / args.number / args.messages * 1e6)
    result = {
        "messages_per_batch": args.messages,
        "body_size": args.body_size,
        "rounds": args.rounds,
        "us_per_message_median": {k: round(statistics.median(v), 3) for k, v in runs.items()},
        "us_per_message_min": {k: round(min(v), 3) for k, v in runs.items()},
        "loadavg": os.getloadavg(),
    }
    for name, value in result["us_per_message_median"].items():
        print(f"{name:<14} {value:7.3f} us/message (median of {args.rounds})", file=sys.stderr)
    text = json.dumps(result, indent=2)
    if args.json_out:
        args.json_out.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
