"""Content extraction on messages whose answers are known by construction."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import time

import pytest

from content_messages import CRLF, PLAIN, b64_lines, encoded_word, message, zip_bytes
from spampot.analysis.content.extract import as_row, decode_header_value, extract
from spampot.analysis.content.limits import ContentLimits

CAPTURED = dt.datetime(2006, 6, 12, 10, 5, 0, tzinfo=dt.UTC)


@pytest.fixture(params=["fast", "stdlib"])
def parse(request):
    """extract() with the fast parser (falling back as it does), or the stdlib's from the start:
    the answers must be the same."""
    lenient = request.param == "stdlib"

    def run(raw, *args, **kwargs):
        return extract(raw, *args, lenient=lenient, **kwargs)

    run.parser = request.param
    return run


def test_plain_message_headers_and_urls(parse):
    c = parse(PLAIN, CAPTURED)
    assert c.status == "ok" and c.error is None and c.limit is None
    assert c.subject == "Cheap meds online"
    assert c.from_addr == "sales@cheap-pills.example.com"
    assert c.from_domain == "cheap-pills.example.com"
    assert c.reply_to_domain == "replies.example.net"
    assert c.return_path_domain == "bounces.example.org"
    assert c.message_id_domain == "mta.example.com"
    assert c.mailer == "The Bat! (v3.5) Professional"
    assert c.date_skew_s == -300  # the Date header is 5 minutes before the capture
    assert c.charset == "us-ascii"
    assert c.language == "en"
    assert c.content_type == "text/plain" and c.parts == 1 and c.depth == 0
    got = {(u.url, u.host, u.domain, u.obfuscated) for u in c.urls}
    assert got == {
        ("http://www.pills-a.example.com/buy?id=1", "www.pills-a.example.com", "example.com", True),
        ("http://www.pills-b.example.co.uk/x", "www.pills-b.example.co.uk", "example.co.uk", False),
        ("http://www.pills-c.example.net/", "www.pills-c.example.net", "example.net", True),
        # user-info before "@" is not the host; a 32-bit number is an IPv4 address
        ("http://192.168.1.1/login", "192.168.1.1", "192.168.1.1", True),
    }
    assert len(c.body_hash or "") == 64 and c.text_tlsh and len(c.minhash) == 8


@pytest.mark.parametrize(
    ("charset", "text"),
    [
        ("utf-8", "Promoção imperdível — 50% off"),
        ("iso-8859-1", "Promoção de verão"),
        ("iso-8859-2", "Zażółć gęślą jaźń"),
        ("koi8-r", "Проверка реле"),
        ("windows-1251", "Дешевые лекарства"),
        ("big5", "便宜的藥品"),
        ("gb2312", "便宜的药品"),
        ("gbk", "发票代开"),
        ("shift_jis", "格安のお薬"),
        ("iso-2022-jp", "格安のお薬"),
        ("euc-kr", "저렴한 약품"),
        ("iso-8859-7", "Φθηνά φάρμακα"),
    ],
)
@pytest.mark.parametrize("encoding", ["b", "q"])
def test_rfc2047_subjects_in_many_charsets(charset, text, encoding, parse):
    word = encoded_word(text, charset, encoding)
    raw = message([("Subject", f"{word}"), ("From", "a@b.example")], "x\r\n")
    assert parse(raw).subject == text
    assert decode_header_value(word) == text


def test_rfc2047_adjacent_words_join_and_plain_text_stays():
    value = f"Hot {encoded_word('ação', 'utf-8')} {encoded_word('Проверка', 'koi8-r')} now"
    assert decode_header_value(value) == "Hot açãoПроверка now"  # RFC 2047 §6.2


def test_8bit_headers_utf8_and_latin1(parse):
    raw = b"From: a@b.example\r\nSubject: Promo\xc3\xa7\xc3\xa3o\r\nX-Mailer: M\xe9l\r\n\r\nhi\r\n"
    c = parse(raw)
    assert c.subject == "Promoção"  # raw UTF-8 (RFC 6532)
    assert c.mailer == "Mél"  # not UTF-8: Latin-1


def test_nested_multiparts_and_attachments(parse):
    inner_zip = zip_bytes({"invoice.exe": b"MZ" + bytes(range(256)) * 8, "readme.txt": b"hi"})
    pdf = b"%PDF-1.4\n" + bytes(range(256)) * 4
    body = CRLF.join(
        [
            "--outer",
            'Content-Type: multipart/alternative; boundary="alt"',
            "",
            "--alt",
            "Content-Type: text/plain; charset=utf-8",
            "",
            "Your invoice is attached, see www.invoices.example.org/view now.",
            "--alt",
            'Content-Type: multipart/related; boundary="rel"',
            "",
            "--rel",
            "Content-Type: text/html; charset=utf-8",
            "",
            '<p>Your <b>invoice</b> <a href="https://pay.example.org/i?x=1">pay</a></p>',
            "--rel",
            "Content-Type: image/gif",
            "Content-Transfer-Encoding: base64",
            "",
            b64_lines(b"GIF89a" + bytes(100)),
            "--rel--",
            "--alt--",
            "--outer",
            # declared as octet-stream, sniffed as zip; RFC 2231 file name
            "Content-Type: application/octet-stream",
            "Content-Transfer-Encoding: base64",
            "Content-Disposition: attachment; filename*=utf-8''fatura%C3%A7.zip",
            "",
            b64_lines(inner_zip),
            "--outer",
            'Content-Type: application/pdf; name="doc.pdf"',
            "Content-Transfer-Encoding: base64",
            "",
            b64_lines(pdf),
            "--outer--",
            "",
        ]
    )
    raw = message(
        [
            ("From", "billing@invoices.example.org"),
            ("Subject", "Invoice"),
            ("MIME-Version", "1.0"),
            ("Content-Type", 'multipart/mixed; boundary="outer"'),
        ],
        body,
    )
    c = parse(raw)
    assert c.status == "ok" and c.parser == parse.parser
    assert c.defects == (0 if parse.parser == "stdlib" else None)
    assert c.content_type == "multipart/mixed"
    assert c.parts == 8  # mixed, alternative, plain, related, html, gif, zip, pdf
    assert c.depth == 3
    assert {u.url for u in c.urls} == {
        "http://www.invoices.example.org/view",
        "https://pay.example.org/i?x=1",
    }
    by_name = {a.filename: a for a in c.attachments}
    assert set(by_name) == {None, "faturaç.zip", "doc.pdf"}
    zipped = by_name["faturaç.zip"]
    assert zipped.declared_type == "application/octet-stream"
    assert zipped.sniffed_type == "application/zip"
    assert zipped.sha256 == hashlib.sha256(inner_zip).hexdigest()
    assert zipped.size == len(inner_zip)
    assert zipped.archive_members == ["invoice.exe", "readme.txt"]
    assert zipped.tlsh is not None
    assert by_name["doc.pdf"].sniffed_type == "application/pdf"
    assert by_name[None].declared_type == "image/gif"
    assert by_name[None].sniffed_type == "image/gif"


def test_broken_boundary_is_a_defect_not_a_loss(parse):
    body = CRLF.join(
        [
            "--right",
            "Content-Type: text/plain",
            "",
            "Buy at http://broken.example.com/ today",
            "--never-closed",
            "",
        ]
    )
    raw = message([("Subject", "x"), ("Content-Type", 'multipart/mixed; boundary="right"')], body)
    c = parse(raw)
    assert c.status == "ok"
    if c.parser == "stdlib":
        assert c.defects >= 1  # no closing boundary (RFC 2046 §5.1.1)
    assert [u.domain for u in c.urls] == ["example.com"]

    wrong = message(
        [("Subject", "x"), ("Content-Type", 'multipart/mixed; boundary="absent"')],
        "Buy at http://nobound.example.com/ today\r\n",
    )
    c = parse(wrong)
    # the fast parser finds no part at all: the lenient one reads the text
    assert c.status == "ok" and c.parser == "stdlib" and c.defects >= 1
    assert [u.host for u in c.urls] == ["nobound.example.com"]


def test_base64_with_garbage_still_decodes(parse):
    data = b"PK\x03\x04" + bytes(range(200))
    text = base64.b64encode(data).decode()
    garbled = text[:20] + "!!**\x7f" + text[20:40] + "\r\n  ##" + text[40:]
    raw = message(
        [
            ("Content-Type", 'multipart/mixed; boundary="b"'),
        ],
        f"--b\r\nContent-Type: application/octet-stream; name=x.bin\r\n"
        f"Content-Transfer-Encoding: base64\r\n\r\n{garbled}\r\n--b--\r\n",
    )
    c = parse(raw)
    assert c.status == "ok"
    [attachment] = c.attachments
    assert attachment.sha256 == hashlib.sha256(data).hexdigest()
    assert c.parser == "stdlib"  # the fast parser refuses the garbage; the lenient one skips it


def test_html_only_message(parse):
    html = (
        "<html><head><style>p {color: red}</style><script>var u='http://script.example/'"
        "</script></head><body><p>Ol&aacute;! Compre rem&eacute;dios baratos hoje mesmo, com"
        ' entrega r&aacute;pida.</p><a href="&#104;&#116;&#116;&#112;://promo.example.com.br/'
        'a?b=1&amp;c=2">clique</a><img src=http://0x7f000001/t.gif></body></html>'
    )
    raw = message([("Subject", "Oferta"), ("Content-Type", "text/html; charset=utf-8")], html)
    c = parse(raw)
    assert c.language == "pt"
    assert c.text_chars > 0
    urls = {u.url: u for u in c.urls}
    assert set(urls) == {"http://promo.example.com.br/a?b=1&c=2", "http://127.0.0.1/t.gif"}
    assert urls["http://promo.example.com.br/a?b=1&c=2"].domain == "example.com.br"
    assert urls["http://promo.example.com.br/a?b=1&c=2"].obfuscated  # entities
    assert all(u.source == "html" for u in c.urls)


def test_limits_are_named_and_bound_the_work(parse):
    many = CRLF.join(
        f"--b\r\nContent-Type: text/plain\r\n\r\npart {i} http://h{i}.example.com/"
        for i in range(30)
    )
    raw = message([("Content-Type", 'multipart/mixed; boundary="b"')], many + "\r\n--b--\r\n")
    c = parse(raw, limits=ContentLimits(max_parts=10))
    assert c.limit == "parts" and c.parts == 11
    c = parse(raw, limits=ContentLimits(max_urls=5))
    assert c.limit == "urls" and len(c.urls) == 5
    c = parse(raw, limits=ContentLimits(max_message_bytes=200))
    assert c.limit == "message bytes" and c.size == len(raw)

    nested = "".join(
        f'Content-Type: multipart/mixed; boundary="n{i}"\r\n\r\n--n{i}\r\n' for i in range(30)
    )
    raw = ("Subject: deep\r\n" + nested + "Content-Type: text/plain\r\n\r\ndeep text\r\n").encode()
    c = parse(raw, limits=ContentLimits(max_depth=5))
    assert c.status == "ok" and c.limit == "depth" and c.depth == 5


def test_unreadable_message_gets_an_error_row(parse):
    c = parse(b"")
    assert c.status == "error" and c.error == "empty message"
    row = as_row(c)
    assert row["status"] == "error" and row["mh0"] is None


def test_date_skew_missing_or_broken(parse):
    assert parse(PLAIN).date_skew_s is None  # no capture time given
    raw = message([("Date", "yesterday, sometime")], "x\r\n")
    assert parse(raw, CAPTURED).date_skew_s is None
    raw = message([("Date", "Tue, 13 Jun 2006 10:05:00 -0000")], "x\r\n")
    assert parse(raw, CAPTURED).date_skew_s == 86400
    raw = message([("Date", "12 Jun 2006 13:05 +0300 (EEST)")], "x\r\n")
    assert parse(raw, CAPTURED).date_skew_s == 0
    raw = message([("Date", "Monday, 12-Jun-06 10:05:00 GMT")], "x\r\n")  # RFC 850: stdlib
    assert parse(raw, CAPTURED).date_skew_s == 0


def test_mailer_falls_back_to_user_agent(parse):
    raw = message([("User-Agent", "Mozilla Thunderbird 1.5.0.4")], "x\r\n")
    assert parse(raw).mailer == "Mozilla Thunderbird 1.5.0.4"


def test_many_encoded_words_cost_no_more_than_a_header_limit():
    # The fast parser is quadratic in encoded words per header: such a message goes to the
    # lenient parser, which decodes only the first max_header_chars of a value.
    raw = b"Subject: " + b"=?utf-8?b?QUJD?= " * 100_000 + b"\r\n\r\nbody\r\n"
    started = time.process_time()
    c = extract(raw)
    assert time.process_time() - started < 5
    assert c.parser == "stdlib" and c.subject is not None and c.subject.startswith("ABCABC")
    assert len(c.subject) <= 998
