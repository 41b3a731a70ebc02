"""URLs in message text and HTML, with the obfuscations spammers use, and their domains.

What is found: ``http``/``https``/``ftp`` URLs, the "defanged" forms (``hxxp://``,
``example[.]com``, ``[:]//``), HTML ``href``/``src``/``action`` values (entities decoded,
e.g. ``&#104;ttp``), percent-encoded host names (``%77%77%77.example.com``), numeric hosts
(``http://3232235777/`` is ``192.168.1.1``, as browsers read it: WHATWG URL §3.5), user-info
tricks (``http://bank.com@evil.example/`` goes to ``evil.example``), and bare ``www.`` hosts.

The registered domain (the part a registrant owns: ``example.co.uk`` of ``www.a.example.co.uk``)
comes from the Public Suffix List shipped inside the ``publicsuffixlist`` package, read from
disk and never fetched: private suffixes count too, so ``foo.blogspot.com`` is its own domain,
which is the unit a hosting provider takes down.
"""

from __future__ import annotations

import functools
import html
import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import unquote

from publicsuffixlist import PublicSuffixList

from spampot.analysis.content.limits import DEFAULT_LIMITS, ContentLimits

_PSL = PublicSuffixList()  # read once from the package's own copy of the list (no network)

# Defanging: "hxxp", "h**p", "[.]", "(.)", "[dot]", "[:]" (as threat reports and spammers use).
_SCHEME_FIX = re.compile(r"\b(?:hxxp|hxtp|htxp|h\*\*p|hXXp|hxXp|hXxp)(s?)(?=(?:\[?:\]?)//)", re.I)
_DOT_FIX = re.compile(r"\s?(?:\[\.\]|\(\.\)|\{\.\}|\[dot\]|\(dot\)|\{dot\})\s?", re.I)
_COLON_FIX = re.compile(r"\[:\]|\(:\)")
# A URL in text: a scheme, or a bare www. host. Stops at whitespace, quotes and angle brackets
# (RFC 3986 Appendix C: delimiting a URI in context).
_URL_TEXT = re.compile(
    r"""(?:\b(?:https?|ftp)://|\bwww\d{0,3}\.)[^\s<>"'`{}|\\^\[\]]+""",
    re.IGNORECASE,
)
# HTML attributes that carry links (a, area, img, form, frame, iframe, base, body...), tried
# only where one of the names occurs.
_ATTR_NAMES = ("href", "src", "action", "background")
_URL_ATTR = re.compile(
    r"""(?:href|src|action|background)\s*=\s*(?:"([^"]{0,4096})"|'([^']{0,4096})'|([^\s>]{1,4096}))""",
    re.IGNORECASE,
)
_TRAILING = ".,;:!?)]}'\""
_HOST_OK = re.compile(r"^[a-z0-9_.\-]+$|^\[[0-9a-f:.]+\]$")


@dataclass(frozen=True, slots=True)
class Url:
    url: str  # normalised: scheme and host lower-cased, obfuscation undone
    host: str
    domain: str | None  # registered domain, or the address for a numeric host
    source: str  # "text" (plain text), "html" (an attribute), "html-text"
    obfuscated: bool  # needed undoing (defanged, entities, percent-encoding, numeric host)


_DEFANGED_SCHEMES = ("hxxp", "hxtp", "htxp", "h**p")
_DEFANGED_DOTS = ("[.]", "(.)", "{.}", "[dot]", "(dot)", "{dot}", "[:]", "(:)")


def deobfuscate(text: str) -> tuple[str, bool]:
    """``text`` with defanged URL forms undone, and whether any was found."""
    low = text.lower()
    fixed = text
    if any(s in low for s in _DEFANGED_SCHEMES):
        fixed = _SCHEME_FIX.sub(lambda m: "http" + m.group(1), fixed)
    if any(s in low for s in _DEFANGED_DOTS):
        fixed = _COLON_FIX.sub(":", _DOT_FIX.sub(".", fixed))
    return fixed, fixed != text


