"""Content-level grouping of near-identical emails into campaigns (paper §5, future work).

A uniform sample of the emails in range is read from the message files; each becomes a
MinHash signature of its subject and body (word 4-grams, after folding case, digits and
URLs, which spammers vary from copy to copy); locality-sensitive hashing finds pairs above a
Jaccard similarity threshold, and connected pairs form a campaign. Shares in the sample
estimate shares of all emails. Memory and time are bounded by the sample size.
"""

from __future__ import annotations

import datetime as dt
import email.header
import email.parser
import email.policy
import gzip
import re
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import duckdb
from datasketch import MinHash, MinHashLSH

from spampot.analysis.model import Column, Table
from spampot.analysis.sql import render_sql

NUM_PERM = 64
SHINGLE_WORDS = 4
MAX_MESSAGE_BYTES = 256 * 1024  # read at most this much of each message
MAX_TEXT_CHARS = 20_000  # and shingle at most this much of its text
CANDIDATES = 20  # emails drawn per email wanted in the sample, for when files are missing

_URL = re.compile(r"https?://\S+|www\.\S+", re.IGNORECASE)
_DIGITS = re.compile(r"\d+")
_WORD = re.compile(r"\w+")
_TAG = re.compile(r"<[^>]{0,2000}>")


@dataclass(slots=True)
class Sampled:
    sensor: str
    ts: dt.datetime
    src_ip: str
    country: str | None
    subject: str
    tokens: list[str]


# Tried in order for header bytes sent raw (RFC 6532 allows UTF-8; spam from the paper's top
# sources is often GB 2312/GBK or Big5 without any RFC 2047 label).
RAW_HEADER_CHARSETS = ("utf-8", "gb18030")


