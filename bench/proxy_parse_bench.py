#!/usr/bin/env python3
"""The HTTP proxy machine's cost per request: this checkout against another commit.

Each request kind (a CONNECT to port 25, a GET for an unreachable page, a proxy judge's GET)
is fed whole to a fresh ``HttpProxyServer`` sharing one Squid persona, as a sensor worker
does, ``--requests`` times, and its answer taken; the CPU time per request (process time,
so the other work on a shared machine counts less) is measured in a child process per tree.
Rounds alternate between this checkout and ``--baseline`` (a git ref, extracted with ``git
archive``); medians over ``--rounds`` in microseconds, and the ratio this/baseline in the
same run. No network, no files but the extracted tree.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

REQUESTS = {
    "connect": b"CONNECT mx.example.org:25 HTTP/1.1\r\nHost: mx.example.org:25\r\n"
    b"User-Agent: curl/7.88.1\r\nProxy-Connection: Keep-Alive\r\n\r\n",
    "get": b"GET http://www.example.org/ HTTP/1.1\r\nHost: www.example.org\r\n"
    b"User-Agent: Mozilla/5.0\r\nAccept: */*\r\nConnection: close\r\n\r\n",
    "judge": b"GET http://judge.example.net/azenv.php HTTP/1.1\r\nHost: judge.example.net\r\n"
    b"User-Agent: Mozilla/5.0\r\nAccept: */*\r\n\r\n",
}

# Run in the child, with the tree under test first on sys.path.
CHILD = """
import json, sys, time
from spampot.protocols.http_proxy import HttpProxyServer
from spampot.protocols.proxy import ProxyPolicy
from spampot.protocols.squid import SquidPersona, load_dialect
policy, persona = ProxyPolicy(), SquidPersona(load_dialect())
requests, n = {requests!r}, {n}
out = {{}}
for name, data in requests.items():
    start = time.process_time()
    for _ in range(n):
        machine = HttpProxyServer(policy, persona)
        machine.receive_data(data)
        machine.data_to_send()
    out[name] = (time.process_time() - start) / n * 1e6
print(json.dumps(out))
"""


def measure(src: Path, n: int) -> dict[str, float]:
    code = CHILD.format(requests=REQUESTS, n=n)
    env_path = f"import sys; sys.path.insert(0, {str(src)!r})\n"
    done = subprocess.run(
        [sys.executable, "-c", env_path + code], check=True, capture_output=True, text=True
    )
    return json.loads(done.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="HEAD~1", help="git ref to compare with")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=3000, help="requests per kind and round")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    if not 1 <= args.rounds <= 100 or not 1 <= args.requests <= 1_000_000:
        parser.error("--rounds 1..100, --requests 1..1000000")
    with tempfile.TemporaryDirectory(prefix="proxy-parse-bench-") as tmp:
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", args.baseline, "src"],
            check=True,
            capture_output=True,
        )
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        trees = {"this": REPO / "src", "baseline": Path(tmp) / "src"}
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
        for _ in range(args.rounds):
            for name, src in trees.items():
                runs[name].append(measure(src, args.requests))
    result = {
        name: {kind: statistics.median(r[kind] for r in rounds) for kind in REQUESTS}
        for name, rounds in runs.items()
    }
    result["ratio"] = {k: result["this"][k] / result["baseline"][k] for k in REQUESTS}
    result["baseline_ref"] = args.baseline  # type: ignore[assignment]
    summary = ", ".join(
        f"{k} {result['this'][k]:.0f} vs {result['baseline'][k]:.0f} µs ({result['ratio'][k]:.2f}x)"
        for k in REQUESTS
    )
    print(f"CPU per request, this vs {args.baseline}: {summary}", file=sys.stderr)
    text = json.dumps(result, indent=2)
    if args.json_out:
        args.json_out.write_text(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
