"""Analysis benchmarks: ingest throughput, and the report at 5, 20 and 50 million emails.

    python3 bench/analysis_bench.py --work /var/tmp/spampot-analysis-bench --json-out a.json

1. **Ingest**: ``--ingest-events`` events in the sensor's exact format (encoded by the sensor's
   own EventBuffer; sessions of 1-6 emails, proxied or direct, as the paper's mix), gzip-rotated
   like the sensor's files, read into the warehouse by ``spampot ingest`` (every line
   validated; no address look-ups, one DuckDB thread) and, in the same rounds, by the bare
   baseline: DuckDB's JSON reader into the same tables with nothing validated (and, with
   ``--compare-python``, by another installation's ingest, with and without the content
   tables, e.g. an older checkout's; CPU against its, round by round).
   Events per CPU-second and per second, peak RSS, CPU against the baseline's of its round.
2. **Report scaling**: warehouses of ``--sizes`` million emails (plus 0.276 proxy requests per
   email, the paper's 145 M / 525 M) written directly as Parquet in the warehouse's schema with
   the paper's distributions (Tables 3-6: countries, ASes, ports, outcomes; 9.16 recipients per
   email; 466 days; 216,888 source addresses; 10 sensors). ``spampot report`` over each, in a
   fresh process, ``--runs`` times, with campaigns (2,000 emails sampled and read from 5,000
   message files of 200 campaigns): wall time and peak RSS; a least-squares line through the
   sizes extrapolates to the paper's 525 million. ``--steps``: one more report per size,
   each of its steps timed (wall and CPU). ``--content``: the warehouses get content tables
   (one ``message_content`` row per email, the content the ingest's extraction takes from
   the message files above, and their URL rows), so the report's content tables and
   whole-corpus campaigns are timed too. The largest size is generated, the smaller ones
   hard-linked from its prefix on the way.
3. **Baseline**: Tables 2-3 computed by a straightforward pandas program and by the report's
   own SQL on DuckDB, on the same warehouse, each in a fresh process: the ratio.

Data is generated once under ``--work`` and reused by later runs with the same parameters.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

HERE = Path(__file__).resolve().parent

# The paper's Table 3 (share of emails by country), Table 4 (ASes within them), Table 5
# (ports), Table 6 (proxy outcomes). The rest of each distribution goes to synthetic entries.
COUNTRIES = [
    ("TW", 73.43), ("CN", 15.80), ("US", 5.67), ("CA", 1.27), ("JP", 1.03), ("HK", 0.84),
    ("KR", 0.78), ("UA", 0.34), ("DE", 0.18), ("BR", 0.16),
]  # fmt: skip
ASES = [  # (asn, name, country, % of all emails)
    (9924, "TFN-TW", "TW", 32.60), (3462, "HINET", "TW", 25.04), (17623, "CNCGROUP", "CN", 12.43),
    (4780, "SEEDNET", "TW", 10.38), (9919, "NCIC-TW", "TW", 1.75), (4837, "CHINA169", "CN", 1.72),
    (33322, "NDCHOST", "US", 1.59), (4134, "CHINANET", "CN", 1.39), (18429, "EXTRALAN", "TW", 1.29),
    (7271, "LOOKAS", "CA", 1.07),
]  # fmt: skip
PORTS = [  # (port, via, %)
    (1080, "socks5", 37.31), (8080, "http", 34.79), (80, "http", 10.92), (3128, "http", 6.17),
    (8000, "http", 2.76), (6588, "http", 2.29), (25, "smtp", 1.46), (4480, "http", 1.38),
    (3127, "socks4", 1.00), (3382, "http", 0.96), (81, "http", 0.96),
]  # fmt: skip
OUTCOMES = [  # (protocol, outcome, requests)
    ("http", "smtp", 89_496_969), ("http", "other", 106_615), ("http", "get", 225_802),
    ("http", "error", 1_847_869), ("socks5", "smtp", 46_776_884), ("socks5", "other", 1_055_081),
    ("socks5", "error", 5_741_908),
]  # fmt: skip
N_IPS = 216_888
RCPT_DOMAINS = ["hotmail.com", "yahoo.com", "aol.com", "gmail.com", "msn.com", "uol.com.br"]
N_DAYS = 466
# Distinct message files the paper-shaped warehouse's emails point to (under raw/BODY_DIR/):
# enough for the campaign sample (2,000 read of 40,000 drawn) to read real spam.
BODIES = 5000
BODY_DIR = "bench-bodies"
N_SENSORS = 10
PROXY_PER_EMAIL = 145_251_128 / 524_585_779


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_measured(cmd: list[str], cwd: Path | None = None) -> dict:
    """Run a command; wall seconds, CPU seconds and peak RSS of it and its children."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    out = proc.stdout.read().decode() if proc.stdout else ""
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err[-3000:]}")
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "max_rss_mib": usage.ru_maxrss / 1024,
        "stdout": out,
    }


def spampot(*args: str) -> list[str]:
    return [sys.executable, "-m", "spampot", *args]


# --- 1. ingest ---------------------------------------------------------------------------


