"""The open-relay SMTP emulator, sans-I/O.

A server that accepts every sender and every recipient and says it queued the mail. The
adapter stores each :class:`MessageReceived` and only then calls :meth:`SmtpServer.message_stored`,
which produces the "queued" reply: nothing is acknowledged before it is on disk.

What the server says is its :class:`~spampot.protocols.smtp_dialect.SmtpDialect` (Postfix,
Exim, Sendmail, Exchange, a provider's MX): the machine never spells a reply. Its state changes
only through :data:`TRANSITIONS` (one table, as h11 does), and every fault of the client is a
:class:`~spampot.protocols.common.ProtocolError` raised where it is found and answered in one
place (:meth:`SmtpServer._command`). RFC 5321 sections are cited where behaviour is chosen.

No clock and no sleeping: a dialect's error delay (Postfix sleeps a second before each reply
once a client made 10 errors) is handed to the adapter as :attr:`SmtpServer.delay`; the reply
waits, no further command is read, and :meth:`SmtpServer.resume` releases it when the
adapter's timer fires.
"""

from __future__ import annotations

import base64
import binascii
import enum
import functools
import re
from dataclasses import dataclass, field
from typing import NamedTuple

from spampot.protocols.common import (
    RAW_LIMIT,
    ClientError,
    ProtocolError,
    decode_client,
    reply_text,
)
from spampot.protocols.smtp_address import Fault, check_path, sender_refused_at_rcpt
from spampot.protocols.smtp_dialect import SmtpDialect, _static, render

__all__ = [
    "HOLD_LIMIT",
    "TRANSITIONS",
    "AuthAttempt",
    "ClientError",
    "Helo",
    "MessageReceived",
    "Quit",
    "Rejected",
    "SmtpLimits",
    "SmtpServer",
    "StartTls",
    "State",
    "TlsInfo",
    "reply_text",
    "split_path",
]


@dataclass(frozen=True, slots=True)
class SmtpLimits:
    """Per-connection bounds; 0 for the size means the dialect's own limit."""

    max_line: int = 0  # 0 = the dialect's (Postfix line_length_limit 2048; RFC 5321 asks 512)
    max_message_size: int = 0  # 0 = the dialect's message_size_limit
    # The most bytes of one message the sensor holds and stores, whatever SIZE the persona
    # advertises (Google and Outlook say 150 MiB): past it the message is read to its end
    # but dropped, and answered with the persona's size refusal. The one source of the
    # content analysis' bound (analysis.content.limits).
    message_cap: int = 32 * 1024 * 1024
    max_recipients: int = 1000  # smtpd_recipient_limit (RFC 5321 §4.5.3.1.8: at least 100)
    max_messages: int = 1000  # messages accepted on one connection
    max_errors: int = 0  # a cap on the persona's own limits (0: the persona's alone)


@dataclass(frozen=True, slots=True)
class TlsInfo:
    """What the adapter's TLS layer negotiated (RFC 3207), put on later events."""

    version: str
    cipher: str
    sni: str | None = None


# --- events ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Helo:
    command: str  # "HELO" or "EHLO"
    name: str


