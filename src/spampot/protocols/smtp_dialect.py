"""What an emulated MTA says and how it reacts: the typed form of an SMTP dialect file.

The files are in :mod:`spampot.dialects` (``postfix.toml``, ``exim.toml``, ...). A reply is a
template of one or more lines, each ``"NNN text"`` (the machine writes ``NNN-`` on every line
but the last, RFC 5321 §4.2.1), with these fields filled in where the text names them:

``{host}`` the server's name (banner, EHLO); ``{client_ip}`` the address the server sees the
client come from; ``{helo}`` the client's HELO/EHLO name; ``{arg}`` the command's argument;
``{address}`` the address a MAIL/RCPT/VRFY names; ``{queue_id}``; ``{size}``; ``{date}`` the
RFC 5322 date (the machine has no clock: the adapter gives it); ``{line}`` the command verb.
Every client-supplied value is made printable ASCII first (:func:`reply_text`).
"""

from __future__ import annotations

import functools
import string
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from spampot.protocols.common import reply_text
from spampot.protocols.smtp_address import ADDRESS_REPLY_KEYS, ADDRESS_SYNTAXES

#: Every reply a dialect must define (the machine uses no other).
REPLY_KEYS = frozenset(
    {
        # connection
        "banner",
        "too_many_connections",
        "timeout",
        "shutdown",
        "too_many_errors",
        "too_many_unknown",
        "forbidden_command",
        "bad_syntax",
        "bad_utf8",
        "nul_in_command",
        "line_too_long",
        "unknown_command",
        # HELO / EHLO
        "helo",
        "helo_again",
        "ehlo",
        "helo_syntax",
        "ehlo_syntax",
        # MAIL / RCPT / DATA
        "need_helo",
        "nested_mail",
        "mail_syntax",
        "bad_sender",
        "bad_mail_param",
        "mail_ok",
        "size_exceeded",
        "too_much_mail",
        "storage_low",
        "need_mail",
        "rcpt_syntax",
        "bad_recipient",
        "bad_rcpt_param",
        "unknown_local_user",
        "rcpt_ok",
        "too_many_recipients",
        "data_need_mail",
        "data_need_rcpt",
        "data_syntax",
        "data_go_ahead",
        "message_too_big",
        "queued",
        "deferred",
        # BDAT (RFC 3030)
        "bdat_syntax",
        "bdat_need_mail",
        "bdat_need_rcpt",
        "bdat_chunk_ok",
        "bdat_queued",
        "bdat_too_big",
        "data_after_bdat",
        "mail_after_bdat",
        "rcpt_after_bdat",
        # other commands
        "rset",
        "rset_syntax",
        "noop",
        "noop_syntax",
        "quit",
        "quit_syntax",
        "vrfy",
        "vrfy_local",
        "vrfy_syntax",
        "expn",
        "etrn",
        "etrn_syntax",
        "etrn_need_helo",
        "vrfy_need_helo",
        "expn_need_helo",
        "etrn_in_mail",
        "help",
        # STARTTLS (RFC 3207)
        "starttls",
        "starttls_syntax",
        "starttls_active",
        "starttls_not_offered",
        # AUTH (RFC 4954)
        "auth_need_helo",
        "auth_not_offered",
        "auth_in_mail",
        "auth_again",
        "auth_syntax",
        "auth_unknown_mechanism",
        "auth_prompt_plain",
        "auth_prompt_user",
        "auth_prompt_password",
        "auth_cancelled",
        "auth_bad_base64",
        "auth_failed",
        "auth_ok",
    }
)

#: Replies a dialect may define where it differs (``<verb>_need_helo`` for helo_first).
OPTIONAL_REPLY_KEYS = frozenset(
    {
        "starttls_need_helo",
        "mail_need_helo",
        "bdat_need_helo",
        "helo_invalid",
        # VRFY/EXPN of a bare local name the server takes (Sendmail: "250 2.1.5 <root@host>").
        "vrfy_user",
        # RCPT of a local recipient, where it differs (Sendmail: "(will queue)").
        "rcpt_ok_local",
        "expn_user",
        # HELP <topic> from help_file: one line of a topic, the end, an unknown topic.
        "help_line",
        "help_end",
        "help_unknown",
        # Talking before a delayed banner (early_allowed), and Exim's nonmail limit.
        "banner_early",
        "early_helo",
        "early_rejected",
        "too_many_nonmail",
        *ADDRESS_REPLY_KEYS,
    }
)

