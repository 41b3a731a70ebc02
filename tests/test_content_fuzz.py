"""Hypothesis against content extraction: hostile bytes and mangled MIME never break it.

Examples per test come from SPAMPOT_FUZZ_EXAMPLES (default 300, so CI stays fast); the long
run is ``bench/fuzz_long.py --parsers content``.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import quopri

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spampot.analysis.content.extract import Content, as_row, extract
from spampot.analysis.content.limits import ContentLimits
from spampot.analysis.content.relay import RelayContext
from spampot.analysis.content.schema import MESSAGE_CONTENT
from spampot.analysis.content.urls import _HOST_OK, extract_urls

EXAMPLES = int(os.environ.get("SPAMPOT_FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SMALL = ContentLimits(max_parts=12, max_depth=4, max_urls=8, max_attachments=3)
CAPTURED = dt.datetime(2006, 6, 12, tzinfo=dt.UTC)
RELAY = RelayContext("192.0.2.10", 8080, "mx1.hotmail.com", 1)


def check(c: Content, limits: ContentLimits) -> None:
    assert c.status in ("ok", "error")
    assert (c.error is None) == (c.status == "ok")
    assert len(c.urls) <= limits.max_urls
    assert len(c.attachments) <= limits.max_attachments
    assert c.parts <= limits.max_parts + 1
    assert c.depth <= limits.max_depth + 1
    for url in c.urls:
        assert len(url.url) <= limits.max_url_chars + 16
        assert url.url.startswith(("http://", "https://", "ftp://"))
        assert _HOST_OK.match(url.host), url.host
    for a in c.attachments:
        assert len(a.sha256) == 64 and a.size >= 0
        assert a.archive_members is None or len(a.archive_members) <= limits.max_archive_members
    for value in (c.subject, c.mailer, c.from_addr):
        assert value is None or len(value) <= limits.max_header_chars
    row = as_row(c)
    declared = {name for name, _ in MESSAGE_CONTENT}
    assert set(row) <= declared  # nothing reaches a table that its schema does not declare


@FUZZ
@given(st.binary(max_size=4096))
def test_arbitrary_bytes(data):
    for lenient in (False, True):
        check(extract(data, CAPTURED, RELAY, SMALL, lenient=lenient), SMALL)


_CHARSETS = ["utf-8", "iso-8859-1", "koi8-r", "big5", "gb2312", "shift_jis", "x-unknown", ""]
_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), max_codepoint=0x9FFF), max_size=60
)
_URLISH = st.sampled_from(
    [
        "http://a.example.com/x",
        "hxxp://b[.]example[.]net/",
        "www.c.example.co.uk",
        "http://%64.example.org/",
        "http://4294967295/",
        "http://[::1]:8080/",
        "https://user@d.example.com:443/p?q=1#f",
        "http://",
        "www.",
        "&#104;ttp://e.example.com/",
        "http://xn--bcher-kva.example/",
        "http://bücher.example/",
    ]
)


def _header_value(draw: st.DrawFn) -> str:
    text = draw(_TEXT)
    charset = draw(st.sampled_from(_CHARSETS))
    if not charset:
        return text.replace("\r", " ").replace("\n", " ")
    try:
        data = text.encode(charset)
    except (UnicodeEncodeError, LookupError):
        data = text.encode("utf-8", "surrogatepass")
    kind = draw(st.sampled_from("BQ"))
    payload = base64.b64encode(data).decode() if kind == "B" else data.hex()
    return f"=?{charset}?{kind}?{payload}?="


@st.composite
def _leaf(draw: st.DrawFn) -> tuple[list[tuple[str, str]], bytes]:
    ctype = draw(
        st.sampled_from(
            ["text/plain", "text/html", "application/zip", "image/gif", "text/plain; charset=x"]
        )
    )
    text = " ".join(draw(st.lists(st.one_of(_TEXT, _URLISH), max_size=6)))
    if ctype.startswith("text/html"):
        text = f'<a href="{draw(_URLISH)}">{text}</a>'
    data = text.encode("utf-8", "surrogatepass")
    cte = draw(st.sampled_from(["7bit", "8bit", "base64", "quoted-printable", "x-bogus"]))
    if cte == "base64":
        body = base64.encodebytes(data)
        if draw(st.booleans()):  # garbage in the base64
            at = draw(st.integers(0, len(body)))
            body = body[:at] + draw(st.binary(max_size=8)) + body[at:]
    elif cte == "quoted-printable":
        body = quopri.encodestring(data)
    else:
        body = data
    headers = [("Content-Type", ctype), ("Content-Transfer-Encoding", cte)]
    if draw(st.booleans()):
        headers.append(("Content-Disposition", f'attachment; filename="{draw(_TEXT)}"'))
    return headers, body


def _render(headers: list[tuple[str, str]], body: bytes) -> bytes:
    head = "".join(f"{k}: {v}\r\n" for k, v in headers)
    return head.encode("utf-8", "surrogatepass") + b"\r\n" + body


@st.composite
def _tree(draw: st.DrawFn, depth: int = 0) -> tuple[list[tuple[str, str]], bytes]:
    if depth >= 3 or draw(st.integers(0, 2)) == 0:
        return draw(_leaf())
    boundary = draw(st.sampled_from(["b", "=_x", "", "a" * 80, "same"]))
    children = draw(st.lists(_tree(depth + 1), min_size=0, max_size=4))
    body = b""
    for headers, child in children:
        body += f"--{boundary}\r\n".encode() + _render(headers, child) + b"\r\n"
    if draw(st.booleans()):  # the closing boundary is sometimes missing
        body += f"--{boundary}--\r\n".encode()
    kind = draw(st.sampled_from(["mixed", "alternative", "related", "digest"]))
    return [("Content-Type", f'multipart/{kind}; boundary="{boundary}"')], body


@FUZZ
@given(
    _tree(),
    st.lists(st.tuples(st.sampled_from(["Subject", "From", "Reply-To", "X-Mailer"]), st.data())),
    st.lists(st.tuples(st.integers(0, 10_000), st.binary(min_size=0, max_size=4)), max_size=3),
)
def test_mangled_mime(tree, header_draws, mutations):
    headers, body = tree
    top = [(name, _header_value(data.draw)) for name, data in header_draws]
    raw = bytearray(_render([*top, ("Date", "Mon, 12 Jun 2006 10:00:00 +0000"), *headers], body))
    for at, junk in mutations:  # flip, cut or insert a few bytes anywhere
        at = at % (len(raw) + 1)
        raw[at : at + len(junk)] = junk
    for lenient in (False, True):
        check(extract(bytes(raw), CAPTURED, RELAY, SMALL, lenient=lenient), SMALL)


@FUZZ
@given(st.text(max_size=2000), st.text(max_size=2000))
def test_url_extraction_on_arbitrary_text(plain, markup):
    limits = ContentLimits(max_urls=20)
    for url in extract_urls([(plain, "text")], [markup], limits):
        assert url.url.startswith(("http://", "https://", "ftp://"))
        assert url.host and _HOST_OK.match(url.host)
        assert url.host in url.url


@FUZZ
@given(
    st.lists(st.sampled_from(["www.", "http://", "<", "&#", "[.]", "hxxp", "a", " "]), max_size=400)
)
def test_url_extraction_on_adversarial_fragments(pieces):
    text = "".join(pieces)
    extract_urls([(text, "text")], [text], ContentLimits(max_urls=50))
