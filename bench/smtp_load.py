#!/usr/bin/env python3
"""Load generator: full SMTP sessions, direct or tunnelled through a SOCKS5 / HTTP CONNECT proxy.

Every session: connect, [proxy handshake], 220 banner, EHLO, MAIL FROM, N x RCPT TO, DATA,
a dot-stuffed spam-like body, ".", QUIT; each reply is checked against the expected code.
Loopback targets only. Human summary on stderr, JSON on stdout (or --json-out FILE).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, cast

import benchlib

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a project dependency
    uvloop = None

SMTP, SOCKS_METHOD, SOCKS_REPLY, HTTP_STATUS = range(4)  # Step.kind
MAX_REPLY = 64 * 1024  # give up on a reply/header block longer than this
OK = frozenset({250})
RCPT_OK = frozenset({250, 251})


@dataclass(frozen=True, slots=True)
class Step:
    """One expected server reply, and what to write once it has arrived and matched."""

    name: str
    kind: int
    codes: frozenset[int] = frozenset()
    send: bytes = b""
    msg_id: bool = False  # prefix `send` with a per-session Message-ID header line


@dataclass(frozen=True, slots=True)
class Plan:
    first: bytes  # written right after connect
    steps: tuple[Step, ...]
    hold: bool = False  # keep the connection open once all steps passed (idle benches)


# ---------------------------------------------------------------- plan construction


def proxy_prefix(via: str, host: str, port: int) -> tuple[bytes, list[Step]]:
    """Bytes to send on connect, and the proxy replies to expect, for a tunnel to host:port."""
    if via == "socks5":
        name = host.encode()
        req = b"\x05\x01\x00\x03" + bytes([len(name)]) + name + port.to_bytes(2, "big")
        return b"\x05\x01\x00", [
            Step("socks-method", SOCKS_METHOD, send=req),
            Step("socks-connect", SOCKS_REPLY),
        ]
    if via == "http":
        target = f"{host}:{port}".encode()
        req = b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, target)
        return req, [Step("http-connect", HTTP_STATUS)]
    return b"", []


def make_message(size: int, sender: str, rcpts: list[str]) -> bytes:
    """A spam-like message of about `size` bytes, dot-stuffed and terminated by CRLF.CRLF.

    Some lines start with "." (and one is a lone ".") to exercise the server's un-stuffing.
    The Message-ID header is added per session (Step.msg_id).
    """
    head = [
        f'From: "Pharmacy Deals" <{sender}>',
        f"To: {', '.join(rcpts)}",
        "Subject: =?UTF-8?B?TElNSVRFRCBPRkZFUiAtIDkwJSBvZmY=?= Re: your order #48213",
        "Date: Tue, 04 Jun 2024 10:12:44 +0000",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=us-ascii",
        "Content-Transfer-Encoding: 7bit",
        "X-Mailer: Microsoft Outlook Express 6.00.2900.2180",
        "X-Priority: 1",
        "",
    ]
    filler = [
        "Dear valued customer,",
        "..Limited time offer: genuine watches, pills and software at 90% off retail!",
        "Click here now: http://cheap-deals.example.net/?id=48213&ref=spam",
        ".",
        ".NET licences, Office 2024 Pro and Windows keys - instant download, no questions.",
        "Unsubscribe: reply with REMOVE in the subject line (we will not read it).",
        ". Act now, this offer expires in 24 hours . . .",
        "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor",
    ]
    lines = list(head)
    length = sum(len(x) + 2 for x in lines)
    i = 0
    while length < size:
        line = filler[i % len(filler)][: max(1, size - length - 2)]
        lines.append(line)
        length += len(line) + 2
        i += 1
    stuffed = ("." + x if x.startswith(".") else x for x in lines)
    return ("\r\n".join(stuffed) + "\r\n.\r\n").encode()


def smtp_steps(rcpts: list[str], message: bytes, pipeline: bool) -> list[Step]:
    """Expected replies for one mail transaction; `pipeline` sends MAIL+RCPTs+DATA at once."""
    mail = b"MAIL FROM:<promo@bulk-mailer.example.net>\r\n"
    rcpt_cmds = [f"RCPT TO:<{r}>\r\n".encode() for r in rcpts]
    steps = [Step("banner", SMTP, frozenset({220}), b"EHLO bulk-mailer.example.net\r\n")]
    if pipeline:
        steps.append(Step("EHLO", SMTP, OK, mail + b"".join(rcpt_cmds) + b"DATA\r\n"))
        steps.append(Step("MAIL", SMTP, OK))
        steps += [Step("RCPT", SMTP, RCPT_OK) for _ in rcpts]
    else:
        cmds = [*rcpt_cmds, b"DATA\r\n"]
        steps.append(Step("EHLO", SMTP, OK, mail))
        steps.append(Step("MAIL", SMTP, OK, cmds[0]))
        steps += [Step("RCPT", SMTP, RCPT_OK, cmd) for cmd in cmds[1:]]
    steps.append(Step("DATA", SMTP, frozenset({354}), message, msg_id=True))
    steps.append(Step("dot", SMTP, OK, b"QUIT\r\n"))
    steps.append(Step("QUIT", SMTP, frozenset({221})))
    return steps


def session_plan(
    via: str,
    body_size: int = 3072,
    n_rcpts: int = 3,
    pipeline: bool = False,
    tunnel: tuple[str, int] = ("mx.example.org", 25),
) -> Plan:
    rcpts = [f"user{i}@victim{i % 7}.example.com" for i in range(n_rcpts)]
    message = make_message(body_size, "promo@bulk-mailer.example.net", rcpts)
    first, prefix = proxy_prefix(via, *tunnel)
    return Plan(first, (*prefix, *smtp_steps(rcpts, message, pipeline)))


# ---------------------------------------------------------------- protocol


def parse_smtp_reply(buf: bytearray) -> tuple[int, int] | None:
    """(code, bytes used) of the first complete (possibly multi-line) reply, or None."""
    pos = 0
    while (nl := buf.find(b"\n", pos)) >= 0:
        if nl - pos >= 4 and buf[pos + 3] == 0x2D:  # "250-..." continuation line
            pos = nl + 1
            continue
        code = buf[pos : pos + 3]
        return (int(code) if code.isdigit() else -1), nl + 1
    return None


class Session(asyncio.Protocol):
    """Drives one connection through a Plan entirely from callbacks; resolves `done`
    with None on success or with a short error key such as "RCPT:550" or "dot:eof"."""

    def __init__(self, plan: Plan, done: asyncio.Future[str | None], msg_id: bytes) -> None:
        self.plan = plan
        self.done = done
        self.msg_id = msg_id
        self.idx = 0
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.wrote_at = 0.0  # when the last command (or the message) was written
        self.ack_s: float | None = None  # the wait for the reply to the message's final dot

    @property
    def step_name(self) -> str:
        steps = self.plan.steps
        return steps[self.idx].name if self.idx < len(steps) else "end"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        if self.plan.first:
            self.transport.write(self.plan.first)
        if not self.plan.steps:
            self._finish(None)

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            return
        self.buf += data
        steps = self.plan.steps
        while self.idx < len(steps):
            step = steps[self.idx]
            result = self._parse(step)
            if result is None:
                if len(self.buf) > MAX_REPLY:
                    self._finish(f"{step.name}:overlong")
                return
            if result is not True:
                self._finish(f"{step.name}:{result}")
                return
            self.idx += 1
            if step.name == "dot":
                # What the server's "queued" costs it: storing the message (for the sensor,
                # until the message and its event are durable).
                self.ack_s = time.perf_counter() - self.wrote_at
            if step.send:
                assert self.transport is not None
                self.transport.write(self.msg_id + step.send if step.msg_id else step.send)
                self.wrote_at = time.perf_counter()
        self._finish(None)

    def _parse(self, step: Step) -> bool | str | None:
        """True if the step's reply is complete and as expected, an error detail if not,
        None if more bytes are needed. Consumes the reply from the buffer."""
        buf = self.buf
        if step.kind == SMTP:
            reply = parse_smtp_reply(buf)
            if reply is None:
                return None
            code, used = reply
            del buf[:used]
            return code in step.codes or str(code)
        if step.kind == SOCKS_METHOD:
            if len(buf) < 2:
                return None
            ok = buf[0] == 5 and buf[1] == 0
            detail = buf[:2].hex()
            del buf[:2]
            return ok or detail
        if step.kind == SOCKS_REPLY:
            if len(buf) < 5:
                return None
            if buf[0] != 5 or buf[1] != 0:
                return f"rep{buf[1]}"
            addr_len = {1: 4, 4: 16, 3: 1 + buf[4]}.get(buf[3])
            if addr_len is None:
                return f"atyp{buf[3]}"
            if len(buf) < 4 + addr_len + 2:
                return None
            del buf[: 4 + addr_len + 2]
            return True
        end = buf.find(b"\r\n\r\n")  # HTTP_STATUS
        if end < 0:
            return None
        status = bytes(buf[: buf.find(b"\r\n")]).split()
        del buf[: end + 4]
        if len(status) >= 2 and status[0].startswith(b"HTTP/1.") and status[1] == b"200":
            return True
        return status[1].decode(errors="replace") if len(status) >= 2 else "badstatus"

    def _finish(self, error: str | None) -> None:
        if not self.done.done():
            self.done.set_result(error)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._finish(f"{self.step_name}:eof")


async def run_session(
    plan: Plan,
    host: str,
    port: int,
    timeout: float,
    msg_id: bytes = b"",
    source: str | None = None,
) -> tuple[str | None, float, Session | None]:
    """One connection driven through `plan`. Returns (error or None, seconds, protocol).
    With plan.hold the connection stays open on success (caller closes proto.transport).
    `source` binds the client side to that (loopback) address."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[str | None] = loop.create_future()
    proto: Session | None = None
    t0 = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            _, proto = await loop.create_connection(
                lambda: Session(plan, done, msg_id),
                host,
                port,
                local_addr=(source, 0) if source else None,
            )
            error = await done
    except TimeoutError:
        error = f"{proto.step_name}:timeout" if proto else "connect:timeout"
    except OSError as exc:
        error = f"connect:{type(exc).__name__}"
    elapsed = time.perf_counter() - t0
    if proto is not None and proto.transport is not None:
        if error is not None:
            proto.transport.abort()
        elif not plan.hold:
            proto.transport.close()
    return error, elapsed, proto


