"""The open-relay SMTP emulator, sans-I/O.

A server that accepts every sender and every recipient and says it queued the mail. The
adapter stores each :class:`MessageReceived` and only then calls :meth:`SmtpServer.message_stored`,
which produces the ``250 ... queued as`` reply: nothing is acknowledged before it is on disk.

Replies follow Postfix's wording (the default persona), since that is what relay testers and
spam tools most often meet. RFC 5321 sections are cited where behaviour is chosen.
"""

from __future__ import annotations

import base64
import binascii
import enum
import functools
from dataclasses import dataclass, field

from spampot.protocols.common import ClientError, decode_client


@dataclass(frozen=True, slots=True)
class SmtpPersona:
    """What the emulated MTA says about itself."""

    software: str = "Postfix (Debian/GNU)"
    # The 220 text after the code; {host}, {software} and {date} (given by the adapter, since
    # the machine has no clock) are filled in. Exim and Sendmail put the date in the banner.
    banner: str = "{host} ESMTP {software}"
    # Postfix advertises AUTH twice ("AUTH=" for pre-RFC 2554 Outlook clients,
    # broken_sasl_auth_clients = yes); relay testers look for both.
    auth_equals: bool = True


@dataclass(frozen=True, slots=True)
class SmtpLimits:
    """Per-connection bounds; defaults are Postfix's own."""

    max_line: int = 2048  # line_length_limit (RFC 5321 §4.5.3.1.4 asks for at least 512)
    max_message_size: int = 10_240_000  # message_size_limit
    max_recipients: int = 1000  # smtpd_recipient_limit (RFC 5321 §4.5.3.1.8: at least 100)
    max_messages: int = 1000  # messages accepted on one connection before 421
    max_errors: int = 20  # smtpd_hard_error_limit


# --- events ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Helo:
    command: str  # "HELO" or "EHLO"
    name: str


