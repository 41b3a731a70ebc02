"""The report's content tables: what the spam advertises, carries and says, relay tests, and
campaigns clustered on the whole corpus.

Each table comes from ``sql/report_content_*.sql``, ``report_relay_*.sql`` or the
``campaign_*.sql`` steps over the views of the content tables (``message_content``,
``message_urls``, ``message_attachments``), on DuckDB or Spark alike; Python only labels,
rounds, and splits relay tests' recipient lists into mailboxes.

Campaigns are connected components of the graph joining two messages that share a feature
(a MinHash LSH band of their text, an advertised registered domain, an attachment), found by
label propagation in SQL: each step is two aggregations over the feature table, so it runs
on the whole corpus, in DuckDB on one machine or on a Spark cluster for more.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from typing import Any, Protocol

from spampot.analysis.model import Column, Table
from spampot.analysis.sql import load_sql, materialise, render_sql

MAX_STEPS = 50  # label propagation steps; campaigns in spam are chains of a few at most
SUMMARY_LABELS = {
    "ok": "read",
    "mismatch": "read, but the file differs from its event's SHA-256",
    "missing": "no message file (bodies not kept, or not collected)",
    "error": "unreadable (damaged gzip, or no parser could read it)",
}


class Connection(Protocol):
    def execute(self, sql: str, parameters: Any = ...) -> Any: ...


def _rows(con: Connection, name: str, **variables: object) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = con.execute(render_sql(name, **variables)).fetchall()
    return rows


def _when(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    return value


def _pct(part: float, whole: float) -> float:
    return round(100.0 * part / whole, 2) if whole else 0.0


def _seen() -> list[Column]:
    return [Column("first_seen", "First seen"), Column("last_seen", "Last seen")]


def content_tables(con: Connection, top: int) -> list[Table]:
    tables = [
        summary_table(_rows(con, "report_content_summary")),
        domains_table(_rows(con, "report_content_domains", top=top)),
        hosts_table(_rows(con, "report_content_hosts", top=top)),
        urls_table(_rows(con, "report_content_urls", top=top)),
        attachment_types_table(_rows(con, "report_content_attachment_types")),
        attachment_hashes_table(_rows(con, "report_content_attachment_hashes", top=top)),
        mailers_table(_rows(con, "report_content_mailers", top=top)),
        subjects_table(_rows(con, "report_content_subjects", top=top)),
        languages_table(_rows(con, "report_content_languages", top=top)),
    ]
    # The relay tests' queries join the emails to find what followed each test: a scan of
    # every email even when there is no test (4 CPU-s at 100 million emails), so ask first.
    tests = con.execute(
        "SELECT COUNT(*) FROM message_content WHERE relay_evidence IS NOT NULL"
    ).fetchone()
    relayed = bool(tests and tests[0])
    tables += [
        relay_mailboxes_table(_rows(con, "report_relay_tests") if relayed else [], top),
        relay_examples_table(_rows(con, "report_relay_examples", top=top) if relayed else []),
    ]
    return tables


def summary_table(rows: list[tuple[Any, ...]]) -> Table:
    total = sum(int(r[3]) for r in rows)
    return Table(
        "content_summary",
        "Message contents read at ingest",
        [
            Column("status", "Status"),
            Column("meaning", "Meaning"),
            Column("parser", "Parser"),
            Column("limit", "Limit reached"),
            Column("messages", "Messages", "int"),
            Column("pct", "%", "pct"),
        ],
        [
            (s, SUMMARY_LABELS.get(s, s), p, lim, int(n), _pct(int(n), total))
            for s, p, lim, n in rows
        ],
        [
            "Every email's stored message is read at ingest (spampot.analysis.content); the"
            " fast parser is fast_mail_parser, the stdlib one Python's email (compat32) for what"
            " the fast one refuses. A limit reached is named; the message is read up to it."
        ],
    )


def domains_table(rows: list[tuple[Any, ...]]) -> Table:
    return Table(
        "content_domains",
        "Top advertised registered domains",
        [
            Column("rank", "#", "int"),
            Column("domain", "Registered domain"),
            Column("messages", "Messages", "int"),
            Column("hosts", "Hosts", "int"),
            Column("urls", "URLs", "int"),
            Column("sources", "Source IPs", "int"),
            Column("obfuscated", "Obfuscated links", "int"),
            *_seen(),
        ],
        [
            (i + 1, d, int(m), int(h), int(u), int(s), int(o), _when(f), _when(la))
            for i, (d, m, h, u, s, o, f, la) in enumerate(rows)
        ],
        [
            "Registered domains by the Public Suffix List shipped with the publicsuffixlist"
            " package (private suffixes count: foo.blogspot.com is its own domain); a numeric"
            " host is its address. Obfuscated links were defanged, entity- or %-encoded."
        ],
    )


def hosts_table(rows: list[tuple[Any, ...]]) -> Table:
    return Table(
        "content_hosts",
        "Top advertised hosts",
        [
            Column("rank", "#", "int"),
            Column("host", "Host"),
            Column("domain", "Registered domain"),
            Column("messages", "Messages", "int"),
            Column("sources", "Source IPs", "int"),
            *_seen(),
        ],
        [
            (i + 1, h, d, int(m), int(s), _when(f), _when(la))
            for i, (h, d, m, s, f, la) in enumerate(rows)
        ],
    )


def urls_table(rows: list[tuple[Any, ...]]) -> Table:
    return Table(
        "content_urls",
        "Top URLs",
        [
            Column("rank", "#", "int"),
            Column("url", "URL"),
            Column("messages", "Messages", "int"),
            Column("sources", "Source IPs", "int"),
            *_seen(),
        ],
        [
            (i + 1, u, int(m), int(s), _when(f), _when(la))
            for i, (u, m, s, f, la) in enumerate(rows)
        ],
    )


def attachment_types_table(rows: list[tuple[Any, ...]]) -> Table:
    return Table(
        "content_attachment_types",
        "Attachments by type",
        [
            Column("type", "Type (sniffed)"),
            Column("attachments", "Attachments", "int"),
            Column("distinct", "Distinct files", "int"),
            Column("declared_otherwise", "Declared as another type", "int"),
            Column("pct", "%", "pct"),
        ],
        [(t, int(n), int(d), int(o), round(float(p), 2)) for t, n, d, o, p in rows],
        ["The type is what the bytes show (their magic numbers), not what the message said."],
    )


def attachment_hashes_table(rows: list[tuple[Any, ...]]) -> Table:
    return Table(
        "content_attachment_hashes",
        "Top attachments by SHA-256",
        [
            Column("rank", "#", "int"),
            Column("sha256", "SHA-256"),
            Column("filename", "A file name"),
            Column("type", "Type"),
            Column("size", "Bytes", "int"),
            Column("tlsh", "TLSH"),
            Column("messages", "Messages", "int"),
            Column("sources", "Source IPs", "int"),
            *_seen(),
        ],
        [
            (i + 1, h, fn, t, int(sz), tl, int(m), int(s), _when(f), _when(la))
            for i, (h, fn, t, sz, tl, m, s, f, la) in enumerate(rows)
        ],
    )


def mailers_table(rows: list[tuple[Any, ...]]) -> Table:
    return Table(
        "content_mailers",
        "Top mailers (X-Mailer, else User-Agent)",
        [
            Column("rank", "#", "int"),
            Column("mailer", "Mailer"),
            Column("messages", "Messages", "int"),
            Column("sources", "Source IPs", "int"),
            Column("pct", "% of those naming one", "pct"),
        ],
        [(i + 1, n, int(m), int(s), round(float(p), 2)) for i, (n, m, s, p) in enumerate(rows)],
    )


def subjects_table(rows: list[tuple[Any, ...]]) -> Table:
    return Table(
        "content_subjects",
        "Top subjects (decoded)",
        [
            Column("rank", "#", "int"),
            Column("subject", "Subject"),
            Column("messages", "Messages", "int"),
            Column("sources", "Source IPs", "int"),
            *_seen(),
        ],
        [
            (i + 1, s, int(m), int(n), _when(f), _when(la))
            for i, (s, m, n, f, la) in enumerate(rows)
        ],
    )


def languages_table(rows: list[tuple[Any, ...]]) -> Table:
    return Table(
        "content_languages",
        "Languages and charsets",
        [
            Column("language", "Language"),
            Column("charset", "Charset (declared)"),
            Column("messages", "Messages", "int"),
            Column("pct", "%", "pct"),
        ],
        [(lang, cs, int(m), round(float(p), 2)) for lang, cs, m, p in rows],
        ["Language as CLD2 names it from the visible text (zh-Hant: traditional Chinese)."],
    )


def relay_mailboxes_table(rows: list[tuple[Any, ...]], top: int) -> Table:
    """Tests grouped by recipient list (SQL) regrouped by mailbox."""
    tests: Counter[str] = Counter()
    followed: Counter[str] = Counter()
    after: Counter[str] = Counter()
    sources: dict[str, int] = defaultdict(int)
    first: dict[str, Any] = {}
    last: dict[str, Any] = {}
    for mailboxes, n, src, _sensors, fol, aft, f, la in rows:
        for box in sorted({str(b).lower() for b in (mailboxes or [])}):
            tests[box] += int(n)
            followed[box] += int(fol)
            after[box] += int(aft or 0)
            sources[box] += int(src)  # an upper bound when lists overlap: said in the note
            first[box] = f if box not in first else min(first[box], f)
            last[box] = la if box not in last else max(last[box], la)
    ranked = sorted(tests, key=lambda b: (-tests[b], b))[:top]
    total = sum(int(r[1]) for r in rows)
    return Table(
        "relay_test_mailboxes",
        "Relay tests and the mailboxes they were sent to",
        [
            Column("rank", "#", "int"),
            Column("mailbox", "Mailbox"),
            Column("tests", "Tests", "int"),
            Column("sources", "Source IPs", "int"),
            Column("followed", "Followed by a burst", "int"),
            Column("after", "Messages in the hour after", "int"),
            *_seen(),
        ],
        [
            (
                i + 1,
                b,
                tests[b],
                sources[b],
                followed[b],
                after[b],
                _when(first[b]),
                _when(last[b]),
            )
            for i, b in enumerate(ranked)
        ],
        [
            f"{total:,} relay tests: short messages (500 characters at most, no attachment, one"
            " URL at most) to at most 3 mailboxes that carry the address the client reached,"
            " an address with the port it reached, the server the tunnel asked for, a token,"
            " or test vocabulary in the subject (spampot.analysis.content.relay). The mailboxes"
            " are the spammers' own. A burst: 10 or more messages from the same source"
            " through the same sensor within the hour after the test.",
        ],
    )


def relay_examples_table(rows: list[tuple[Any, ...]]) -> Table:
    return Table(
        "relay_tests",
        "Latest relay tests, with their evidence",
        [
            Column("when", "When"),
            Column("sensor", "Sensor"),
            Column("src_ip", "Source IP"),
            Column("country", "CC"),
            Column("subject", "Subject"),
            Column("evidence", "Evidence"),
            Column("after", "Messages in the hour after", "int"),
        ],
        [(_when(t), s, ip, cc, subj, ev, int(n)) for t, s, ip, cc, subj, ev, n in rows],
    )


# --- campaigns ------------------------------------------------------------------------------


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def cluster(con: Connection) -> tuple[str, int, bool]:
    """Label every message that shares a feature with its component's least feature.

    The components are found on the feature graph (campaign_links.sql: a message links
    each of its features to its least one), whose nodes are the distinct shared features,
    not the messages: each propagation step is a pass over the links, and the messages are
    labelled once at the end. Returns the table of (msg, label), the steps made and whether
    the labels settled."""
    materialise(con, "campaign_edges", load_sql("campaign_edges"))
    materialise(con, "campaign_messages", load_sql("campaign_messages"))
    materialise(con, "campaign_links", load_sql("campaign_links"))
    labels = "campaign_labels_0"
    materialise(con, labels, load_sql("campaign_labels_init"))
    steps = 0
    settled = False
    while steps < MAX_STEPS:
        steps += 1
        nxt = f"campaign_labels_{steps}"
        materialise(con, nxt, render_sql("campaign_labels_step", labels=labels))
        changed = _rows(con, "campaign_labels_changed", labels=nxt, previous=labels)[0][0]
        labels = nxt
        if not changed:
            settled = True
            break
    materialise(con, "campaign_labels", render_sql("campaign_message_labels", labels=labels))
    return "campaign_labels", steps, settled


def campaigns_table(con: Connection, top: int) -> Table:
    labels, steps, converged = cluster(con)
    clusters = _rows(con, "campaign_clusters", labels=labels, top=top)
    messages, linked = _rows(con, "campaign_totals", labels=labels)[0]
    parts: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    if clusters:
        chosen = ", ".join(_literal(str(c[0])) for c in clusters)
        for label, kind, value, n in _rows(con, "campaign_parts", labels=labels, chosen=chosen):
            if value is not None:
                parts[(label, kind)][str(value)] += int(n)

    def best(label: str, kind: str) -> str:
        counts = parts.get((label, kind))
        if not counts:
            return ""
        return min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]

    def countries(label: str, size: int) -> str:
        counts = parts.get((label, "country"), Counter())
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        return ", ".join(f"{c} {100 * k / size:.0f}%" for c, k in ranked)

    rows = [
        (
            i + 1,
            best(label, "subject"),
            best(label, "domain"),
            int(n),
            _pct(int(n), int(messages or 0)),
            int(src),
            countries(label, int(n)),
            int(sensors),
            _when(f),
            _when(la),
        )
        for i, (label, n, src, _ncc, sensors, f, la) in enumerate(clusters)
    ]
    table = Table(
        "content_campaigns",
        "Campaigns on the whole corpus (shared text, links or attachments)",
        [
            Column("rank", "#", "int"),
            Column("subject", "Most common subject"),
            Column("domain", "Most advertised domain"),
            Column("messages", "Messages", "int"),
            Column("pct", "% of messages read", "pct"),
            Column("sources", "Source IPs", "int"),
            Column("countries", "Top countries"),
            Column("sensors", "Sensors", "int"),
            *_seen(),
        ],
        rows,
        [
            f"Every message read ({int(messages or 0):,}), no sample: two messages are one"
            " campaign when they share a MinHash LSH band of their normalised text (8 bands of"
            " 8 of 64 min-hashes of word 4-grams: likely from Jaccard 0.77 on), an advertised"
            " registered domain (not one in more than 2 % of messages) or an attachment;"
            f" campaigns are the connected components. {int(linked or 0):,} messages"
            f" ({_pct(int(linked or 0), int(messages or 0)):.2f} %) are in one;"
            f" {steps} propagation steps.",
        ],
    )
    if not converged:
        table.notes.append(
            f"Label propagation stopped after {MAX_STEPS} steps before it settled: a campaign"
            " may show as several."
        )
    return table