# ---------------------------------------------------------------- load driver


async def _load(args: argparse.Namespace, concurrency: int, start_at: float) -> dict[str, Any]:
    plan = session_plan(
        args.via, args.body_size, args.rcpts, args.pipeline, (args.tunnel_host, args.tunnel_port)
    )
    await asyncio.sleep(max(0.0, start_at - time.time()))
    deadline = time.monotonic() + args.duration
    latencies: list[float] = []
    acks: list[float] = []
    errors: Counter[str] = Counter()
    pid = os.getpid()
    counter = 0

    async def worker() -> None:
        nonlocal counter
        while time.monotonic() < deadline:
            counter += 1
            msg_id = b"Message-ID: <%d.%d@bulk-mailer.example.net>\r\n" % (pid, counter)
            error, elapsed, proto = await run_session(
                plan, args.host, args.target_port, args.session_timeout, msg_id
            )
            if error is None:
                latencies.append(elapsed)
                if proto is not None and proto.ack_s is not None:
                    acks.append(proto.ack_s)
            else:
                errors[error] += 1
                if error.startswith("connect:"):
                    await asyncio.sleep(0.05)  # don't spin on a refused/exhausted connect

    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    return {
        "latencies": latencies,
        "acks": acks,
        "errors": dict(errors),
        "end": time.time(),
        "gen_cpu": cpu,
    }