#: The commands a dialect may list as known; any other verb gets ``unknown_command``.
COMMANDS = frozenset(
    {
        "HELO", "EHLO", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "NOOP", "QUIT", "VRFY",
        "EXPN", "ETRN", "HELP", "STARTTLS", "AUTH",
    }
)  # fmt: skip

#: How each server names a queued message (see :func:`queue_id`).
QUEUE_ID_STYLES = frozenset({"postfix", "exim", "sendmail", "exchange", "google", "hex"})


@dataclass(frozen=True, slots=True)
class Slowdown:
    """Sendmail's checksmtpattack(): one counter for ``commands``; from the ``after``-th use
    on, each reply waits count // after + 2 ** (count - after) seconds, at most ``longest``
    (MAXTIMEOUT) and the shift at most 8 (MAXSHIFT). Sendmail sleeps; the sensor holds the
    reply on the adapter's timer (see SmtpServer.delay)."""

    commands: tuple[str, ...]
    after: int
    longest: float = 240.0

    def delay(self, count: int) -> float:
        if count < self.after:
            return 0.0
        shift = count - self.after
        first = count // self.after
        wait = self.longest if shift > 8 else min(float(2**shift), self.longest)
        wait -= first
        if wait >= self.longest or wait < 0:
            wait = self.longest
        return first + wait


