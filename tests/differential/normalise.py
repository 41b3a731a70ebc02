"""Normalisation: what must differ between two runs of the *same* software, and nothing else.

Each rule replaces a value that changes from connection to connection (the time, a queue id,
an ephemeral port) with a placeholder that keeps its *shape* where the shape is part of the
software's look: a date keeps its layout and widths (``Www, 99 Mmm 9999 99:99:99 +0000`` -
the zone, the day's leading zero and the order are what the software chose), a queue id is
replaced only when it has the real format of that software's ids. A sensor that prints a
date in another layout, or queue ids of another shape, still differs after normalisation.

Host names: every server and the sensor call themselves ``HOSTNAME``; a tunnelled server
is named by whatever the probe asked for (the sensor) or its own name (the upstream Postfix),
so the names in ``realservers.PROBE_TARGETS`` and ``HOSTNAME`` all become ``<HOST>``. A
tunnel to an *address* meets a server whose name no probe gave: the upstream's own, and on
the sensor the reverse name it makes up for that address (personas.server_name). So behind a
proxy (families http and socks) the name an SMTP server greets with (``220 name``) and
answers EHLO with (``250-name``) is ``<HOST>`` as well. On port 25 it is kept: there the
sensor names itself, and a wrong name (``localhost.localdomain``) must show.
Client addresses are the same on both sides (``realservers.CLIENT``) and are kept; so is
the address a SOCKS server reports as bound (the sensor must report the address the client
reached, as Dante does) - only the bound *port* is ephemeral.
"""

from __future__ import annotations

import re

from realservers import HOSTNAME, PROBE_TARGETS

_DIGIT = re.compile(r"\d")
_DAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
# RFC 5322 date-time as MTAs and Squid print it (the zone is kept as printed).
_DATE = re.compile(rf"{_DAY}, [ \d]\d {_MONTH} \d{{4}} \d\d:\d\d:\d\d")
# Squid's access-log style and ctime() style, in case a page carries them.
_CTIME = re.compile(rf"{_DAY} {_MONTH} [ \d]\d \d\d:\d\d:\d\d \d{{4}}")

# Queue ids, each only in its own software's format and place.
_POSTFIX_QID = re.compile(r"(queued as )([0-9A-F]{6,12}|[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-z]{10,})")
_EXIM_ID = re.compile(
    r"(id=)([0-9A-Za-z]{6}-[0-9A-Za-z]{6}-[0-9A-Za-z]{2}|[0-9A-Za-z]{6}-[0-9A-Za-z]{11}-[0-9A-Za-z]{4})\b"
)
_SENDMAIL_QID = re.compile(r"(\d\.\d\.\d )([0-9A-Za-x]{8}\d{6})( Message accepted)")

# A host name: dotted labels, with a letter (not "2.0.0", "8BITMIME" or "SIZE").
_NAME = r"(?=[0-9.-]*[A-Za-z])[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"
# The name a tunnelled SMTP server greets with, or begins its EHLO reply with (after a SOCKS
# reply's bytes the greeting starts mid-line).
_TUNNELLED_NAME = re.compile(rf"(220 |(?m:^)250[ -]){_NAME}(?=[ \r\n]|$)")

_HOSTS = re.compile(
    "|".join(re.escape(h) for h in sorted({HOSTNAME, *PROBE_TARGETS}, key=len, reverse=True)),
    re.I,
)


def _shape(match: re.Match[str]) -> str:
    text = _DIGIT.sub("9", match.group(0))
    text = re.sub(_DAY, "Www", text)
    return re.sub(_MONTH, "Mmm", text)


def normalise_text(text: str) -> str:
    text = _DATE.sub(_shape, text)
    text = _CTIME.sub(_shape, text)
    text = _POSTFIX_QID.sub(r"\1<QUEUE-ID>", text)
    text = _EXIM_ID.sub(r"\1<QUEUE-ID>", text)
    text = _SENDMAIL_QID.sub(r"\1<QUEUE-ID>\3", text)
    return _HOSTS.sub("<HOST>", text)