def run_proc(args: argparse.Namespace, concurrency: int, start_at: float) -> dict[str, Any]:
    """Entry point of one generator process."""
    benchlib.raise_nofile()
    coro = _load(args, concurrency, start_at)
    return uvloop.run(coro) if uvloop else asyncio.run(coro)


def summarize(
    args: argparse.Namespace,
    results: list[dict[str, Any]],
    start_at: float,
    server_cpu: float | None,
) -> dict[str, Any]:
    latencies = sorted(x for r in results for x in r["latencies"])
    errors: Counter[str] = Counter()
    for r in results:
        errors.update(r["errors"])
    elapsed = max(r["end"] for r in results) - start_at
    ok = len(latencies)
    ms = [round(benchlib.percentile(latencies, q) * 1000, 2) for q in (50, 90, 99, 100)]
    acks = sorted(x for r in results for x in r["acks"])
    ack_ms = [round(benchlib.percentile(acks, q) * 1000, 2) for q in (50, 90, 99)]
    return {
        "target": f"{args.host}:{args.target_port}",
        "via": args.via,
        "pipeline": args.pipeline,
        "concurrency": args.concurrency,
        "procs": args.procs,
        "duration": args.duration,
        "elapsed": round(elapsed, 3),
        "body_size": args.body_size,
        "rcpts": args.rcpts,
        "sessions_ok": ok,
        "errors": sum(errors.values()),
        "error_kinds": dict(errors.most_common(20)),
        "msgs_per_s": round(ok / elapsed, 1) if elapsed > 0 else 0.0,
        "latency_ms": dict(zip(("p50", "p90", "p99", "max"), ms, strict=True)),
        "ack_ms": dict(zip(("p50", "p90", "p99"), ack_ms, strict=True)),
        "server_pids": args.server_pid,
        "server_cpu_s": None if server_cpu is None else round(server_cpu, 3),
        "msgs_per_server_cpu_s": round(ok / server_cpu, 1) if server_cpu else None,
        "generator_cpu_s": round(sum(r["gen_cpu"] for r in results), 3),
    }