def make_events(raw: Path, n_events: int, seed: int = 7) -> int:
    """Event files of about ``n_events`` events from 10 sensors; returns the exact count."""
    import gzip
    import random

    from spampot.sensor.events import Clock, EventBuffer

    class SetClock(Clock):
        t = 1_780_000_000.0

        def now(self) -> tuple[float, str]:
            second = int(self.t)
            if second != self._second:
                self._tick(second)
            return self.t, f"{self._prefix}.{int((self.t - second) * 1e6):06d}Z"

    rng = random.Random(seed)
    ips = [
        f"{rng.choice([1, 27, 36, 58, 59, 60, 61, 114, 118, 122, 203, 210, 211, 218])}."
        f"{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        for _ in range(20_000)
    ]
    ports = [p for p, _, _ in PORTS]
    port_weights = [w for _, _, w in PORTS]
    via_of = {p: v for p, v, _ in PORTS}
    per_sensor = n_events // N_SENSORS
    total = 0
    for s in range(N_SENSORS):
        name = f"br-{s + 1:02d}"
        clock = SetClock()
        buffer = EventBuffer(name, clock)
        out = raw / name / "events"
        out.mkdir(parents=True, exist_ok=True)
        lines: list[bytes] = []
        hour = 0
        written = 0
        while written < per_sensor:
            ip = rng.choice(ips)
            port = rng.choices(ports, port_weights)[0]
            via = via_of[port]
            base = {
                "session": f"{rng.getrandbits(48):012x}",
                "src_ip": ip,
                "src_port": rng.randrange(1024, 65535),
                "dst_ip": "192.0.2.10",
                "dst_port": port,
            }
            clock.t += rng.random() * 0.2
            lines.append(buffer.encode("session.open", base, f"New connection: {ip}"))
            target = None if via == "smtp" else f"mx{rng.randrange(50)}.victim.example"
            if via != "smtp":
                lines.append(
                    buffer.encode(
                        "proxy.request",
                        base,
                        "CONNECT",
                        protocol=via,
                        version=None,
                        method="CONNECT",
                        target_host=target,
                        target_port=25,
                        auth=None,
                        outcome="smtp",
                        reply="granted",
                        error=None,
                        headers=None,
                    )
                )
            for _ in range(rng.randint(1, 6)):
                rcpt = [
                    f"u{rng.randrange(10**6)}@{rng.choice(RCPT_DOMAINS)}"
                    for _ in range(rng.choice([1, 5, 9, 10, 12, 20]))
                ]
                qid = f"{rng.getrandbits(40):010X}"
                lines.append(
                    buffer.encode(
                        "smtp.message",
                        base,
                        f"Message {qid}",
                        via=via,
                        target_host=target,
                        target_port=None if via == "smtp" else 25,
                        helo="pc.example",
                        mail_from="x@sender.example",
                        mail_params=None,
                        rcpt_to=rcpt,
                        size=3000,
                        sha256="ab" * 32,
                        queue_id=qid,
                        file=f"2026-05-28/{port}/{ip}/120000-{qid}.eml.gz",
                    )
                )
            lines.append(
                buffer.encode(
                    "session.close",
                    base,
                    "Connection lost",
                    duration_s=1.5,
                    bytes_in=9000,
                    bytes_out=400,
                    reason="quit",
                )
            )
            if len(lines) >= 100_000:  # one rotated file per 100,000 events
                stamp = time.strftime("%Y%m%dT%H", time.gmtime(clock.t))
                (out / f"{name}-{stamp}-{hour}.jsonl.gz").write_bytes(
                    gzip.compress(b"".join(lines), compresslevel=6)
                )
                hour += 1
                written += len(lines)
                lines = []
        total += written
    return total


def bare_ingest(raw: Path, warehouse: Path) -> int:
    """The baseline: the same event files into the same tables by DuckDB's own JSON reader,
    with nothing validated (what ``spampot ingest`` did before the event contract)."""
    import duckdb

    from spampot.analysis.ingest import TABLES
    from spampot.analysis.sql import add_spark_names, load_sql
    from spampot.contract import COLUMNS

    files = sorted(str(p) for p in raw.glob("*/events/*.jsonl.gz"))
    columns = {name: kind for name, kind in COLUMNS.items()}
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = false")
    add_spark_names(con)
    con.execute(
        "CREATE TEMP TABLE ipinfo (src_ip VARCHAR, country VARCHAR, asn BIGINT,"
        " as_name VARCHAR, as_country VARCHAR, geo_source VARCHAR)"
    )
    con.execute(
        f"""CREATE TEMP TABLE batch_events AS
        SELECT * EXCLUDE (timestamp, filename), timestamp AS ts,
            regexp_extract(filename, '([^/]+)/events/[^/]+$', 1) AS raw_sensor
        FROM read_json({files!r}, format = 'newline_delimited', columns = {columns!r},
            filename = true)"""
    )
    rows = 0
    for table in TABLES:
        row = con.execute(
            f"COPY ({load_sql(f'ingest_{table}')}) TO '{warehouse / table}'"
            " (FORMAT parquet, PARTITION_BY (day), COMPRESSION snappy)"
        ).fetchone()
        rows += int(row[0]) if row else 0
    con.close()
    return rows