@dataclass(frozen=True, slots=True)
class AuthAttempt:
    """Every AUTH exchange that reached a verdict; ``outcome`` is what the client was told."""

    mechanism: str
    username: str | None
    password: str | None
    outcome: str = "failed"  # "failed" (the persona's wrong-password reply) or "ok"


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A complete message; answer it with message_stored() or message_deferred()."""

    helo: str | None
    mail_from: str
    mail_params: str
    rcpt_to: tuple[str, ...]
    data: bytes  # as received, after dot-unstuffing (RFC 5321 §4.5.2), or BDAT's bytes as sent
    bdat: bool = False  # sent with BDAT (RFC 3030), not DATA


@dataclass(frozen=True, slots=True)
class Rejected:
    stage: str  # "mail", "rcpt", "data", "connect"
    code: int
    why: str  # "size", "recipients", "storage", "messages", "errors", "forbidden"


@dataclass(frozen=True, slots=True)
class StartTls:
    """The 220 for STARTTLS is queued: after sending it the adapter starts TLS (RFC 3207).

    ``discarded`` holds plaintext the client sent after the command: never run as commands
    (the STARTTLS injection flaw, CVE-2011-0411), as Postfix discards it.
    """

    discarded: bytes = b""


@dataclass(frozen=True, slots=True)
class Quit:
    pass


SmtpEvent = Helo | AuthAttempt | MessageReceived | Rejected | ClientError | Quit | StartTls


class State(enum.Enum):
    # Members are singletons: hash them by identity, not by Enum's Python-level __hash__
    # (the transition table and the state sets are looked up on every command).
    __hash__ = object.__hash__

    GREETED = "greeted"  # banner sent, no HELO yet
    READY = "ready"  # HELO seen, no transaction
    MAIL = "mail"  # MAIL accepted
    RCPT = "rcpt"  # at least one RCPT accepted
    DATA = "data"  # reading message content
    CHUNK = "chunk"  # reading a BDAT chunk's bytes
    CHUNKED = "chunked"  # between BDAT chunks (RFC 3030 §2)
    AUTH = "auth"  # waiting for a SASL response line
    TLS = "tls"  # 220 sent for STARTTLS, waiting for the adapter's handshake
    STORING = "storing"  # message handed to the adapter, waiting for the disk
    CLOSED = "closed"


S = State
#: Every state change of the machine: (state, what happened) -> next state. Anything not in the
#: table cannot happen; :meth:`SmtpServer._to` raises if it would.
TRANSITIONS: dict[tuple[State, str], State] = {
    # RFC 5321 §4.1.4: HELO/EHLO resets any transaction (also between BDAT chunks).
    **{(s, "helo"): S.READY for s in (S.GREETED, S.READY, S.MAIL, S.RCPT, S.CHUNKED)},
    # RFC 5321 §4.1.1.5: RSET clears the transaction; before HELO it changes nothing.
    (S.GREETED, "rset"): S.GREETED,
    **{(s, "rset"): S.READY for s in (S.READY, S.MAIL, S.RCPT, S.CHUNKED)},
    (S.GREETED, "mail"): S.MAIL,
    (S.READY, "mail"): S.MAIL,
    (S.MAIL, "rcpt"): S.RCPT,
    (S.RCPT, "rcpt"): S.RCPT,
    (S.RCPT, "data"): S.DATA,
    (S.DATA, "end_of_data"): S.STORING,
    (S.DATA, "too_big"): S.READY,
    # RFC 3030 §2: BDAT chunks, the last one ends the message.
    (S.RCPT, "bdat"): S.CHUNK,
    (S.CHUNKED, "bdat"): S.CHUNK,
    (S.CHUNK, "chunk"): S.CHUNKED,
    (S.CHUNK, "last_chunk"): S.STORING,
    (S.CHUNK, "too_big"): S.READY,
    (S.STORING, "stored"): S.READY,
    (S.STORING, "deferred"): S.READY,
    # RFC 4954: AUTH outside a transaction, with or without a challenge round.
    (S.GREETED, "auth"): S.AUTH,
    (S.READY, "auth"): S.AUTH,
    (S.AUTH, "auth_step"): S.AUTH,
    (S.AUTH, "auth_done"): S.READY,
    # RFC 3207 §4.2: after the handshake the client starts again from EHLO.
    (S.GREETED, "starttls"): S.TLS,
    (S.READY, "starttls"): S.TLS,
    (S.TLS, "tls_up"): S.GREETED,
    **{(s, "close"): S.CLOSED for s in State},
}
del S

_BEFORE_TXN = (State.GREETED, State.READY)
_CLOSING = frozenset({b"221", b"421", b"521"})  # replies after which the server hangs up
_HELO_NAME = re.compile(
    rb"\[[0-9A-Fa-f:.]+\]|(?:IPv6:)?[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?\.?"
)
#: States in which the buffer holds no command to read (content, a wait, or nothing).
_NOT_READING_COMMANDS = frozenset({State.DATA, State.CHUNK, State.STORING, State.TLS, State.CLOSED})
_IN_TXN = (State.MAIL, State.RCPT)
#: An empty frozenset is not shared by CPython: every session would hold its own (216 bytes).
_NONE_USED: frozenset[bytes] = frozenset()
#: Replies held back with a delayed one, at most (a real server's output buffer, which it
#: writes when full): a connection in a delay costs no more than this and one reply.
HOLD_LIMIT = 4096
#: A header field's first line (RFC 5322 §2.2: printable ASCII but the colon, then a colon).
_HEADER_LINE = re.compile(rb"[!-9;-~]+:")


def split_path(arg: bytes) -> tuple[bytes, bytes] | None:
    """Split ``<path> params`` into the path as sent and the ESMTP parameters.

    Accepts every form relay testers use: ``<>``, ``<@a,@b:u@h>`` source routes,
    ``u%h@relay``, ``"quoted >local"@h``, ``h!u`` and ``u@[192.0.2.1]``; also the common
    violation of RFC 5321 §4.1.2 with no angle brackets (Postfix's strict_rfc821_envelopes=no).
    """
    arg = arg.lstrip(b" \t")
    if not arg:
        return None
    if arg[:1] != b"<":
        path, _, params = arg.partition(b" ")
        return path, params.strip()
    if b'"' not in arg:  # the common case: no quoted local part can hide a ">"
        end = arg.find(b">")
        return None if end < 0 else (arg[1:end], arg[end + 1 :].strip())
    quoted = False
    i = 1
    while i < len(arg):
        c = arg[i]
        if c == 0x5C and quoted:  # backslash quotes the next char inside a quoted string
            i += 2
            continue
        if c == 0x22:
            quoted = not quoted
        elif c == 0x3E and not quoted:
            return arg[1:i], arg[i + 1 :].strip()
        i += 1
    return None


def _parse_size(params: bytes) -> int | None:
    """The SIZE= value of RFC 1870 §6, or None."""
    for param in params.split():
        key, _, value = param.partition(b"=")
        if key.upper() == b"SIZE" and value.isdigit():
            return int(value)
    return None


def _b64(text: bytes) -> bytes | None:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def _as_written(parsed: bytes, params: bytes) -> str:
    """The path as the client wrote it (brackets or not), for personas that echo it."""
    text = parsed.strip(b" \t")
    if params and text.endswith(params):
        text = text[: -len(params)].rstrip(b" \t")
    return decode_client(text)


def _word(arg: bytes) -> str:
    """The first word, up to a colon or a blank (Sendmail's skipword() echoes it)."""
    return decode_client(re.split(rb"[:\s]", arg, maxsplit=1)[0])


def _is_bare(address: bytes) -> bool:
    """A local part alone: no domain, no bang path, no percent hack."""
    return bool(address) and not any(c in address for c in b"@!%")


@functools.lru_cache(maxsize=256)
def _help_lines(help_file: str, topic: str) -> tuple[str, ...]:
    """The text of every helpfile line whose topic starts with ``topic`` (after one
    separator, as Sendmail's help() skips one blank)."""
    out = []
    for entry in help_file.splitlines():
        if entry.startswith("#") or not entry.startswith(topic):
            continue
        cut = min((i for i in (entry.find(" "), entry.find("\t")) if i >= 0), default=-1)
        out.append(entry[cut + 1 :] if cut >= 0 else "")
    return tuple(out)


def _after_keyword(arg: bytes, keyword: bytes) -> bytes | None:
    """The rest after ``FROM:``/``TO:``, allowing the space many clients put after the colon."""
    if arg[: len(keyword)].upper() != keyword:
        return None
    return arg[len(keyword) :]


def _is_header_name(word: bytes) -> bool:
    """``Subject:`` and the like: mail content sent as commands (Postfix's is_header())."""
    if not word.endswith(b":") or len(word) < 2:
        return False
    return all(33 <= c <= 126 and c != 0x3A for c in word[:-1])


@dataclass(slots=True)
class _Transaction:
    mail_from: str = ""
    mail_params: str = ""
    rcpt_to: list[str] = field(default_factory=list)
    over_limit: bool = False


@dataclass(slots=True)
class _Auth:
    mechanism: str
    user: str | None = None


class SmtpServer:
    """One SMTP server session. The banner is ready in data_to_send() on creation."""

    __slots__ = (
        "_advertised",
        "_auth",
        "_authenticated",
        "_bare_lf",
        "_buf",
        "_checked",
        "_chunk_left",
        "_close_after",
        "_discarding",
        "_early",
        "_errors",
        "_esmtp",
        "_greeting",
        "_hard_at",
        "_held",
        "_junk",
        "_junk_verbs",
        "_known",
        "_last_bdat",
        "_last_chunk",
        "_last_size",
        "_long_pending",
        "_max_line",
        "_msg",
        "_msg_oversize",
        "_need_helo",
        "_nonmail",
        "_once_used",
        "_out",
        "_replies",
        "_scanned",
        "_size_limit",
        "_skip",
        "_slow_counts",
        "_slow_index",
        "_soft_at",
        "_split_long",
        "_txn",
        "_unknown",
        "_wait",
        "_watch",
        "auth_offer",
        "client_ip",
        "closing",
        "date",
        "delay",
        "dialect",
        "helo",
        "hostname",
        "limits",
        "messages",
        "require_helo",
        "session_tag",
        "state",
        "storage_low",
        "tls",
        "tls_available",
    )

    def __init__(
        self,
        hostname: str,
        dialect: SmtpDialect,
        limits: SmtpLimits | None = None,
        *,
        require_helo: bool = False,
        date: str = "",
        storage_low: bool = False,
        client_ip: str = "",
        tls_available: bool = False,
        auth_offer: str = "tls",
        tls: TlsInfo | None = None,
        session_tag: str = "",
    ) -> None:
        # The name may come from a client (the host a proxy tunnel asked for): it goes into
        # replies, so it must not carry a line end or anything but printable ASCII.
        self.hostname = reply_text(hostname, 255)
        self.dialect = dialect
        self.limits = limits = limits or _DEFAULT_LIMITS
        # What follows from the persona and the limits alone is worked out once for every
        # session that shares them (_Setup says what each is).
        (
            self._advertised,
            self._size_limit,
            self._max_line,
            self._split_long,
            self._known,
            self._checked,
            self.require_helo,
            self._need_helo,
            self._replies,
            self._hard_at,
            self._soft_at,
            self._slow_index,
            self._junk_verbs,
            self._watch,
        ) = _setup(dialect, limits, require_helo)
        # The adapter gives an RFC 5322 date in UTC; some servers write the zone by name.
        if dialect.date_zone and date.endswith(" +0000"):
            date = date[:-5] + dialect.date_zone
        self.date = date
        self.client_ip = client_ip  # the address the emulated server sees (for Exim's EHLO)
        self.session_tag = session_tag  # a per-session id some personas print ({id}, gsmtp)
        #: STARTTLS is offered (the adapter has a certificate); SMTPS starts with ``tls`` set.
        self.tls_available = tls_available
        #: AUTH offered: "tls" only after STARTTLS (the default), "always", or "never".
        self.auth_offer = auth_offer
        self.tls: TlsInfo | None = tls
        self.state = State.GREETED
        self.helo: str | None = None
        self.closing = False
        self.messages = 0
        #: Seconds the adapter must wait before calling resume() (0: nothing held).
        self.delay = 0.0
        # Set by the adapter when the disk is short: new transactions get 452 (below).
        self.storage_low = storage_low
        self._buf = b""
        self._out: list[bytes] = []
        # Replies held for a delay, as they were made: most are a dialect's fixed replies,
        # shared by every session, so a connection in a delay holds pointers, not copies.
        self._held: list[bytes] | None = None
        self._close_after = False
        self._txn = _Transaction()
        self._msg = bytearray()
        self._scanned = 0
        self._msg_oversize = False
        self._chunk_left = 0
        self._skip = 0  # bytes of a refused BDAT chunk still to throw away
        self._last_bdat = False
        self._last_size = 0
        self._long_pending = False  # the first line in _buf was cut at max_line
        self._discarding = False  # inside an over-long command line, until its LF
        self._errors = 0
        self._esmtp = False  # the session began with EHLO: ESMTP parameters are read
        self._unknown = 0
        # Per-command counters some personas keep (see _before_command, _after_command).
        self._junk = 0
        self._nonmail = 0
        # Immutable while unused (most personas never use them): no set or list per session.
        self._once_used = _NONE_USED
        self._slow_counts: tuple[int, ...] = (0,) * len(dialect.slowdowns)
        self._wait = 0.0  # a delay the next reply waits (a slowdown), taken by _send()
        self._early = False  # the client talked before the banner (banner_early)
        self._bare_lf = 0  # LFs without a CR before them in the BDAT bytes so far
        self._last_chunk = 0
        self._authenticated = False
        self._auth: _Auth | None = None
        self._greeting = dialect.banner_delay > 0
        if self._greeting:  # Sendmail's greet_pause: the adapter's timer sends it
            self._held = [self._say("banner")]
            self.delay = dialect.banner_delay
        else:
            self._out.append(self._say("banner"))

    # --- the adapter's interface ------------------------------------------------------------

    def data_to_send(self) -> bytes:
        out = self._out
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return data

    @property
    def buffered(self) -> int:
        """Bytes held for the client: bounded by max_line, or by the message size in DATA."""
        held = sum(map(len, self._held)) if self._held else 0
        return len(self._buf) + len(self._msg) + held

    @property
    def message_limit(self) -> int:
        """The most of one message held: the persona's limit, within smtp.message_cap."""
        return self._size_limit

    @property
    def max_line(self) -> int:
        """The longest command line read (smtp.max_line, else the persona's own limit)."""
        return self._max_line

    @property
    def waiting(self) -> bool:
        """True while a message waits for the disk or a reply waits out its delay: the
        adapter should stop reading."""
        return self.state is State.STORING or self.delay > 0

    @property
    def in_data(self) -> bool:
        """Between DATA's 354 and the final dot (or inside BDAT chunks): timed apart."""
        return self.state in (State.DATA, State.CHUNK)

    @property
    def starting_tls(self) -> bool:
        """The STARTTLS 220 is out: the adapter now runs the TLS handshake."""
        return self.state is State.TLS

    def receive_data(self, data: bytes) -> list[SmtpEvent]:
        if self.state is State.CLOSED or self.closing or self.state is State.TLS:
            return []
        events: list[SmtpEvent] = []
        if self._greeting and data and not self._early and "banner_early" in self.dialect.replies:
            # greet_pause: a client that talks before the greeting is a bot; the banner and
            # most commands refuse it from now on.
            self._early = True
            self._held = [self._say("banner_early")]
            self._watch = self._watch | self._known
        if self._skip:
            skipped = min(self._skip, len(data))
            self._skip -= skipped
            data = data[skipped:]
        if self.state is State.DATA:
            self._receive_message(data, events)
        elif self.state is State.CHUNK:
            self._receive_chunk(data, events)
        elif self._discarding:
            self._skip_long_line(data, events)
        else:
            self._buf += data
        self._run(events)
        return events

    def resume(self) -> list[SmtpEvent]:
        """The adapter's delay is over: release the held reply and go on reading."""
        if not self.delay:
            return []
        self.delay = 0.0
        self._greeting = False
        # What was held goes out first; if another delay starts before the input runs out,
        # it is held again with the replies after it (_send), as a server that flushes only
        # when it waits for input would.
        if self._held:
            self._out += self._held
        self._held = None
        if self._close_after:
            self._close()
            return []
        events: list[SmtpEvent] = []
        self._run(events)
        return events

    def message_stored(self, queue_id: str) -> list[SmtpEvent]:
        """The message is safely on disk: acknowledge it (and only now, invariant 2)."""
        assert self.state is State.STORING
        self.messages += 1
        self._once_used = _NONE_USED  # Exim: a new message allows one more RSET, HELO, STARTTLS
        if self.dialect.forgive_errors:  # Postfix forgives errors once a message is queued
            self._errors = 0
            self._junk = 0
        self._to("stored")
        self._reply("bdat_queued" if self._last_bdat else "queued", queue_id=queue_id,
                    size=self._last_size, chunk=self._last_chunk)  # fmt: skip
        return self._after_message()

    def message_deferred(self) -> list[SmtpEvent]:
        """Storage refused the message: a temporary error, the client retries (RFC 3463 4.3.1)."""
        assert self.state is State.STORING
        self._to("deferred")
        reply = self._say("deferred")
        self._send(reply)
        events: list[SmtpEvent] = [Rejected("data", int(reply[:3]), "storage")]
        events += self._after_message()
        return events

    def tls_started(self, info: TlsInfo) -> None:
        """The handshake is done: RFC 3207 §4.2, the session starts over (no HELO known)."""
        assert self.state is State.TLS
        self.tls = info
        self.helo = None
        self._esmtp = False
        self._txn = _Transaction()
        self._to("tls_up")

    def connection_lost(self) -> None:
        self._to("close")
        self._buf = b""
        self._msg = bytearray()
        self._held = None

    # --- the state table and replies --------------------------------------------------------

    def _to(self, trigger: str) -> None:
        nxt = TRANSITIONS.get((self.state, trigger))
        if nxt is None:  # a bug in the machine, never the client's doing
            raise RuntimeError(f"no transition from {self.state.name} on {trigger!r}")
        self.state = nxt

    def _say(self, key: str, **values: object) -> bytes:
        template = self.dialect.replies[key]
        static = _static(template)  # most replies name no field: rendered once per process
        if static is not None:
            return static
        return render(
            template,
            self.dialect.echo_limit,
            host=self.hostname,  # made safe in __init__
            date=self.date,
            client_ip=self.client_ip,
            id=self.session_tag,
            **values,
        )

    def _reply(self, key: str, **values: object) -> None:
        static = self._replies.get(key)
        self._send(static if static is not None else self._say(key, **values))

    def _send(self, reply: bytes) -> None:
        """Queue a reply, or hold it for the adapter's delay (the persona's error sleep or
        slowdown). The replies queued since the input was last read are held with it: a real
        server flushes its output only when it waits for input, so a client that pipelined
        sees none of them before the delay is over."""
        if not (self._wait or self.delay or self._errors >= self._soft_at):
            self._out.append(reply)  # the usual case: no delay of any kind
            return
        wait = self._wait
        if self._errors >= self._soft_at:
            wait = max(wait, self.dialect.error_delay)
        self._wait = 0.0
        if self.delay:  # already holding: every later reply of this step waits behind it,
            assert self._held is not None  # also one without a delay of its own (a queued
            self._held.append(reply)  # message's)
            return
        if wait <= 0:
            self._out.append(reply)
            return
        out = self._out
        if out and sum(map(len, out)) + len(reply) <= HOLD_LIMIT:
            out.append(reply)
            self._held, self._out = out, []
        else:  # a full output buffer is written, as the real server's would be
            self._held = [reply]
        self.delay = wait

    def _fail(self, key: str, detail: str, raw: bytes = b"", **values: object) -> ProtocolError:
        """The error for ``key`` in the dialect's words; raise it where the fault is found."""
        counts = key not in self.dialect.uncounted
        return ProtocolError(detail, self._say(key, **values), raw=raw, counts=counts)

    def _close(self) -> None:
        self.closing = True
        self._buf = b""  # what follows QUIT or a 421 is never read
        self._msg = bytearray()  # nor is a message begun with BDAT kept

    def _close_when_sent(self) -> None:
        if self.delay:
            self._close_after = True
        else:
            self._close()

    # --- input handling ---------------------------------------------------------------------

    def _run(self, events: list[SmtpEvent]) -> None:
        """Handle every complete line in the buffer (RFC 2920 pipelining)."""
        while not self.closing and not self.delay:
            if self._errors >= self._hard_at and self._hard_limit(events):
                return
            if self.state in _NOT_READING_COMMANDS:
                return
            nl = self._buf.find(b"\n")
            if self._split_long and (
                nl > self._max_line or (nl < 0 and len(self._buf) > self._max_line)
            ):
                self._split_piece(events)
                continue
            if nl < 0:
                if len(self._buf) > self._max_line + 1:  # +1: the CR before the LF
                    self._discarding = True
                    self._buf = self._buf[: self._max_line]
                return
            line = self._buf[:nl]
            self._buf = self._buf[nl + 1 :]
            # Bare LF is tolerated, as by every real MTA. The cut head of an over-long line
            # (_skip_long_line) lost its end: a CR at its cut is content, as when it arrives whole.
            if line.endswith(b"\r") and not self._long_pending:
                line = line[:-1]
            if self._long_pending or len(line) > self._max_line:
                self._long_pending = False
                self._long_line(line[: self._max_line], events)
            else:
                self._command(line, events)
            if self.state is State.DATA and self._buf:
                rest, self._buf = self._buf, b""
                self._receive_message(rest, events)
            elif self.state is State.CHUNK and self._buf:
                rest, self._buf = self._buf, b""
                self._receive_chunk(rest, events)
            elif self.state is State.TLS:
                if self._buf:
                    events.append(StartTls(self._buf))
                    self._buf = b""
                else:
                    events.append(StartTls())
                return

    def _hard_limit(self, events: list[SmtpEvent]) -> bool:
        """Postfix checks the hard limit before reading each command (smtpd_hard_error_limit);
        the sensor's own cap (limits.max_errors) holds for every persona."""
        events.append(Rejected("connect", 421, "errors"))
        self._reply("too_many_errors", code="421")
        self._close_when_sent()
        return True

    def _skip_long_line(self, data: bytes, events: list[SmtpEvent]) -> None:
        nl = data.find(b"\n")
        if nl < 0:
            return
        self._discarding = False
        # The cut line, then what followed its end: _run() takes it as the next line.
        self._buf = self._buf.replace(b"\n", b" ") + b"\n" + data[nl + 1 :]
        self._long_pending = True

    def _split_piece(self, events: list[SmtpEvent]) -> None:
        """Exim's smtp_read_command(): a full buffer is returned as an unknown command, the
        byte that did not fit is lost, and reading goes on from the next one."""
        piece = self._buf[: self._max_line]
        self._buf = self._buf[self._max_line + 1 :]
        try:
            self._unknown_command(b"", piece, events)
        except ProtocolError as err:
            err.raw = piece[:RAW_LIMIT]
            self._error(err, events)

    def _long_line(self, head: bytes, events: list[SmtpEvent]) -> None:
        """An over-long command: Postfix runs its first max_line bytes, others refuse it."""
        if self.dialect.long_line == "truncate":
            self._command(head, events)
        else:
            self._error(self._fail("line_too_long", "line too long", head), events)

    def _command(self, line: bytes, events: list[SmtpEvent]) -> None:
        """One command line: dispatched, and any ProtocolError answered here (the one place).

        The verb is the line's first word, as the servers read it (Postfix skips blanks
        before it); a persona that counts it (slowdowns, junk, nonmail, early talker) counts
        before and after it runs. The common case, a known verb with nothing odd, runs inline.
        """
        if self.state is State.AUTH:
            try:
                self._auth_response(line, events)
            except ProtocolError as err:
                err.raw = line[:RAW_LIMIT]
                self._error(err, events)
            return
        words = line.split(None, 1)
        upper = words[0].upper() if words else b""
        watched = upper in self._watch
        try:
            if watched:
                self._before_command(upper, line, events)
            if words and line.isascii() and b"\0" not in line:
                handler = _COMMANDS.get(upper)
                arg = words[1].strip(b" \t") if len(words) > 1 else b""
                if (
                    handler is not None
                    and upper in self._known
                    and not (arg and upper in self._checked)
                    and (self.state is not State.GREETED or upper not in self._need_helo)
                ):
                    handler(self, arg, line, events)
                else:
                    self._dispatch(line, events)
            else:
                self._dispatch(line, events)
        except ProtocolError as err:
            err.raw = line[:RAW_LIMIT]  # what the client sent, before any cut at a NUL
            self._error(err, events)
        if watched:
            self._after_command(upper)

    def _before_command(self, verb: bytes, line: bytes, events: list[SmtpEvent]) -> None:
        """Counts kept before a command runs; a refusal is raised as a ProtocolError."""
        dialect = self.dialect
        if self._early and verb in self._known:
            if verb in (b"HELO", b"EHLO"):
                raise self._fail("early_helo", "talked before the banner", line)
            if _ascii(verb) not in dialect.early_allowed:
                self._unknown += 1
                if dialect.unknown_command_limit and self._unknown > dialect.unknown_command_limit:
                    err = self._fail("too_many_unknown", "too many bad commands", line)
                    events.append(Rejected("connect", int(err.reply[:3]), "errors"))
                    err.close = True
                    raise err
                raise self._fail("early_rejected", "talked before the banner", line)
        if dialect.nonmail_limit:
            name = _ascii(verb)
            group = next((g for g in dialect.nonmail_once if name in g), None)
            counted = name in dialect.nonmail_commands or (
                group is not None and verb in self._once_used
            )
            if group is not None:
                self._once_used = self._once_used.union(v.encode() for v in group)
            if counted:
                self._nonmail += 1
                if self._nonmail > dialect.nonmail_limit:
                    err = self._fail("too_many_nonmail", "too many nonmail commands", line)
                    events.append(Rejected("connect", int(err.reply[:3]), "errors"))
                    err.close = True
                    raise err
        index = self._slow_index.get(verb)
        if index is not None:
            count = self._slow_counts[index] + 1
            counts = self._slow_counts
            self._slow_counts = (*counts[:index], count, *counts[index + 1 :])
            self._wait = dialect.slowdowns[index].delay(count)

    def _after_command(self, verb: bytes) -> None:
        """Postfix counts junk commands after their reply: past the limit each is an error."""
        self._wait = 0.0
        if verb in self._junk_verbs:
            if self._junk > self.dialect.junk_command_limit:
                self._errors += 1
            self._junk += 1

    def _error(self, err: ProtocolError, events: list[SmtpEvent]) -> None:
        """The one place a client's fault is answered, logged and counted."""
        dialect = self.dialect
        continued = dialect.error_limit_style == "continue"
        at_limit = False
        if err.counts and continued:
            self._errors += 1
            at_limit = 0 < dialect.hard_error_limit <= self._errors
            if at_limit:
                # Exim: the error's reply goes on with "NNN Too many syntax or protocol
                # errors" and the session ends.
                code = err.reply[:3].decode()
                err.reply = _continued(err.reply) + self._say("too_many_errors", code=code)
                err.close = True
        if err.reply[:3] in _CLOSING:
            err.close = True  # 221, 421, 521: the server closes (RFC 5321 §3.8, RFC 7504)
        events.append(err.event())
        if at_limit:
            events.append(Rejected("connect", int(err.reply[:3]), "errors"))
        self._send(err.reply)
        if err.counts and not continued:
            # Postfix counts the error after its reply: the 10th error's reply is not delayed.
            self._errors += 1
        if err.close:
            self._close_when_sent()

    def _dispatch(self, line: bytes, events: list[SmtpEvent]) -> None:
        dialect = self.dialect
        if dialect.check_utf8 and not line.isascii():
            # Postfix checks the whole line read, NULs and what follows them included.
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                raise self._fail("bad_utf8", "bad UTF-8", line) from None
        raw = line
        if b"\0" in line:
            if dialect.nul == "reject":
                raise self._fail("nul_in_command", "NUL in command", line)
            line = line[: line.index(b"\0")]  # C string semantics
        words = line.split(None, 1)
        if not words:
            raise self._fail("bad_syntax", "empty command", raw, line=decode_client(line))
        verb_raw = words[0]
        upper = verb_raw.upper()
        handler = _COMMANDS.get(upper)
        if handler is None or upper not in self._known:
            refusal = dialect.refused_commands.get(_ascii(upper)) if upper.isalpha() else None
            if refusal is not None:
                raise ProtocolError(f"{_ascii(upper)} refused", render(refusal), raw=line)
            self._unknown_command(verb_raw, line, events)
            return
        arg = words[1].strip(b" \t") if len(words) > 1 else b""
        verb = _ascii(upper)
        if self.state is State.GREETED and upper in self._need_helo:
            key = f"{verb.lower()}_need_helo"
            raise self._fail(key if key in dialect.replies else "need_helo", "no HELO", line)
        if arg and verb in dialect.no_argument:
            raise self._fail(f"{verb.lower()}_syntax", f"{verb} with an argument", line)
        handler(self, arg, line, events)

    def _unknown_command(self, verb: bytes, line: bytes, events: list[SmtpEvent]) -> None:
        dialect = self.dialect
        upper = verb.upper().decode("ascii", "replace")
        first = verb[:1]
        text = decode_client(line[:100])
        if (
            upper in dialect.forbidden_commands
            or (dialect.forbid_non_letter and not first.isalpha())
            or (dialect.forbid_header_names and _is_header_name(verb))
        ):
            # Postfix: "221 2.7.0 Error: I can break rules, too. Goodbye." and hang up.
            err = self._fail("forbidden_command", "non-SMTP command", line, line=text)
            if err.reply[:3] in _CLOSING:  # a goodbye (Postfix, Sendmail's open-proxy 421)
                err.counts = False
                events.append(Rejected("connect", int(err.reply[:3]), "forbidden"))
            raise err
        self._unknown += 1
        limit = dialect.unknown_command_limit
        if limit and self._unknown > limit:
            err = self._fail("too_many_unknown", "too many unknown commands", line, line=text)
            events.append(Rejected("connect", int(err.reply[:3]), "errors"))
            err.close = True
            raise err
        err = self._fail("unknown_command", "unknown command", line, line=text)
        err.counts = dialect.unknown_counts
        raise err

    # --- commands ---------------------------------------------------------------------------

    def _cmd_helo(self, arg: bytes, line: bytes, events: list[SmtpEvent]) -> None:
        ehlo = line.lstrip()[:4].upper() == b"EHLO"
        if not arg:
            raise self._fail("ehlo_syntax" if ehlo else "helo_syntax", "no name", line)
        if self.helo is not None and not self.dialect.repeat_helo:
            raise self._fail("helo_again", "second HELO", line)
        if self.dialect.strict_helo and not _HELO_NAME.fullmatch(arg):
            # Exim's check_helo(), Sendmail's: a domain name or an address literal.
            key = "helo_invalid" if "helo_invalid" in self.dialect.replies else None
            key = key or ("ehlo_syntax" if ehlo else "helo_syntax")
            raise self._fail(key, "bad HELO name", line)
        self.helo = decode_client(arg)
        self._esmtp = ehlo
        events.append(Helo("EHLO" if ehlo else "HELO", self.helo))
        self._txn = _Transaction()
        self._to("helo")
        if not ehlo:
            self._reply("helo", helo=self.helo)
            return
        first = self._say("ehlo", helo=self.helo)
        keywords = self._ehlo_keywords()
        if keywords:  # the first line's last line continues: "250-name"
            first = _continued(first)
        self._send(first + keywords)

    def _auth_offered(self) -> bool:
        offer = self.auth_offer
        if offer == "never" or not self.dialect.auth_mechanisms:
            return False
        return offer == "always" or self.tls is not None

    def _ehlo_keywords(self) -> bytes:
        """The EHLO lines after the first (RFC 5321 §4.1.1.1), built once per variant."""
        return _ehlo_lines(
            self.dialect,
            self._advertised,
            self.tls is not None,
            self.tls_available,
            self._auth_offered(),
        )

    def _cmd_mail(self, arg: bytes, line: bytes, events: list[SmtpEvent]) -> None:
        if self.state in _IN_TXN:
            raise self._fail("nested_mail", "nested MAIL", line)
        if self.state is State.CHUNKED:
            raise self._fail("mail_after_bdat", "MAIL after BDAT", line)
        parsed = _after_keyword(arg, b"FROM:")
        if parsed is None or not parsed.strip():
            raise self._fail(
                "mail_syntax", "bad MAIL syntax", line, arg=decode_client(arg), keyword=_word(arg)
            )
        path = self._path("mail", parsed, line)
        if path is None:
            raise self._fail(
                "bad_sender", "bad sender address", line, arg=decode_client(parsed.strip())
            )
        address, params = path
        self._check_params(params, self.dialect.mail_params, "bad_mail_param", address, line)
        if self.messages >= self.limits.max_messages:
            events.append(Rejected("mail", 450, "messages"))
            raise self._fail("too_much_mail", "too many messages", line)
        if self.storage_low:
            # RFC 5321 §4.5.3.1.10 / RFC 3463 4.3.1: a transient "insufficient system
            # storage" at MAIL, as Postfix answers when its queue is short of space; the
            # client keeps the message and retries later.
            events.append(Rejected("mail", 452, "storage"))
            self._reply("storage_low")
            return
        size = _parse_size(params)
        if size is not None and self._advertised and size > self._advertised:
            events.append(Rejected("mail", 552, "size"))
            self._reply("size_exceeded")
            return
        sender = decode_client(address)
        self._txn = _Transaction(sender, decode_client(params))
        self._to("mail")
        static = self._replies.get("mail_ok")  # the common case: a reply naming nothing
        if static is not None:
            self._send(static)
        else:
            self._reply("mail_ok", address=sender, path=_as_written(parsed, params))

    def _path(self, role: str, parsed: bytes, line: bytes) -> tuple[bytes, bytes] | None:
        """The path and parameters after FROM:/TO:, read as the persona reads them; its
        refusal raised as a ProtocolError in the persona's words."""
        split = split_path(parsed)
        dialect = self.dialect
        style = dialect.address_syntax
        if style == "plain":
            return split
        known = dialect.mail_params if role == "mail" else dialect.rcpt_params
        result = check_path(
            style, role, parsed, split, esmtp=self._esmtp, params=known, host=self.hostname
        )
        if isinstance(result, Fault):
            fields = {k: decode_client(v) for k, v in result.fields.items()}
            key = result.key
            raise self._fail(key, f"{role} address refused ({key})", line, **fields)
        return result

    def _check_params(
        self, params: bytes, known: tuple[str, ...], key: str, address: bytes, line: bytes
    ) -> None:
        if not params or not self.dialect.check_params or self.dialect.address_syntax == "exim":
            return  # Exim's parameters were read with its address (smtp_address)
        for param in params.split():
            name = param.partition(b"=")[0].upper().decode("ascii", "replace")
            if name not in known:
                raise self._fail(
                    key,
                    f"unsupported parameter {name[:40]}",
                    line,
                    param=decode_client(param),
                    param_name=decode_client(param.partition(b"=")[0]),
                    address=decode_client(address),
                )

    def _local_user_refused(self, address: bytes) -> bool:
        """A bare local part (no domain) that this server has no user for. "host!user" and
        "user%host" are routed addresses (swap_bangpath, allow_percent_hack), not local."""
        if not address or b"@" in address or b"!" in address or b"%" in address:
            return False
        d = self.dialect
        if d.bare_local_parts == "users":
            return decode_client(address).lower() not in d.local_users
        return d.bare_local_parts == "refuse"

    def _local_address(self, address: bytes) -> bool:
        """A bare local part, or one at the server's own name or localhost that routes nowhere
        else (no "%" hack, no bang path: Sendmail sends those on)."""
        if _is_bare(address):
            return True
        local, _, domain = address.rpartition(b"@")
        if not local or b"%" in local or b"!" in local:
            return False
        return domain.rstrip(b".").lower() in (self.hostname.lower().encode(), b"localhost")

    def _cmd_rcpt(self, arg: bytes, line: bytes, events: list[SmtpEvent]) -> None:
        if self.state is State.CHUNKED:
            raise self._fail("rcpt_after_bdat", "RCPT after BDAT", line)
        if self.state not in _IN_TXN:
            raise self._fail("need_mail", "RCPT before MAIL", line)
        parsed = _after_keyword(arg, b"TO:")
        if parsed is None or not parsed.strip():
            raise self._fail(
                "rcpt_syntax", "bad RCPT syntax", line, arg=decode_client(arg), keyword=_word(arg)
            )
        path = self._path("rcpt", parsed, line)
        if path is None or not path[0]:
            raise self._fail(
                "bad_recipient", "bad recipient address", line, arg=decode_client(parsed.strip())
            )
        address, params = path
        self._check_params(params, self.dialect.rcpt_params, "bad_rcpt_param", address, line)
        style = self.dialect.address_syntax
        if style != "exim" and self._local_user_refused(address):  # Exim's: smtp_address
            raise self._fail(
                "unknown_local_user", "unknown local user", line, address=decode_client(address)
            )
        txn = self._txn
        if style == "sendmail" and sender_refused_at_rcpt(
            style, txn.mail_from.encode("utf-8", "replace"), self.hostname
        ):
            written = _as_written(parsed, params)
            raise self._fail("rcpt_sender_domain", "sender at a local name", line, path=written)
        if len(txn.rcpt_to) >= self.limits.max_recipients:
            # RFC 5321 §4.5.3.1.10: 452 tells the client to send the rest in another message.
            if not txn.over_limit:
                events.append(Rejected("rcpt", 452, "recipients"))
                txn.over_limit = True
            self._reply("too_many_recipients")
            return
        rcpt = decode_client(address)
        txn.rcpt_to.append(rcpt)
        self._to("rcpt")
        if "rcpt_ok_local" in self.dialect.replies and self._local_address(address):
            # Sendmail: the local mailer's recipients are queued (delivery mode -odq).
            self._reply("rcpt_ok_local", address=rcpt, path=_as_written(parsed, params))
            return
        static = self._replies.get("rcpt_ok")
        if static is not None:
            self._send(static)
        else:
            self._reply("rcpt_ok", address=rcpt, path=_as_written(parsed, params))

    def _cmd_data(self, arg: bytes, line: bytes, events: list[SmtpEvent]) -> None:
        if self.state is State.CHUNKED:
            raise self._fail("data_after_bdat", "DATA after BDAT", line)
        if self.state is State.MAIL:
            raise self._fail("data_need_rcpt", "DATA without RCPT", line)
        if self.state is not State.RCPT:
            raise self._fail("data_need_mail", "DATA without MAIL", line)
        self._to("data")
        # The sentinel LF lets the terminator scan treat the first line like any other.
        self._msg = bytearray(b"\n")
        self._scanned = 0
        self._msg_oversize = False
        self._reply("data_go_ahead")

    def _cmd_bdat(self, arg: bytes, line: bytes, events: list[SmtpEvent]) -> None:
        words = arg.split()
        last = len(words) == 2 and words[1].upper() == b"LAST"
        if not words or not words[0].isdigit() or len(words) > 2 or (len(words) == 2) != last:
            # Without a size the chunk cannot be skipped: Postfix ends the session (521).
            raise self._fail("bdat_syntax", "bad BDAT syntax", line)
        size = int(words[0])
        if self.state not in (State.RCPT, State.CHUNKED):
            # RFC 3030 §2: the chunk's bytes follow all the same; they are thrown away.
            skipped = min(size, len(self._buf))
            self._buf = self._buf[skipped:]
            self._skip = size - skipped
            key = "bdat_need_rcpt" if self.state is State.MAIL else "bdat_need_mail"
            raise self._fail(key, "BDAT out of order", line)
        if self.state is State.RCPT:
            self._msg = bytearray()
            self._msg_oversize = False
            self._bare_lf = 0
        self._to("bdat")
        self._chunk_left = size
        self._last_chunk = size
        self._scanned = 1 if last else 0  # reused as the LAST flag while in a chunk
        if size == 0:
            self._chunk_done(events)

    def _cmd_rset(self, arg: bytes, line: bytes, events: list[SmtpEvent]) -> None:
        self._txn = _Transaction()
        self._msg = bytearray()
        self._to("rset")
        self._reply("rset")

    def _cmd_noop(self, arg: bytes, line: bytes, events: list[SmtpEvent]) -> None:
        self._reply("noop")

    def _cmd_vrfy(self, arg: bytes, line: bytes, events: list[SmtpEvent]) -> None:
        if not arg:
            raise self._fail("vrfy_syntax", "VRFY without address", line)
        path = split_path(arg)
        address = path[0] if path is not None else arg
        if self._local_user_refused(address):
            raise self._fail(
                "vrfy_local", "VRFY unknown local user", line, address=decode_client(address)
            )
        if _is_bare(address) and "vrfy_user" in self.dialect.replies:
            self._reply("vrfy_user", address=decode_client(address))
            return
        self._reply("vrfy", arg=decode_client(arg), address=decode_client(address))

    def _cmd_expn(self, arg: bytes, line: bytes, events: list[SmtpEvent]) -> None:
        path = split_path(arg) if arg else None
        address = path[0] if path is not None else arg
        if (
            _is_bare(address)
            and "expn_user" in self.dialect.replies
            and not self._local_user_refused(address)
        ):
            self._reply("expn_user", address=decode_client(address))  # Sendmail
            return
        raise self._fail("expn", "EXPN refused", line, arg=decode_client(arg))

    def _cmd_etrn(self, arg: bytes, line: bytes, events: list[SmtpEvent]) -> None:
        if self.state in _IN_TXN:
            raise self._fail("etrn_in_mail", "ETRN in a transaction", line)
        if not arg:
            raise self._fail("etrn_syntax", "ETRN without domain", line)
        raise self._fail("etrn", "ETRN refused", line, arg=decode_client(arg))

    def _cmd_help(self, arg: bytes, line: bytes, events: list[SmtpEvent]) -> None:
        if not arg or not self.dialect.help_file:
            self._reply("help", arg=decode_client(arg))
            return
        # Sendmail's help(): every helpfile line whose topic starts with the argument (in
        # lower case), or "504 ... HELP topic unknown" (the topic cut at 10 characters).
        topic = decode_client(arg).lower()
        lines = _help_lines(self.dialect.help_file, topic)
        if not lines:
            self._reply("help_unknown", topic=topic[:10])
            return
        out = b"".join(_continued(self._say("help_line", text=text)) for text in lines)
        self._send(out + self._say("help_end"))

    def _cmd_quit(self, arg: bytes, line: bytes, events: list[SmtpEvent]) -> None:
        events.append(Quit())
        self._reply("quit")
        self._close_when_sent()

    # --- STARTTLS (RFC 3207) ----------------------------------------------------------------

    def _cmd_starttls(self, arg: bytes, line: bytes, events: list[SmtpEvent]) -> None:
        if self.tls is not None:
            raise self._fail("starttls_active", "STARTTLS under TLS", line)
        if not self.tls_available:
            raise self._fail("starttls_not_offered", "STARTTLS not offered", line)
        if self.state not in _BEFORE_TXN:
            raise self._fail("auth_in_mail", "STARTTLS in a transaction", line)
        self._reply("starttls")
        self._to("starttls")

    # --- AUTH (RFC 4954) --------------------------------------------------------------------

    def _cmd_auth(self, arg: bytes, line: bytes, events: list[SmtpEvent]) -> None:
        if not self._auth_offered():
            mechanism = decode_client(arg.split()[0]) if arg.split() else ""
            raise self._fail("auth_not_offered", "AUTH not offered", line, mechanism=mechanism)
        if self.state is State.GREETED:
            raise self._fail("auth_need_helo", "AUTH before HELO", line)
        if self.state not in _BEFORE_TXN:
            raise self._fail("auth_in_mail", "AUTH in a transaction", line)
        if self._authenticated:
            raise self._fail("auth_again", "second AUTH", line)
        words = arg.split()
        if not words or len(words) > 2:
            raise self._fail("auth_syntax", "bad AUTH syntax", line)
        mechanism = words[0].upper().decode("ascii", "replace")
        if mechanism not in self.dialect.auth_mechanisms:
            raise self._fail("auth_unknown_mechanism", "unsupported AUTH mechanism", line)
        self._auth = _Auth(mechanism)
        self._to("auth")
        if len(words) == 2:  # RFC 4954 §4: an initial response ("=" for an empty one)
            initial = b"" if words[1] == b"=" else words[1]
            self._auth_response(initial, events)
            return
        self._reply("auth_prompt_plain" if mechanism == "PLAIN" else "auth_prompt_user")

    def _auth_response(self, line: bytes, events: list[SmtpEvent]) -> None:
        auth = self._auth
        assert auth is not None
        if line.strip() == b"*":  # RFC 4954 §4: a lone "*" cancels the exchange
            self._auth_end()
            raise self._fail("auth_cancelled", "AUTH cancelled", line)
        decoded = _b64(line)
        if decoded is None:
            self._auth_end()
            raise self._fail("auth_bad_base64", "bad AUTH response", line)
        if auth.mechanism == "PLAIN":
            parts = decoded.split(b"\0")
            if len(parts) != 3:  # RFC 4616 §2: authzid NUL authcid NUL passwd
                self._auth_end()
                raise self._fail("auth_bad_base64", "bad AUTH PLAIN", line)
            self._auth_verdict(AuthAttempt("PLAIN", decode_client(parts[1]),
                                           decode_client(parts[2])), events)  # fmt: skip
            return
        if auth.user is None:  # LOGIN: first the user name, then the password
            auth.user = decode_client(decoded)
            self._to("auth_step")
            self._reply("auth_prompt_password")
            return
        self._auth_verdict(AuthAttempt("LOGIN", auth.user, decode_client(decoded)), events)

    def _auth_end(self) -> None:
        self._auth = None
        self._to("auth_done")

    def _auth_verdict(self, attempt: AuthAttempt, events: list[SmtpEvent]) -> None:
        """Every attempt is logged, and answered as the persona answers a wrong password: an
        open relay needs no AUTH, so nothing is lost by refusing it."""
        self._auth_end()
        events.append(attempt)
        self._reply("auth_failed", mechanism=attempt.mechanism)
        if "auth_failed" not in self.dialect.uncounted:
            self._errors += 1  # Postfix counts a failed AUTH as an error

    # --- message content --------------------------------------------------------------------

    def _receive_message(self, data: bytes, events: list[SmtpEvent]) -> None:
        msg = self._msg
        msg += data
        # The end is a line holding only "." (RFC 5321 §4.1.1.4); CRLF or a bare LF may end
        # it, as Postfix and Exim accept. Resume the scan a few bytes back: a terminator can
        # straddle two reads.
        start = max(self._scanned - 3, 0)
        ends = [i for i in (msg.find(b"\n.\r\n", start), msg.find(b"\n.\n", start)) if i >= 0]
        if not ends:
            limit = self._size_limit
            # Beyond the sentinel and a possible partial terminator (".\r"), msg holds content.
            if len(msg) > limit + 3:
                # Past the limit the content is dropped; only a tail is kept to find the end.
                self._msg_oversize = True
                del msg[1:-4]
            self._scanned = len(msg)
            return
        end = min(ends)
        term_len = 4 if msg[end + 2] == 0x0D else 3
        rest = bytes(msg[end + term_len :])
        body = bytes(msg[1 : end + 1])
        self._msg = bytearray()
        self._scanned = 0
        self._buf = rest
        if self._msg_oversize or len(body) > self._size_limit:
            events.append(Rejected("data", 552, "size"))
            self._txn = _Transaction()
            self._to("too_big")
            self._reply("message_too_big", size=self._size_limit)
            return
        # RFC 5321 §4.5.2: drop the first "." of every line that starts with one.
        if body.startswith(b".") or b"\n." in body:
            body = (b"\n" + body).replace(b"\n.", b"\n")[1:]
        txn = self._txn
        events.append(
            MessageReceived(self.helo, txn.mail_from, txn.mail_params, tuple(txn.rcpt_to), body)
        )
        self._last_bdat, self._last_size = False, len(body)
        self._to("end_of_data")

    def _receive_chunk(self, data: bytes, events: list[SmtpEvent]) -> None:
        """BDAT bytes (RFC 3030 §2): taken exactly as sent, no dot-unstuffing, no scanning."""
        take = min(len(data), self._chunk_left)
        self._chunk_left -= take
        if not self._msg_oversize:
            if len(self._msg) + take > self._size_limit:
                self._msg_oversize = True
                self._msg = bytearray()
            else:
                piece = data[:take]
                if self.dialect.bdat_count != "raw" and b"\n" in piece:
                    crlf = piece.count(b"\r\n") + (piece[:1] == b"\n" and self._msg[-1:] == b"\r")
                    self._bare_lf += piece.count(b"\n") - crlf
                self._msg += piece
        self._buf = data[take:] + self._buf
        if not self._chunk_left:
            self._chunk_done(events)

    def _counted(self) -> int:
        """The message's size as the persona's BDAT replies count it (bdat_count)."""
        style = self.dialect.bdat_count
        if style == "raw":
            return len(self._msg)
        size = len(self._msg) + self._bare_lf
        if style == "exim" and not _HEADER_LINE.match(self._msg):
            size += 1  # the blank line Exim puts before a body that has no header
        return size

    def _chunk_done(self, events: list[SmtpEvent]) -> None:
        last = self._scanned == 1
        self._scanned = 0
        if self._msg_oversize:
            events.append(Rejected("data", 552, "size"))
            self._txn = _Transaction()
            self._msg = bytearray()
            self._to("too_big")
            self._reply("bdat_too_big")
            return
        if not last:
            self._to("chunk")
            self._reply("bdat_chunk_ok", size=self._counted(), chunk=self._last_chunk)
            return
        body = bytes(self._msg)
        self._last_bdat, self._last_size = True, self._counted()
        self._msg = bytearray()
        txn = self._txn
        events.append(
            MessageReceived(
                self.helo, txn.mail_from, txn.mail_params, tuple(txn.rcpt_to), body, bdat=True
            )
        )
        self._to("last_chunk")

    def _after_message(self) -> list[SmtpEvent]:
        self._txn = _Transaction()
        events: list[SmtpEvent] = []
        self._run(events)
        return events


@functools.lru_cache(maxsize=256)
def _ascii(verb: bytes) -> str:
    return verb.decode("ascii", "backslashreplace")


def _verbs(names: tuple[str, ...]) -> frozenset[bytes]:
    return frozenset(n.encode() for n in names)


class _Setup(NamedTuple):
    """What a session's machine derives from its persona and limits alone."""

    #: What EHLO's SIZE says and MAIL's SIZE= is checked against (0: no limit named).
    advertised: int
    #: What a message may hold here: that, and never more than the sensor's cap.
    size_limit: int
    max_line: int
    #: Exim's: a full buffer is a command.
    split_long: bool
    known: frozenset[bytes]
    #: Verbs that take no argument: one given goes through the full dispatcher.
    checked: frozenset[bytes]
    require_helo: bool
    #: Verbs refused before HELO (helo_first, MAIL where HELO is required; _dispatch says
    #: how): every other verb, the greeting's EHLO first, runs inline.
    need_helo: frozenset[bytes]
    replies: dict[str, bytes]
    #: Errors at which the session ends before the next command (1 << 62: no limit).
    hard_at: int
    #: Errors from which every reply waits error_delay (Postfix's smtpd_soft_error_limit).
    soft_at: int
    slow_index: dict[bytes, int]
    junk_verbs: frozenset[bytes]
    watch: frozenset[bytes]


_DEFAULT_LIMITS = SmtpLimits()


@functools.lru_cache(maxsize=256)
def _setup(dialect: SmtpDialect, limits: SmtpLimits, require_helo: bool) -> _Setup:
    """The one cache of the helpers below: each is called from here alone."""
    advertised = limits.max_message_size or dialect.message_size_limit
    cap = limits.message_cap
    require_helo = require_helo or dialect.helo_required
    hard = 0 if dialect.error_limit_style == "continue" else dialect.hard_error_limit
    caps = [x for x in (hard, limits.max_errors) if x]
    soft = dialect.soft_error_limit
    return _Setup(
        advertised=advertised,
        size_limit=min(advertised, cap) if advertised else cap,
        max_line=limits.max_line or dialect.line_length_limit,
        split_long=dialect.long_line == "split",
        known=_known_verbs(dialect),
        checked=_checked_verbs(dialect),
        require_helo=require_helo,
        need_helo=_need_helo_verbs(dialect, require_helo),
        replies=_static_replies(dialect),
        hard_at=min(caps) if caps else 1 << 62,
        soft_at=soft if soft and dialect.error_delay > 0 else 1 << 62,
        slow_index=_slow_index(dialect),
        junk_verbs=_verbs(dialect.junk_commands),
        watch=_watched(dialect),
    )


def _slow_index(dialect: SmtpDialect) -> dict[bytes, int]:
    """Each slowed-down command's counter (Slowdown) by verb."""
    return {c.encode(): i for i, slow in enumerate(dialect.slowdowns) for c in slow.commands}


def _watched(dialect: SmtpDialect) -> frozenset[bytes]:
    """The verbs a persona counts before or after running them (empty for most)."""
    names = set(dialect.junk_commands) | {c for s in dialect.slowdowns for c in s.commands}
    if dialect.nonmail_limit:
        names |= set(dialect.nonmail_commands) | {c for g in dialect.nonmail_once for c in g}
    return frozenset(n.encode() for n in names)


def _need_helo_verbs(dialect: SmtpDialect, require_helo: bool) -> frozenset[bytes]:
    verbs = {v.encode() for v in dialect.helo_first}
    return frozenset(verbs | {b"MAIL"} if require_helo else verbs)


def _checked_verbs(dialect: SmtpDialect) -> frozenset[bytes]:
    return frozenset(v.encode() for v in dialect.no_argument)


def _static_replies(dialect: SmtpDialect) -> dict[str, bytes]:
    """Every reply of the dialect that names no field, rendered once."""
    out = {}
    for key, template in dialect.replies.items():
        static = _static(template)
        if static is not None:
            out[key] = static
    return out


def _known_verbs(dialect: SmtpDialect) -> frozenset[bytes]:
    """The dialect's commands as the upper-case bytes the dispatcher looks up."""
    return frozenset(verb.encode() for verb in dialect.commands)


def _continued(reply: bytes) -> bytes:
    """``reply`` with its last line marked as continued ("NNN-"): more lines follow."""
    start = reply.rfind(b"\r\n", 0, len(reply) - 2) + 2 if reply.count(b"\r\n") > 1 else 0
    return reply[: start + 3] + b"-" + reply[start + 4 :]


@functools.lru_cache(maxsize=1024)
def _ehlo_lines(
    dialect: SmtpDialect, size: int, tls_active: bool, tls_available: bool, auth: bool
) -> bytes:
    """The EHLO lines after the first: 250-KEYWORD ... 250 LAST, built once per variant."""
    keywords = dialect.ehlo_keywords_tls if tls_active else dialect.ehlo_keywords
    lines: list[str] = []
    for keyword in keywords:
        if keyword == "{auth}":
            if auth:
                lines += dialect.auth_keywords
        elif keyword == "STARTTLS" and not tls_available:
            continue
        else:
            lines.append(keyword.replace("{size}", str(size)))
    if not lines:
        return b""
    return ("".join(f"250-{x}\r\n" for x in lines[:-1]) + f"250 {lines[-1]}\r\n").encode()


_COMMANDS = {
    b"HELO": SmtpServer._cmd_helo,
    b"EHLO": SmtpServer._cmd_helo,
    b"MAIL": SmtpServer._cmd_mail,
    b"RCPT": SmtpServer._cmd_rcpt,
    b"DATA": SmtpServer._cmd_data,
    b"BDAT": SmtpServer._cmd_bdat,
    b"RSET": SmtpServer._cmd_rset,
    b"NOOP": SmtpServer._cmd_noop,
    b"VRFY": SmtpServer._cmd_vrfy,
    b"EXPN": SmtpServer._cmd_expn,
    b"ETRN": SmtpServer._cmd_etrn,
    b"HELP": SmtpServer._cmd_help,
    b"QUIT": SmtpServer._cmd_quit,
    b"STARTTLS": SmtpServer._cmd_starttls,
    b"AUTH": SmtpServer._cmd_auth,
}
