"""Pieces shared by every protocol machine."""

from __future__ import annotations

from dataclasses import dataclass


class ProtocolError(Exception):
    """The peer broke the protocol; ``reply`` is what the protocol says to answer."""

    def __init__(self, message: str, reply: bytes = b"") -> None:
        super().__init__(message)
        self.reply = reply


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
