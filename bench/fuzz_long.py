"""Long fuzz run: the suite's hypothesis properties, per parser, with a large max_examples.

The properties are the ones in tests/ (the CI profile runs them with SPAMPOT_FUZZ_EXAMPLES,
default 300); here each parser gets ``--examples`` (default 100,000), shared equally among its
properties, in shards of ``--shard-size`` examples (each a process with its own seed) run by
``--jobs`` processes. Prints a line per shard on stderr and JSON on stdout (or ``--json-out``):
per parser and property, the examples actually run (hypothesis may stop early when it has
tried every distinct input a small strategy allows), seconds, and examples per second. Exits 1
when a property was falsified, after printing hypothesis' falsifying example.

    python3 bench/fuzz_long.py                      # every parser, 100,000 examples each
    python3 bench/fuzz_long.py --examples 2000 --parsers smtp,socks
"""

from __future__ import annotations

import argparse
import importlib
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent.parent / "tests"

EACH = ("test_proxy_fuzz", "test_each_parser_on_hostile_streams_split_anywhere")

# parser -> [(module, property, keyword arguments)]
PROPERTIES: dict[str, list[tuple[str, str, dict[str, Any]]]] = {
    "smtp": [
        ("test_smtp_fuzz", "test_arbitrary_bytes_in_arbitrary_chunks", {}),
        ("test_smtp_fuzz", "test_plausible_sessions", {}),
        ("test_smtp_fuzz", "test_raw_random_chunks", {}),
        ("test_smtp_fuzz", "test_plausible_sessions_one_byte_at_a_time", {}),
    ],
    "detect": [(*EACH, {"parser": "detect"})],
    "socks": [(*EACH, {"parser": "socks"})],
    "http_proxy": [(*EACH, {"parser": "http_proxy"})],
    "web": [(*EACH, {"parser": "web"})],
    "roles": [(*EACH, {"parser": "roles"})],
    "proxy_header": [
        ("test_proxy_protocol", "test_arbitrary_bytes_only_raise_the_protocol_error", {}),
        (
            "test_proxy_protocol",
            "test_near_valid_headers_give_an_address_or_the_protocol_error",
            {},
        ),
    ],
    "content": [
        ("test_content_fuzz", "test_arbitrary_bytes", {}),
        ("test_content_fuzz", "test_mangled_mime", {}),
        ("test_content_fuzz", "test_url_extraction_on_arbitrary_text", {}),
        ("test_content_fuzz", "test_url_extraction_on_adversarial_fragments", {}),
    ],
}


def run_property(module: str, name: str, kwargs: dict[str, Any], examples: int) -> dict[str, Any]:
    """Run one property ``examples`` times; count the examples it really ran."""
    # The tests read their max_examples from this when imported: same settings as the suite.
    os.environ["SPAMPOT_FUZZ_EXAMPLES"] = str(examples)
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    test = getattr(importlib.import_module(module), name)
    inner: Callable[..., Any] = test.hypothesis.inner_test
    count = 0

    def counting(*args: Any, **kw: Any) -> Any:
        nonlocal count
        count += 1
        return inner(*args, **kw)

    test.hypothesis.inner_test = counting
    started = time.perf_counter()
    error = None
    try:
        test(**kwargs)
    except Exception as exc:  # the falsified property: report it, do not hide it
        error = f"{type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - started
    return {
        "property": name + "".join(f"[{v}]" for v in kwargs.values()),
        "examples": count,
        "seconds": round(seconds, 2),
        "examples_per_s": round(count / seconds, 1) if seconds else None,
        "error": error,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--examples",
        type=int,
        default=100_000,
        help="examples per parser, shared equally among its properties",
    )
    ap.add_argument("--parsers", default=",".join(PROPERTIES), help="comma-separated subset")
    ap.add_argument("--jobs", type=int, default=2, help="processes running shards")
    ap.add_argument("--shard-size", type=int, default=10_000, help="examples per process")
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args(argv)
    parsers = [p for p in args.parsers.split(",") if p]
    unknown = set(parsers) - set(PROPERTIES)
    if unknown:
        ap.error(f"unknown parsers: {', '.join(sorted(unknown))}")
    # Each property's examples run in shards of at most --shard-size, each a fresh process
    # with its own random seed: hypothesis slows down as one run's history grows, and shards
    # use every --jobs process.
    jobs = []
    for parser in parsers:
        for module, name, kwargs in PROPERTIES[parser]:
            left = -(-args.examples // len(PROPERTIES[parser]))
            while left > 0:
                jobs.append((parser, module, name, kwargs, min(left, args.shard_size)))
                left -= args.shard_size
    started = time.perf_counter()
    # A fresh process per shard: the tests read max_examples when they are imported.
    spawn = multiprocessing.get_context("spawn")
    results: list[dict[str, Any]] = []
    with ProcessPoolExecutor(max(1, args.jobs), mp_context=spawn, max_tasks_per_child=1) as pool:
        futures = {
            pool.submit(run_property, module, name, kwargs, examples): parser
            for parser, module, name, kwargs, examples in jobs
        }
        for future in as_completed(futures):
            result = {"parser": futures[future], **future.result()}
            results.append(result)
            print(
                f"{result['parser']:12} {result['property']:66} {result['examples']:>7,} "
                f"examples {result['seconds']:>7.1f} s {result['examples_per_s'] or 0:>6.1f}/s"
                + (f"  FALSIFIED {result['error'][:300]}" if result["error"] else ""),
                file=sys.stderr,
                flush=True,
            )
    properties: dict[str, dict[str, Any]] = {}
    for r in results:
        total = properties.setdefault(
            r["property"],
            {"parser": r["parser"], "examples": 0, "shards": 0, "seconds": 0.0, "errors": []},
        )
        total["examples"] += r["examples"]
        total["shards"] += 1
        total["seconds"] = round(total["seconds"] + r["seconds"], 1)
        if r["error"]:
            total["errors"].append(r["error"])
    per_parser = {p: sum(r["examples"] for r in results if r["parser"] == p) for p in parsers}
    summary = {
        "examples_per_parser": args.examples,
        "per_parser": per_parser,
        "total_examples": sum(per_parser.values()),
        "wall_s": round(time.perf_counter() - started, 1),
        "falsified": sorted({r["property"] for r in results if r["error"]}),
        "properties": properties,
        "shards": results,
    }
    text = json.dumps(summary, indent=2)
    if args.json_out:
        args.json_out.write_text(text + "\n")
    else:
        print(text)
    print(
        "total "
        + ", ".join(f"{p} {n:,}" for p, n in per_parser.items())
        + f" examples in {summary['wall_s']} s",
        file=sys.stderr,
    )
    return 1 if summary["falsified"] else 0


if __name__ == "__main__":
    sys.exit(main())