def bench_ingest(work: Path, n_events: int, runs: int, compare_python: str | None = None) -> dict:
    """Rounds of: ``spampot ingest``, the bare baseline (and another installation's ingest,
    ``compare_python``), each in a fresh process, back to back; medians and same-round
    ratios."""
    raw = work / f"events-{n_events}"
    marker = raw / "COUNT"
    if not marker.exists():
        shutil.rmtree(raw, ignore_errors=True)
        log(f"generating {n_events:,} events in the sensor's format ...")
        marker.parent.mkdir(parents=True, exist_ok=True)
        run_measured([sys.executable, __file__, "_make_events", str(raw), str(n_events)])
    count = int(marker.read_text())
    size = sum(p.stat().st_size for p in raw.glob("*/events/*.gz"))
    ingest_args = ["ingest", "--raw", str(raw), "--no-geoip2fast", "--threads", "1"]
    variants = {
        "ingest": lambda wh: spampot(*ingest_args, "--warehouse", str(wh)),
        # The same without reading the stored messages into the content tables (here every
        # message's file is missing: one "missing" row each, no extraction).
        "ingest_no_content": lambda wh: spampot(
            *ingest_args, "--no-content", "--warehouse", str(wh)
        ),
        "bare": lambda wh: [sys.executable, __file__, "_bare_ingest", str(raw), str(wh)],
    }
    if compare_python:
        other = [compare_python, "-m", "spampot", *ingest_args]
        variants["compared"] = lambda wh: [*other, "--warehouse", str(wh)]
        variants["compared_no_content"] = lambda wh: [
            *other, "--no-content", "--warehouse", str(wh)
        ]  # fmt: skip
    results: dict[str, list[dict]] = {name: [] for name in variants}
    for i in range(runs):
        for name, command in variants.items():
            warehouse = work / "ingest-warehouse"
            shutil.rmtree(warehouse, ignore_errors=True)
            warehouse.mkdir(parents=True)
            m = run_measured(command(warehouse))
            m.pop("stdout")
            m["events_per_s"] = count / m["wall_s"]
            m["events_per_cpu_s"] = count / m["cpu_s"]
            m["loadavg"] = os.getloadavg()[0]
            log(
                f"{name} run {i + 1}: {m['wall_s']:.2f} s, {m['cpu_s']:.2f} CPU-s,"
                f" {m['events_per_cpu_s']:,.0f} events/CPU-s, {m['max_rss_mib']:,.0f} MiB,"
                f" load {m['loadavg']:.1f}"
            )
            results[name].append(m)
    shutil.rmtree(work / "ingest-warehouse", ignore_errors=True)
    out: dict = {"events": count, "gzip_bytes": size}
    for name, measured in results.items():
        out[name] = {
            "runs": measured,
            "median_cpu_s": statistics.median(r["cpu_s"] for r in measured),
            "median_events_per_s": statistics.median(r["events_per_s"] for r in measured),
            "median_events_per_cpu_s": statistics.median(r["events_per_cpu_s"] for r in measured),
            "max_rss_mib": max(r["max_rss_mib"] for r in measured),
        }
    # CPU of each against the bare baseline's in the same round.
    for name in results:
        if name != "bare":
            out[name]["cpu_over_bare"] = statistics.median(
                a["cpu_s"] / b["cpu_s"] for a, b in zip(results[name], results["bare"], strict=True)
            )
    # And against the other installation's, round by round (the same with content or not).
    for name, other in (("ingest", "compared"), ("ingest_no_content", "compared_no_content")):
        if other in results:
            out[name]["cpu_over_compared"] = [
                a["cpu_s"] / b["cpu_s"] for a, b in zip(results[name], results[other], strict=True)
            ]
    return out


# --- 2. paper-shaped warehouse -----------------------------------------------------------


# Rows written per COPY: one COPY of 50 million rows, partitioned by 466 days, spilled
# tens of GB to disk; slices of the same rows (the same i, so the same data) do not.
SLICE = 10_000_000


# u(i, salt): a uniform number in [0, 1) from a hash, so the data is the same every run.
UNIFORM = "((hash(i * 7919 + {salt}) % 1000000007) / 1000000007.0)"
# Email i's address, day, second and sensor: drawn once here, so the content rows made for
# email i fall on the address, day and sensor of its messages row.
EMAIL_DRAWS = ",\n".join(
    (
        f"CAST(floor({UNIFORM.format(salt=1)} * {N_IPS}) AS BIGINT) AS ip_id",
        f"CAST(floor({UNIFORM.format(salt=3)} * {N_DAYS}) AS INTEGER) AS d",
        f"CAST(floor({UNIFORM.format(salt=4)} * 86400) AS INTEGER) AS sec",
        f"CAST(floor({UNIFORM.format(salt=5)} * {N_SENSORS}) AS INTEGER) AS s",
    )
)


def _slices(n: int) -> list[tuple[int, int]]:
    return [(lo, min(lo + SLICE, n)) for lo in range(0, n, SLICE)]