def find_urls(text: str) -> list[str]:
    """URL-looking substrings of ``text`` (scheme or bare ``www.``), in order.

    The regular expression is only tried where ``://`` or ``www`` occurs: scanning the whole
    text with it costs 20× more on a message of ordinary text.
    """
    low = text.lower()
    if len(low) != len(text):  # a few characters change length when lower-cased
        return [m.group(0) for m in _URL_TEXT.finditer(text)]
    starts: list[int] = []
    at = low.find("://")
    while at >= 0:
        begin = at
        while begin > 0 and at - begin < 5 and low[begin - 1].isalpha():
            begin -= 1
        starts.append(begin)
        at = low.find("://", at + 3)
    at = low.find("www")
    while at >= 0:
        if at == 0 or not (low[at - 1].isalnum() or low[at - 1] in "/.-_@"):
            starts.append(at)
        at = low.find("www", at + 3)
    found: list[str] = []
    covered = -1
    for begin in sorted(starts):
        if begin < covered:
            continue
        match = _URL_TEXT.match(text, begin)
        if match is not None:
            found.append(match.group(0))
            covered = match.end()
    return found


@functools.lru_cache(maxsize=65536)
def registered_domain(host: str) -> str | None:
    """``example.co.uk`` for ``www.example.co.uk``; the address itself for an IP host."""
    if not host:
        return None
    if host[0] == "[" or host.replace(".", "").isdigit():
        return host.strip("[]") if _ip_literal(host.strip("[]")) else None
    domain: str | None = _PSL.privatesuffix(host)
    return domain