_SUBJECT = re.compile(rb"^subject:[ \t]*(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)


def raw_subject(raw: bytes) -> str:
    """The Subject header's text from the message's bytes (the parser would turn raw
    non-ASCII bytes into U+FFFD), unfolded (RFC 5322 §2.2.3) and decoded."""
    end = raw.find(b"\n\n")
    end2 = raw.find(b"\r\n\r\n")
    head = raw[: min(e for e in (end, end2, len(raw)) if e >= 0)]
    match = _SUBJECT.search(head)
    if match is None:
        return ""
    data = re.sub(rb"\r?\n(?=[ \t])", b"", match.group(1)).rstrip(b"\r")
    return _raw_header(data)


def _raw_header(data: bytes) -> str:
    """Header bytes as text: ASCII, else the first of RAW_HEADER_CHARSETS that fits."""
    if data.isascii():
        return data.decode("ascii")
    for charset in RAW_HEADER_CHARSETS:
        try:
            return data.decode(charset)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


def decode_subject(value: str) -> str:
    """A Subject as a person reads it: RFC 2047 encoded words decoded, raw bytes decoded."""
    if "=?" not in value:
        return value
    try:
        parts = email.header.decode_header(value)
    except (ValueError, IndexError, AssertionError):  # a malformed encoded word: keep it
        return value
    out: list[str] = []
    for text, charset in parts:
        if isinstance(text, str):
            out.append(text)
            continue
        try:
            out.append(text.decode(charset or "ascii", "replace"))
        except LookupError:  # a charset Python does not know: its bytes as Latin-1
            out.append(text.decode("latin-1", "replace"))
    return "".join(out)


def message_text(raw: bytes) -> tuple[str, str]:
    """(subject, text) of a message: headers parsed leniently, text parts decoded."""
    msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(raw)
    subject = decode_subject(raw_subject(raw))
    parts: list[str] = []
    for part in msg.walk():
        if part.is_multipart() or part.get_content_maintype() != "text":
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        charset = part.get_content_charset() or "latin-1"
        try:
            text = payload.decode(charset, "replace")
        except LookupError:
            text = payload.decode("latin-1", "replace")
        if part.get_content_subtype() == "html":
            text = _TAG.sub(" ", text)
        parts.append(text)
        if sum(len(p) for p in parts) > MAX_TEXT_CHARS:
            break
    return subject[:500], " ".join(parts)[:MAX_TEXT_CHARS]


def tokens_of(subject: str, text: str) -> list[str]:
    folded = _DIGITS.sub("0", _URL.sub(" url ", f"{subject} {text}".lower()))
    return _WORD.findall(folded)


def shingles(tokens: list[str]) -> set[bytes]:
    if len(tokens) < SHINGLE_WORDS:
        return {" ".join(tokens).encode()} if tokens else set()
    return {
        " ".join(tokens[i : i + SHINGLE_WORDS]).encode()
        for i in range(len(tokens) - SHINGLE_WORDS + 1)
    }


def read_message(path: Path) -> bytes | None:
    try:
        with gzip.open(path, "rb") as f:
            return f.read(MAX_MESSAGE_BYTES)
    except (OSError, EOFError, zlib.error):
        return None


def group(signatures: list[MinHash], threshold: float) -> list[list[int]]:
    """Indices grouped by LSH candidate pairs (union-find over the pairs)."""
    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    parent = list(range(len(signatures)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, sig in enumerate(signatures):
        for j in lsh.query(sig):
            a, b = find(i), find(int(j))
            if a != b:
                parent[max(a, b)] = min(a, b)
        lsh.insert(str(i), sig)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(len(signatures)):
        groups[find(i)].append(i)
    return sorted(groups.values(), key=lambda g: (-len(g), g[0]))


def campaigns_table(
    con: duckdb.DuckDBPyConnection,
    *,
    raw_dir: Path | None,
    sample: int,
    threshold: float,
    seed: int,
    top: int,
    total_emails: int,
) -> Table:
    columns = [
        Column("rank", "#", "int"),
        Column("subject", "Subject (one of the campaign)"),
        Column("sampled", "Emails in sample", "int"),
        Column("pct", "% of sample", "pct"),
        Column("estimated", "Estimated emails", "int"),
        Column("sources", "Source IPs", "int"),
        Column("countries", "Top countries"),
        Column("sensors", "Sensors", "int"),
        Column("first", "First seen"),
        Column("last", "Last seen"),
    ]
    table = Table("campaigns", "Campaigns: near-identical emails grouped by content", columns, [])
    if raw_dir is None:
        table.notes.append("Not computed: no raw/ directory given to read the messages from.")
        return table
    # Some message files may be gone (kept only for a while, or a sample of bodies kept): draw
    # more candidates than needed and read until the sample is full.
    # Sampling is the one thing each engine spells its own way (DuckDB's reservoir sample).
    name = (
        "campaign_sample_spark"
        if getattr(con, "dialect", "duckdb") == "spark"
        else "campaign_sample"
    )
    rows = con.execute(render_sql(name, sample=int(sample) * CANDIDATES, seed=int(seed)))
    sampled: list[Sampled] = []
    missing = 0
    for raw_sensor, sensor, file, ts, src_ip, country in rows.fetchall():
        if len(sampled) >= sample:
            break
        if not raw_sensor or not file or ".." in Path(file).parts:
            missing += 1
            continue
        data = read_message(raw_dir / raw_sensor / file)
        if data is None:
            missing += 1
            continue
        subject, text = message_text(data)
        sampled.append(Sampled(sensor, ts, src_ip, country, subject, tokens_of(subject, text)))
    signatures = []
    for item in sampled:
        sig = MinHash(num_perm=NUM_PERM, seed=seed)
        sig.update_batch(list(shingles(item.tokens)) or [b""])
        signatures.append(sig)
    n = len(sampled)
    for rank, members in enumerate(
        (g for g in group(signatures, threshold) if len(g) > 1), start=1
    ):
        if rank > top:
            break
        items = [sampled[i] for i in members]
        countries = Counter(i.country or "unknown" for i in items).most_common(3)
        subjects = Counter(i.subject for i in items).most_common(1)
        table.rows.append(
            (
                rank,
                subjects[0][0] if subjects else "",
                len(items),
                round(100.0 * len(items) / n, 2),
                round(total_emails * len(items) / n),
                len({i.src_ip for i in items}),
                ", ".join(f"{c} {100 * k / len(items):.0f}%" for c, k in countries),
                len({i.sensor for i in items}),
                min(i.ts for i in items).isoformat(sep=" ", timespec="seconds"),
                max(i.ts for i in items).isoformat(sep=" ", timespec="seconds"),
            )
        )
    table.notes.append(
        f"From a uniform sample of {n:,} emails read (of {total_emails:,}); two emails are one"
        f" campaign when the Jaccard similarity of their word 4-grams (digits and URLs folded)"
        f" is about {threshold} or more (MinHash, {NUM_PERM} permutations, LSH)."
    )
    if missing:
        table.notes.append(
            f"{missing:,} emails drawn had no readable message file and were passed over."
        )
    return table
