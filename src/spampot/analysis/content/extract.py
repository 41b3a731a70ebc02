"""One stored message (raw bytes) into what it says: one content row, its URLs, its attachments.

The MIME tree comes from ``mime.py`` (a fast parser, or the standard library's lenient one
when it must). Header values are RFC 2047-decoded (any charset Python knows; an unknown one
falls back to Latin-1) and raw 8-bit bytes read as UTF-8 (RFC 6532), else Latin-1.

Nothing a message holds can stop extraction: the walk is bounded by :class:`ContentLimits`, a
limit reached is named in the row (``limit``), and a message no parser can read at all still
gets a row, with ``status`` ``error`` and the reason. Nothing is skipped silently.
"""

from __future__ import annotations

import calendar
import datetime as dt
import email.errors
import email.header
import email.utils
import hashlib
import io
import re
import zipfile
from dataclasses import dataclass, field
from typing import Any

import filetype
import pycld2

from spampot.analysis.content import fingerprint
from spampot.analysis.content.limits import DEFAULT_LIMITS, ContentLimits
from spampot.analysis.content.mime import FastParseError, NeedsLenient, Part, Walk, walk_fast
from spampot.analysis.content.mime import walk_stdlib as _walk_stdlib
from spampot.analysis.content.relay import RelayContext, relay_evidence
from spampot.analysis.content.urls import Url, extract_urls, html_text

_ATTACHMENT_TYPES = ("application", "image", "audio", "video", "model", "font")
_ZIP_TYPES = ("application/zip", "application/x-zip-compressed")


@dataclass(slots=True)
class Attachment:
    filename: str | None
    declared_type: str
    sniffed_type: str | None
    size: int
    sha256: str
    tlsh: str | None
    archive_members: list[str] | None


@dataclass(slots=True)
class Content:
    """What one message says. ``status``: ``ok``, or ``error`` (unreadable: see ``error``)."""

    status: str = "ok"
    error: str | None = None
    parser: str | None = None  # fast or stdlib (see mime.py)
    limit: str | None = None  # the first limit reached, if any
    defects: int | None = None  # MIME defects the stdlib parser noted (None: not read by it)
    size: int = 0
    content_type: str | None = None
    parts: int = 0
    depth: int = 0
    subject: str | None = None
    from_addr: str | None = None
    from_domain: str | None = None
    reply_to_domain: str | None = None
    return_path_domain: str | None = None
    message_id_domain: str | None = None
    date_skew_s: int | None = None  # the Date header minus the capture time, in seconds
    mailer: str | None = None  # X-Mailer, else User-Agent
    charset: str | None = None  # of the first text part, as declared (lower-cased)
    language: str | None = None  # ISO 639-1 (or CLD2's code, e.g. zh-Hant), None if unknown
    text_chars: int = 0
    body_hash: str | None = None
    text_tlsh: str | None = None
    minhash: list[int] = field(default_factory=list)  # the LSH band keys
    relay_evidence: list[str] = field(default_factory=list)
    urls: list[Url] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)


def extract(
    raw: bytes,
    captured: dt.datetime | None = None,
    relay: RelayContext | None = None,
    limits: ContentLimits = DEFAULT_LIMITS,
    *,
    lenient: bool = False,
) -> Content:
    """Everything :class:`Content` holds, from a message's bytes as stored (not gzip).

    ``lenient`` reads it with the standard library's parser from the start (tests compare
    the two parsers with it)."""
    size = len(raw)
    truncated = size > limits.max_message_bytes
    if truncated:
        raw = raw[: limits.max_message_bytes]
    out = Content(size=size)
    try:
        if not raw.strip():
            out.status, out.error = "error", "empty message"
            return out
        walk: Walk | None = None
        if not lenient and raw.count(b"=?") <= limits.max_encoded_words:
            try:
                walk = walk_fast(raw, limits)
                _fill(out, walk, captured, relay, limits)
            except (FastParseError, NeedsLenient):
                walk = None
                out = Content(size=size)
        if walk is None:
            _fill(out, walk_stdlib(raw, limits), captured, relay, limits)
    except Exception as exc:  # a parser bug on hostile input must cost one row, not the batch
        out = Content(size=size, status="error", error=f"{type(exc).__name__}: {exc}"[:300])
    if truncated:
        out.limit = "message bytes"
    return out


def walk_stdlib(raw: bytes, limits: ContentLimits) -> Walk:
    return _walk_stdlib(raw, limits, decode_header_value, limits.max_header_chars)


