"""A message's MIME parts, read by a fast parser, or by the standard library when it must.

Two well-kept parsers, one walk:

- **fast**: ``fast_mail_parser`` (the Rust ``mailparse`` crate, fuzzed in its CI) in lazy
  mode. On the benchmark's 3 KB messages it builds the tree in 18 µs where the standard
  library's ``email`` takes 250 µs with its ``compat32`` policy and 2 ms with the modern
  ``default`` one (``bench/content_bench.py``): the parse was most of the cost of a row.
  Header values come back decoded (RFC 2047, raw 8-bit as UTF-8 else Latin-1).
- **stdlib**: ``email`` with ``compat32``, the most lenient reader there is: it repairs what
  it can and counts the defects (RFC 2046 boundaries never found, base64 with garbage).
  Used for a message the fast parser refuses (a part whose transfer encoding does not
  decode, nesting beyond 256) or cannot render faithfully (a ``multipart`` whose boundary
  never occurs, whose text it would drop). Which parser read a message is in its row.

The walk is bounded: at most ``max_parts`` parts, ``max_depth`` levels; the first limit
reached is reported.
"""

from __future__ import annotations

import email.errors
import email.header
import email.message
import email.parser
import email.policy
from collections.abc import Callable
from dataclasses import dataclass, field

import fast_mail_parser

from spampot.analysis.content.limits import ContentLimits

_STDLIB = email.parser.BytesParser(policy=email.policy.compat32)

FastParseError = fast_mail_parser.ParseError


class NeedsLenient(Exception):
    """The fast parser read the message, but not faithfully enough: read it again leniently."""


@dataclass(slots=True)
class Part:
    """One leaf of the MIME tree (containers are walked, not listed)."""

    depth: int
    maintype: str
    subtype: str
    params: dict[str, str]  # Content-Type parameters, names lower-cased
    disposition: str  # Content-Disposition's token, lower-cased ("" if none)
    filename: str | None
    read: Callable[[], bytes]  # the transfer-decoded bytes


@dataclass(slots=True)
class Walk:
    parser: str  # "fast" or "stdlib"
    headers: dict[str, str]  # the message's headers: lower-cased name -> first value, decoded
    parts: list[Part] = field(default_factory=list)
    count: int = 0  # parts seen, containers included
    depth: int = 0
    limit: str | None = None
    defects: int | None = None  # MIME defects the stdlib parser noted (None: fast parser)


