#!/usr/bin/env python3
"""Hold N idle connections to a loopback server and report its memory cost per connection.

Memory is VmRSS (/proc/PID/status) and Pss (/proc/PID/smaps_rollup) of --pid, read before
the connections are opened and after they have settled. With --probe, one full SMTP session
(direct, or tunnelled via SOCKS5/HTTP) is timed while the N connections are held.
Human summary on stderr, JSON on stdout (or --json-out FILE).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from typing import Any

import benchlib
from smtp_load import (
    SMTP,
    SOCKS_METHOD,
    Plan,
    Session,
    Step,
    proxy_prefix,
    run_session,
    session_plan,
)

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a project dependency
    uvloop = None

TUNNEL = ("mx.example.org", 25)
BANNER = Step("banner", SMTP, frozenset({220}))


def tunnel_idle(via: str) -> Plan:
    """Complete the proxy handshake, read the tunnelled 220 banner, then stay idle."""
    first, prefix = proxy_prefix(via, *TUNNEL)
    return Plan(first, (*prefix, BANNER), hold=True)


MODES = {
    # raw: connect only. smtp: read the 220 banner. socks5: send the greeting, read 05 00.
    # http: send an unterminated CONNECT request head (server waits for the blank line).
    # socks5-smtp / http-smtp: full proxy handshake, then read the tunnelled 220 banner.
    "raw": Plan(b"", (), hold=True),
    "smtp": Plan(b"", (BANNER,), hold=True),
    "socks5": Plan(b"\x05\x01\x00", (Step("socks-method", SOCKS_METHOD),), hold=True),
    "http": Plan(b"CONNECT %s:%d HTTP/1.1\r\n" % (TUNNEL[0].encode(), TUNNEL[1]), (), hold=True),
    "socks5-smtp": tunnel_idle("socks5"),
    "http-smtp": tunnel_idle("http"),
    # smtp-delay: after the banner, ten bad commands and sixty pipelined NOOPs: from the tenth
    # error on, the Postfix persona holds each reply for a second (smtpd_error_sleep_time),
    # so every connection sits in an error delay for about a minute while it is measured.
    "smtp-delay": Plan(
        b"", (Step("banner", SMTP, frozenset({220}), b"XX\r\n" * 10 + b"NOOP\r\n" * 60),), True
    ),
}


def source(k: int, args: argparse.Namespace) -> str | None:
    """Client address of connection k: spread over 127.0.1.1.. so per-address limits hold."""
    if args.sources <= 1:
        return None
    n = k % args.sources
    return f"127.0.{1 + n // 250}.{1 + n % 250}"


async def trickle(held: list[Session], every: float) -> None:
    """Slowloris: each held connection sends one more byte every `every` seconds, spread out
    so the server sees a steady drip rather than bursts."""
    if not held:
        return
    step = every / len(held)
    while True:
        for s in held:
            if not s.closed and s.transport is not None:
                s.transport.write(b"X")
            await asyncio.sleep(step)


def memory(pids: list[int], tree: bool) -> dict[str, int]:
    """Summed VmRSS/Pss (KiB) over the pids (and their descendants with `tree`); also apart:
    the pids themselves (``server_*``: the sensor's event loop) and their descendants
    (``children_*``: its writer process, which receives every event line)."""
    total = {"rss": 0, "pss": 0, "server_rss": 0, "server_pss": 0}
    for pid in benchlib.descendants(pids) if tree else pids:
        for key, kib in benchlib.memory_kib(pid).items():
            total[key] += kib
            if pid in pids:
                total["server_" + key] += kib
    total["children_rss"] = total["rss"] - total["server_rss"]
    total["children_pss"] = total["pss"] - total["server_pss"]
    return total


async def hold(args: argparse.Namespace) -> dict[str, Any]:
    deadline = time.monotonic() + args.timeout
    plan = MODES[args.mode]
    before = memory(args.pid, args.pid_children)
    held: list[Session] = []
    errors: Counter[str] = Counter()
    t0 = time.perf_counter()
    for start in range(0, args.count, args.batch):
        remaining = deadline - time.monotonic()
        if remaining <= 1:
            errors["overall:timeout"] += args.count - start
            break
        batch = min(args.batch, args.count - start)
        timeout = min(args.conn_timeout, remaining - 1)
        results = await asyncio.gather(
            *(
                run_session(plan, args.host, args.port, timeout, source=source(start + i, args))
                for i in range(batch)
            )
        )
        for error, _, proto in results:
            if error is None and proto is not None:
                held.append(proto)
            else:
                errors[error or "unknown"] += 1
    open_s = time.perf_counter() - t0
    trickler = asyncio.create_task(trickle(held, args.trickle)) if args.trickle else None
    await asyncio.sleep(min(args.settle, max(0.0, deadline - time.monotonic() - 1)))
    alive = sum(not s.closed for s in held)
    after = memory(args.pid, args.pid_children)

    probe: dict[str, Any] | None = None
    if args.probe:
        probe_plan = session_plan(args.probe_via, tunnel=TUNNEL)
        timeout = max(1.0, min(10.0, deadline - time.monotonic()))
        error, elapsed, _ = await run_session(probe_plan, args.host, args.probe_port, timeout)
        probe = {
            "via": args.probe_via,
            "port": args.probe_port,
            "ok": error is None,
            "error": error,
            "latency_ms": round(elapsed * 1000, 2),
            "limit_ms": args.probe_limit * 1000,
            "within_limit": error is None and elapsed <= args.probe_limit,
        }

    if trickler is not None:
        trickler.cancel()
    alive_end = sum(not s.closed for s in held)
    for s in held:
        if s.transport is not None:
            s.transport.close()
    await asyncio.sleep(min(args.settle, max(0.0, deadline - time.monotonic())))
    after_close = memory(args.pid, args.pid_children)

    def per_conn(key: str) -> float | None:
        if not args.pid or not alive:
            return None
        return round((after[key] - before[key]) / alive, 2)

    return {
        "target": f"{args.host}:{args.port}",
        "mode": args.mode,
        "requested": args.count,
        "opened": len(held),
        "alive_at_measure": alive,
        "alive_at_end": alive_end,
        "errors": sum(errors.values()),
        "error_kinds": dict(errors.most_common(20)),
        "open_seconds": round(open_s, 3),
        "pids": args.pid,
        "mem_before_kib": before,
        "mem_after_kib": after,
        "mem_after_close_kib": after_close,
        "sources": args.sources,
        "trickle_s": args.trickle,
        "rss_kib_per_conn": per_conn("rss"),
        "pss_kib_per_conn": per_conn("pss"),
        # Apart: the event loop's own share (the connections' state) and its descendants'
        # (the writer's, which grows with the event lines the connections made).
        "server_rss_kib_per_conn": per_conn("server_rss"),
        "children_rss_kib_per_conn": per_conn("children_rss") if args.pid_children else None,
        "probe": probe,
    }


def human(r: dict[str, Any]) -> str:
    line = (
        f"{r['mode']} {r['target']}: held {r['alive_at_measure']}/{r['requested']} "
        f"(opened in {r['open_seconds']}s, errors={r['errors']})"
    )
    if r["pids"]:
        b, a = r["mem_before_kib"], r["mem_after_kib"]
        line += (
            f" rss {b['rss']}->{a['rss']} KiB ({r['rss_kib_per_conn']} KiB/conn),"
            f" pss {b['pss']}->{a['pss']} KiB ({r['pss_kib_per_conn']} KiB/conn),"
            f" rss after close {r['mem_after_close_kib']['rss']} KiB"
        )
        if r["children_rss_kib_per_conn"] is not None:
            line += (
                f" [event loop {r['server_rss_kib_per_conn']} KiB/conn,"
                f" children {r['children_rss_kib_per_conn']} KiB/conn]"
            )
    if p := r["probe"]:
        verdict = "OK" if p["within_limit"] else "FAIL"
        line += f"; probe via {p['via']}: {p['error'] or 'ok'} {p['latency_ms']}ms [{verdict}]"
    if r["error_kinds"]:
        line += f" error_kinds={r['error_kinds']}"
    return line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1", help="loopback address of the target")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--pid", type=int, action="append", default=[], help="server pid (repeatable)")
    p.add_argument("--pid-children", action="store_true", help="include descendants of --pid")
    p.add_argument("--count", type=int, default=10000)
    p.add_argument("--mode", choices=sorted(MODES), default="smtp")
    p.add_argument("--batch", type=int, default=500, help="connections opened concurrently")
    p.add_argument("--conn-timeout", type=float, default=10.0, help="per-connection handshake")
    p.add_argument("--settle", type=float, default=2.0, help="seconds to wait before measuring")
    p.add_argument("--probe", action="store_true", help="time one full SMTP session while held")
    p.add_argument("--probe-via", choices=("direct", "socks5", "http"), default="direct")
    p.add_argument("--probe-port", type=int, help="port for the probe (default: --port)")
    p.add_argument("--probe-limit", type=float, default=1.0, help="probe latency limit (s)")
    p.add_argument("--timeout", type=float, default=120.0, help="overall time bound (s)")
    p.add_argument(
        "--sources", type=int, default=1, help="client addresses 127.0.1.1.. to spread over"
    )
    p.add_argument(
        "--trickle", type=float, default=0.0, help="each held connection sends a byte this often"
    )
    p.add_argument("--json-out", help="write the JSON result here instead of stdout")
    args = p.parse_args(argv)
    args.host = benchlib.require_loopback(args.host)
    args.probe_port = args.probe_port or args.port
    if not (1 <= args.count <= 100_000 and 1 <= args.batch <= 5000):
        p.error("need 1 <= count <= 100000 and 1 <= batch <= 5000")
    if not 1 <= args.sources <= 5000 or args.trickle < 0:
        p.error("need 1 <= sources <= 5000 and trickle >= 0")
    if not 5 <= args.timeout <= 3600:
        p.error("--timeout must be in [5, 3600]")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    benchlib.raise_nofile(args.count + 64)
    result = uvloop.run(hold(args)) if uvloop else asyncio.run(hold(args))
    print(human(result), file=sys.stderr)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(result, f, indent=2)
    else:
        print(json.dumps(result, indent=2))
    probe_ok = result["probe"] is None or result["probe"]["within_limit"]
    return 0 if probe_ok and result["alive_at_measure"] == args.count else 1


if __name__ == "__main__":
    sys.exit(main())