def _socks_port_at(reply: bytes) -> int:
    """Where BND.PORT is in a SOCKS4 reply (8 bytes: VN CD PORT IP) or a SOCKS5 reply
    (RFC 1928 §6: VER REP RSV ATYP ADDR PORT) at the start of ``reply``; -1 if neither."""
    if len(reply) >= 8 and reply[0] == 0 and 0x5A <= reply[1] <= 0x5D:
        return 2
    if len(reply) >= 4 and reply[0] == 5 and reply[2] == 0:
        ends = {1: 8, 4: 20, 3: 5 + reply[4] if len(reply) > 4 else -1}
        end = ends.get(reply[3], -1)
        if end > 0 and len(reply) >= end + 2:
            return end
    return -1


def _socks_header_len(reply: bytes) -> int:
    at = _socks_port_at(reply)
    if at < 0:
        return 0
    return 8 if at == 2 else at + 2


def _socks_bound_port(reply: bytes) -> bytes:
    """Zero the ephemeral BND.PORT of the SOCKS reply at the start of ``reply``; what follows
    (a tunnel's banner) is left as it is. A SOCKS5 method choice (``05 MM``) answered at once
    with the request's reply (the client pipelined both) is skipped over."""
    if len(reply) > 2 and reply[0] == 5 and reply[2] == 5:
        return reply[:2] + _socks_bound_port(reply[2:])
    at = _socks_port_at(reply)
    return reply if at < 0 else reply[:at] + b"\0\0" + reply[at + 2 :]


_CHUNKED = re.compile(rb"(?im)^transfer-encoding:\s*chunked\s*$")


def _one_chunk(reply: bytes) -> bytes:
    """A chunked body (RFC 9112 §7.1) as one chunk: where a proxy cuts the chunks follows
    when the upstream's bytes arrived, not the software. The content is kept byte for byte,
    and so is a body that does not parse."""
    head, sep, body = reply.partition(b"\r\n\r\n")
    if not sep or not _CHUNKED.search(head):
        return reply
    content = b""
    rest = body
    while True:
        size_line, crlf, rest = rest.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            return reply
        if not crlf or len(rest) < size + 2 or rest[size : size + 2] != b"\r\n":
            return reply
        if size == 0:
            break
        content += rest[:size]
        rest = rest[size + 2 :]
    one = b"%x\r\n%s\r\n0\r\n" % (len(content), content) if content else b"0\r\n"
    return head + sep + one + rest


def normalise_reply(reply: bytes, family: str) -> bytes:
    if family == "socks":
        reply = _socks_bound_port(reply)
    if family == "http":
        reply = _one_chunk(reply)
    text = normalise_text(reply.decode("latin-1"))
    if family in ("http", "socks"):
        text = _TUNNELLED_NAME.sub(r"\1<HOST>", text)
    return text.encode("latin-1")


# --- reply codes ------------------------------------------------------------------------------

_HTTP_STATUS = re.compile(rb"^HTTP/\d\.\d (\d{3})")
_SMTP_CODES = re.compile(rb"(?m)^(\d{3})(?: |\r?$)")


def smtp_codes(stream: bytes) -> str:
    """The codes of every final reply line (``NNN text``) in an SMTP stream, in order."""
    return " ".join(c.decode() for c in _SMTP_CODES.findall(stream)) or "-"


def reply_code(reply: bytes) -> str:
    """The reply's codes: HTTP status, SOCKS version and status bytes, SMTP final-line codes
    (a tunnel's reply has the proxy's code, then the tunnelled server's)."""
    if not reply:
        return "-"
    codes = []
    rest = reply
    status = _HTTP_STATUS.match(reply)
    if status:
        codes.append(status.group(1).decode())
        rest = reply.partition(b"\r\n\r\n")[2]
        if status.group(1) != b"200":
            rest = b""  # a page, not a tunnel
    elif reply[0] in (0, 5) and len(reply) >= 2:
        codes.append(f"socks:{reply[:2].hex()}")
        if len(reply) > 2 and reply[0] == 5 and reply[2] == 5:
            reply = reply[2:]  # the method choice, then at once the request's reply
            codes.append(f"socks:{reply[:2].hex()}")
        rest = reply[_socks_header_len(reply) or 2 :]
    codes += [c.decode() for c in _SMTP_CODES.findall(rest)]
    return "+".join(codes) if codes else "?"