def _fill(
    out: Content,
    walk: Walk,
    captured: dt.datetime | None,
    relay: RelayContext | None,
    limits: ContentLimits,
) -> None:
    headers = walk.headers
    out.parser = walk.parser
    out.limit = walk.limit
    out.defects = walk.defects
    out.parts = walk.count
    out.depth = walk.depth
    ctype = headers.get("content-type")
    out.content_type = _clip(
        ctype.split(";", 1)[0].strip().lower() if ctype and "/" in ctype else "text/plain", 200
    )
    hmax = limits.max_header_chars
    out.subject = _header(headers, "subject", hmax)
    sender = _header(headers, "from", hmax)
    if sender:
        addr = _address(sender)
        out.from_addr = addr or None
        out.from_domain = _domain_of(addr)
    out.reply_to_domain = _domain_of(_address(_header(headers, "reply-to", hmax) or ""))
    out.return_path_domain = _domain_of(_address(_header(headers, "return-path", hmax) or ""))
    out.message_id_domain = _message_id_domain(_header(headers, "message-id", hmax))
    out.mailer = _header(headers, "x-mailer", 200) or _header(headers, "user-agent", 200)
    out.date_skew_s = _skew(_header(headers, "date", hmax), captured)

    plain: list[str] = []
    htmls: list[str] = []
    budget = limits.max_text_chars
    for part in walk.parts:
        if part.maintype == "text" and part.disposition != "attachment" and not part.filename:
            if budget <= 0:
                out.limit = out.limit or "text chars"
                continue
            charset = part.params.get("charset")
            if out.charset is None and charset:
                out.charset = _clip(charset.lower(), 40)
            text = _decode_text(part.read()[: limits.max_part_bytes], charset)[:budget]
            budget -= len(text)
            (htmls if part.subtype == "html" else plain).append(text)
        elif (
            part.maintype in _ATTACHMENT_TYPES or part.filename or part.disposition == "attachment"
        ):
            if len(out.attachments) >= limits.max_attachments:
                out.limit = out.limit or "attachments"
                continue
            out.attachments.append(_attachment(part, limits))

    # The text a reader sees: the plain parts, else (HTML-only mail) the HTML's visible text.
    if any(p.strip() for p in plain):
        texts = [(p, "text") for p in plain]
    else:
        texts = [(html_text(h), "html-text") for h in htmls]
    out.urls = extract_urls(texts, htmls, limits)
    if len(out.urls) >= limits.max_urls:
        out.limit = out.limit or "urls"
    visible = "\n".join(t for t, _ in texts)
    out.text_chars = len(visible)
    out.language = _language(visible[: limits.max_language_chars])
    normalised = fingerprint.normalise_text(f"{out.subject or ''}\n{visible}")
    out.body_hash = fingerprint.body_hash(normalised)
    out.text_tlsh = fingerprint.fuzzy_hash(normalised)
    grams = fingerprint.shingle_hashes(fingerprint.words(normalised[: limits.max_shingle_chars]))
    out.minhash = fingerprint.bands(fingerprint.signature(grams))
    if relay is not None:
        out.relay_evidence = relay_evidence(
            relay, out.subject or "", visible, out.text_chars, len(out.urls), len(out.attachments)
        )


# --- headers --------------------------------------------------------------------------------


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n]


def _fix_8bit(text: str) -> str:
    """Raw 8-bit header bytes (kept by the parser as surrogates): UTF-8, else Latin-1."""
    try:
        data = text.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return text
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def decode_header_value(value: str) -> str:
    """A header value with RFC 2047 encoded words decoded, folding removed."""
    value = value.replace("\r", "").replace("\n", "")
    if "=?" not in value:
        return _fix_8bit(value)
    try:
        chunks = email.header.decode_header(value)
    except (email.errors.HeaderParseError, ValueError, LookupError):
        return _fix_8bit(value)
    out: list[str] = []
    for chunk, charset in chunks:
        if isinstance(chunk, str):
            out.append(_fix_8bit(chunk))
            continue
        out.append(_decode_bytes(chunk, charset))
    return "".join(out)


def _decode_bytes(data: bytes, charset: str | None) -> str:
    if charset in (None, "unknown-8bit"):
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("latin-1")
    try:
        return data.decode(charset, "replace")
    except (LookupError, TypeError):
        return data.decode("latin-1")


def _header(headers: dict[str, str], name: str, limit: int) -> str | None:
    value = headers.get(name)
    if value is None:
        return None
    # Both parsers give values decoded and unfolded (mime.py); a stray CR or LF goes too.
    text = value[: limit * 4].replace("\r", "").replace("\n", "").strip()
    if "=?" in text:  # words left encoded: a charset name only Python's codecs know
        text = decode_header_value(text)
    return _clip(text, limit) if text else None


_ANGLE_ADDR = re.compile(r"<\s*([^<>\s@]*@[^<>\s]*?)\s*>")
_BARE_ADDR = re.compile(r"[^\s<>\"@,;:()]*@[^\s<>\",;()]+")


def _address(value: str) -> str:
    """The address in a From/Reply-To/Return-Path value: ``<...>`` first, else a bare one."""
    if not value or "@" not in value:
        return ""
    match = _ANGLE_ADDR.search(value) or _BARE_ADDR.search(value)
    if match is None:
        return ""
    return _clip(match.group(match.lastindex or 0).strip().lower(), 320)


def _domain_of(addr: str) -> str | None:
    if "@" not in addr:
        return None
    domain = addr.rsplit("@", 1)[1].strip(" <>[].").lower()
    return _clip(domain, 255) or None


def _message_id_domain(value: str | None) -> str | None:
    if not value or "@" not in value:
        return None
    right = value.rsplit("@", 1)[1]
    return _clip(right.split(">", 1)[0].strip(" <>[]").lower(), 255) or None