def source_addresses(seed: int = 11) -> pa.Table:
    """The N_IPS source addresses (``ip_id``, ``src_ip``, AS and country of each)."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    # Source addresses: each belongs to one AS and country, drawn with the paper's email
    # shares, so emails (uniform over addresses) follow them too.
    labels: list[tuple[int | None, str, str, str]] = []  # asn, name, as_country, country
    weights: list[float] = []
    for asn, name, cc, pct in ASES:
        labels.append((asn, name, cc, cc))
        weights.append(pct)
    for cc, pct in COUNTRIES:  # the country's emails not in its listed ASes
        rest = pct - sum(p for _, _, c, p in ASES if c == cc)
        for k in range(40):
            labels.append((64512 + len(labels), f"{cc}-NET-{k}", cc, cc))
            weights.append(rest / 40)
    others = 100 - sum(p for _, p in COUNTRIES)
    for k in range(2_956):  # 3,006 ASes in all, in 165 countries
        cc = f"{chr(65 + (k % 155) // 26)}{chr(65 + k % 26)}"
        labels.append((100_000 + k, f"AS-{k}", cc, cc))
        weights.append(others / 2_956)
    p = np.array(weights) / sum(weights)
    ip_label = rng.choice(len(labels), size=N_IPS, p=p)
    ip_ints = rng.choice(2**32 - 2**24, size=N_IPS, replace=False) + 2**24
    return pa.table(
        {
            "ip_id": np.arange(N_IPS),
            "src_ip": [f"{i >> 24}.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}" for i in ip_ints],
            "asn": [labels[k][0] for k in ip_label],
            "as_name": [labels[k][1] for k in ip_label],
            "as_country": [labels[k][2] for k in ip_label],
            "country": [labels[k][3] for k in ip_label],
        }
    )


def make_warehouse(
    path: Path, n_messages: int, seed: int = 11, checkpoints: tuple[int, ...] = ()
) -> None:
    """The warehouse's tables, written as Parquet with the paper's distributions.

    Emails and proxy requests are written slice by slice, in step (the proxy requests of
    emails [lo, hi) after them), so that the first n emails' warehouse is a prefix of the
    files: at each size of ``checkpoints`` (emails, a multiple of the slice) a complete
    warehouse of that size is hard-linked beside (``warehouse-<n/1e6>M``), for no more disk.
    """
    import duckdb
    import numpy as np
    import pyarrow as pa

    ips = source_addresses(seed)
    port_cum = np.cumsum([w for _, _, w in PORTS]) / sum(w for _, _, w in PORTS)
    ports = pa.table(
        {
            "k": np.arange(len(PORTS)),
            "upper": port_cum,
            "dst_port": [p for p, _, _ in PORTS],
            "via": [v for _, v, _ in PORTS],
        }
    )
    total = sum(n for _, _, n in OUTCOMES)
    out_cum = np.cumsum([n for _, _, n in OUTCOMES]) / total
    outcomes = pa.table(
        {
            "upper": out_cum,
            "protocol": [p for p, _, _ in OUTCOMES],
            "outcome": [o for _, o, _ in OUTCOMES],
        }
    )
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET memory_limit = '4GB'")
    con.execute(f"SET temp_directory = '{path.parent / 'duckdb-tmp'}'")
    con.register("ips_a", ips)
    con.register("ports_a", ports)
    con.register("outcomes_a", outcomes)
    con.execute("CREATE TABLE ips AS SELECT * FROM ips_a")
    con.execute("CREATE TABLE ports AS SELECT * FROM ports_a")
    con.execute("CREATE TABLE outcomes AS SELECT * FROM outcomes_a")
    geo = "country+as_name: bench (paper-shaped); asn+as_country: bench"
    u = UNIFORM

    def write_message_slice(lo: int, hi: int) -> None:
        con.execute(
            f"""
        COPY (
            WITH m AS (
                SELECT i,
                    {EMAIL_DRAWS},
                    {u.format(salt=2)} AS up,
                    {u.format(salt=6)} AS ur
                FROM range({lo}, {hi}) AS t(i)
            )
            SELECT
                TIMESTAMP '2006-06-10' + to_days(d) + to_seconds(sec) AS ts,
                printf('br-%02d', s + 1) AS sensor,
                '{BODY_DIR}' AS raw_sensor,
                printf('%012x', i) AS session,
                ips.src_ip, 40000 AS src_port, '192.0.2.10' AS dst_ip,
                p.dst_port, CAST(NULL AS VARCHAR) AS proxied_by, p.via,
                CASE WHEN p.via = 'smtp' THEN NULL ELSE 'mx.victim.example' END AS target_host,
                CASE WHEN p.via = 'smtp' THEN NULL ELSE 25 END AS target_port,
                'pc.example' AS helo, 'x@sender.example' AS mail_from,
                CAST(NULL AS VARCHAR[]) AS rcpt_to,
                CAST(1 + floor(ur * 16.32) AS INTEGER) AS rcpt_count,
                3000 AS size, 'ab' AS sha256, printf('%010X', i) AS queue_id,
                printf('bodies/%d.eml.gz', i % {BODIES}) AS file,
                ips.country, ips.asn, ips.as_name, ips.as_country, '{geo}' AS geo_source,
                CAST(DATE '2006-06-10' + to_days(d) AS DATE) AS day
            FROM m
            JOIN ips USING (ip_id)
            ASOF JOIN ports AS p ON m.up <= p.upper
        ) TO '{path / "messages"}' (FORMAT parquet, PARTITION_BY (day), COMPRESSION snappy, APPEND)
        """
        )

    def write_proxy_slice(lo: int, hi: int) -> None:
        con.execute(
            f"""
        COPY (
            WITH r AS (
                SELECT i,
                    CAST(floor({u.format(salt=11)} * {N_IPS}) AS BIGINT) AS ip_id,
                    {u.format(salt=12)} AS uo,
                    CAST(floor({u.format(salt=13)} * {N_DAYS}) AS INTEGER) AS d,
                    CAST(floor({u.format(salt=14)} * 86400) AS INTEGER) AS sec,
                    CAST(floor({u.format(salt=15)} * {N_SENSORS}) AS INTEGER) AS s,
                    CAST(floor({u.format(salt=16)} * 50) AS INTEGER) AS mx
                FROM range({lo}, {hi}) AS t(i)
            )
            SELECT
                TIMESTAMP '2006-06-10' + to_days(d) + to_seconds(sec) AS ts,
                printf('br-%02d', s + 1) AS sensor, printf('br-%02d', s + 1) AS raw_sensor,
                printf('%012x', i) AS session, ips.src_ip, 40000 AS src_port,
                '192.0.2.10' AS dst_ip,
                CASE WHEN o.protocol = 'http' THEN 8080 ELSE 1080 END AS dst_port,
                CAST(NULL AS VARCHAR) AS proxied_by, o.protocol, CAST(NULL AS VARCHAR) AS version,
                CASE WHEN o.outcome = 'get' THEN 'GET' ELSE 'CONNECT' END AS method,
                CASE WHEN o.outcome = 'error' THEN NULL ELSE printf('mx%d.victim.example', mx)
                END AS target_host,
                CASE WHEN o.outcome = 'smtp' THEN 25 WHEN o.outcome = 'error' THEN NULL
                     ELSE 80 END AS target_port,
                o.outcome, CAST(NULL AS VARCHAR) AS auth_method,
                CAST(NULL AS VARCHAR) AS auth_username, CAST(NULL AS VARCHAR) AS auth_password,
                CAST(NULL AS VARCHAR) AS error,
                ips.country, ips.asn, ips.as_name, ips.as_country, '{geo}' AS geo_source,
                CAST(DATE '2006-06-10' + to_days(d) AS DATE) AS day
            FROM r
            JOIN ips USING (ip_id)
            ASOF JOIN outcomes AS o ON r.uo <= o.upper
        ) TO '{path / "proxy_requests"}' (FORMAT parquet, PARTITION_BY (day), COMPRESSION snappy,
            APPEND)
        """
        )

    def write_recipient_domains(where: Path, n: int) -> None:
        domains = ["hotmail.com", "yahoo.com", "aol.com", "gmail.com", "msn.com", "uol.com.br"]
        con.execute(
            f"""
            COPY (
                SELECT printf('br-%02d', s + 1) AS sensor, dom AS domain,
                    CAST({n} * 9.16 / {N_DAYS * N_SENSORS * len(domains)} AS BIGINT)
                        AS recipients,
                    CAST(DATE '2006-06-10' + to_days(d) AS DATE) AS day
                FROM range({N_DAYS}) AS a(d), range({N_SENSORS}) AS b(s),
                     unnest({domains!r}) AS c(dom)
            ) TO '{where / "recipient_domains"}' (FORMAT parquet, PARTITION_BY (day))
            """
        )

    for lo, hi in _slices(n_messages):
        write_message_slice(lo, hi)
        write_proxy_slice(int(lo * PROXY_PER_EMAIL), int(hi * PROXY_PER_EMAIL))
        if hi in checkpoints and hi < n_messages:
            copy = path.parent / f"warehouse-{hi // 1_000_000}M"
            shutil.rmtree(copy, ignore_errors=True)
            copy.mkdir()
            for table in ("messages", "proxy_requests"):
                shutil.copytree(path / table, copy / table, copy_function=os.link)
            write_recipient_domains(copy, hi)
            (copy / "COMPLETE").write_text("ok")
            log(f"  {hi:,} emails: {copy}")
    write_recipient_domains(path, n_messages)
    con.close()


def content_templates(raw: Path) -> dict[str, pa.Table]:
    """The content rows of the BODIES message files, extracted by the ingest's own code
    (``content.batch.extract_chunk``): one ``message_content`` row per file and its URL and
    attachment rows, each with ``k``, the file's number, in place of the per-email keys."""
    import datetime as dt

    import pyarrow as pa

    from spampot.analysis.content.batch import Source, extract_chunk
    from spampot.analysis.content.limits import DEFAULT_LIMITS
    from spampot.analysis.content.schema import arrow_schema

    sources = [
        Source(
            dt.datetime(2006, 6, 10, 12),
            "br-01",
            BODY_DIR,
            f"bodies/{k}.eml.gz",
            "192.0.2.1",
            None,
            None,
            None,
            "192.0.2.10",
            8080,
            "mx.victim.example",
            9,
        )
        for k in range(BODIES)
    ]
    content, urls, attachments = extract_chunk(sources, raw, DEFAULT_LIMITS)
    keys = {"ts", "sensor", "raw_sensor", "file", "src_ip", "sha256", "country", "asn"}
    out = {}
    for name, rows in (
        ("message_content", content),
        ("message_urls", urls),
        ("message_attachments", attachments),
    ):
        schema = arrow_schema(name)
        file_at = schema.names.index("file")
        columns: dict[str, object] = {
            "k": pa.array([int(r[file_at].split("/")[1].split(".")[0]) for r in rows], pa.int64())
        }
        for i, field in enumerate(schema):
            if field.name not in keys:
                columns[field.name] = pa.array([r[i] for r in rows], field.type)
        out[name] = pa.table(columns)
    return out


