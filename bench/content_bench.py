"""Content extraction throughput and memory: messages per CPU-second, beside the bare parse.

The corpus is the simulator's spam (spampot.simulate.bodies: campaigns in eight languages and
their charsets, plain, alternative and HTML-only, obfuscated links, attachments), kept to
messages of ``--min-bytes``..``--max-bytes`` (3 KB around by default), gzip-compressed as the
sensor stores them. Each run, in a fresh process, times on the same messages:

- ``stdlib-compat32``: gunzip + ``email`` BytesParser with the compat32 policy (the parse alone);
- ``stdlib-default``: gunzip + the modern ``default`` policy, the body found with
  ``get_body`` and read with ``get_content`` (what a straightforward program does);
- ``spampot``: gunzip + ``spampot.analysis.content.extract.extract`` (everything in the row).

CPU time (``time.process_time``), so the figures are per core; medians over ``--runs``.
Memory: the peak RSS of a process extracting each of a set of hostile messages (10 MB of
parts, deep nesting, one huge attachment, a text of links), beside that of an empty run.

    python3 bench/content_bench.py --messages 5000 --runs 5 --json-out content.json
"""

from __future__ import annotations

import argparse
import email.parser
import email.policy
import gzip
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import zlib

PAPER_MESSAGES = 524_569_399  # Table 2: the paper's 15 months of spam


def corpus(n: int, low: int, high: int, seed: int) -> list[bytes]:
    from spampot.simulate.bodies import Campaigns

    campaigns = Campaigns(seed, 200)
    out: list[bytes] = []
    i = 0
    while len(out) < n and i < n * 50:
        data = campaigns.message(
            i % 997,
            i * 7919,
            f"sales{i}@example.com",
            f"victim{i}@hotmail.com",
            "Mon, 12 Jun 2006 10:00:00 +0000",
            f"{i:x}",
        )
        i += 1
        if low <= len(data) <= high:
            out.append(gzip.compress(data, 6))
    return out


def run_once(args: argparse.Namespace) -> dict[str, float]:
    import datetime as dt

    from spampot.analysis.content.extract import extract
    from spampot.analysis.content.relay import RelayContext

    messages = corpus(args.messages, args.min_bytes, args.max_bytes, args.seed)
    captured = dt.datetime(2006, 6, 12, 10, 1, tzinfo=dt.UTC)
    relay = RelayContext("192.0.2.10", 25, None, 3)
    compat = email.parser.BytesParser(policy=email.policy.compat32)
    modern = email.parser.BytesParser(policy=email.policy.default)

    def bare() -> None:
        for gz in messages:
            compat.parsebytes(zlib.decompress(gz, 47))

    def straightforward() -> None:
        for gz in messages:
            msg = modern.parsebytes(zlib.decompress(gz, 47))
            _ = (msg["subject"], msg["from"], msg["date"])
            body = msg.get_body(("plain", "html"))
            if body is not None:
                body.get_content()  # type: ignore[attr-defined]

    def ours() -> None:
        for gz in messages:
            extract(zlib.decompress(gz, 47), captured, relay)

    out: dict[str, float] = {"messages": len(messages)}
    out["mean_bytes"] = statistics.mean(len(zlib.decompress(g, 47)) for g in messages)
    for name, fn in (
        ("stdlib-compat32", bare),
        ("stdlib-default", straightforward),
        ("spampot", ours),
    ):
        fn()  # warm: imports, caches (the registered-domain cache stays warm as in ingest)
        rates = []
        for _ in range(args.passes):  # an ingest worker extracts batch after batch
            started = time.process_time()
            fn()
            rates.append(len(messages) / (time.process_time() - started))
        out[name] = statistics.median(rates)
    return out