# RFC 5322 §3.3's date-time as nearly all mail writes it; anything else goes to the stdlib.
_DATE = re.compile(
    r"(?:[A-Za-z]{3},\s*)?(\d{1,2})\s+([A-Za-z]{3})\s+(\d{4})\s+(\d\d):(\d\d)(?::(\d\d))?"
    r"\s*([+-]\d{4})?\s*(?:\(.*\))?\s*$"
)
_MONTHS = {
    m: i
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1
    )
}


def _skew(value: str | None, captured: dt.datetime | None) -> int | None:
    """Seconds from the capture to the Date header (RFC 5322 §3.3; a zone of ``-0000`` or
    none is read as UTC)."""
    if not value or captured is None:
        return None
    when: float | None = None
    match = _DATE.match(value.strip())
    if match is not None and match.group(2).lower() in _MONTHS:
        day, mon, year, hh, mm, ss, zone = match.groups()
        try:
            when = calendar.timegm(
                (int(year), _MONTHS[mon.lower()], int(day), int(hh), int(mm), int(ss or 0))
            )
        except (ValueError, OverflowError):
            when = None
        if when is not None and zone:
            offset = int(zone[1:3]) * 3600 + int(zone[3:5]) * 60
            when -= offset if zone[0] == "+" else -offset
    if when is None:
        try:
            parsed = email.utils.parsedate_tz(value)
            if parsed is None:
                return None
            when = email.utils.mktime_tz(parsed)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    if captured.tzinfo is None:
        captured = captured.replace(tzinfo=dt.UTC)
    return round(when - captured.timestamp())


def _decode_text(data: bytes, charset: str | None) -> str:
    if charset:
        try:
            return data.decode(charset.strip().strip('"').lower(), "replace")
        except (LookupError, ValueError):
            pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        # Undeclared 8-bit text: Windows-1252 reads Latin-1 and what Windows wrote.
        return data.decode("cp1252", "replace")


def _attachment(part: Part, limits: ContentLimits) -> Attachment:
    data = part.read()[: limits.max_part_bytes]
    declared = f"{part.maintype}/{part.subtype}"
    kind = filetype.guess(data[:8192]) if data else None
    sniffed: str | None = kind.mime if kind is not None else None
    if sniffed is None and data:
        sniffed = _text_or_binary(data[:4096])
    members = None
    if sniffed in _ZIP_TYPES or declared in _ZIP_TYPES:
        members = _zip_members(data, limits.max_archive_members)
    return Attachment(
        filename=_clip(part.filename, limits.max_header_chars) if part.filename else None,
        declared_type=_clip(declared, 200),
        sniffed_type=sniffed,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        tlsh=fingerprint.fuzzy_hash(data),
        archive_members=members,
    )


def _text_or_binary(head: bytes) -> str:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the end
            return "application/octet-stream"
    return "text/plain" if b"\x00" not in head else "application/octet-stream"


def _zip_members(data: bytes, limit: int) -> list[str] | None:
    """Names in a zip's central directory (nothing is decompressed)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return [_clip(info.filename, 255) for info in archive.infolist()[:limit]]
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, NotImplementedError):
        return None


def _language(text: str) -> str | None:
    if len(text.strip()) < 20:
        return None
    try:
        reliable, _bytes, details = pycld2.detect(text)
    except pycld2.error:
        # CLD2 refuses some control characters and unpaired surrogates: keep what prints.
        cleaned = "".join(c for c in text if c.isprintable() or c in "\n\t")
        cleaned = cleaned.encode("utf-8", "ignore").decode("utf-8")
        try:
            reliable, _bytes, details = pycld2.detect(cleaned)
        except pycld2.error:
            return None
    code = details[0][1] if details else "un"
    return None if code in ("un", "xxx") or not reliable else str(code)


def as_row(content: Content) -> dict[str, Any]:
    """The ``message_content`` columns of a Content (see schema.py)."""
    bands: list[int | None] = [*content.minhash] or [None] * fingerprint.BANDS
    row: dict[str, Any] = {
        "status": content.status,
        "error": content.error,
        "parser": content.parser,
        "limit_reached": content.limit,
        "defects": content.defects,
        "size": content.size,
        "content_type": content.content_type,
        "parts": content.parts,
        "depth": content.depth,
        "subject": content.subject,
        "from_addr": content.from_addr,
        "from_domain": content.from_domain,
        "reply_to_domain": content.reply_to_domain,
        "return_path_domain": content.return_path_domain,
        "message_id_domain": content.message_id_domain,
        "date_skew_s": content.date_skew_s,
        "mailer": content.mailer,
        "charset": content.charset,
        "language": content.language,
        "text_chars": content.text_chars,
        "url_count": len(content.urls),
        "attachment_count": len(content.attachments),
        "body_hash": content.body_hash,
        "text_tlsh": content.text_tlsh,
        "relay_evidence": "; ".join(content.relay_evidence) or None,
    }
    for i, value in enumerate(bands):
        row[f"mh{i}"] = value
    return row
