#!/usr/bin/env python3
"""What one SMTP session costs the event loop's Python, without sockets or disk.

Each session goes through the real ``SensorSession`` (with the built-in default
configuration), the real SMTP machine, event encoder and ``Writer`` frames: connect, banner,
EHLO, MAIL, 3 x RCPT, DATA of 3 KB (smtp_load.py's message), the writer's acknowledgement
fed back as the writer process sends it, QUIT, close. Only the two transports are stand-ins
that keep what is written, so the figure is the interpreter's share of a session, none of the
kernel's.

Two measures:
- microseconds of process time per session, medians of ``--rounds`` alternated rounds
  (noisy on a shared VM: compare trees in the same run);
- with ``--callgrind``, instructions per session under valgrind (the difference between
  ``--sessions`` sessions and none, so start-up and imports cancel out): the same on every
  run, what a change of a few per cent needs.

``--baseline SRC`` measures another checkout's ``src/`` beside this one (its API must be this
one's: the code of the last few weeks). No network; nothing is written but the JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


# --- the child: N sessions in this process ------------------------------------------------


class _Transport:
    """Keeps nothing: what the sensor writes is dropped, a close is remembered."""

    def __init__(self, peer: tuple[str, int], local: tuple[str, int]) -> None:
        self.closed = False
        self._extra = {"peername": peer, "sockname": local}

    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def child(sessions: int) -> dict[str, float]:
    sys.path.insert(0, str(HERE))
    from smtp_load import make_message
    from spampot.config import load_config
    from spampot.sensor import frames
    from spampot.sensor.events import Clock, EventBuffer
    from spampot.sensor.session import SensorContext, SensorSession
    from spampot.sensor.worker import session_settings
    from spampot.sensor.writer import Writer

    config = load_config(None)
    buffer = EventBuffer("bench", Clock())
    writer = Writer(buffer, 0)
    ctx = SensorContext(session_settings(config), buffer, writer, limits=config.limits)
    stored = [0]
    rcpts = [f"x{i}@y.example" for i in range(3)]
    commands = [b"EHLO client.example\r\n", b"MAIL FROM:<a@b.example>\r\n"]
    commands += [f"RCPT TO:<{r}>\r\n".encode() for r in rcpts]
    commands += [b"DATA\r\n", make_message(3072, "a@b.example", rcpts), b"QUIT\r\n"]

    def acknowledge() -> None:
        # What the writer process answers once the frame's messages are on disk.
        if not writer._scheduled:
            return
        writer._send()
        ids = list(writer._waiting)
        if ids:
            stored[0] += len(ids)
            acks = frames.Acks(ids, [True] * len(ids), None)
            writer.data_received(bytes(frames.encode([acks])))

    def session(port: int) -> None:
        s = SensorSession(ctx, 25, "smtp")
        transport = _Transport(("198.51.100.7", port), ("192.0.2.1", 25))
        s.connection_made(transport)  # type: ignore[arg-type]
        for command in commands:
            s.data_received(command)
            acknowledge()
        if not transport.closed:
            raise RuntimeError("the session did not end with QUIT")
        s.connection_lost(None)
        acknowledge()

    async def run() -> float:
        writer.connection_made(_Transport(("", 0), ("", 0)))  # type: ignore[arg-type]
        session(1024)  # warm: caches, the first second's dates
        start = time.process_time()
        for i in range(sessions):
            session(1025 + i % 60000)
        return time.process_time() - start

    spent = asyncio.run(run())
    if stored[0] != sessions + 1:
        raise RuntimeError(f"{stored[0]} messages acknowledged for {sessions + 1} sessions")
    return {"sessions": sessions, "us_per_session": spent / max(sessions, 1) * 1e6}


# --- the parent: trees, rounds, callgrind -------------------------------------------------


def run_child(src: Path, sessions: int, callgrind: bool) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    cmd = [sys.executable, __file__, "--child", str(sessions)]
    if callgrind:
        cmd = ["valgrind", "--tool=callgrind", "--cache-sim=no",
               "--callgrind-out-file=/dev/null", *cmd]  # fmt: skip
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800, check=True)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    if callgrind:
        match = re.search(r"Collected : (\d+)", out.stderr)
        if match is None:
            raise RuntimeError(f"no instruction count from valgrind: {out.stderr[-500:]}")
        result["instructions"] = int(match.group(1))
    return result


def instructions(src: Path, sessions: int) -> float:
    """Instructions per session: N sessions minus none (start-up and imports cancel)."""
    full = run_child(src, sessions, True)["instructions"]
    empty = run_child(src, 0, True)["instructions"]
    return (full - empty) / sessions


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sessions", type=int, default=3000)
    p.add_argument("--rounds", type=int, default=5, help="alternated timing rounds")
    p.add_argument("--baseline", type=Path, metavar="SRC", help="another checkout's src/")
    p.add_argument("--callgrind", action="store_true", help="count instructions (valgrind)")
    p.add_argument("--json-out", type=Path)
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child)))
        return 0
    trees = {"this": HERE.parent / "src"}
    if args.baseline:
        trees["baseline"] = args.baseline.resolve()
    result: dict[str, Any] = {"sessions": args.sessions, "trees": {k: str(v) for k, v in
                                                                   trees.items()}}  # fmt: skip
    times: dict[str, list[float]] = {name: [] for name in trees}
    for _ in range(args.rounds):
        for name, src in trees.items():
            times[name].append(run_child(src, args.sessions, False)["us_per_session"])
    result["us_per_session"] = {k: round(statistics.median(v), 1) for k, v in times.items()}
    result["us_rounds"] = {k: [round(x, 1) for x in v] for k, v in times.items()}
    if args.callgrind:
        n = min(args.sessions, 1000)  # about a minute per tree under valgrind
        result["instructions_per_session"] = {k: round(instructions(v, n)) for k, v in
                                              trees.items()}  # fmt: skip
    for key in ("us_per_session", "instructions_per_session"):
        if args.baseline and key in result:
            this, base = result[key]["this"], result[key]["baseline"]
            result[key.replace("per_session", "ratio")] = round(this / base, 3)
    text = json.dumps(result, indent=2)
    if args.json_out:
        args.json_out.write_text(text)
    else:
        print(text)
    summary = ", ".join(f"{k}={v}" for k, v in result.items() if k.endswith(("session", "ratio")))
    print(summary, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