HOSTILE = {
    "10 MB of 5,000 parts": lambda: _multipart([b"x" * 2000] * 5000),
    "nesting 2,000 deep": lambda: (
        b"".join(
            f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n'.encode()
            for i in range(2000)
        )
        + b"Content-Type: text/plain\r\n\r\nend\r\n"
    ),
    "one 7 MB attachment": lambda: _multipart([os.urandom(5_000_000)], attach=True),
    "8 MB of links": lambda: (
        b"Content-Type: text/plain\r\n\r\n" + b"http://a.example.com/x www.b.example.net " * 200_000
    ),
    "8 MB of one header": lambda: b"Subject: " + b"=?utf-8?b?QUJD?= " * 500_000 + b"\r\n\r\nx",
}


def _multipart(parts: list[bytes], attach: bool = False) -> bytes:
    import base64

    out = [b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n']
    for data in parts:
        if attach:
            out.append(
                b"--b\r\nContent-Type: application/octet-stream\r\n"
                b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(data) + b"\r\n"
            )
        else:
            out.append(b"--b\r\nContent-Type: text/plain\r\n\r\n" + data + b"\r\n")
    return b"".join([*out, b"--b--\r\n"])


def memory_once(name: str) -> dict[str, float]:
    from spampot.analysis.content.extract import extract

    data = HOSTILE[name]() if name != "empty" else b""
    started = time.process_time()
    result = extract(data)
    seconds = time.process_time() - started
    return {
        "bytes": len(data),
        "seconds": seconds,
        "status": result.status,
        "limit": result.limit or "",
        "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def child(mode: str, arg: str, args: argparse.Namespace) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", mode, "--child-arg", arg]
    for key in ("messages", "min_bytes", "max_bytes", "seed", "passes"):
        cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    result: dict[str, float] = json.loads(done.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--min-bytes", type=int, default=2560)
    parser.add_argument("--max-bytes", type=int, default=3584)
    parser.add_argument("--seed", type=int, default=2007)
    parser.add_argument("--passes", type=int, default=3, help="timed passes per run (median)")
    parser.add_argument("--json-out")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-arg", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "run":
        print(json.dumps(run_once(args)))
        return
    if args.child == "memory":
        print(json.dumps(memory_once(args.child_arg)))
        return

    load_before = os.getloadavg()
    runs = [child("run", "", args) for _ in range(args.runs)]
    names = ("stdlib-compat32", "stdlib-default", "spampot")
    result: dict[str, object] = {
        "runs": runs,
        "messages": runs[0]["messages"],
        "mean_bytes": round(runs[0]["mean_bytes"]),
        "median_per_cpu_second": {n: round(statistics.median(r[n] for r in runs)) for n in names},
        "median_ratio_to_compat32": round(
            statistics.median(r["spampot"] / r["stdlib-compat32"] for r in runs), 3
        ),
        "median_ratio_to_default": round(
            statistics.median(r["spampot"] / r["stdlib-default"] for r in runs), 3
        ),
    }
    rate = result["median_per_cpu_second"]["spampot"]  # type: ignore[index]
    result["paper_corpus_cpu_hours"] = round(PAPER_MESSAGES / rate / 3600, 1)
    result["memory"] = {name: child("memory", name, args) for name in ["empty", *HOSTILE]}
    result["loadavg_before"] = load_before
    result["loadavg_after"] = os.getloadavg()
    text = json.dumps(result, indent=1)
    if args.json_out:
        with open(args.json_out, "w") as f:
            f.write(text)
    else:
        print(text)
    per = result["median_per_cpu_second"]
    print(
        f"{result['messages']} messages of {result['mean_bytes']} bytes on average: spampot"
        f" {per['spampot']:,}/CPU-s, stdlib compat32 parse {per['stdlib-compat32']:,}/CPU-s,"  # type: ignore[index]
        f" stdlib default policy {per['stdlib-default']:,}/CPU-s; 525 M messages:"  # type: ignore[index]
        f" {result['paper_corpus_cpu_hours']} CPU-hours; load {load_before}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