@dataclass(frozen=True, slots=True, eq=False)  # compared and hashed by identity: loaded once
class SmtpDialect:
    """One persona, complete: every reply text, the extensions, the limits and the timing."""

    name: str
    #: Which machine reads the file ("smtp"; the proxies' files say "http" or "socks").
    kind: str
    #: What real software and version this imitates (documentation and events).
    software: str
    #: Verbs the server knows (the others get ``unknown_command``).
    commands: tuple[str, ...]
    #: EHLO keywords after the first line, before and after STARTTLS. ``{size}`` is filled in;
    #: the entry ``{auth}`` is replaced by ``auth_keywords`` when AUTH is offered, else dropped.
    ehlo_keywords: tuple[str, ...]
    ehlo_keywords_tls: tuple[str, ...]
    auth_keywords: tuple[str, ...]
    #: SASL mechanisms accepted by AUTH (the ones the EHLO line names).
    auth_mechanisms: tuple[str, ...]
    replies: Mapping[str, str]
    #: MAIL before HELO/EHLO is refused (``need_helo``).
    helo_required: bool = False
    #: Commands refused before HELO/EHLO: ``<verb>_need_helo`` if the dialect has that reply,
    #: else ``need_helo``.
    helo_first: tuple[str, ...] = ()
    #: Commands that take no argument: one given gets ``<verb>_syntax``.
    no_argument: tuple[str, ...] = ()
    #: Local users VRFY and RCPT know when no domain is given (others: ``unknown_local_user``).
    #: Empty: every bare name is refused with ``vrfy_local``/``unknown_local_user``.
    local_users: tuple[str, ...] = ()
    #: A bare local part (no "@") as a recipient or VRFY argument: "users" takes the names in
    #: ``local_users`` and refuses the rest; "refuse" refuses every one (Exim wants a domain);
    #: "accept" takes every one (Sendmail's local mailer checks no user at RCPT time).
    bare_local_parts: str = "users"
    #: How MAIL/RCPT paths are read and refused (:mod:`spampot.protocols.smtp_address`).
    address_syntax: str = "plain"
    #: The most characters of client text a reply echoes. Exim echoes a whole command line
    #: (its buffer holds 16384); the others cut or never echo long text.
    echo_limit: int = 200
    #: Sendmail's helpfile: "topic<TAB>text" lines, looked up by HELP <topic> (a prefix).
    help_file: str = ""
    #: Unknown verbs that end the session with ``forbidden_command`` (Postfix's
    #: smtpd_forbidden_commands), a first word starting with a non-letter, a header name.
    forbidden_commands: tuple[str, ...] = ()
    forbid_non_letter: bool = False
    forbid_header_names: bool = False
    #: Replies are delayed by ``error_delay`` seconds once this many errors were made
    #: (0 = never); at ``hard_error_limit`` errors the server says ``too_many_errors`` and
    #: closes (0 = never). Postfix: smtpd_soft_error_limit, smtpd_error_sleep_time,
    #: smtpd_hard_error_limit.
    soft_error_limit: int = 0
    hard_error_limit: int = 0
    error_delay: float = 0.0
    #: "separate": at the limit the server says ``too_many_errors`` before the next command
    #: (Postfix); "continue": the error that reaches it gets ``too_many_errors`` as its last
    #: line, with the error's ``{code}`` (Exim's "Too many syntax or protocol errors").
    error_limit_style: str = "separate"
    #: Unknown commands count as errors (Exim counts them apart).
    unknown_counts: bool = True
    #: Replies (keys) that are refusals but not errors for the limits.
    uncounted: tuple[str, ...] = ()
    #: Past this many unknown commands the next gets ``too_many_unknown`` and the session ends
    #: (Exim's smtp_max_unknown_commands, Sendmail's MAXBADCOMMANDS); 0 = no separate limit.
    unknown_command_limit: int = 0
    #: Commands the server knows but always refuses to this client, with the reply (Postfix's
    #: XCLIENT and XFORWARD: "550 5.7.0 Error: insufficient authorization").
    refused_commands: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    #: A second HELO/EHLO is accepted (RFC 5321 §4.1.4); Sendmail refuses it (``helo_again``).
    repeat_helo: bool = True
    #: The HELO/EHLO name must be a domain name or an address literal (Exim's check).
    strict_helo: bool = False
    #: The longest command line the server reads (Postfix line_length_limit 2048; Exim's
    #: command buffer 16384); smtp.max_line overrides it.
    line_length_limit: int = 2048
    #: How the server names UTC in dates ("GMT" for Sendmail); "" keeps "+0000".
    date_zone: str = ""
    #: The banner waits this long (Sendmail's greet_pause); 0 = at once.
    banner_delay: float = 0.0
    #: "truncate": an over-long command line is cut at the limit and run (Postfix);
    #: "reject": answered ``line_too_long``; "split": read as pieces of the limit's length,
    #: one byte dropped between them, each an unknown command (Exim's smtp_read_command()).
    long_line: str = "truncate"
    #: A command with a NUL byte: "truncate" (C string semantics, as Postfix) or "reject".
    nul: str = "truncate"
    #: Commands that are not valid UTF-8 get ``bad_utf8`` (Postfix with smtputf8_enable).
    check_utf8: bool = False
    #: MAIL/RCPT parameters the server knows (with check_params); an unknown one gets
    #: ``bad_mail_param`` / ``bad_rcpt_param`` with ``{param}`` = the parameter.
    mail_params: tuple[str, ...] = ()
    rcpt_params: tuple[str, ...] = ()
    #: Queue id style (QUEUE_ID_STYLES).
    queue_id: str = "postfix"
    #: The message size the server advertises and enforces by default.
    message_size_limit: int = 10_240_000
    #: MAIL/RCPT parameters are checked against the lists above.
    check_params: bool = False
    #: Commands whose repetition is slowed down (Sendmail's checksmtpattack()).
    slowdowns: tuple[Slowdown, ...] = ()
    #: Past ``junk_command_limit`` of these, each one counts as an error too (Postfix's
    #: smtpd_junk_command_limit: NOOP, VRFY, ETRN, RSET, HELO, EHLO).
    junk_commands: tuple[str, ...] = ()
    junk_command_limit: int = 0
    #: A queued message forgives the errors and junk commands before it (Postfix).
    forgive_errors: bool = False
    #: Exim's smtp_accept_max_nonmail: past ``nonmail_limit`` of these commands the session
    #: ends with ``too_many_nonmail``. Each group of ``nonmail_once`` is free once per
    #: message (RSET, HELO/EHLO, STARTTLS).
    nonmail_commands: tuple[str, ...] = ()
    nonmail_once: tuple[tuple[str, ...], ...] = ()
    nonmail_limit: int = 0
    #: With a ``banner_early`` reply: a client that talks before the (delayed) banner gets it
    #: instead, HELO/EHLO get ``early_helo``, these commands work, the rest ``early_rejected``
    #: (Sendmail's greet_pause: "554 ... not accepting messages").
    early_allowed: tuple[str, ...] = ()
    #: How BDAT replies count a message's bytes: "raw" as sent; "crlf" with every line end as
    #: CRLF (Postfix); "exim" that, and the blank line Exim adds before a body that does not
    #: start with a header.
    bdat_count: str = "raw"

    def __post_init__(self) -> None:
        missing = REPLY_KEYS - set(self.replies)
        unknown = set(self.replies) - REPLY_KEYS - OPTIONAL_REPLY_KEYS
        if self.kind != "smtp":
            raise ValueError(f"dialect {self.name} is for {self.kind!r}, not smtp")
        if missing or unknown:
            raise ValueError(
                f"dialect {self.name}: missing replies {sorted(missing)}, unknown {sorted(unknown)}"
            )
        bad = set(self.commands) - COMMANDS
        if bad:
            raise ValueError(f"dialect {self.name}: unknown commands {sorted(bad)}")
        if self.long_line not in ("truncate", "reject", "split"):
            raise ValueError(f"dialect {self.name}: long_line is truncate, reject or split")
        if self.nul not in ("truncate", "reject"):
            raise ValueError(f"dialect {self.name}: nul is truncate or reject")
        if self.bdat_count not in ("raw", "crlf", "exim"):
            raise ValueError(f"dialect {self.name}: bdat_count is raw, crlf or exim")
        if self.bare_local_parts not in ("users", "refuse", "accept"):
            raise ValueError(f"dialect {self.name}: bare_local_parts is users, refuse or accept")
        if self.address_syntax not in ADDRESS_SYNTAXES:
            known = ", ".join(sorted(ADDRESS_SYNTAXES))
            raise ValueError(f"dialect {self.name}: address_syntax is one of {known}")
        if self.error_limit_style not in ("separate", "continue"):
            raise ValueError(f"dialect {self.name}: error_limit_style is separate or continue")
        if set(self.uncounted) - REPLY_KEYS:
            raise ValueError(f"dialect {self.name}: uncounted names unknown replies")
        if self.queue_id not in QUEUE_ID_STYLES:
            raise ValueError(f"dialect {self.name}: queue_id must be one of {QUEUE_ID_STYLES}")
        for key, text in (*self.replies.items(), *self.refused_commands.items()):
            _check_template(self.name, key, text)

    def knows(self, verb: str) -> bool:
        return verb in self.commands  # a tuple of at most 15 short strings