def add_content(path: Path, raw: Path, n_messages: int) -> dict[str, int]:
    """The content tables of a paper-shaped warehouse: for email i (the same email as in
    ``messages``: its time, sensor, source address, country and AS), the content extracted
    from message file i mod BODIES (200 campaigns of the simulator), under a file name of its
    own, as the ingest writes one row per email; its URLs and attachments likewise."""
    import duckdb

    write_bodies(raw)
    templates = content_templates(raw)
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET memory_limit = '4GB'")
    con.execute(f"SET temp_directory = '{path.parent / 'duckdb-tmp'}'")
    con.register("ips_a", source_addresses())
    con.execute("CREATE TABLE ips AS SELECT * FROM ips_a")
    counts = {}
    for name, template in templates.items():
        shutil.rmtree(path / name, ignore_errors=True)
        con.register("template_a", template)
        con.execute("CREATE OR REPLACE TABLE template AS SELECT * FROM template_a")
        con.unregister("template_a")
        columns = ", ".join(f't."{c}"' for c in template.column_names if c != "k")
        extra = "ips.country, ips.asn," if name == "message_content" else ""
        sha = "printf('%064x', i) AS sha256," if name == "message_content" else ""
        counts[name] = 0
        for lo, hi in _slices(n_messages):
            row = con.execute(
                f"""
            COPY (
                WITH m AS (
                    SELECT i,
                        {EMAIL_DRAWS}
                    FROM range({lo}, {hi}) AS r(i)
                )
                SELECT
                    TIMESTAMP '2006-06-10' + to_days(d) + to_seconds(sec) AS ts,
                    printf('br-%02d', s + 1) AS sensor,
                    '{BODY_DIR}' AS raw_sensor,
                    printf('mail/%012x.eml.gz', i) AS file,
                    ips.src_ip, {sha} {extra} {columns},
                    CAST(DATE '2006-06-10' + to_days(d) AS DATE) AS day
                FROM m
                JOIN ips USING (ip_id)
                JOIN template AS t ON t.k = m.i % {BODIES}
            ) TO '{path / name}' (FORMAT parquet, PARTITION_BY (day), COMPRESSION snappy,
                APPEND)
            """
            ).fetchone()
            counts[name] += int(row[0]) if row else 0
    con.close()
    return counts


