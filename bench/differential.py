"""The differential comparison: the sensor against the real Postfix, Exim, Sendmail, Squid and
Dante, on both probe sets; prints the agreement table per pair and probe set.

    python3 bench/differential.py                    # the table
    python3 bench/differential.py --diff             # and every differing probe, side by side
    python3 bench/differential.py --pairs squid --sets designed --diff --json out.json

Needs root (network namespaces, mounts) and the servers fetched once with
``python3 tests/differential/realservers.py prepare``. Everything runs in namespaces this
script creates (only loopback) and removes when it ends. The code lives in tests/differential/
(realservers.py, probes.py, normalise.py, comparison.py), shared with the CI test.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "differential"))

import comparison
import realservers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", nargs="+", choices=list(comparison.PAIRS), default=None)
    parser.add_argument("--sets", nargs="+", choices=list(comparison.SETS), default=None)
    parser.add_argument("--diff", action="store_true", help="print every differing probe")
    parser.add_argument("--json", type=Path, help="write every transcript and verdict here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("needs root: network namespaces and mounts")
    pairs = args.pairs or list(comparison.PAIRS)
    wanted = {comparison.PAIRS[p][0] for p in pairs}
    dialects = {comparison.PAIRS[p][1] for p in pairs}
    realservers.prepare()
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        reals: dict[str, realservers.Server] = {}
        for name in ("postfix", "exim4", "sendmail"):
            if name in wanted:
                reals[name] = stack.enter_context(getattr(realservers, name)())
        if wanted & {"squid", "dante"}:
            reals["squid"], reals["dante"], _ = stack.enter_context(realservers.proxies())
        sensors = {}
        for dialect in dialects:
            ports = realservers.SENSOR_PORTS if dialect == "postfix" else {"smtp": (25,)}
            sensors[dialect] = stack.enter_context(realservers.sensor(dialect, ports))
        results = comparison.run_pairs(reals, sensors, pairs, args.sets)
    print(comparison.table(results))
    load = os.getloadavg()[0]
    print(f"\n{time.monotonic() - started:.0f} s, load average {load:.2f}")
    if args.diff:
        for pair in results:
            for result in pair.results:
                if not result.same_text:
                    print(f"\n[{pair.pair} / {pair.probe_set}]")
                    print(comparison.side_by_side(result))
    if args.json:
        comparison.write_json(results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