def smtp_dialect_error(name: str) -> str | None:
    """None if ``name`` loads as an SMTP dialect, else why not (for configuration checks)."""
    from spampot.dialects import DialectError, load  # the data package sits above this one

    try:
        load(name, SmtpDialect)
    except (DialectError, ValueError) as exc:
        return str(exc)
    return None


_FIELDS = frozenset(
    {
        "host",
        "client_ip",
        "helo",
        "arg",
        "address",
        "path",
        "param",
        "queue_id",
        "size",
        "date",
        "line",
        "id",
        "mechanism",
        "code",
        "param_name",
        "rest",
        "lead",
        "head",
        "local",
        "topic",
        "text",
        "keyword",
        "chunk",
    }
)


def _check_template(dialect: str, key: str, text: str) -> None:
    if key == "shutdown" and text == "":
        return  # a server that just closes on shutdown (Postfix)
    for line in text.split("\n"):
        code = "000" + line[6:] if line.startswith("{code}") else line
        if len(code) < 3 or not code[:3].isdigit() or (len(code) > 3 and code[3] not in " -"):
            raise ValueError(f"dialect {dialect}: reply {key!r}: line {line!r} is not 'NNN text'")
    for _, name, _, _ in string.Formatter().parse(text):
        if name is not None and name not in _FIELDS:
            raise ValueError(f"dialect {dialect}: reply {key!r} names unknown field {name!r}")


@functools.lru_cache(maxsize=4096)
def _static(text: str) -> bytes | None:
    """A template without fields, rendered once."""
    if "{" in text:
        return None
    return _wire(text)


