"""Relay tests: the message a spammer sends through an open relay or proxy before using it.

Proxy and relay checkers (the tools that fed the paper's spammers their lists of open
proxies) send themselves a short message that says which relay carried it: its address and
port, the mail server they asked the tunnel for, or a token that their mailbox watcher matches
to the test. A message is a relay-test *candidate* when, by its content alone:

1. it is short: at most ``MAX_TEXT_CHARS`` (500) characters of visible text, no attachment and at
   most one URL (spam advertises; a test reports);
2. it goes to at most ``MAX_RECIPIENTS`` mailboxes (the tester's own);
3. and it carries at least one of:
   - ``address``: the address the client reached (``dst_ip``), as text;
   - ``address:port``: any IPv4 address followed by the port the client reached (behind NAT
     the tester knows the public address, the sensor only the private one);
   - ``target``: the mail server the tunnel was asked for (``CONNECT host:25``);
   - ``token``: a line or subject that is one random-looking token (8+ letters and digits,
     or 8+ hex digits), as checkers use to match replies to tests;
   - ``keyword``: test vocabulary in the subject (test, relay, proxy, socks, check).

The second half of the rule, "just before a burst from the same source", needs the messages
that follow and is applied in the report (``sql/report_relay_tests.sql``), which adds the burst
as evidence and flags, besides, a short first message to few mailboxes that a burst follows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_TEXT_CHARS = 500
MAX_RECIPIENTS = 3
MAX_URLS = 1

_ADDR_PORT = re.compile(r"\b((?:\d{1,3}\.){3}\d{1,3})\s*(?::|\s|port\s*)\s*(\d{1,5})\b", re.I)
_TOKEN = re.compile(
    r"^[\w\-:#= ]{0,20}?\b((?=[A-Za-z\-]*\d)(?=[\d\-]*[A-Za-z])[A-Za-z0-9\-]{8,64})\s*$"
)
_HEX = re.compile(r"\b[0-9a-fA-F]{8,64}\b")
_KEYWORDS = re.compile(r"\b(test(?:ing)?|relay|proxy|socks|check(?:er)?)\b", re.I)


@dataclass(frozen=True, slots=True)
class RelayContext:
    """What the sensor knew when it took the message (from its ``smtp.message`` event)."""

    dst_ip: str | None
    dst_port: int | None
    target_host: str | None
    recipients: int


def relay_evidence(
    ctx: RelayContext, subject: str, text: str, text_chars: int, urls: int, attachments: int
) -> list[str]:
    """The reasons a message is a relay-test candidate; empty when it is not one."""
    if text_chars > MAX_TEXT_CHARS or attachments or urls > MAX_URLS:
        return []
    if ctx.recipients > MAX_RECIPIENTS or ctx.recipients < 1:
        return []
    body = f"{subject}\n{text}"
    found: list[str] = []
    if ctx.dst_ip and _contains_address(body, ctx.dst_ip):
        found.append(f"address {ctx.dst_ip}")
    if ctx.dst_port is not None:
        for match in _ADDR_PORT.finditer(body):
            if int(match.group(2)) == ctx.dst_port:
                found.append(f"address:port {match.group(1)}:{match.group(2)}")
                break
    target = (ctx.target_host or "").strip().lower()
    if len(target) >= 4 and target in body.lower():
        found.append(f"target {target}")
    token = _token(subject, text)
    if token:
        found.append(f"token {token}")
    keyword = _KEYWORDS.search(subject)
    if keyword:
        found.append(f"keyword {keyword.group(1).lower()}")
    if not found:
        return []
    return [f"short ({text_chars} chars)", f"{ctx.recipients} recipient(s)", *found]


def _contains_address(text: str, address: str) -> bool:
    at = text.find(address)
    while at >= 0:
        before = text[at - 1] if at else " "
        end = at + len(address)
        after = text[end] if end < len(text) else " "
        if not (before.isdigit() or before == ".") and not (
            after.isdigit() or (after == "." and text[end + 1 : end + 2].isdigit())
        ):
            return True
        at = text.find(address, at + 1)
    return False


def _token(subject: str, text: str) -> str | None:
    lines = [subject, *text.splitlines()[:20]]
    for line in lines:
        line = line.strip()
        if not line or len(line) > 90:
            continue
        match = _TOKEN.match(line)
        if match:
            return match.group(1)
        hexed = _HEX.fullmatch(line)
        if hexed:
            return hexed.group(0)
    return None