def write_bodies(raw: Path) -> None:
    """The message files the warehouse's emails point to (``raw/<BODY_DIR>/bodies/<k>``):
    spam of 200 campaigns as the simulator writes it, read by the report's campaign sample."""
    import gzip

    from spampot.simulate.bodies import Campaigns

    out = raw / BODY_DIR / "bodies"
    if (out / "COMPLETE").exists():
        return
    out.mkdir(parents=True, exist_ok=True)
    campaigns = Campaigns(seed=5, count=200)
    for k in range(BODIES):
        data = campaigns.message(
            k % 200, k, "x@sender.example", "v@victim.example",
            "Sat, 10 Jun 2006 12:00:00 +0000", f"{k}.bench",
        )  # fmt: skip
        (out / f"{k}.eml.gz").write_bytes(gzip.compress(data, compresslevel=1))
    (out / "COMPLETE").write_text("ok")


def ensure_warehouses(work: Path, sizes: list[int]) -> None:
    """Generate the warehouses of ``sizes`` (millions of emails) not yet there: the largest,
    with the smaller ones hard-linked from its prefix on the way (make_warehouse)."""
    missing = sorted(m for m in sizes if not (work / f"warehouse-{m}M" / "COMPLETE").exists())
    if not missing:
        return
    largest = missing[-1]
    log(f"generating paper-shaped warehouses of {', '.join(map(str, missing))} million emails ...")
    started = time.perf_counter()
    # In a process of its own: a child's peak RSS (from wait4) starts at its parent's.
    path = work / f"warehouse-{largest}M"
    checkpoints = ",".join(str(m * 1_000_000) for m in missing[:-1])
    run_measured(
        [sys.executable, __file__, "_make_warehouse", str(path), str(largest), checkpoints]
    )
    (path / "COMPLETE").write_text("ok")
    log(f"  done in {time.perf_counter() - started:.0f} s")


def replicate_warehouse(work: Path, millions: int, parts: list[tuple[int, int]]) -> None:
    """``warehouse-<millions>M`` made of hard links to the files of generated warehouses
    (``parts``: (millions of a generated one, copies of it)), each file linked again under a
    name of its own per copy: for no more disk, a warehouse of that many emails with the
    generated ones' distinct addresses, ASes, countries, days and sensors, which are the
    paper's and do not grow with the emails (216,888 addresses at any size), and the same
    number of files per day per ten million emails as a generated one. Its rows repeat."""
    path = work / f"warehouse-{millions}M"
    if (path / "COMPLETE").exists():
        return
    if sum(m * copies for m, copies in parts) != millions:
        raise SystemExit(f"--replicate: {parts} does not make {millions} million emails")
    shutil.rmtree(path, ignore_errors=True)
    for m, copies in parts:
        source = work / f"warehouse-{m}M"
        if not (source / "COMPLETE").exists():
            raise SystemExit(f"--replicate: {source} is not a complete warehouse")
        for part in sorted(source.glob("*/day=*/*.parquet")):
            day_dir = path / part.parent.parent.name / part.parent.name
            day_dir.mkdir(parents=True, exist_ok=True)
            for k in range(copies):
                os.link(part, day_dir / f"r{m}x{k}-{part.name}")
    (path / "COMPLETE").write_text("ok")


def write_inventory(work: Path) -> Path:
    path = work / "inventory.toml"
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    entries = []
    for s in range(N_SENSORS):
        tag = "residential" if s < 7 else "business"
        entries.append(
            f'[[sensor]]\nname = "br-{s + 1:02d}"\nhost = "h{s}.example"\nkey = "k"\n'
            f'host_key = "{key}"\ntags = ["{tag}"]\n'
        )
    path.write_text("\n".join(entries))
    return path


