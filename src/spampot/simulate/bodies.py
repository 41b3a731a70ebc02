"""Spam-like messages in campaigns of near-identical messages, and relay tests.

A campaign is a fixed text (subject, paragraphs, an advertised link) built from its number,
with what content analysis reads: a language and the charset of its time (``spam_texts``), a
MIME structure (plain text, text and HTML alternatives, or HTML only), an X-Mailer, sometimes
an obfuscated link or an attachment. Each message of it changes a few things the way bulk
mailers did to defeat checksums ("hash busters"): the greeting, a line of random words, the
link's tracking id, the Message-ID and Date. So exact hashes differ while the texts stay
near-identical, which is what content-level campaign grouping must find.

Shares of campaigns with each feature (``FEATURE_SHARES``) are assumptions, not measurements:
the paper publishes no content figures. The language mix follows its Table 3 (spam_texts.py).
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import quopri
import random
import zipfile
from dataclasses import dataclass

from spampot.simulate.spam_texts import CHARSETS, LANGUAGE_SHARES, MAILERS, TEXTS

_WORDS = (  # noqa: SIM905 - 37 words read better as text than as a list
    "apple river stone cloud paper garden silver window orange market yellow pencil table "
    "summer winter forest bridge candle rabbit thunder marble velvet anchor harbor meadow "
    "lantern copper violet falcon cactus ginger walnut saddle basket canyon pepper"
).split()

_TLDS = ("com", "net", "info", "biz", "cn", "ru", "org", "com.tw", "com.cn")

# Share of campaigns with each feature (assumed; see the module's docstring).
FEATURE_SHARES = {
    "alternative": 0.40,  # text/plain and text/html alternatives
    "html_only": 0.10,
    "obfuscated_link": 0.10,  # defanged, entity-encoded or percent-encoded link
    "attachment": 0.08,  # a GIF (image spam), a PDF or a zip holding an .exe
}
CRLF = "\r\n"


@dataclass(frozen=True, slots=True)
class Campaign:
    subject: str
    language: str
    charset: str
    encoding: str  # Content-Transfer-Encoding of the text parts
    paragraphs: tuple[str, ...]
    text: str  # the paragraphs as one text, and as HTML, made once
    html: str
    domain: str  # the advertised (and sender) registered domain
    path: str
    structure: str  # plain, alternative, html
    obfuscation: str | None  # defanged, entities, percent
    mailer: str | None
    attachment: tuple[str, str, bytes] | None  # (file name, content type, bytes)


class Campaigns:
    """``count`` campaigns built once; :meth:`message` renders one message of one."""

    def __init__(self, seed: int, count: int) -> None:
        rng = random.Random(seed)
        self.count = max(1, count)
        languages = list(LANGUAGE_SHARES)
        weights = [LANGUAGE_SHARES[k] for k in languages]
        self._campaigns: list[Campaign] = []
        for _ in range(self.count):
            language = rng.choices(languages, weights)[0]
            subjects, sentences = TEXTS[language]
            charset, encoding = CHARSETS[language]
            domain = "".join(rng.choice(_WORDS) for _ in range(2)) + "." + rng.choice(_TLDS)
            paragraphs = tuple(
                " ".join(rng.sample(sentences, min(len(sentences), rng.randint(3, 5))))
                for _ in range(rng.randint(4, 8))
            )
            roll = rng.random()
            structure = (
                "alternative"
                if roll < FEATURE_SHARES["alternative"]
                else "html"
                if roll < FEATURE_SHARES["alternative"] + FEATURE_SHARES["html_only"]
                else "plain"
            )
            obfuscation = None
            if rng.random() < FEATURE_SHARES["obfuscated_link"]:
                obfuscation = rng.choice(["defanged", "entities", "percent"])
                if obfuscation != "defanged" and structure == "plain":
                    structure = "alternative"  # entities and %-hosts live in an href
            attachment = None
            if rng.random() < FEATURE_SHARES["attachment"]:
                attachment = _attachment(rng)
            self._campaigns.append(
                Campaign(
                    subject=rng.choice(subjects),
                    language=language,
                    charset=charset,
                    encoding=encoding,
                    paragraphs=paragraphs,
                    text=(CRLF + CRLF).join(paragraphs),
                    html="".join(f"<p>{html.escape(p)}</p>" for p in paragraphs),
                    domain=domain,
                    path=rng.choice(_WORDS),
                    structure=structure,
                    obfuscation=obfuscation,
                    mailer=rng.choice(MAILERS),
                    attachment=attachment,
                )
            )

    def campaign(self, number: int) -> Campaign:
        return self._campaigns[number % self.count]

    def sender_domain(self, campaign: int) -> str:
        return self.campaign(campaign).domain

    def message(
        self,
        campaign: int,
        variant: int,
        mail_from: str,
        to: str,
        date: str,
        message_id: str,
    ) -> bytes:
        """One message as a client sends it after DATA (CRLF line ends, no final dot)."""
        c = self.campaign(campaign)
        name = to.split("@", 1)[0]
        w = _WORDS
        n = len(w)
        buster = f"{w[variant % n]} {w[(variant >> 6) % n]} {w[(variant >> 12) % n]}"
        subject = c.subject
        if variant & 1:
            subject = f"{subject} {variant % 1000}"
        link = f"http://www.{c.domain}/{c.path}/?id={variant % 1000003}"
        greeting = f"Dear {name},"
        tail = f"REMOVE: info@{c.domain}{CRLF}{buster}"
        text = (
            f"{greeting}{CRLF}{CRLF}{c.text}{CRLF}{CRLF}{_shown_link(link, c.obfuscation)}"
            f"{CRLF}{CRLF}{tail}{CRLF}"
        )
        head = [
            f"From: <{mail_from}>",
            f"To: <{to}>",
            f"Subject: {_encode_subject(subject, c.charset)}",
            f"Date: {date}",
            f"Message-ID: <{message_id}@{c.domain}>",
        ]
        if c.mailer:
            head.append(f"X-Mailer: {c.mailer}")
        head.append("MIME-Version: 1.0")
        parts: list[tuple[str, bytes]] = []
        if c.structure in ("plain", "alternative"):
            parts.append(_text_part("plain", text, c))
        if c.structure in ("html", "alternative"):
            parts.append(_text_part("html", _html(greeting, tail, link, c), c))
        body: tuple[str, bytes]
        body = (
            _multipart("alternative", parts, f"alt{variant % 9973}") if len(parts) > 1 else parts[0]
        )
        if c.attachment is not None:
            filename, ctype, data = c.attachment
            attached = (
                f'Content-Type: {ctype}; name="{filename}"{CRLF}'
                f"Content-Transfer-Encoding: base64{CRLF}"
                f'Content-Disposition: attachment; filename="{filename}"',
                _base64(data),
            )
            body = _multipart("mixed", [body, attached], f"mix{variant % 9973}")
        header_block = (CRLF.join(head) + CRLF + body[0] + CRLF + CRLF).encode("ascii")
        return header_block + body[1]

    def relay_test(
        self,
        variant: int,
        mail_from: str,
        to: str,
        date: str,
        relay_address: str,
        relay_port: int,
        target_host: str | None,
    ) -> bytes:
        """A relay or proxy test: a short message to the tester's own mailbox saying which
        relay carried it (its address and port, the server asked for, or a token)."""
        token = hashlib.sha1(f"{variant}".encode()).hexdigest()[:12].upper()
        forms = [
            (f"{relay_address}:{relay_port}", f"{relay_address}:{relay_port}"),
            ("proxy test", f"ok {relay_address} {relay_port}"),
            (token, f"ID: {token}"),
            ("relay check", f"relay via {target_host or relay_address} ok"),
        ]
        subject, text = forms[variant % len(forms)]
        return (
            f"From: <{mail_from}>{CRLF}To: <{to}>{CRLF}Subject: {subject}{CRLF}Date: {date}{CRLF}"
            f"{CRLF}{text}{CRLF}"
        ).encode("ascii")


def _shown_link(link: str, obfuscation: str | None) -> str:
    if obfuscation == "defanged":
        return link.replace("http://", "hxxp://").replace(".", "[.]", 3)
    return link


def _html(greeting: str, tail: str, link: str, c: Campaign) -> str:
    href = link
    if c.obfuscation == "entities":
        href = "".join(f"&#{ord(ch)};" for ch in link[:11]) + html.escape(link[11:])
    elif c.obfuscation == "percent":
        host = f"www.{c.domain}"
        href = link.replace(host, "".join(f"%{b:02x}" for b in host.encode()), 1)
    return (
        f"<html><body><p>{html.escape(greeting)}</p>{c.html}"
        f'<p><a href="{href}">{html.escape(c.subject)}</a></p>'
        f"<p>{html.escape(tail)}</p></body></html>"
    )


def _text_part(subtype: str, text: str, c: Campaign) -> tuple[str, bytes]:
    data = text.encode(c.charset, "replace")
    if c.encoding == "base64":
        payload = _base64(data)
    elif c.encoding == "quoted-printable":
        payload = quopri.encodestring(data).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    else:
        payload = data
    return (
        f"Content-Type: text/{subtype}; charset={c.charset}{CRLF}"
        f"Content-Transfer-Encoding: {c.encoding}",
        payload,
    )


def _multipart(kind: str, parts: list[tuple[str, bytes]], boundary: str) -> tuple[str, bytes]:
    out = bytearray()
    for head, payload in parts:
        out += f"--{boundary}{CRLF}{head}{CRLF}{CRLF}".encode("ascii") + payload + b"\r\n"
    out += f"--{boundary}--{CRLF}".encode("ascii")
    return f'Content-Type: multipart/{kind}; boundary="{boundary}"', bytes(out)


def _base64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def _encode_subject(subject: str, charset: str) -> str:
    if subject.isascii():
        return subject
    data = subject.encode(charset, "replace")
    return f"=?{charset}?B?{base64.b64encode(data).decode('ascii')}?="


def _attachment(rng: random.Random) -> tuple[str, str, bytes]:
    """A campaign's attachment: the same bytes in every message of it (so its hash recurs)."""
    kind = rng.choice(["gif", "pdf", "zip"])
    noise = rng.randbytes(600)
    if kind == "gif":
        return f"{rng.choice(_WORDS)}.gif", "image/gif", b"GIF89a\x40\x01\xf0\x00" + noise
    if kind == "pdf":
        return f"{rng.choice(_WORDS)}.pdf", "application/pdf", b"%PDF-1.4\n" + noise
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        info = zipfile.ZipInfo(f"{rng.choice(_WORDS)}.exe", date_time=(2006, 6, 10, 0, 0, 0))
        archive.writestr(info, b"MZ" + noise)
    return f"{rng.choice(_WORDS)}.zip", "application/zip", buf.getvalue()