def parse_params(text: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in text.split(";"):
        name, eq, value = item.partition("=")
        if eq:
            params.setdefault(name.strip().lower(), value.strip().strip('"').strip())
    return params


def _split_type(value: str | None, default: str) -> tuple[str, str, dict[str, str]]:
    """(maintype, subtype, parameters); a missing or invalid type is the default one:
    text/plain, or message/rfc822 in a digest (RFC 2045 §5.2, RFC 2046 §5.1.5)."""
    if value is None:
        maintype, _, subtype = default.partition("/")
        return maintype, subtype, {}
    head, _, rest = value.partition(";")
    kind = head.strip().lower()
    if kind.count("/") != 1:
        return "text", "plain", parse_params(rest)
    maintype, subtype = kind.split("/")
    return maintype.strip(), subtype.strip(), parse_params(rest)


def _first_values(headers: dict[str, list[str]]) -> dict[str, str]:
    return {name.lower(): values[0] for name, values in headers.items() if values}


# --- the fast parser ------------------------------------------------------------------------


def walk_fast(raw: bytes, limits: ContentLimits) -> Walk:
    """Raises FastParseError or NeedsLenient when the stdlib parser must read it instead."""
    root = fast_mail_parser.parse_email_tree(raw, mode="lazy")
    walk = Walk("fast", _first_values(root.headers))
    stack = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        walk.count += 1
        if walk.count > limits.max_parts:
            walk.limit = walk.limit or "parts"
            break
        walk.depth = max(walk.depth, depth)
        children = node.children
        if children:
            if depth + 1 > limits.max_depth:
                walk.limit = walk.limit or "depth"
                continue
            stack.extend((child, depth + 1) for child in reversed(children))
            continue
        headers = walk.headers if node is root else _first_values(node.headers)
        maintype, subtype, params = _split_type(headers.get("content-type"), "text/plain")
        declared = node.content_type.lower()
        if declared.startswith("multipart/") or node.is_message:
            raise NeedsLenient("a container without parts")  # its boundary never occurs
        if "/" in declared and declared != f"{maintype}/{subtype}":
            maintype, subtype = declared.split("/", 1)  # a default the parser applied
        walk.parts.append(
            Part(
                depth,
                maintype,
                subtype,
                params,
                (node.disposition or "").strip().lower(),
                node.filename or None,
                _reader(node),
            )
        )
    return walk


def _reader(node: fast_mail_parser.PyLazyMimePart) -> Callable[[], bytes]:
    def read() -> bytes:
        content = node.content
        return content if isinstance(content, bytes) else b""

    return read


# --- the standard library -------------------------------------------------------------------


def walk_stdlib(
    raw: bytes, limits: ContentLimits, decode: Callable[[str], str], header_limit: int
) -> Walk:
    msg = _STDLIB.parsebytes(raw)
    walk = Walk("stdlib", _stdlib_headers(msg, decode, header_limit), defects=0)
    stack: list[tuple[email.message.Message, int]] = [(msg, 0)]
    defects = 0
    while stack:
        part, depth = stack.pop()
        walk.count += 1
        defects += len(part.defects)
        if walk.count > limits.max_parts:
            walk.limit = walk.limit or "parts"
            break
        walk.depth = max(walk.depth, depth)
        payload = part.get_payload()
        if isinstance(payload, list):  # multipart/*, or message/rfc822 with its message
            if depth + 1 > limits.max_depth:
                walk.limit = walk.limit or "depth"
                continue
            stack.extend(
                (child, depth + 1)
                for child in reversed(payload)
                if isinstance(child, email.message.Message)
            )
            continue
        raw_headers = _raw_headers(part)
        maintype, subtype, params = _split_type(
            raw_headers.get("content-type"), part.get_default_type()
        )
        if maintype in ("multipart", "message"):
            # A container whose parts were not found (its boundary never occurs, RFC 2046
            # §5.1.1): a mail reader shows its body as text, and so is it read here.
            maintype, subtype = "text", "plain"
        disposition_value = raw_headers.get("content-disposition", "")
        named = "name" in params or "filename" in disposition_value.lower()
        walk.parts.append(
            Part(
                depth,
                maintype,
                subtype,
                params,
                disposition_value.split(";", 1)[0].strip().lower(),
                _stdlib_filename(part, decode, header_limit) if named else None,
                _stdlib_reader(part),
            )
        )
    walk.defects = defects
    return walk


def _raw_headers(msg: email.message.Message) -> dict[str, str]:
    out: dict[str, str] = {}
    # raw_items: as parsed, 8-bit bytes kept as surrogates (items() would turn them into "?")
    for name, value in msg.raw_items():
        key = name.lower()
        if key not in out:
            out[key] = value if isinstance(value, str) else str(value)
    return out


def _stdlib_headers(
    msg: email.message.Message, decode: Callable[[str], str], limit: int
) -> dict[str, str]:
    return {k: decode(v[: limit * 4]) for k, v in _raw_headers(msg).items()}


def _stdlib_filename(
    part: email.message.Message, decode: Callable[[str], str], limit: int
) -> str | None:
    try:
        name = part.get_filename()  # RFC 2231 parameters, then the Content-Type "name"
    except (ValueError, LookupError, TypeError, email.errors.MessageError):
        return None
    return decode(str(name)[: limit * 4]) or None if name else None


def _stdlib_reader(part: email.message.Message) -> Callable[[], bytes]:
    def read() -> bytes:
        data = part.get_payload(decode=True)
        return data if isinstance(data, bytes) else b""

    return read