@dataclass(frozen=True, slots=True)
class AuthAttempt:
    mechanism: str
    username: str | None
    password: str | None


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A complete message; answer it with message_stored() or message_deferred()."""

    helo: str | None
    mail_from: str
    mail_params: str
    rcpt_to: tuple[str, ...]
    data: bytes  # as received, after dot-unstuffing (RFC 5321 §4.5.2)


@dataclass(frozen=True, slots=True)
class Rejected:
    stage: str  # "mail", "rcpt", "data", "connect"
    code: int
    why: str  # "size", "recipients", "storage", "messages", "errors"


@dataclass(frozen=True, slots=True)
class Quit:
    pass


SmtpEvent = Helo | AuthAttempt | MessageReceived | Rejected | ClientError | Quit


class State(enum.Enum):
    GREETED = "greeted"  # banner sent, no HELO yet
    READY = "ready"  # HELO seen, no transaction
    MAIL = "mail"  # MAIL accepted
    RCPT = "rcpt"  # at least one RCPT accepted
    DATA = "data"  # reading message content
    AUTH_PLAIN = "auth_plain"  # waiting for the PLAIN response line
    AUTH_LOGIN_USER = "auth_login_user"
    AUTH_LOGIN_PASS = "auth_login_pass"
    STORING = "storing"  # message handed to the adapter, waiting for the disk
    CLOSED = "closed"


_EHLO_KEYWORDS = ("PIPELINING", "VRFY", "ETRN", "ENHANCEDSTATUSCODES", "8BITMIME", "DSN")
_HELP = b"214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT HELP VRFY AUTH\r\n"
# RFC 4954 §4: base64 prompts "Username:" and "Password:" as every LOGIN server sends.
_LOGIN_USER_PROMPT = b"334 VXNlcm5hbWU6\r\n"
_LOGIN_PASS_PROMPT = b"334 UGFzc3dvcmQ6\r\n"


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


@dataclass(slots=True)
class _Transaction:
    mail_from: str = ""
    mail_params: str = ""
    rcpt_to: list[str] = field(default_factory=list)
    over_limit: bool = False


class SmtpServer:
    """One SMTP server session. The banner is ready in data_to_send() on creation."""

    __slots__ = (
        "_auth_user",
        "_authenticated",
        "_buf",
        "_discarding",
        "_errors",
        "_msg",
        "_msg_oversize",
        "_out",
        "_scanned",
        "_txn",
        "closing",
        "helo",
        "hostname",
        "limits",
        "messages",
        "persona",
        "require_helo",
        "state",
        "storage_low",
    )

    def __init__(
        self,
        hostname: str,
        persona: SmtpPersona | None = None,
        limits: SmtpLimits | None = None,
        *,
        require_helo: bool = False,
        date: str = "",
        storage_low: bool = False,
    ) -> None:
        # The name may come from a client (the host a proxy tunnel asked for): it goes into
        # replies, so it must not carry a line end or anything but printable ASCII.
        self.hostname = hostname = reply_text(hostname, 255)
        self.persona = persona or SmtpPersona()
        self.limits = limits or SmtpLimits()
        self.require_helo = require_helo
        self.state = State.GREETED
        self.helo: str | None = None
        self.closing = False
        self.messages = 0
        # Set by the adapter when the disk is short: new transactions get 452 (below).
        self.storage_low = storage_low
        self._buf = b""
        banner = self.persona.banner.format(
            host=hostname, software=self.persona.software, date=date
        )
        self._out: list[bytes] = [f"220 {banner}\r\n".encode("utf-8", "backslashreplace")]
        self._txn = _Transaction()
        self._msg = bytearray()
        self._scanned = 0
        self._msg_oversize = False
        self._discarding = False  # inside an over-long command line, until its LF
        self._errors = 0
        self._authenticated = False
        self._auth_user: str | None = None

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
        """Bytes held for the client: bounded by max_line, or by max_message_size in DATA."""
        return len(self._buf) + len(self._msg)

    @property
    def waiting(self) -> bool:
        """True while a message waits for the disk; the adapter should stop reading."""
        return self.state is State.STORING

    @property
    def in_data(self) -> bool:
        """Between DATA's 354 and the final dot: the adapter times this phase apart."""
        return self.state is State.DATA

    def receive_data(self, data: bytes) -> list[SmtpEvent]:
        if self.state is State.CLOSED or self.closing:
            return []
        events: list[SmtpEvent] = []
        if self.state is State.DATA:
            self._receive_message(data, events)
        elif self._discarding:
            self._skip_long_line(data, events)
        else:
            self._buf += data
        self._run(events)
        return events

    def message_stored(self, queue_id: str) -> list[SmtpEvent]:
        """The message is safely on disk: acknowledge it (and only now, invariant 2)."""
        assert self.state is State.STORING
        self.messages += 1
        self._reply(f"250 2.0.0 Ok: queued as {queue_id}")
        return self._after_message()

    def message_deferred(self) -> list[SmtpEvent]:
        """Storage refused the message: a temporary error, the client retries (RFC 3463 4.3.1)."""
        assert self.state is State.STORING
        self._reply("452 4.3.1 Insufficient system storage")
        events: list[SmtpEvent] = [Rejected("data", 452, "storage")]
        events += self._after_message()
        return events

    def connection_lost(self) -> None:
        self.state = State.CLOSED
        self._buf = b""
        self._msg = bytearray()

    # --- input handling ---------------------------------------------------------------------

    def _run(self, events: list[SmtpEvent]) -> None:
        """Handle every complete line in the buffer (RFC 2920 pipelining)."""
        self._run_lines(events)
        if self.closing:
            self._buf = b""  # what follows QUIT or a 421 is never read

    def _run_lines(self, events: list[SmtpEvent]) -> None:
        while not self.closing and self.state not in (State.DATA, State.STORING, State.CLOSED):
            nl = self._buf.find(b"\n")
            if nl < 0:
                if len(self._buf) > self.limits.max_line + 1:  # +1: the CR before the LF
                    self._buf = b""
                    self._discarding = True
                return
            line = self._buf[:nl]
            self._buf = self._buf[nl + 1 :]
            if line.endswith(b"\r"):  # bare LF is tolerated, as by every real MTA
                line = line[:-1]
            if len(line) > self.limits.max_line:
                self._line_too_long(events)
                continue
            self._line(line, events)
            if self.state is State.DATA and self._buf:
                rest, self._buf = self._buf, b""
                self._receive_message(rest, events)

    def _skip_long_line(self, data: bytes, events: list[SmtpEvent]) -> None:
        nl = data.find(b"\n")
        if nl < 0:
            return
        self._discarding = False
        self._buf = data[nl + 1 :]
        self._line_too_long(events)

    def _line_too_long(self, events: list[SmtpEvent]) -> None:
        self._error(events, "500 5.5.0 Error: line too long", "line too long")

    def _line(self, line: bytes, events: list[SmtpEvent]) -> None:
        state = self.state
        if state is State.AUTH_PLAIN:
            self._auth_plain_response(line, events)
            return
        if state is State.AUTH_LOGIN_USER or state is State.AUTH_LOGIN_PASS:
            self._auth_login_response(line, events)
            return
        verb, _, arg = line.partition(b" ")
        handler = _COMMANDS.get(verb.upper())
        if handler is None:
            if not line.strip():
                self._error(events, "500 5.5.2 Error: bad syntax", "empty command", line)
            else:
                self._error(
                    events, "502 5.5.2 Error: command not recognized", "unknown command", line
                )
            return
        handler(self, arg.strip(b" \t"), line, events)

    # --- commands ---------------------------------------------------------------------------

    def _cmd_helo(self, arg: bytes, line: bytes, events: list[SmtpEvent]) -> None:
        ehlo = line[:4].upper() == b"EHLO"
        if not arg:
            self._error(
                events, f"501 Syntax: {'EHLO' if ehlo else 'HELO'} hostname", "no name", line
            )
            return
        self.helo = decode_client(arg)
        events.append(Helo("EHLO" if ehlo else "HELO", self.helo))
        # RFC 5321 §4.1.4: EHLO/HELO resets any transaction in progress.
        self._txn = _Transaction()
        self.state = State.READY
        if not ehlo:
            self._reply(f"250 {self.hostname}")
            return
        self._out.append(
            _ehlo_reply(self.hostname, self.limits.max_message_size, self.persona.auth_equals)
        )

    def _needs_helo(self, line: bytes, events: list[SmtpEvent]) -> bool:
        if self.state is State.GREETED and self.require_helo:
            self._error(events, "503 5.5.1 Error: send HELO/EHLO first", "no HELO", line)
            return True
        return False

    def _cmd_mail(self, arg: bytes, line: bytes, events: list[SmtpEvent]) -> None:
        if self._needs_helo(line, events):
            return
        if self.state in (State.MAIL, State.RCPT):
            self._error(events, "503 5.5.1 Error: nested MAIL command", "nested MAIL", line)
            return
        if self.messages >= self.limits.max_messages:
            events.append(Rejected("mail", 421, "messages"))
            self._reply(f"421 4.7.0 {self.hostname} Error: too many messages")
            self.closing = True
            return
        parsed = _after_keyword(arg, b"FROM:")
        path = split_path(parsed) if parsed is not None else None
        if path is None:
            self._error(events, "501 5.5.4 Syntax: MAIL FROM:<address>", "bad MAIL syntax", line)
            return
        address, params = path
        if self.storage_low:
            # RFC 5321 §4.5.3.1.10 / RFC 3463 4.3.1: a transient "insufficient system
            # storage" at MAIL, as Postfix answers when its queue is short of space; the
            # client keeps the message and retries later.
            events.append(Rejected("mail", 452, "storage"))
            self._reply("452 4.3.1 Insufficient system storage")
            return
        size = _parse_size(params)
        if size is not None and size > self.limits.max_message_size:
            events.append(Rejected("mail", 552, "size"))
            self._reply("552 5.3.4 Message size exceeds fixed limit")
            return
        self._txn = _Transaction(decode_client(address), decode_client(params))
        self.state = State.MAIL
        self._out.append(b"250 2.1.0 Ok\r\n")

    def _cmd_rcpt(self, arg: bytes, line: bytes, events: list[SmtpEvent]) -> None:
        if self.state not in (State.MAIL, State.RCPT):
            self._error(events, "503 5.5.1 Error: need MAIL command", "RCPT before MAIL", line)
            return
        parsed = _after_keyword(arg, b"TO:")
        path = split_path(parsed) if parsed is not None else None
        if path is None or not path[0]:
            self._error(events, "501 5.5.4 Syntax: RCPT TO:<address>", "bad RCPT syntax", line)
            return
        txn = self._txn
        if len(txn.rcpt_to) >= self.limits.max_recipients:
            # RFC 5321 §4.5.3.1.10: 452 tells the client to send the rest in another message.
            if not txn.over_limit:
                events.append(Rejected("rcpt", 452, "recipients"))
                txn.over_limit = True
            self._reply("452 4.5.3 Error: too many recipients")
            return
        txn.rcpt_to.append(decode_client(path[0]))
        self.state = State.RCPT
        self._out.append(b"250 2.1.5 Ok\r\n")

    def _cmd_data(self, arg: bytes, line: bytes, events: list[SmtpEvent]) -> None:
        if self.state is not State.RCPT:
            why = "need RCPT command" if self.state is State.MAIL else "need MAIL command"
            self._error(events, f"503 5.5.1 Error: {why}", f"DATA: {why}", line)
            return
        self.state = State.DATA
        # The sentinel LF lets the terminator scan treat the first line like any other.
        self._msg = bytearray(b"\n")
        self._scanned = 0
        self._msg_oversize = False
        self._out.append(b"354 End data with <CR><LF>.<CR><LF>\r\n")

    def _cmd_rset(self, arg: bytes, line: bytes, events: list[SmtpEvent]) -> None:
        self._txn = _Transaction()
        if self.state in (State.MAIL, State.RCPT):
            self.state = State.READY
        self._out.append(b"250 2.0.0 Ok\r\n")

    def _cmd_noop(self, arg: bytes, line: bytes, events: list[SmtpEvent]) -> None:
        self._out.append(b"250 2.0.0 Ok\r\n")

    def _cmd_vrfy(self, arg: bytes, line: bytes, events: list[SmtpEvent]) -> None:
        if not arg:
            self._error(events, "501 5.5.4 Syntax: VRFY address", "VRFY without address", line)
            return
        # RFC 5321 §3.5.3: 252 "cannot verify, but will accept" — what an open relay says.
        self._reply(f"252 2.0.0 {reply_text(decode_client(arg), 400)}")

    def _cmd_help(self, arg: bytes, line: bytes, events: list[SmtpEvent]) -> None:
        self._out.append(_HELP)

    def _cmd_quit(self, arg: bytes, line: bytes, events: list[SmtpEvent]) -> None:
        events.append(Quit())
        self._out.append(b"221 2.0.0 Bye\r\n")
        self.closing = True

    def _cmd_auth(self, arg: bytes, line: bytes, events: list[SmtpEvent]) -> None:
        if self.state is State.GREETED:
            self._error(events, "503 5.5.1 Error: send HELO/EHLO first", "AUTH before HELO", line)
            return
        if self.state in (State.MAIL, State.RCPT):
            self._error(
                events, "503 5.5.1 Error: MAIL transaction in progress", "AUTH in MAIL", line
            )
            return
        if self._authenticated:
            self._error(events, "503 5.5.1 Error: already authenticated", "second AUTH", line)
            return
        mechanism, _, initial = arg.partition(b" ")
        mechanism = mechanism.upper()
        initial = initial.strip()
        if mechanism == b"PLAIN":
            if initial:
                self._auth_plain_response(initial, events)
            else:
                self.state = State.AUTH_PLAIN
                self._out.append(b"334 \r\n")
        elif mechanism == b"LOGIN":
            if initial:
                self.state = State.AUTH_LOGIN_USER
                self._auth_login_response(initial, events)
            else:
                self.state = State.AUTH_LOGIN_USER
                self._out.append(_LOGIN_USER_PROMPT)
        else:
            self._error(
                events,
                "535 5.7.8 Error: authentication failed: Invalid authentication mechanism",
                "unsupported AUTH mechanism",
                line,
            )

    def _auth_cancelled(self, line: bytes, events: list[SmtpEvent]) -> bool:
        # RFC 4954 §4: a lone "*" cancels the exchange.
        if line.strip() != b"*":
            return False
        self.state = State.READY
        self._error(events, "501 5.7.0 Authentication aborted", "AUTH aborted", line)
        return True

    def _auth_plain_response(self, line: bytes, events: list[SmtpEvent]) -> None:
        self.state = State.READY
        if self._auth_cancelled(line, events):
            return
        decoded = _b64(line)
        if decoded is None or decoded.count(b"\0") != 2:
            self._error(events, "501 5.5.2 Cannot decode response", "bad AUTH PLAIN", line)
            return
        # RFC 4616 §2: authzid NUL authcid NUL passwd
        _, user, password = decoded.split(b"\0")
        self._auth_ok(AuthAttempt("PLAIN", decode_client(user), decode_client(password)), events)

    def _auth_login_response(self, line: bytes, events: list[SmtpEvent]) -> None:
        if self._auth_cancelled(line, events):
            return
        decoded = _b64(line)
        if decoded is None:
            self.state = State.READY
            self._error(events, "501 5.5.2 Cannot decode response", "bad AUTH LOGIN", line)
            return
        if self.state is State.AUTH_LOGIN_USER:
            self._auth_user = decode_client(decoded)
            self.state = State.AUTH_LOGIN_PASS
            self._out.append(_LOGIN_PASS_PROMPT)
            return
        self.state = State.READY
        self._auth_ok(AuthAttempt("LOGIN", self._auth_user, decode_client(decoded)), events)

    def _auth_ok(self, attempt: AuthAttempt, events: list[SmtpEvent]) -> None:
        events.append(attempt)
        self._authenticated = True
        self._reply("235 2.7.0 Authentication successful")

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
            limit = self.limits.max_message_size
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
        if self._msg_oversize or len(body) > self.limits.max_message_size:
            events.append(Rejected("data", 552, "size"))
            self._reply("552 5.3.4 Message size exceeds fixed limit")
            self._txn = _Transaction()
            self.state = State.READY
            return
        # RFC 5321 §4.5.2: drop the first "." of every line that starts with one.
        if body.startswith(b".") or b"\n." in body:
            body = (b"\n" + body).replace(b"\n.", b"\n")[1:]
        txn = self._txn
        events.append(
            MessageReceived(self.helo, txn.mail_from, txn.mail_params, tuple(txn.rcpt_to), body)
        )
        self.state = State.STORING

    def _after_message(self) -> list[SmtpEvent]:
        self._txn = _Transaction()
        self.state = State.READY
        events: list[SmtpEvent] = []
        self._run(events)
        return events

    # --- replies ----------------------------------------------------------------------------

    def _reply(self, text: str) -> None:
        self._out.append(text.encode("utf-8", "backslashreplace") + b"\r\n")

    def _error(self, events: list[SmtpEvent], reply: str, detail: str, raw: bytes = b"") -> None:
        self._reply(reply)
        events.append(ClientError(detail, reply.encode(), raw[:256]))
        self._errors += 1
        if self._errors >= self.limits.max_errors:
            events.append(Rejected("connect", 421, "errors"))
            self._reply(f"421 4.7.0 {self.hostname} Error: too many errors")
            self.closing = True


