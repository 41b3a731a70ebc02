"""Messages whose content is known by construction, for the content-extraction tests."""

from __future__ import annotations

import base64
import io
import zipfile
from email.header import Header

CRLF = "\r\n"


def message(headers: list[tuple[str, str]], body: str) -> bytes:
    head = "".join(f"{k}: {v}{CRLF}" for k, v in headers)
    return (head + CRLF + body).encode("utf-8", "surrogateescape")


def encoded_word(text: str, charset: str, encoding: str = "b") -> str:
    """``text`` as one RFC 2047 encoded word (B or Q) in ``charset``."""
    data = text.encode(charset)
    if encoding == "b":
        return f"=?{charset}?B?{base64.b64encode(data).decode()}?="
    return Header(text, charset).encode(maxlinelen=10_000)


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buf.getvalue()


def b64_lines(data: bytes, width: int = 76) -> str:
    text = base64.b64encode(data).decode()
    return CRLF.join(text[i : i + width] for i in range(0, len(text), width))


PLAIN = message(
    [
        ("From", '"Pharmacy" <Sales@Cheap-Pills.example.com>'),
        ("Reply-To", "orders@replies.example.net"),
        ("Return-Path", "<bounce@bounces.example.org>"),
        ("To", "victim@hotmail.com"),
        ("Subject", "Cheap meds online"),
        ("Date", "Mon, 12 Jun 2006 10:00:00 +0000"),
        ("Message-ID", "<20060612.abc@MTA.example.com>"),
        ("X-Mailer", "The Bat! (v3.5) Professional"),
        ("MIME-Version", "1.0"),
        ("Content-Type", "text/plain; charset=us-ascii"),
    ],
    "Dear friend,\r\n\r\nWe ship worldwide in discreet packaging. Lowest prices guaranteed,"
    " order today from our licensed pharmacy.\r\n"
    "Visit hxxp://www[.]pills-a.example.com/buy?id=1 or www.pills-b.example.co.uk/x, "
    "http://%77%77%77.pills-c.example.net/ and http://bank.example@3232235777/login.\r\n",
)