def human(s: dict[str, Any]) -> str:
    lat = s["latency_ms"]
    line = (
        f"{s['via']} {s['target']} c={s['concurrency']} procs={s['procs']} {s['elapsed']}s: "
        f"ok={s['sessions_ok']} errors={s['errors']} {s['msgs_per_s']} msg/s "
        f"latency p50={lat['p50']}ms p99={lat['p99']}ms max={lat['max']}ms "
        f"dot->reply p50={s['ack_ms']['p50']}ms "
        f"gen_cpu={s['generator_cpu_s']}s host_busy={s['host_busy_cpu_s']}s"
    )
    if s["server_cpu_s"] is not None:
        line += f" server_cpu={s['server_cpu_s']}s ({s['msgs_per_server_cpu_s']} msg/cpu-s)"
    if s["error_kinds"]:
        line += f" error_kinds={s['error_kinds']}"
    return line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1", help="loopback address of the target")
    p.add_argument("--port", type=int, help="SMTP port (direct mode)")
    p.add_argument("--via", choices=("direct", "socks5", "http"), default="direct")
    p.add_argument("--proxy-port", type=int, help="proxy port (socks5/http modes)")
    p.add_argument("--tunnel-host", default="mx.example.org", help="CONNECT target host")
    p.add_argument("--tunnel-port", type=int, default=25, help="CONNECT target port")
    p.add_argument("--concurrency", type=int, default=50, help="total concurrent sessions")
    p.add_argument("--duration", type=float, default=20.0, help="seconds to start new sessions")
    p.add_argument("--procs", type=int, default=1, help="generator processes")
    p.add_argument("--body-size", type=int, default=3072)
    p.add_argument("--rcpts", type=int, default=3)
    p.add_argument("--pipeline", action="store_true", help="send MAIL+RCPTs+DATA together")
    p.add_argument("--session-timeout", type=float, default=10.0)
    p.add_argument(
        "--server-pid",
        type=int,
        action="append",
        default=[],
        help="server pid to charge CPU to (repeatable)",
    )
    p.add_argument(
        "--server-pid-children",
        action="store_true",
        help="also count CPU of every descendant of the --server-pid processes",
    )
    p.add_argument("--json-out", help="write the JSON result here instead of stdout")
    args = p.parse_args(argv)
    args.host = benchlib.require_loopback(args.host)
    args.target_port = args.port if args.via == "direct" else args.proxy_port
    if args.target_port is None:
        p.error("--port is required" if args.via == "direct" else "--proxy-port is required")
    if not (1 <= args.concurrency <= 10000 and 1 <= args.procs <= 64 and args.rcpts >= 1):
        p.error("need 1 <= concurrency <= 10000, 1 <= procs <= 64, rcpts >= 1")
    if not 0 < args.duration <= 3600:
        p.error("--duration must be in (0, 3600]")
    args.procs = min(args.procs, args.concurrency)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    benchlib.raise_nofile(args.concurrency + 64)
    shares = [
        args.concurrency // args.procs + (i < args.concurrency % args.procs)
        for i in range(args.procs)
    ]
    start_at = time.time() + (0.5 if args.procs > 1 else 0.05)
    cpu0 = benchlib.cpu_seconds(args.server_pid, args.server_pid_children)
    busy0 = benchlib.host_busy_seconds()
    if args.procs == 1:
        results = [run_proc(args, shares[0], start_at)]
    else:
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(args.procs) as pool:
            job = pool.starmap_async(run_proc, [(args, n, start_at) for n in shares])
            results = job.get(timeout=args.duration + args.session_timeout + 30)
    cpu1 = benchlib.cpu_seconds(args.server_pid, args.server_pid_children)
    server_cpu = benchlib.cpu_delta(cpu0, cpu1) if args.server_pid else None
    summary = summarize(args, results, start_at, server_cpu)
    summary["host_busy_cpu_s"] = round(benchlib.host_busy_seconds() - busy0, 2)
    print(human(summary), file=sys.stderr)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(summary, f, indent=2)
    else:
        print(json.dumps(summary, indent=2))
    return 0 if summary["sessions_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