def _wire(text: str) -> bytes:
    """RFC 5321 §4.2.1: every line but the last is "NNN-text", the last "NNN text"."""
    if "\n" not in text and text[3:4] == " ":  # one line, written as it goes out
        return (text + "\r\n").encode("ascii", "backslashreplace")
    lines = text.split("\n")
    out = [f"{line[:3]}-{line[4:]}" for line in lines[:-1]]
    last = lines[-1]
    out.append(last[:3] + " " + last[4:] if len(last) > 3 else last)
    return ("\r\n".join(out) + "\r\n").encode("ascii", "backslashreplace")


#: Fields whose values come from the client: made printable ASCII before they are written.
CLIENT_FIELDS = frozenset(
    {
        "helo", "arg", "address", "path", "param", "param_name", "line", "mechanism", "rest",
        "lead", "head", "local", "topic", "keyword",
    }
)  # fmt: skip


@functools.lru_cache(maxsize=1024)
def _names(template: str) -> tuple[str, ...]:
    """The fields a template names, in order of first use."""
    names = [name for _, name, _, _ in string.Formatter().parse(template) if name]
    return tuple(dict.fromkeys(names))


#: Values longer than this are rendered without the cache (it would hold them otherwise).
_CACHED_VALUE = 256


def _fill(template: str, values: tuple[tuple[str, str], ...], limit: int) -> bytes:
    safe = {k: reply_text(v, limit) if k in CLIENT_FIELDS else v for k, v in values}
    return _wire(template.format_map(_Default(safe)))


_filled = functools.lru_cache(maxsize=4096)(_fill)
"""One rendering, kept: a banner or an EHLO line is the same for every client."""


def render(template: str, limit: int = 200, **values: object) -> bytes:
    """A reply on the wire: fields filled (client text made safe and cut at ``limit``, the
    persona's echo_limit), lines joined with CRLF."""
    static = _static(template)
    if static is not None:
        return static
    filled = tuple([(n, str(values.get(n, ""))) for n in _names(template)])
    for _, value in filled:
        if len(value) > _CACHED_VALUE:
            return _fill(template, filled, limit)
    return _filled(template, filled, limit)


class _Default(dict[str, str]):
    """Fields a reply names but the caller did not give are left empty (never a KeyError)."""

    def __missing__(self, key: str) -> str:
        return ""


_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_B36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _base(value: int, digits: str, width: int) -> str:
    out = []
    for _ in range(width):
        value, r = divmod(value, len(digits))
        out.append(digits[r])
    return "".join(reversed(out))


def queue_id(style: str, bits: int, epoch: float) -> str:
    """A queue id in ``style`` from 64 random ``bits`` and the time (the adapter gives both).

    postfix: the short form Debian uses (enable_long_queue_ids = no), 10 upper-case hex
    digits; exim (4.96): base-62 seconds, pid and fraction, ``1xXaeU-0000KX-2E``;
    sendmail: ``2BT8s1Yk012345`` (year, month, day, hour, minute, second, sequence, pid);
    exchange: 16 hex digits; google: the gsmtp id seen in replies; hex: 16 lower-case hex.
    """
    seconds = int(epoch)
    if style == "postfix":
        return f"{bits & 0xFF_FFFF_FFFF:010X}"
    if style == "exim":
        pid = (bits >> 20) % 4_000_000
        return f"{_base(seconds, _B62, 6)}-{_base(pid, _B62, 6)}-{_base(bits & 0xFFF, _B62, 2)}"
    if style == "sendmail":
        t = time.gmtime(seconds)  # the adapter's time, not a clock read here
        year = _B62[(t.tm_year - 1900) % 60]
        stamp = (
            f"{year}{_B62[t.tm_mon - 1]}{_B62[t.tm_mday]}"
            f"{_B62[t.tm_hour]}{_B62[t.tm_min]}{_B62[t.tm_sec]}"
        )
        return f"{stamp}{_B62[bits % 60]}{_B62[(bits >> 6) % 60]}{(bits >> 12) % 1_000_000:06d}"
    if style == "google":
        raw = _base(bits, _B62.lower()[:36], 12)
        return f"{raw[:6]}si{raw[6:]}.{(bits >> 40) % 1000}"
    if style == "exchange":
        return f"{bits & 0xFFFF_FFFF_FFFF_FFFF:016X}"
    return f"{bits & 0xFFFF_FFFF_FFFF_FFFF:016x}"