def _ip_literal(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _ipv4_number(part: str) -> int | None:
    """One part of a numeric host: decimal, ``0x`` hex or ``0``-led octal (WHATWG URL §3.5)."""
    try:
        if part[:2] in ("0x", "0X"):
            return int(part[2:] or "0", 16)
        if len(part) > 1 and part[0] == "0":
            return int(part[1:], 8)
        return int(part, 10) if part.isdigit() else None
    except ValueError:
        return None


def _numeric_host(host: str) -> str | None:
    """A host a browser reads as an IPv4 address (``3232235777``, ``0x7f.1``, ``0177.0.0.1``)
    as a dotted quad; None when it is a name (the WHATWG URL standard's IPv4 parser)."""
    parts = host.split(".")
    if parts and parts[-1] == "":
        parts.pop()
    if not parts or len(parts) > 4 or not parts[-1] or not parts[-1][0].isdigit():
        return None
    numbers = [_ipv4_number(p) for p in parts] if all(parts) else [None]
    if any(n is None for n in numbers):
        return None
    values = [n for n in numbers if n is not None]
    if any(n > 255 for n in values[:-1]) or values[-1] >= 256 ** (5 - len(values)):
        return None
    address = values[-1]
    for i, n in enumerate(values[:-1]):
        address += n << (8 * (3 - i))
    return str(ipaddress.IPv4Address(address))


def _ends_in_number(host: str) -> bool:
    last = host.rstrip(".").rsplit(".", 1)[-1]
    return bool(last) and (last.isdigit() or (last[:2] == "0x" and _ipv4_number(last) is not None))


_NETLOC_END = re.compile(r"[/?#\\]")


def normalise(raw: str, limits: ContentLimits = DEFAULT_LIMITS) -> tuple[str, str, bool] | None:
    """(url, host, changed) of one candidate, or None when it has no usable host.

    Split by hand after RFC 3986 §3 (scheme ``://`` authority, then path, query, fragment;
    a backslash ends the authority too, as browsers read it): ``urlsplit`` costs 3× more
    and refuses some of what spam holds.
    """
    candidate = raw.strip().rstrip(_TRAILING)[: limits.max_url_chars]
    changed = False
    scheme, sep, rest = candidate.partition("://")
    if not sep:
        scheme, rest = "http", candidate  # a bare www. host
    scheme = scheme.lower()
    if scheme not in ("http", "https", "ftp"):
        return None
    end = _NETLOC_END.search(rest)
    netloc = rest if end is None else rest[: end.start()]
    path = "" if end is None else rest[end.start() :]
    hostport = netloc.rsplit("@", 1)[-1]  # user-info is not where it goes (RFC 3986 §3.2.1)
    if "%" in hostport:
        decoded = unquote(hostport)
        changed = decoded != hostport
        hostport = decoded
    port = ""
    if hostport.startswith("["):
        close = hostport.find("]")
        if close < 0:
            return None
        host, tail = hostport[: close + 1], hostport[close + 1 :]
        if tail.startswith(":") and tail[1:].isdigit():
            port = tail
    else:
        host, colon, maybe = hostport.partition(":")
        if colon and maybe.isdigit():
            port = ":" + maybe
    host = host.strip().rstrip(".").lower()
    if not host:
        return None
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    numeric = _numeric_host(host)
    if numeric is not None and numeric != host:
        host, changed = numeric, True
    elif numeric is None and _ends_in_number(host):
        return None  # "1.2.3.4.5", "256.1.1.1": a browser refuses it (WHATWG URL §3.5)
    if not _HOST_OK.match(host) or ("." not in host and not host.startswith("[")):
        return None
    return f"{scheme}://{host}{port}{path}", host, changed


def extract_urls(
    texts: list[tuple[str, str]], htmls: list[str], limits: ContentLimits = DEFAULT_LIMITS
) -> list[Url]:
    """Every distinct URL of ``texts`` ((text, source) pairs: the plain-text parts, or the
    visible text of the HTML parts when there is no plain text) and of the HTML parts' link
    attributes, in order of appearance."""
    found: dict[str, Url] = {}

    def add(raw: str, source: str, obfuscated: bool) -> bool:
        if len(found) >= limits.max_urls:
            return False
        norm = normalise(raw, limits)
        if norm is None:
            return True
        url, host, changed = norm
        if url not in found:
            found[url] = Url(url, host, registered_domain(host), source, obfuscated or changed)
        return True

    def scan(text: str, source: str) -> bool:
        fixed, defanged = deobfuscate(text)
        # A URL is obfuscated when it is only there once the defanging is undone.
        plain = set(find_urls(text)) if defanged else set()
        return all(add(raw, source, defanged and raw not in plain) for raw in find_urls(fixed))

    for text, source in texts:
        if not scan(text, source):
            return list(found.values())
    for markup in htmls:
        for match in _attributes(markup):
            value = match.group(1) or match.group(2) or match.group(3) or ""
            entities = "&" in value
            if entities:
                value = html.unescape(value)
            value, defanged = deobfuscate(value.strip())
            lowered = value[:8].lower()
            if lowered.startswith(("http:", "https:", "ftp:", "www.")) and not add(
                value, "html", entities or defanged
            ):
                return list(found.values())
    return list(found.values())


def _attributes(markup: str) -> list[re.Match[str]]:
    low = markup.lower()
    if len(low) != len(markup):
        return list(_URL_ATTR.finditer(markup))
    starts = []
    for name in _ATTR_NAMES:
        at = low.find(name)
        while at >= 0:
            if at == 0 or not low[at - 1].isalnum():
                starts.append(at)
            at = low.find(name, at + len(name))
    found = []
    for begin in sorted(starts):
        match = _URL_ATTR.match(markup, begin)
        if match is not None:
            found.append(match)
    return found


# "<" up to the next ">" or "<": a stray "<" costs one scan to the next bracket, not to the end.
_TAG = re.compile(r"<[^<>]{0,4000}>")
_SPACE = re.compile(r"[ \t\r\f\v]+")


def _drop_blocks(markup: str) -> str:
    """``markup`` without the contents of ``<script>`` and ``<style>`` (not visible text)."""
    lower = markup.lower()
    if "<script" not in lower and "<style" not in lower:
        return markup
    out: list[str] = []
    at = 0
    while at < len(markup):
        starts = [i for i in (lower.find("<script", at), lower.find("<style", at)) if i >= 0]
        if not starts:
            break
        start = min(starts)
        name = "</script" if lower.startswith("<script", start) else "</style"
        end = lower.find(name, start)
        out.append(markup[at:start])
        if end < 0:
            return "".join(out)  # never closed: the rest is the block
        close = lower.find(">", end)
        at = len(markup) if close < 0 else close + 1
    out.append(markup[at:])
    return " ".join(out)


def html_text(markup: str) -> str:
    """The visible text of HTML: tags, scripts and styles removed, entities decoded."""
    text = _TAG.sub(" ", _drop_blocks(markup))
    if "&" in text:
        text = html.unescape(text)
    return _SPACE.sub(" ", text)
