#!/usr/bin/env python3
"""The writer pipe and the writer process alone, without sockets to clients or protocols.

An event loop stores ``--messages`` messages of ``--body-size`` bytes through the sensor's real
``Writer`` (``--batch`` per loop turn, each with its event line and ``--lines`` other event
lines; at most ``--inflight`` unacknowledged, as that many sessions each awaiting its ``250``
would be), into a real writer process that stages, logs, syncs (``--fsync``) and renames them into
a spool under ``--dir``, and waits for every acknowledgement. Reports wall time, the CPU time
of the event loop's process and of the writer process, and messages per CPU-second of each.
Run it with ``PYTHONPATH`` pointing at two trees to compare them on the same machine, in turn.
No network; files only under ``--dir`` (a temporary directory, removed at the end).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path


def run(args: argparse.Namespace, data_dir: Path) -> dict[str, float]:
    from spampot.sensor.events import Clock, EventBuffer, EventFile, RotationPolicy
    from spampot.sensor.spool import Spool, SpoolItem
    from spampot.sensor.writer import Writer, fork_writer

    spool = Spool(data_dir, args.compress_level)
    spool.prepare()
    event_file = EventFile(data_dir, "bench", RotationPolicy(64 * 1024 * 1024, args.compress_level))
    pid, sock = fork_writer(spool, event_file, args.fsync, [])
    body = os.urandom(args.body_size // 2).hex().encode()[: args.body_size]
    base = dict.fromkeys(("session", "src_ip", "src_port", "dst_ip", "dst_port"))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        buffer = EventBuffer("bench", Clock())
        writer = await Writer.start(loop, sock, buffer, pid)
        done = asyncio.Event()
        room = asyncio.Event()
        left = args.messages
        failed = 0

        def stored(ok: bool) -> None:
            nonlocal left, failed
            left -= 1
            failed += not ok
            room.set()
            if left == 0:
                done.set()

        sent = 0
        while sent < args.messages:
            while sent - (args.messages - left) >= args.inflight:
                room.clear()  # the sessions wait for their acknowledgements
                await room.wait()
            for _ in range(min(args.batch, args.messages - sent)):
                for _ in range(args.lines):
                    buffer.emit("session.open", base, "Connection")
                relpath = f"2026-11-29/25/192.0.2.{sent % 250}/000000-{sent:010X}.eml.gz"
                line = buffer.encode("session.close", base, "m", reason="quit", duration_s=0.1,
                                     bytes_in=1, bytes_out=1)  # fmt: skip
                writer.store(SpoolItem(relpath, body), line, stored)
                sent += 1
            await asyncio.sleep(0)
        await asyncio.wait_for(done.wait(), 600)
        await writer.close()
        if failed:
            raise SystemExit(f"{failed} message(s) not stored")

    before = resource.getrusage(resource.RUSAGE_SELF)
    began = time.perf_counter()
    try:
        import uvloop  # as the sensor runs
    except ImportError:  # pragma: no cover
        asyncio.run(main())
    else:
        uvloop.run(main())
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_SELF)
    child = resource.getrusage(resource.RUSAGE_CHILDREN)  # the writer, reaped by close()
    loop_cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    writer_cpu = child.ru_utime + child.ru_stime
    return {
        "wall_s": round(wall, 3),
        "loop_cpu_s": round(loop_cpu, 3),
        "writer_cpu_s": round(writer_cpu, 3),
        "msgs_per_loop_cpu_s": round(args.messages / loop_cpu, 1),
        "msgs_per_writer_cpu_s": round(args.messages / writer_cpu, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=20_000)
    p.add_argument("--batch", type=int, default=10, help="messages per loop turn")
    p.add_argument("--lines", type=int, default=4, help="other event lines per message")
    p.add_argument("--inflight", type=int, default=50, help="unacknowledged messages at most")
    p.add_argument("--body-size", type=int, default=3072)
    p.add_argument("--fsync", action="store_true", help="sync each batch (spool.fsync)")
    p.add_argument("--compress-level", type=int, default=6, help="spool.compress_level (0-9)")
    p.add_argument("--dir", default=None, help="parent of the temporary data dir")
    p.add_argument("--json-out", type=Path)
    args = p.parse_args(argv)
    if not 1 <= args.messages <= 1_000_000 or not 1 <= args.batch <= 10_000:
        p.error("need 1 <= messages <= 1,000,000 and 1 <= batch <= 10,000")
    work = Path(tempfile.mkdtemp(prefix="spampot-writer-bench-", dir=args.dir))
    try:
        result = run(args, work / "data")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["loadavg"] = list(os.getloadavg())
    print(" ".join(f"{k}={v}" for k, v in result.items()), file=sys.stderr)
    text = json.dumps(result)
    if args.json_out:
        args.json_out.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