@functools.lru_cache(maxsize=1024)
def _ehlo_reply(hostname: str, size: int, auth_equals: bool) -> bytes:
    """The multi-line EHLO reply (RFC 5321 §4.1.1.1); one per name, built once."""
    lines = [hostname, "PIPELINING", f"SIZE {size}", "VRFY", "ETRN", "AUTH PLAIN LOGIN"]
    if auth_equals:
        lines.append("AUTH=PLAIN LOGIN")
    lines += ["ENHANCEDSTATUSCODES", "8BITMIME", "DSN", "SMTPUTF8"]
    text = "\r\n".join(f"250-{x}" for x in lines[:-1]) + f"\r\n250 {lines[-1]}\r\n"
    return text.encode()


def reply_text(text: str, limit: int) -> str:
    """Text safe inside one reply line: printable ASCII only (escapes), at most ``limit``."""
    ascii_text = text.encode("ascii", "backslashreplace").decode("ascii")
    if not ascii_text.isprintable():
        ascii_text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in ascii_text)
    return ascii_text[:limit]


def _after_keyword(arg: bytes, keyword: bytes) -> bytes | None:
    """The rest after ``FROM:``/``TO:``, allowing the space many clients put after the colon."""
    if arg[: len(keyword)].upper() != keyword:
        return None
    return arg[len(keyword) :]


_COMMANDS = {
    b"HELO": SmtpServer._cmd_helo,
    b"EHLO": SmtpServer._cmd_helo,
    b"MAIL": SmtpServer._cmd_mail,
    b"RCPT": SmtpServer._cmd_rcpt,
    b"DATA": SmtpServer._cmd_data,
    b"RSET": SmtpServer._cmd_rset,
    b"NOOP": SmtpServer._cmd_noop,
    b"VRFY": SmtpServer._cmd_vrfy,
    b"HELP": SmtpServer._cmd_help,
    b"QUIT": SmtpServer._cmd_quit,
    b"AUTH": SmtpServer._cmd_auth,
}