def bench_report(
    work: Path,
    sizes: list[int],
    runs: int,
    skip_baseline: bool = False,
    campaign_sample: int = 2000,
    content: bool = False,
    steps: bool = False,
) -> dict:
    inventory = write_inventory(work)
    write_bodies(work / "raw")
    out: dict = {"sizes": {}, "content": content}
    ensure_warehouses(work, sizes)
    for millions in sizes:
        warehouse = work / f"warehouse-{millions}M"
        if content and not (warehouse / "CONTENT").exists():
            log(f"content tables for {millions} million emails ...")
            m = run_measured(
                [sys.executable, __file__, "_add_content", str(warehouse), str(work / "raw"),
                 str(millions)]
            )  # fmt: skip
            (warehouse / "CONTENT").write_text(m["stdout"])
            log(f"  done in {m['wall_s']:.0f} s")
        elif not content:
            for name in ("message_content", "message_urls", "message_attachments"):
                if (warehouse / name).exists():
                    raise SystemExit(f"{warehouse} has content tables: run with --content")
        disk = sum(p.stat().st_size for p in warehouse.rglob("*.parquet"))
        results = []
        for i in range(runs):
            m = run_measured(
                spampot(
                    "report",
                    "--warehouse",
                    str(warehouse),
                    "--inventory",
                    str(inventory),
                    "--raw",
                    str(work / "raw"),
                    "--campaign-sample",
                    str(campaign_sample),
                    "--quiet",
                    "--out",
                    str(work / "report-out"),
                )
            )
            m.pop("stdout")
            log(
                f"report {millions}M run {i + 1}: {m['wall_s']:.1f} s ({m['cpu_s']:.1f} CPU-s),"
                f" {m['max_rss_mib']:,.0f} MiB peak RSS"
            )
            results.append(m)
        profile = None
        if steps:
            m = run_measured(
                [sys.executable, __file__, "_report_steps", str(warehouse), str(work / "raw"),
                 str(inventory), str(campaign_sample)]
            )  # fmt: skip
            profile = json.loads(m["stdout"])
            for name, wall, cpu in profile:
                log(f"  {name}: {wall:.1f} s, {cpu:.1f} CPU-s")
        tables: dict[str, dict] = {}
        for name in () if skip_baseline else ("pandas", "duckdb"):
            measured = []
            for _ in range(runs):
                m = run_measured([sys.executable, __file__, f"_tables23_{name}", str(warehouse)])
                answer = json.loads(m.pop("stdout"))
                measured.append(m)
                log(
                    f"tables 2-3 {millions}M {name}: {m['wall_s']:.1f} s"
                    f" ({m['cpu_s']:.1f} CPU-s), {m['max_rss_mib']:,.0f} MiB"
                )
            tables[name] = {
                "answer": answer,
                "runs": measured,
                "wall_s": statistics.median(r["wall_s"] for r in measured),
                "max_rss_mib": max(r["max_rss_mib"] for r in measured),
            }
        if tables and tables["pandas"]["answer"]["top"] != tables["duckdb"]["answer"]["top"]:
            raise SystemExit("pandas and DuckDB disagree on Table 3")
        out["sizes"][millions] = {
            "parquet_bytes": disk,
            "runs": results,
            "median_s": statistics.median(r["wall_s"] for r in results),
            "median_cpu_s": statistics.median(r["cpu_s"] for r in results),
            "max_rss_mib": max(r["max_rss_mib"] for r in results),
            "tables23": tables,
            "steps": profile,
            "loadavg": os.getloadavg(),
            "pandas_over_duckdb": tables["pandas"]["wall_s"] / tables["duckdb"]["wall_s"]
            if tables
            else None,
        }
    xs = [m * 1e6 for m in sizes]
    if len(xs) >= 2:
        # Least-squares lines through the sizes' medians, of wall seconds and (what a shared
        # machine's load disturbs least) CPU seconds.
        for key, prefix in (("median_s", ""), ("median_cpu_s", "cpu_")):
            ys = [out["sizes"][m][key] for m in sizes]
            mean_x, mean_y = statistics.mean(xs), statistics.mean(ys)
            slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sum(
                (x - mean_x) ** 2 for x in xs
            )
            out[f"{prefix}seconds_per_million"] = slope * 1e6
            out[f"{prefix}fixed_s"] = mean_y - slope * mean_x
            out[f"extrapolated_525M_{prefix}s"] = out[f"{prefix}fixed_s"] + slope * 524_585_779
    return out


# --- 3. the baseline (run in a fresh process each) ---------------------------------------


def tables23_pandas(warehouse: Path) -> dict:
    import pandas as pd

    df = pd.read_parquet(
        warehouse / "messages", columns=["day", "src_ip", "country", "asn", "as_name", "rcpt_count"]
    )
    days = df["day"].astype("string")  # the partition directory's value
    first, last = days.min(), days.max()
    ases = df["asn"].astype("string").fillna("name:" + df["as_name"].astype("string"))
    general = {
        "first": str(first),
        "last": str(last),
        "emails": len(df),
        "recipients": int(df["rcpt_count"].sum()),
        "ips": int(df["src_ip"].nunique()),
        "ases": int(ases.nunique()),
        "countries": int(df["country"].nunique()),
    }
    top = df["country"].value_counts().head(10)
    return {"general": general, "top": {str(k): int(v) for k, v in top.items()}}


def tables23_duckdb(warehouse: Path) -> dict:
    from spampot.analysis.filters import ReportFilter
    from spampot.analysis.report import countries_table, general_table, group_rows
    from spampot.analysis.sql import render_sql
    from spampot.analysis.warehouse import open_warehouse

    con = open_warehouse(warehouse, ReportFilter(), {})
    group_rows(con)  # the aggregates the two tables' queries read
    general = general_table(con.execute(render_sql("report_general")).fetchone(), 0)
    top = countries_table(con.execute(render_sql("report_country_by_day")).fetchall(), 10)
    con.close()
    stats = dict(general.rows)
    return {
        "general": {
            "emails": stats["Total emails collected"],
            "ips": stats["Unique IPs sending spam"],
        },
        "top": {r[1]: r[2] for r in top.rows},
    }


