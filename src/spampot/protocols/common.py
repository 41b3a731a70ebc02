"""Pieces shared by every protocol machine: the one error idiom, and client-text helpers.

The error idiom (DESIGN.md "Protocol cores are sans-I/O"): wherever a machine finds that the
peer broke its protocol, it raises :class:`ProtocolError` carrying what was wrong (for the log),
the protocol's own answer (already in the persona's words) and whether the connection ends.
The machine catches it in one place, at the top of ``receive_data``: it sends ``reply``, turns
the error into its event (:class:`ClientError` for SMTP; a ``ProxyRequest`` with outcome
``error`` for the proxies, which the paper's Table 6 counts), and closes when ``close`` is set.
Nothing else in a machine writes an error reply.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Bytes of the offending input kept in an error event: enough to recognise a tool.
RAW_LIMIT = 256


class ProtocolError(Exception):
    """The peer broke the protocol.

    ``detail``: what was wrong, for the log (never sent). ``reply``: the protocol's answer, as
    bytes on the wire (b"" = say nothing). ``raw``: the offending input (cut to RAW_LIMIT).
    ``close``: the connection ends after the reply. ``counts``: the error counts towards the
    machine's error limits (a persona may answer some faults without counting them).
    """

    def __init__(
        self,
        detail: str,
        reply: bytes = b"",
        *,
        raw: bytes = b"",
        close: bool = False,
        counts: bool = True,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.reply = reply
        self.raw = raw[:RAW_LIMIT]
        self.close = close
        self.counts = counts

    def event(self) -> ClientError:
        """The error as the event the adapter logs."""
        return ClientError(self.detail, self.reply.rstrip(b"\r\n"), self.raw)


@dataclass(frozen=True, slots=True)
class ClientError:
    """Event: the client sent something invalid. Logged as an ``error``; ``reply`` was sent."""

    detail: str
    reply: bytes
    raw: bytes = b""


def printable(raw: bytes, limit: int = 256) -> str:
    """A short, log-safe rendering of hostile bytes for error details."""
    text = raw[:limit].decode("utf-8", "backslashreplace")
    text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
    return text + ("..." if len(raw) > limit else "")


def decode_client(raw: bytes) -> str:
    """Text of a client-supplied field, kept whole: undecodable bytes become ``\\xNN`` escapes.

    Every host name, user id, credential, method, URL and header value a client sends goes
    through here, so nothing is dropped and the result is always valid text for JSON logs.
    """
    return raw.decode("utf-8", "backslashreplace")


def reply_text(text: str, limit: int) -> str:
    """Text safe inside one reply line: printable ASCII only (escapes), at most ``limit``.

    Client strings that a persona echoes (a host name a tunnel asked for, a VRFY argument, an
    EHLO name) pass through here, so no client can put a line end into a reply.
    """
    if text.isascii() and text.isprintable():  # the usual case (a configured host name):
        return text[:limit]  # the same string, not a copy per session
    ascii_text = text.encode("ascii", "backslashreplace").decode("ascii")
    if not ascii_text.isprintable():
        ascii_text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in ascii_text)
    return ascii_text[:limit]