def report_steps(warehouse: Path, raw: Path, inventory: Path, campaign_sample: int) -> list:
    """``spampot report``'s steps (build_report's progress names) timed one by one: wall
    and CPU seconds of each, in this process (as the command runs them)."""
    import resource

    from spampot.analysis.cli import load_sensor_info
    from spampot.analysis.filters import ReportFilter
    from spampot.analysis.report import ReportOptions, build_report
    from spampot.analysis.warehouse import open_warehouse

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    marks = [("open the warehouse", time.perf_counter(), cpu())]
    info = load_sensor_info(inventory)
    con = open_warehouse(warehouse, ReportFilter(), info)
    options = ReportOptions(raw_dir=raw, campaign_sample=campaign_sample)
    build_report(
        con, options, info, step=lambda name: marks.append((name, time.perf_counter(), cpu()))
    )
    con.close()
    marks.append(("end", time.perf_counter(), cpu()))
    return [(name, t2 - t, c2 - c) for (name, t, c), (_, t2, c2) in itertools.pairwise(marks)]


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "_make_events":
        raw = Path(sys.argv[2])
        (raw / "COUNT").write_text(str(make_events(raw, int(sys.argv[3]))))
        return
    if len(sys.argv) == 4 and sys.argv[1] == "_bare_ingest":
        print(bare_ingest(Path(sys.argv[2]), Path(sys.argv[3])))
        return
    if len(sys.argv) == 5 and sys.argv[1] == "_make_warehouse":
        checkpoints = tuple(int(n) for n in sys.argv[4].split(",") if n)
        make_warehouse(Path(sys.argv[2]), int(sys.argv[3]) * 1_000_000, checkpoints=checkpoints)
        return
    if len(sys.argv) == 5 and sys.argv[1] == "_add_content":
        counts = add_content(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]) * 1_000_000)
        print(json.dumps(counts))
        return
    if len(sys.argv) == 6 and sys.argv[1] == "_report_steps":
        steps = report_steps(
            Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]), int(sys.argv[5])
        )
        print(json.dumps(steps))
        return
    if len(sys.argv) == 3 and sys.argv[1].startswith("_tables23_"):
        fn = tables23_pandas if sys.argv[1] == "_tables23_pandas" else tables23_duckdb
        print(json.dumps(fn(Path(sys.argv[2]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/var/tmp/spampot-analysis-bench"))
    parser.add_argument("--ingest-events", type=int, default=3_000_000)
    parser.add_argument("--sizes", default="5,20,50", help="report sizes, millions of emails")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument(
        "--compare-python",
        help="another installation's python (e.g. an older checkout's venv): its ingest too",
    )
    parser.add_argument("--skip-report", action="store_true")
    parser.add_argument("--skip-baseline", action="store_true", help="no pandas comparison")
    parser.add_argument(
        "--campaign-sample", type=int, default=2000, help="the report's (0: no campaigns)"
    )
    parser.add_argument(
        "--content",
        action="store_true",
        help="give the warehouses content tables (one row per email) and time the report"
        " with them (the whole-corpus campaigns)",
    )
    parser.add_argument(
        "--steps", action="store_true", help="one more report per size, timed step by step"
    )
    parser.add_argument(
        "--replicate",
        action="append",
        default=[],
        metavar="N=AxK[+BxL]",
        help="make warehouse-<N>M of hard links to K copies of warehouse-<A>M (and L of"
        " warehouse-<B>M), e.g. 525=100x5+5x5 for the paper's 525 million (see"
        " replicate_warehouse); then give N in --sizes",
    )
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    result: dict = {"cores": os.cpu_count(), "loadavg_start": os.getloadavg()}
    if not args.skip_ingest:
        result["ingest"] = bench_ingest(
            args.work, args.ingest_events, args.runs, args.compare_python
        )
    for spec in args.replicate:
        target, _, recipe = spec.partition("=")
        parts = [(int(a), int(k)) for a, _, k in (p.partition("x") for p in recipe.split("+"))]
        replicate_warehouse(args.work, int(target), parts)
    if not args.skip_report:
        sizes = [int(s) for s in args.sizes.split(",") if s]
        result["report"] = bench_report(
            args.work,
            sizes,
            args.runs,
            args.skip_baseline,
            args.campaign_sample,
            args.content,
            args.steps,
        )
    result["loadavg_end"] = os.getloadavg()
    text = json.dumps(result, indent=1)
    if args.json_out:
        args.json_out.write_text(text + "\n")
    else:
        print(text)
    summary = []
    if "ingest" in result:
        i = result["ingest"]
        for name in ("ingest", "ingest_no_content", "bare", "compared", "compared_no_content"):
            if name in i:
                s = i[name]
                summary.append(
                    f"{name} {s['median_events_per_cpu_s']:,.0f} events/CPU-s"
                    f" ({s['median_events_per_s']:,.0f}/s, {s['max_rss_mib']:,.0f} MiB"
                    + (f", {s['cpu_over_bare']:.2f}x bare's CPU" if "cpu_over_bare" in s else "")
                    + (
                        ", CPU against the compared's by round: "
                        + " ".join(f"{r:.2f}" for r in s["cpu_over_compared"])
                        if "cpu_over_compared" in s
                        else ""
                    )
                    + ")"
                )
    if "report" in result:
        r = result["report"]
        for m, s in r["sizes"].items():
            ratio = s["pandas_over_duckdb"]
            summary.append(
                f"report {m}M {s['median_s']:.1f} s {s['max_rss_mib']:,.0f} MiB"
                + (f" (pandas/duckdb tables 2-3: {ratio:.1f}x)" if ratio else "")
            )
        if "extrapolated_525M_s" in r:
            summary.append(
                f"525M extrapolated {r['extrapolated_525M_s']:.0f} s,"
                f" {r['extrapolated_525M_cpu_s']:.0f} CPU-s"
            )
    log("; ".join(summary))


if __name__ == "__main__":
    main()
