"""The SMTP machine driven with bytes alone: exact replies and exact events for every path."""

from __future__ import annotations

import base64
import re

import pytest

from spampot.dialects import load
from spampot.protocols.common import ClientError
from spampot.protocols.smtp import (
    AuthAttempt,
    Helo,
    MessageReceived,
    Quit,
    Rejected,
    SmtpLimits,
    SmtpServer,
    TlsInfo,
)
from spampot.protocols.smtp_dialect import SmtpDialect

POSTFIX = load("postfix", SmtpDialect)


def dialect(name: str) -> SmtpDialect:
    return load(name, SmtpDialect)


HOST = "mx.example.net"
BANNER = b"220 mx.example.net ESMTP Postfix (Debian/GNU)\r\n"
# Postfix 3.7's ehlo_cmd() order; no STARTTLS without a certificate, no AUTH before TLS.
EHLO_REPLY = (
    b"250-mx.example.net\r\n"
    b"250-PIPELINING\r\n"
    b"250-SIZE 10240000\r\n"
    b"250-VRFY\r\n"
    b"250-ETRN\r\n"
    b"250-ENHANCEDSTATUSCODES\r\n"
    b"250-8BITMIME\r\n"
    b"250-DSN\r\n"
    b"250-SMTPUTF8\r\n"
    b"250 CHUNKING\r\n"
)
OK = b"250 2.0.0 Ok\r\n"
MAIL_OK = b"250 2.1.0 Ok\r\n"
RCPT_OK = b"250 2.1.5 Ok\r\n"
GO_AHEAD = b"354 End data with <CR><LF>.<CR><LF>\r\n"
BYE = b"221 2.0.0 Bye\r\n"
AUTH_FAILED = b"535 5.7.8 Error: authentication failed: authentication failure\r\n"
DEFERRED = b"451 4.3.0 Error: queue file write error\r\n"
NEED_RCPT = b"503 5.5.1 Error: need RCPT command\r\n"  # Postfix: DATA before MAIL
NO_RCPT = b"554 5.5.1 Error: no valid recipients\r\n"  # Postfix: DATA after MAIL, no RCPT
NEED_MAIL = b"503 5.5.1 Error: need MAIL command\r\n"
UNKNOWN = b"500 5.5.2 Error: command not recognized"
TLS = TlsInfo("TLSv1.3", "TLS_AES_256_GCM_SHA384", "mx.example.net")
USER_PROMPT = b"334 VXNlcm5hbWU6\r\n"  # base64("Username:")
PASS_PROMPT = b"334 UGFzc3dvcmQ6\r\n"  # base64("Password:")
TOO_BIG = b"552 5.3.4 Message size exceeds fixed limit\r\n"

# RFC 5321 §4.2: Reply-code [ SP / "-" ] textstring CRLF, textstring = HT / SP / VCHAR;
# §4.5.3.1.5: a reply line is at most 512 octets including the CRLF.
REPLY_LINE = re.compile(rb"\d{3}[ -][\t\x20-\x7e]*")


def assert_replies(out: bytes, echo_limit: int = 200) -> None:
    """Every reply line is well-formed SMTP, and bounded: 512 octets (RFC 5321 §4.5.3.1.5), or
    what the persona echoes and its words around it where the real server echoes more (Exim
    echoes a whole command line of up to 16 KiB, as the sensor then does)."""
    if not out:
        return
    assert out.endswith(b"\r\n"), out
    bound = max(512, echo_limit + 512)
    for line in out[:-2].split(b"\r\n"):
        assert REPLY_LINE.fullmatch(line), line
        assert len(line) + 2 <= bound, line


def b64(raw: bytes) -> bytes:
    return base64.b64encode(raw)


class Client:
    """The client's side of one connection: send bytes, get (events, reply bytes)."""

    def __init__(
        self,
        hostname: str = HOST,
        *,
        limits: SmtpLimits | None = None,
        dialect: SmtpDialect = POSTFIX,
        require_helo: bool = False,
        **kw,
    ) -> None:
        self.server = SmtpServer(hostname, dialect, limits, require_helo=require_helo, **kw)
        self.banner = self.server.data_to_send()

    def send(self, data: bytes) -> tuple[list, bytes]:
        events = self.server.receive_data(data)
        out = self.server.data_to_send()
        assert_replies(out, self.server.dialect.echo_limit)
        return events, out

    def stored(self, queue_id: str) -> tuple[list, bytes]:
        events = self.server.message_stored(queue_id)
        out = self.server.data_to_send()
        assert_replies(out, self.server.dialect.echo_limit)
        return events, out

    def deferred(self) -> tuple[list, bytes]:
        events = self.server.message_deferred()
        out = self.server.data_to_send()
        assert_replies(out, self.server.dialect.echo_limit)
        return events, out

    def open_data(self, mail: bytes = b"<a@b.example>", rcpts: tuple = (b"<c@d.example>",)) -> None:
        """MAIL, RCPT..., DATA, checking each reply; leaves the machine reading content."""
        assert self.send(b"MAIL FROM:" + mail + b"\r\n") == ([], MAIL_OK)
        for rcpt in rcpts:
            assert self.send(b"RCPT TO:" + rcpt + b"\r\n") == ([], RCPT_OK)
        assert self.send(b"DATA\r\n") == ([], GO_AHEAD)

    def message(self, body: bytes, **kw) -> MessageReceived:
        """Send one whole message (body includes its terminator) and return the event."""
        self.open_data(**kw)
        events, out = self.send(body)
        assert out == b""
        assert len(events) == 1 and isinstance(events[0], MessageReceived), events
        return events[0]


def drive(chunks: list[bytes], **kw) -> tuple[list, bytes]:
    """Feed chunks like the adapter: every message is stored (Q1, Q2, ...) as soon as seen."""
    server = SmtpServer(HOST, kw.pop("dialect", POSTFIX), kw.pop("limits", None), **kw)
    out = bytearray(server.data_to_send())
    events: list = []
    stored = 0
    for chunk in chunks:
        assert not server.waiting  # the adapter never reads while the disk works
        pending = server.receive_data(chunk)
        while pending:
            events += pending
            more: list = []
            for event in pending:
                if isinstance(event, MessageReceived):
                    stored += 1
                    more += server.message_stored(f"Q{stored}")
            pending = more
        out += server.data_to_send()
    assert_replies(bytes(out))
    return events, bytes(out)


def error(detail: str, reply: bytes, raw: bytes = b"") -> ClientError:
    return ClientError(detail, reply, raw)


# --- banner, EHLO, HELO ---------------------------------------------------------------------


def test_banner_is_postfix_debian():
    assert Client().banner == BANNER


@pytest.mark.parametrize("hostname", ["smtp.victim.example", "mail.example.com.br", "198.51.100.7"])
def test_hostname_from_constructor_in_banner_ehlo_and_helo(hostname):
    c = Client(hostname)
    assert c.banner == f"220 {hostname} ESMTP Postfix (Debian/GNU)\r\n".encode()
    events, out = c.send(b"EHLO client.example\r\n")
    assert out.startswith(f"250-{hostname}\r\n250-PIPELINING\r\n".encode())
    assert events == [Helo("EHLO", "client.example")]
    assert c.send(b"HELO again\r\n") == ([Helo("HELO", "again")], f"250 {hostname}\r\n".encode())


def test_ehlo_reply_exact():
    assert Client().send(b"EHLO client.example\r\n") == (
        [Helo("EHLO", "client.example")],
        EHLO_REPLY,
    )


def test_ehlo_advertises_extensions_and_size_limit():
    c = Client(limits=SmtpLimits(max_message_size=5000), tls_available=True)
    _, out = c.send(b"EHLO x\r\n")
    keywords = [line[4:] for line in out.split(b"\r\n") if line]
    for keyword in (b"PIPELINING", b"SIZE 5000", b"8BITMIME", b"STARTTLS", b"CHUNKING"):
        assert keyword in keywords
    assert b"SIZE 10240000" not in keywords


@pytest.mark.parametrize(
    ("name", "banner", "ehlo_first"),
    [
        ("exim", b"220 mx.example.net ESMTP Exim 4.96 Fri, 27 Nov 2026 23:00:00 +0000",
         b"250-mx.example.net Hello client [192.0.2.1]"),
        ("sendmail", b"220 mx.example.net ESMTP Sendmail 8.17.1.9/8.17.1.9/Debian-2+deb12u2; "
         b"Fri, 27 Nov 2026 23:00:00 GMT; (No UCE/UBE) logging access from: "
         b"[192.0.2.1](FAIL)-[192.0.2.1]",
         b"250-mx.example.net Hello [192.0.2.1], pleased to meet you"),
        ("exchange", b"220 mx.example.net Microsoft ESMTP MAIL Service ready at "
         b"Fri, 27 Nov 2026 23:00:00 +0000", b"250-mx.example.net Hello [192.0.2.1]"),
    ],
)  # fmt: skip
def test_every_persona_speaks_its_own_dialect_after_the_banner(name, banner, ehlo_first):
    server = SmtpServer(
        HOST, dialect(name), date="Fri, 27 Nov 2026 23:00:00 +0000", client_ip="192.0.2.1"
    )
    if server.delay:  # Sendmail's greet_pause
        assert server.data_to_send() == b""
        server.resume()
    assert server.data_to_send() == banner + b"\r\n"
    server.receive_data(b"EHLO client\r\n")
    out = server.data_to_send()
    assert out.startswith(ehlo_first + b"\r\n")
    server.receive_data(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n")
    out = server.data_to_send()
    assert b"Ok" not in out and b"queued" not in out  # nothing of Postfix's wording
    server.receive_data(b"x\r\n.\r\n")
    server.message_stored("QID")
    queued = server.data_to_send()
    assert b"QID" in queued and queued != b"250 2.0.0 Ok: queued as QID\r\n"
    server.receive_data(b"QUIT\r\n")
    assert server.data_to_send() != BYE


def test_helo():
    assert Client().send(b"HELO client\r\n") == (
        [Helo("HELO", "client")],
        b"250 mx.example.net\r\n",
    )


@pytest.mark.parametrize("verb", [b"HELO", b"EHLO", b"helo", b"ehlo"])
def test_helo_without_name(verb):
    name = verb.upper().decode()
    reply = f"501 Syntax: {name} hostname".encode()
    for line in (verb + b"\r\n", verb + b"   \r\n"):
        c = Client()
        assert c.send(line) == ([error("no name", reply, line[:-2])], reply + b"\r\n")
        assert c.server.helo is None


def test_bad_utf8_is_refused_by_postfix():
    # smtputf8_enable = yes (compatibility_level 3.6): "500 5.5.2 Error: bad UTF-8 syntax".
    reply = b"500 5.5.2 Error: bad UTF-8 syntax"
    for line in (b"EHLO [192.0.2.9] \xff\xfe spam", b"MAIL FROM:<\xff\xfe@x>"):
        assert Client().send(line + b"\r\n") == ([error("bad UTF-8", reply, line)], reply + b"\r\n")


def test_helo_name_kept_as_sent_and_in_message():
    # A persona without the UTF-8 check (Google's MX) takes any bytes: they are logged escaped.
    c = Client(dialect=dialect("google"))
    events, _ = c.send(b"EHLO [192.0.2.9] \xff\xfe spam\r\n")
    assert events == [Helo("EHLO", "[192.0.2.9] \\xff\\xfe spam")]
    c.send(b"MAIL FROM:<\xff\xfe@x>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n")
    (msg,), _ = c.send(b"x\r\n.\r\n")
    assert msg.helo == "[192.0.2.9] \\xff\\xfe spam"
    assert msg.mail_from == "\\xff\\xfe@x"


# --- whole transactions -----------------------------------------------------------------------


def test_full_transaction_step_by_step():
    c = Client()
    assert c.send(b"EHLO client.example\r\n") == ([Helo("EHLO", "client.example")], EHLO_REPLY)
    assert c.send(b"MAIL FROM:<spammer@example.org>\r\n") == ([], MAIL_OK)
    assert c.send(b"RCPT TO:<victim1@example.com>\r\n") == ([], RCPT_OK)
    assert c.send(b"RCPT TO:<victim2@example.com>\r\n") == ([], RCPT_OK)
    assert c.send(b"DATA\r\n") == ([], GO_AHEAD)
    assert c.send(b"Subject: buy now\r\n\r\nCheap stuff.\r\n") == ([], b"")
    assert not c.server.waiting
    events, out = c.send(b".\r\n")
    assert out == b""
    assert events == [
        MessageReceived(
            helo="client.example",
            mail_from="spammer@example.org",
            mail_params="",
            rcpt_to=("victim1@example.com", "victim2@example.com"),
            data=b"Subject: buy now\r\n\r\nCheap stuff.\r\n",
        )
    ]
    assert c.server.waiting
    assert c.stored("4F1A2B3C4D") == ([], b"250 2.0.0 Ok: queued as 4F1A2B3C4D\r\n")
    assert not c.server.waiting
    assert c.server.messages == 1
    assert c.send(b"QUIT\r\n") == ([Quit()], BYE)
    assert c.server.closing


MAIL_FORMS = [
    (b"MAIL FROM:<x@y>", "x@y", ""),
    (b"MAIL FROM: <x@y>", "x@y", ""),
    (b"MAIL FROM:<>", "", ""),
    (b"MAIL FROM: <>", "", ""),
    (b"MAIL FROM:<@route1,@route2:user@host>", "@route1,@route2:user@host", ""),
    (b"MAIL FROM:<user%host@relay>", "user%host@relay", ""),
    (b'MAIL FROM:<"john doe"@x>', '"john doe"@x', ""),
    (b'MAIL FROM:<"a>b"@x>', '"a>b"@x', ""),
    (b'MAIL FROM:<"a\\">b"@x>', '"a\\">b"@x', ""),
    (b"MAIL FROM:<host!user>", "host!user", ""),
    (b"MAIL FROM:<user@[192.0.2.1]>", "user@[192.0.2.1]", ""),
    (b"MAIL FROM:<user@[IPv6:2001:db8::1]>", "user@[IPv6:2001:db8::1]", ""),
    (b"MAIL FROM:x@y", "x@y", ""),
    (b"MAIL FROM: x@y", "x@y", ""),
    (b"MAIL FROM:x@y SIZE=1000", "x@y", "SIZE=1000"),
    (b"MAIL FROM:<x@y> SIZE=1000 BODY=8BITMIME", "x@y", "SIZE=1000 BODY=8BITMIME"),
    (b"MAIL FROM:<x@y>  SIZE=1000 BODY=8BITMIME  ", "x@y", "SIZE=1000 BODY=8BITMIME"),
    (b"MAIL FROM:<> BODY=7BIT SMTPUTF8", "", "BODY=7BIT SMTPUTF8"),
    (b"MAIL  FROM:<x@y>", "x@y", ""),
    (b"mail from:<x@y>", "x@y", ""),
    (b"MaIl FrOm:<x@y> size=10", "x@y", "size=10"),
    ("MAIL FROM:<jöhn@exämple.br>".encode(), "jöhn@exämple.br", ""),
]


@pytest.mark.parametrize(("line", "address", "params"), MAIL_FORMS)
def test_mail_from_forms_reported_as_sent(line, address, params):
    msg = Client().message(b"hi\r\n.\r\n", mail=line.partition(b":")[2])
    assert msg.mail_from == address
    assert msg.mail_params == params
    assert msg.rcpt_to == ("c@d.example",)


@pytest.mark.parametrize(("line", "address", "params"), MAIL_FORMS)
def test_mail_from_forms_with_own_verb_spelling(line, address, params):
    c = Client()
    assert c.send(line + b"\r\n") == ([], MAIL_OK)
    assert c.send(b"RCPT TO:<r@x>\r\nDATA\r\n") == ([], RCPT_OK + GO_AHEAD)
    (msg,), _ = c.send(b"z\r\n.\r\n")
    assert (msg.mail_from, msg.mail_params) == (address, params)


RCPT_FORMS = [
    (b"RCPT TO:<x@y>", "x@y"),
    (b"RCPT TO: <x@y>", "x@y"),
    (b"RCPT TO:<@route1,@route2:user@host>", "@route1,@route2:user@host"),
    (b"RCPT TO:<user%host@relay>", "user%host@relay"),
    (b'RCPT TO:<"john doe"@x>', '"john doe"@x'),
    (b'RCPT TO:<"a>b"@x>', '"a>b"@x'),
    (b"RCPT TO:<host!user>", "host!user"),
    (b"RCPT TO:<user@[192.0.2.1]>", "user@[192.0.2.1]"),
    (b"RCPT TO:<user@[IPv6:2001:db8::1]>", "user@[IPv6:2001:db8::1]"),
    (b"RCPT TO:x@y", "x@y"),
    (b"RCPT TO:<x@y> NOTIFY=NEVER", "x@y"),
    (b"rcpt to:<postmaster>", "postmaster"),
    ("RCPT TO:<jöhn@exämple.br>".encode(), "jöhn@exämple.br"),
]


@pytest.mark.parametrize(("line", "address"), RCPT_FORMS)
def test_rcpt_to_forms_reported_as_sent(line, address):
    c = Client()
    assert c.send(b"MAIL FROM:<a@b>\r\n") == ([], MAIL_OK)
    assert c.send(line + b"\r\n") == ([], RCPT_OK)
    assert c.send(b"RCPT TO:<second@x>\r\nDATA\r\n") == ([], RCPT_OK + GO_AHEAD)
    (msg,), _ = c.send(b"z\r\n.\r\n")
    assert msg.rcpt_to == (address, "second@x")


@pytest.mark.parametrize(
    ("line", "detail", "reply"),
    [
        (b"MAIL FROM", "bad MAIL syntax", b"501 5.5.4 Syntax: MAIL FROM:<address>"),
        (b"MAIL FROM:", "bad MAIL syntax", b"501 5.5.4 Syntax: MAIL FROM:<address>"),
        (b"MAIL FROM:<x@y", "bad sender address", b"501 5.1.7 Bad sender address syntax"),
        (b'MAIL FROM:<"x>@y>', "bad sender address", b"501 5.1.7 Bad sender address syntax"),
        (b"MAIL TO:<x@y>", "bad MAIL syntax", b"501 5.5.4 Syntax: MAIL FROM:<address>"),
        (b"MAIL", "bad MAIL syntax", b"501 5.5.4 Syntax: MAIL FROM:<address>"),
    ],
)
def test_mail_syntax_errors(line, detail, reply):
    c = Client()
    assert c.send(line + b"\r\n") == ([error(detail, reply, line)], reply + b"\r\n")
    # no transaction was opened
    assert c.send(b"RCPT TO:<a@b>\r\n")[1] == b"503 5.5.1 Error: need MAIL command\r\n"


@pytest.mark.parametrize(
    ("line", "detail", "reply"),
    [
        (b"RCPT TO:<>", "bad recipient address", b"501 5.1.3 Bad recipient address syntax"),
        (b"RCPT TO:", "bad RCPT syntax", b"501 5.5.4 Syntax: RCPT TO:<address>"),
        (b"RCPT TO:<x", "bad recipient address", b"501 5.1.3 Bad recipient address syntax"),
        (b"RCPT FROM:<x@y>", "bad RCPT syntax", b"501 5.5.4 Syntax: RCPT TO:<address>"),
    ],
)
def test_rcpt_syntax_errors(line, detail, reply):
    c = Client()
    c.send(b"MAIL FROM:<a@b>\r\n")
    assert c.send(line + b"\r\n") == ([error(detail, reply, line)], reply + b"\r\n")
    # still in MAIL state: DATA has no valid recipient
    assert c.send(b"DATA\r\n")[1] == NO_RCPT


def test_lower_case_session():
    c = Client()
    assert c.send(b"ehlo client\r\n") == ([Helo("EHLO", "client")], EHLO_REPLY)
    assert c.send(b"mail from:<a@b>\r\n") == ([], MAIL_OK)
    assert c.send(b"rcpt to:<c@d>\r\n") == ([], RCPT_OK)
    assert c.send(b"data\r\n") == ([], GO_AHEAD)
    assert c.send(b"hello\r\n.\r\n") == (
        [MessageReceived("client", "a@b", "", ("c@d",), b"hello\r\n")],
        b"",
    )
    assert c.stored("X") == ([], b"250 2.0.0 Ok: queued as X\r\n")
    assert c.send(b"rset\r\nnoop\r\nvrfy root\r\nquit\r\n") == (
        [Quit()],
        OK + OK + b"252 2.0.0 root\r\n" + BYE,
    )


def test_bare_lf_everywhere():
    c = Client()
    assert c.send(b"EHLO client\n") == ([Helo("EHLO", "client")], EHLO_REPLY)
    assert c.send(b"MAIL FROM:<a@b>\nRCPT TO:<c@d>\nDATA\n") == ([], MAIL_OK + RCPT_OK + GO_AHEAD)
    events, out = c.send(b"Subject: lf\n\nline one\n..dot\nline two\n.\n")
    assert out == b""
    assert events == [
        MessageReceived("client", "a@b", "", ("c@d",), b"Subject: lf\n\nline one\n.dot\nline two\n")
    ]
    assert c.stored("Q") == ([], b"250 2.0.0 Ok: queued as Q\r\n")
    assert c.send(b"QUIT\n") == ([Quit()], BYE)


def test_crlf_commands_lf_terminator_and_mixed_body():
    c = Client()
    c.open_data()
    (msg,), out = c.send(b"a\r\nb\nc\r\n.\n")
    assert out == b""
    assert msg.data == b"a\r\nb\nc\r\n"


# --- HELO requirement -------------------------------------------------------------------------


def test_missing_helo_accepted_by_default():
    c = Client()
    msg = c.message(b"x\r\n.\r\n")
    assert msg.helo is None


def test_missing_helo_refused_when_required():
    c = Client(require_helo=True)
    reply = b"503 5.5.1 Error: send HELO/EHLO first"
    assert c.send(b"MAIL FROM:<a@b>\r\n") == (
        [error("no HELO", reply, b"MAIL FROM:<a@b>")],
        reply + b"\r\n",
    )
    assert c.send(b"RCPT TO:<c@d>\r\n")[1] == b"503 5.5.1 Error: need MAIL command\r\n"
    assert c.send(b"HELO me\r\n") == ([Helo("HELO", "me")], b"250 mx.example.net\r\n")
    msg = c.message(b"x\r\n.\r\n")
    assert msg.helo == "me"


# --- message content --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "stored"),
    [
        (b"..x\r\n", b".x\r\n"),  # first line starts with ".."
        (b"..\r\n", b".\r\n"),  # first line is only ".."
        (b"a\r\n..x\r\nb\r\n", b"a\r\n.x\r\nb\r\n"),
        (b"a\r\n..\r\nb\r\n", b"a\r\n.\r\nb\r\n"),  # a line that is only ".."
        (b"a\r\n...\r\n", b"a\r\n..\r\n"),  # only the first dot goes
        (b"..\r\n..\r\n..\r\n", b".\r\n.\r\n.\r\n"),
        (b"a\n..b\n..\n", b"a\n.b\n.\n"),  # bare LF lines
        (b"a..b\r\nc ..\r\n", b"a..b\r\nc ..\r\n"),  # dots not at a line start stay
        (b" ..\r\n\t.\r\n", b" ..\r\n\t.\r\n"),
        (b"\r\n\r\n", b"\r\n\r\n"),
        (b"no final newline\r\n", b"no final newline\r\n"),
        (b"\x80\xff\x00caf\xc3\xa9\x1b[0m\r\n", b"\x80\xff\x00caf\xc3\xa9\x1b[0m\r\n"),  # 8-bit
        (b"cr\ronly\r\n\r\r\n", b"cr\ronly\r\n\r\r\n"),  # stray CRs stay
        (b"x\r\n..\rnot the end\r\n", b"x\r\n.\rnot the end\r\n"),
    ],
)
def test_data_unstuffed_and_otherwise_exact(wire, stored):
    msg = Client().message(wire + b".\r\n")
    assert msg.data == stored


def test_data_single_leading_dot_dropped_per_rfc5321_4_5_2():
    # A client that does not dot-stuff sends ".x"; Postfix stores "x".
    msg = Client().message(b"a\r\n.x\r\n.hidden\r\n.\r\n")
    assert msg.data == b"a\r\nx\r\nhidden\r\n"


@pytest.mark.parametrize("terminator", [b".\r\n", b".\n"])
def test_empty_message(terminator):
    c = Client()
    c.open_data()
    assert c.send(terminator) == (
        [MessageReceived(None, "a@b.example", "", ("c@d.example",), b"")],
        b"",
    )
    assert c.stored("E") == ([], b"250 2.0.0 Ok: queued as E\r\n")


def test_message_of_only_blank_line():
    assert Client().message(b"\r\n.\r\n").data == b"\r\n"


@pytest.mark.parametrize(
    "not_end",
    [b" .\r\n", b". \r\n", b".x\r\n", b"..\r\n", b".\r\r\n", b"x.\r\n"],
)
def test_lines_that_look_like_terminators_are_content(not_end):
    c = Client()
    c.open_data()
    assert c.send(b"a\r\n" + not_end) == ([], b"")
    (msg,), _ = c.send(b".\r\n")
    assert msg.data.startswith(b"a\r\n")


SPLIT_SESSIONS = {
    "crlf": (
        b"EHLO client.example\r\n"
        b"MAIL FROM:<a@b.example> SIZE=100\r\n"
        b"RCPT TO:<c@d.example>\r\n"
        b"RCPT TO:<e@f.example>\r\n"
        b"DATA\r\n"
        b"Subject: x\r\n\r\n..dot\r\n..\r\n..\rx\r\n .\r\n\x80\xff\r\n"
        b".\r\n"
        b"NOOP\r\n"
        b"QUIT\r\n",
        {},
        [
            Helo("EHLO", "client.example"),
            MessageReceived(
                "client.example",
                "a@b.example",
                "SIZE=100",
                ("c@d.example", "e@f.example"),
                b"Subject: x\r\n\r\n.dot\r\n.\r\n.\rx\r\n .\r\n\x80\xff\r\n",
            ),
            Quit(),
        ],
    ),
    "lf": (
        b"HELO c\nMAIL FROM:<>\nRCPT TO:<r@x>\nDATA\n..a\nb\n.\nQUIT\n",
        {},
        [
            Helo("HELO", "c"),
            MessageReceived("c", "", "", ("r@x",), b".a\nb\n"),
            Quit(),
        ],
    ),
    "two messages, auth, empty body": (
        b"EHLO c\r\nAUTH LOGIN\r\ndXNlcg==\r\ncGFzcw==\r\n"
        b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n.\r\n"
        b"MAIL FROM:<e@f>\r\nRCPT TO:<g@h>\r\nDATA\r\nsecond\r\n.\r\n"
        b"QUIT\r\n",
        {"tls": TLS},
        [
            Helo("EHLO", "c"),
            AuthAttempt("LOGIN", "user", "pass"),
            MessageReceived("c", "a@b", "", ("c@d",), b""),
            MessageReceived("c", "e@f", "", ("g@h",), b"second\r\n"),
            Quit(),
        ],
    ),
    "errors and limits": (
        b"XYZZY\r\n\r\nRCPT TO:<a@b>\r\n" + b"L" * 80 + b"\r\nVRFY root\r\n"
        b"MAIL FROM:<a@b>\r\nRCPT TO:<1@x>\r\nRCPT TO:<2@x>\r\nRCPT TO:<3@x>\r\n"
        b"DATA\r\n" + b"z" * 150 + b"\r\n.\r\nMAIL FROM:<a@b> SIZE=101\r\nQUIT\r\n",
        {"limits": SmtpLimits(max_line=64, max_message_size=50, max_recipients=2)},
        [
            ClientError("unknown command", b"500 5.5.2 Error: command not recognized", b"XYZZY"),
            ClientError("empty command", b"500 5.5.2 Error: bad syntax", b""),
            ClientError(
                "RCPT before MAIL", b"503 5.5.1 Error: need MAIL command", b"RCPT TO:<a@b>"
            ),
            ClientError("unknown command", b"500 5.5.2 Error: command not recognized", b"L" * 64),
            Rejected("rcpt", 452, "recipients"),
            Rejected("data", 552, "size"),
            Rejected("mail", 552, "size"),
            Quit(),
        ],
    ),
}


@pytest.mark.parametrize("name", list(SPLIT_SESSIONS))
def test_every_split_gives_same_events_and_output(name):
    stream, kw, expected = SPLIT_SESSIONS[name]
    events, out = drive([stream], **kw)
    assert events == expected
    assert out.endswith(BYE)
    for i in range(1, len(stream)):
        assert drive([stream[:i], stream[i:]], **kw) == (events, out), i
    assert drive([stream[i : i + 1] for i in range(len(stream))], **kw) == (events, out)


@pytest.mark.parametrize("terminator", [b"\r\n.\r\n", b"\n.\n", b"\n.\r\n"])
def test_terminator_split_at_every_pair_of_points(terminator):
    head = b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nbody"
    stream = head + terminator + b"QUIT\r\n"
    expected = drive([stream])
    assert expected[0][0] == MessageReceived(
        None, "a@b", "", ("c@d",), b"body" + terminator[: terminator.index(b".")]
    )
    lo, hi = len(head) - 2, len(head) + len(terminator) + 2
    for i in range(lo, hi):
        for j in range(i, hi):
            assert drive([stream[:i], stream[i:j], stream[j:]]) == expected, (i, j)


@pytest.mark.parametrize("size", [98, 99, 100, 101, 102])
@pytest.mark.parametrize("eol", [b"\r\n", b"\n"])
def test_size_limit_does_not_depend_on_where_reads_split(size, eol):
    limits = SmtpLimits(max_message_size=100)
    content = b"a" * (size - len(eol)) + eol
    stream = b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n" + content + b"." + eol
    whole = drive([stream], limits=limits)
    if size <= 100:
        assert whole[0] == [MessageReceived(None, "a@b", "", ("c@d",), content)]
    else:
        assert whole[0] == [Rejected("data", 552, "size")]
    for i in range(len(stream) - len(content) - 3, len(stream)):
        assert drive([stream[:i], stream[i:]], limits=limits) == whole, i
    assert drive([stream[i : i + 1] for i in range(len(stream))], limits=limits) == whole


# --- pipelining, storage handshake --------------------------------------------------------


def test_pipelined_session_waits_for_storage():
    c = Client()
    rest = b"MAIL FROM:<e@f>\r\nRCPT TO:<g@h>\r\nQUIT\r\n"
    session = (
        b"EHLO client\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"
        b"Subject: pipelined\r\n\r\nbody\r\n.\r\n" + rest
    )
    events, out = c.send(session)
    assert events == [
        Helo("EHLO", "client"),
        MessageReceived("client", "a@b", "", ("c@d",), b"Subject: pipelined\r\n\r\nbody\r\n"),
    ]
    assert out == EHLO_REPLY + MAIL_OK + RCPT_OK + GO_AHEAD  # nothing after 354 yet
    assert c.server.waiting
    assert not c.server.closing
    assert c.server.buffered == len(rest)
    assert c.server.data_to_send() == b""
    events, out = c.stored("ABC123")
    assert events == [Quit()]
    assert out == b"250 2.0.0 Ok: queued as ABC123\r\n" + MAIL_OK + RCPT_OK + BYE
    assert c.server.closing
    assert not c.server.waiting


def test_two_pipelined_messages_are_acknowledged_one_by_one():
    c = Client()
    one = b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nfirst\r\n.\r\n"
    two = b"MAIL FROM:<e@f>\r\nRCPT TO:<g@h>\r\nDATA\r\nsecond\r\n.\r\n"
    events, out = c.send(one + two + b"QUIT\r\n")
    assert events == [MessageReceived(None, "a@b", "", ("c@d",), b"first\r\n")]
    assert out == MAIL_OK + RCPT_OK + GO_AHEAD
    events, out = c.stored("Q1")
    assert events == [MessageReceived(None, "e@f", "", ("g@h",), b"second\r\n")]
    assert out == b"250 2.0.0 Ok: queued as Q1\r\n" + MAIL_OK + RCPT_OK + GO_AHEAD
    assert c.server.waiting
    assert c.stored("Q2") == ([Quit()], b"250 2.0.0 Ok: queued as Q2\r\n" + BYE)


def test_queued_reply_only_after_message_stored():
    c = Client()
    c.open_data()
    events, out = c.send(b"x\r\n.\r\n")
    assert len(events) == 1 and out == b""
    assert c.server.waiting
    assert c.server.messages == 0
    assert c.stored("4F1A2B3C4D") == ([], b"250 2.0.0 Ok: queued as 4F1A2B3C4D\r\n")
    assert c.server.messages == 1
    assert c.server.data_to_send() == b""


def test_many_messages_per_connection():
    c = Client()
    c.send(b"EHLO bulk\r\n")
    for n in range(50):
        msg = c.message(
            f"Subject: {n}\r\n\r\nbody {n}\r\n.\r\n".encode(),
            mail=f"<s{n}@x>".encode(),
            rcpts=(f"<r{n}@y>".encode(), b"<all@y>"),
        )
        assert msg == MessageReceived(
            "bulk",
            f"s{n}@x",
            "",
            (f"r{n}@y", "all@y"),
            f"Subject: {n}\r\n\r\nbody {n}\r\n".encode(),
        )
        assert c.stored(f"ID{n}") == ([], f"250 2.0.0 Ok: queued as ID{n}\r\n".encode())
    assert c.server.messages == 50


def test_message_deferred_gives_452_and_session_goes_on():
    c = Client(limits=SmtpLimits(max_messages=1))
    c.open_data()
    c.send(b"lost\r\n.\r\n")
    assert c.deferred() == ([Rejected(stage="data", code=451, why="storage")], DEFERRED)
    assert not c.server.waiting
    assert c.server.messages == 0
    # the transaction is over
    assert c.send(b"RCPT TO:<c@d>\r\n")[1] == b"503 5.5.1 Error: need MAIL command\r\n"
    # a deferred message does not count against max_messages: the retry is taken
    msg = c.message(b"retry\r\n.\r\n")
    assert msg.data == b"retry\r\n"
    assert c.stored("R") == ([], b"250 2.0.0 Ok: queued as R\r\n")


def test_message_deferred_then_pipelined_commands_run():
    c = Client()
    c.send(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\nNOOP\r\nQUIT\r\n")
    assert c.deferred() == (
        [Rejected("data", 451, "storage"), Quit()],
        DEFERRED + OK + BYE,
    )


# --- simple commands --------------------------------------------------------------------------


def test_rset_clears_the_transaction():
    c = Client()
    c.send(b"MAIL FROM:<a@b>\r\nRCPT TO:<old@x>\r\n")
    assert c.send(b"RSET\r\n") == ([], OK)
    assert c.send(b"DATA\r\n")[1] == NEED_RCPT
    assert c.send(b"RCPT TO:<x@y>\r\n")[1] == b"503 5.5.1 Error: need MAIL command\r\n"
    msg = c.message(b"x\r\n.\r\n", mail=b"<new@b>", rcpts=(b"<new@x>",))
    assert (msg.mail_from, msg.rcpt_to) == ("new@b", ("new@x",))


def test_rset_before_anything_and_after_helo():
    c = Client(require_helo=True)
    assert c.send(b"RSET\r\n") == ([], OK)
    assert c.send(b"MAIL FROM:<a@b>\r\n")[1] == b"503 5.5.1 Error: send HELO/EHLO first\r\n"
    c.send(b"HELO x\r\n")
    assert c.send(b"RSET\r\n") == ([], OK)
    assert c.send(b"MAIL FROM:<a@b>\r\n") == ([], MAIL_OK)


def test_ehlo_resets_the_transaction():
    c = Client()
    c.send(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n")
    assert c.send(b"EHLO again\r\n") == ([Helo("EHLO", "again")], EHLO_REPLY)
    assert c.send(b"DATA\r\n")[1] == NEED_RCPT


def test_noop_keeps_the_transaction():
    c = Client()
    c.send(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n")
    assert c.send(b"NOOP\r\n") == ([], OK)
    assert c.send(b"NOOP anything at all\r\n") == ([], OK)  # as the real Postfix 3.7 answers
    assert c.send(b"DATA\r\n") == ([], GO_AHEAD)


def test_vrfy():
    c = Client()
    assert c.send(b"VRFY postmaster@example.com\r\n") == (
        [],
        b"252 2.0.0 postmaster@example.com\r\n",
    )
    assert c.send(b"vrfy  root \r\n") == ([], b"252 2.0.0 root\r\n")
    reply = b"501 5.5.4 Syntax: VRFY address [SMTPUTF8]"
    assert c.send(b"VRFY\r\n") == ([error("VRFY without address", reply, b"VRFY")], reply + b"\r\n")
    assert c.send(b"VRFY   \r\n")[1] == reply + b"\r\n"


def test_vrfy_of_an_unknown_local_user_is_refused_as_postfix_does():
    # local_recipient_maps: a bare name that is no account or alias of a fresh Debian.
    reply = (
        b"550 5.1.1 <nosuchuser>: Recipient address rejected: User unknown in local recipient table"
    )
    line = b"VRFY nosuchuser"
    assert Client().send(line + b"\r\n") == (
        [error("VRFY unknown local user", reply, line)],
        reply + b"\r\n",
    )


@pytest.mark.parametrize(
    "arg",
    [b"a\rb@x", b"a\x00b\x1b[2J@x", "é".encode() * 600 + b"@x", b"x" * 600 + b"@x"],
    ids=["bare-cr", "control", "8bit-long", "ascii-long"],
)
def test_vrfy_reply_is_always_well_formed(arg):
    # The echo is escaped to printable ASCII and cut, so the line stays within 512 octets.
    _, out = Client().send(b"VRFY " + arg + b"\r\n")
    assert out.startswith((b"252 2.0.0 ", b"500 5.5.2 ", b"550 5.1.1 ")), out
    assert len(out) <= 512 and out.count(b"\r\n") == 1


def test_vrfy_undecodable_bytes_escaped():
    assert Client().send(b"VRFY \xff@x\r\n")[1] == b"500 5.5.2 Error: bad UTF-8 syntax\r\n"
    assert Client().send(b"VRFY \xc3\xa9@x\r\n") == ([], b"252 2.0.0 \\xe9@x\r\n")


def test_help_is_an_unknown_command_for_postfix():
    # Postfix has no HELP (nmap -sC prints whatever HELP returns).
    assert Client().send(b"HELP\r\n") == (
        [error("unknown command", UNKNOWN, b"HELP")],
        UNKNOWN + b"\r\n",
    )


def test_quit_closes_and_nothing_after():
    c = Client()
    assert c.send(b"QUIT\r\n") == ([Quit()], BYE)
    assert c.server.closing
    assert c.send(b"NOOP\r\nMAIL FROM:<a@b>\r\n") == ([], b"")
    assert c.send(b"x" * 10_000) == ([], b"")


def test_quit_inside_pipelined_chunk_stops_processing():
    c = Client()
    assert c.send(b"NOOP\r\nQUIT\r\nNOOP\r\nXYZZY\r\n") == ([Quit()], OK + BYE)
    assert c.send(b"NOOP\r\n") == ([], b"")


def test_input_after_closing_is_not_buffered():
    c = Client()
    c.send(b"QUIT\r\n" + b"x" * 100_000)
    for _ in range(10):
        c.send(b"y" * 100_000)
    assert c.server.buffered <= c.server.max_line


def test_connection_lost_drops_everything():
    c = Client()
    c.open_data()
    c.send(b"partial body")
    c.server.connection_lost()
    assert c.server.buffered == 0
    assert c.send(b"\r\n.\r\nQUIT\r\n") == ([], b"")


def test_client_supplied_hostname_cannot_forge_reply_lines():
    c = Client("evil\r\n250 forged")
    assert c.banner == b"220 evil\\x0d\\x0a250 forged ESMTP Postfix (Debian/GNU)\r\n"
    _, out = c.send(b"EHLO x\r\n")
    assert out.count(b"\n") == EHLO_REPLY.count(b"\n")
    _, out = c.send(b"HELO y\r\n")
    assert out == b"250 evil\\x0d\\x0a250 forged\r\n"


def test_surrogate_escaped_hostname_does_not_raise():
    c = Client("h\udcffst.example")  # a host name decoded with surrogateescape
    assert c.banner == b"220 h\\udcffst.example ESMTP Postfix (Debian/GNU)\r\n"
    _, out = c.send(b"EHLO x\r\nHELO y\r\n")
    assert out.count(b"\n") == EHLO_REPLY.count(b"\n") + 1


# --- AUTH -------------------------------------------------------------------------------------


def authed_client() -> Client:
    """A session under TLS, where Postfix (smtpd_tls_auth_only) offers AUTH."""
    c = Client(tls=TLS, tls_available=True)
    c.send(b"EHLO client\r\n")
    return c


def test_auth_is_offered_only_under_tls():
    _, out = Client(tls_available=True).send(b"EHLO x\r\n")
    assert b"AUTH" not in out and b"250-STARTTLS\r\n" in out
    reply = b"503 5.5.1 Error: authentication not enabled"
    line = b"AUTH PLAIN " + b64(b"\0u\0p")
    assert Client().send(b"EHLO x\r\n" + line + b"\r\n")[1].endswith(reply + b"\r\n")
    _, out = Client(tls=TLS, tls_available=True).send(b"EHLO x\r\n")
    assert b"250-AUTH PLAIN LOGIN\r\n250-AUTH=PLAIN LOGIN\r\n" in out
    assert b"STARTTLS" not in out


def test_auth_always_and_never():
    _, out = Client(auth_offer="always").send(b"EHLO x\r\n")
    assert b"250-AUTH PLAIN LOGIN\r\n" in out
    _, out = Client(tls=TLS, auth_offer="never").send(b"EHLO x\r\n")
    assert b"AUTH" not in out


def test_auth_plain_initial_response():
    c = authed_client()
    assert c.send(b"AUTH PLAIN " + b64(b"\0user\0secret") + b"\r\n") == (
        [AuthAttempt("PLAIN", "user", "secret")],
        AUTH_FAILED,
    )


def test_auth_plain_with_authzid_and_8bit():
    c = authed_client()
    events, out = c.send(b"auth plain " + b64(b"admin\0us\xc3\xa9r\0p\xffss") + b"\r\n")
    assert (events, out) == ([AuthAttempt("PLAIN", "usér", "p\\xffss")], AUTH_FAILED)


def test_auth_plain_continuation():
    c = authed_client()
    assert c.send(b"AUTH PLAIN\r\n") == ([], b"334 \r\n")
    assert c.send(b64(b"\0alice\0pw") + b"\r\n") == (
        [AuthAttempt("PLAIN", "alice", "pw")],
        AUTH_FAILED,
    )


def test_auth_login_two_prompts():
    c = authed_client()
    assert c.send(b"AUTH LOGIN\r\n") == ([], USER_PROMPT)
    assert c.send(b64(b"bob") + b"\r\n") == ([], PASS_PROMPT)
    assert c.send(b64(b"hunter2") + b"\r\n") == (
        [AuthAttempt("LOGIN", "bob", "hunter2")],
        AUTH_FAILED,
    )


def test_auth_login_pipelined_in_one_chunk():
    c = authed_client()
    chunk = b"AUTH LOGIN\r\n" + b64(b"bob") + b"\r\n" + b64(b"pw") + b"\r\nNOOP\r\n"
    assert c.send(chunk) == (
        [AuthAttempt("LOGIN", "bob", "pw")],
        USER_PROMPT + PASS_PROMPT + AUTH_FAILED + OK,
    )


def test_auth_login_initial_username():
    c = authed_client()
    assert c.send(b"AUTH LOGIN " + b64(b"carol") + b"\r\n") == ([], PASS_PROMPT)
    assert c.send(b64(b"pw") + b"\r\n") == ([AuthAttempt("LOGIN", "carol", "pw")], AUTH_FAILED)


def test_auth_failure_then_transaction():
    # An open relay needs no AUTH: the refused login loses nothing.
    c = authed_client()
    c.send(b"AUTH PLAIN " + b64(b"\0u\0p") + b"\r\n")
    assert c.message(b"x\r\n.\r\n").helo == "client"


def test_auth_answer_follows_the_persona():
    c = Client(tls=TLS, tls_available=True, dialect=dialect("exim"))
    c.send(b"EHLO client\r\n")
    assert c.send(b"AUTH PLAIN " + b64(b"\0u\0p") + b"\r\n") == (
        [AuthAttempt("PLAIN", "u", "p")],
        b"535 Incorrect authentication data\r\n",
    )


ABORTED = b"501 5.7.0 Authentication aborted"


@pytest.mark.parametrize(
    "steps",
    [
        [b"AUTH PLAIN"],
        [b"AUTH LOGIN"],
        [b"AUTH LOGIN", b64(b"user")],
        [b"AUTH LOGIN " + b64(b"user")],
    ],
)
def test_auth_cancelled_with_star(steps):
    c = authed_client()
    for step in steps:
        events, _ = c.send(step + b"\r\n")
        assert events == []
    assert c.send(b"*\r\n") == ([error("AUTH cancelled", ABORTED, b"*")], ABORTED + b"\r\n")
    # a new exchange is allowed, and commands work again
    assert c.send(b"NOOP\r\n") == ([], OK)
    assert c.send(b"AUTH PLAIN " + b64(b"\0u\0p") + b"\r\n")[1] == AUTH_FAILED


def test_auth_plain_initial_star_cancels():
    c = authed_client()
    assert c.send(b"AUTH PLAIN *\r\n") == (
        [error("AUTH cancelled", ABORTED, b"AUTH PLAIN *")],
        ABORTED + b"\r\n",
    )


CANNOT_DECODE = b"501 5.5.2 Cannot decode response"


@pytest.mark.parametrize(
    ("steps", "detail", "raw"),
    [
        ([b"AUTH PLAIN !!!notbase64"], "bad AUTH response", b"!!!notbase64"),
        ([b"AUTH PLAIN", b"dXNlcg"], "bad AUTH response", b"dXNlcg"),  # missing padding
        ([b"AUTH PLAIN " + b64(b"user\0pass")], "bad AUTH PLAIN", b64(b"user\0pass")),  # one NUL
        ([b"AUTH PLAIN", b""], "bad AUTH PLAIN", b""),
        ([b"AUTH LOGIN", b"%%%"], "bad AUTH response", b"%%%"),
        ([b"AUTH LOGIN", b64(b"u"), b"#"], "bad AUTH response", b"#"),
        ([b"AUTH LOGIN !"], "bad AUTH response", b"!"),
    ],
)
def test_auth_bad_base64(steps, detail, raw):
    c = authed_client()
    for step in steps[:-1]:
        c.send(step + b"\r\n")
    del raw  # the whole line sent is what the error event keeps
    assert c.send(steps[-1] + b"\r\n") == (
        [error(detail, CANNOT_DECODE, steps[-1])],
        CANNOT_DECODE + b"\r\n",
    )
    assert c.send(b"NOOP\r\n") == ([], OK)  # back to commands


@pytest.mark.parametrize(
    ("line", "detail", "reply"),
    [
        (
            b"AUTH CRAM-MD5",
            "unsupported AUTH mechanism",
            b"535 5.7.8 Error: authentication failed: Invalid authentication mechanism",
        ),
        (
            b"AUTH XOAUTH2 dG9rZW4=",
            "unsupported AUTH mechanism",
            b"535 5.7.8 Error: authentication failed: Invalid authentication mechanism",
        ),
        (b"AUTH", "bad AUTH syntax", b"501 5.5.4 Syntax: AUTH mechanism"),
    ],
)
def test_auth_unknown_mechanism(line, detail, reply):
    c = authed_client()
    assert c.send(line + b"\r\n") == ([error(detail, reply, line)], reply + b"\r\n")


def test_auth_before_ehlo():
    c = Client(tls=TLS)
    reply = b"503 5.5.1 Error: send HELO/EHLO first"
    line = b"AUTH PLAIN " + b64(b"\0u\0p")
    assert c.send(line + b"\r\n") == ([error("AUTH before HELO", reply, line)], reply + b"\r\n")


@pytest.mark.parametrize("setup", [b"MAIL FROM:<a@b>\r\n", b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"])
def test_auth_during_transaction_refused(setup):
    c = authed_client()
    c.send(setup)
    reply = b"503 5.5.1 Error: MAIL transaction in progress"
    assert c.send(b"AUTH LOGIN\r\n") == (
        [error("AUTH in a transaction", reply, b"AUTH LOGIN")],
        reply + b"\r\n",
    )


# --- client errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "detail", "reply"),
    [
        (b"XYZZY foo", "unknown command", UNKNOWN),
        (b"EXPN root", "unknown command", UNKNOWN),
        (b"STARTTLS", "STARTTLS not offered", b"502 5.5.1 Error: command not implemented"),
        (b"BDAT 10 LAST", "BDAT out of order", b"503 5.5.1 Error: need RCPT command"),
        # Postfix checks UTF-8 over the whole line read, past a NUL (a TLS ClientHello on
        # port 25 gets this); then the command ends at the NUL.
        (b"\x00\xff", "bad UTF-8", b"500 5.5.2 Error: bad UTF-8 syntax"),
        (b"\x00\x0c\x00", "empty command", b"500 5.5.2 Error: bad syntax"),
        (b"MAIL\xff FROM:<a@b>", "bad UTF-8", b"500 5.5.2 Error: bad UTF-8 syntax"),
    ],
)
def test_unknown_and_refused_commands(line, detail, reply):
    assert Client().send(line + b"\r\n") == ([error(detail, reply, line)], reply + b"\r\n")


FORBIDDEN = b"221 2.7.0 Error: I can break rules, too. Goodbye.\r\n"


@pytest.mark.parametrize(
    "line",
    [
        b"GET / HTTP/1.0",
        b"post /x HTTP/1.1",
        b"CONNECT mx.example.org:25 HTTP/1.0",
        b"Subject: hello",
        b"1234",
        b"\x16\x03\x01\x02",  # a TLS ClientHello's first bytes, up to its first NUL
        b"<html>",
    ],
)
def test_postfix_forbidden_commands_end_the_session(line):
    # smtpd_forbidden_commands = CONNECT GET POST regexp:{{/^[^A-Z]/ Bogus}}, and is_header().
    c = Client()
    events, out = c.send(line + b"\r\nNOOP\r\n")
    assert out == FORBIDDEN
    assert Rejected("connect", 221, "forbidden") in events
    assert c.server.closing


@pytest.mark.parametrize("line", [b"", b"   ", b"\t"])
def test_empty_line(line):
    reply = b"500 5.5.2 Error: bad syntax"
    assert Client().send(line + b"\r\n") == ([error("empty command", reply, line)], reply + b"\r\n")


@pytest.mark.parametrize(
    ("setup", "line", "detail", "reply"),
    [
        (b"", b"RCPT TO:<a@b>", "RCPT before MAIL", b"503 5.5.1 Error: need MAIL command"),
        (b"", b"DATA", "DATA without MAIL", b"503 5.5.1 Error: need RCPT command"),
        (
            b"MAIL FROM:<a@b>\r\n",
            b"DATA",
            "DATA without RCPT",
            b"554 5.5.1 Error: no valid recipients",
        ),
        (
            b"MAIL FROM:<a@b>\r\n",
            b"MAIL FROM:<c@d>",
            "nested MAIL",
            b"503 5.5.1 Error: nested MAIL command",
        ),
        (
            b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n",
            b"MAIL FROM:<e@f>",
            "nested MAIL",
            b"503 5.5.1 Error: nested MAIL command",
        ),
    ],
)
def test_out_of_order_commands(setup, line, detail, reply):
    c = Client()
    c.send(b"EHLO x\r\n" + setup)
    assert c.send(line + b"\r\n") == ([error(detail, reply, line)], reply + b"\r\n")


def test_nested_mail_keeps_the_first_transaction():
    c = Client()
    c.send(b"MAIL FROM:<first@x>\r\nRCPT TO:<r@x>\r\nMAIL FROM:<second@x>\r\nDATA\r\n")
    (msg,), _ = c.send(b"x\r\n.\r\n")
    assert msg.mail_from == "first@x"


# --- limits -----------------------------------------------------------------------------------


def test_recipient_limit():
    c = Client(limits=SmtpLimits(max_recipients=3))
    c.send(b"MAIL FROM:<a@b>\r\n")
    for n in range(3):
        assert c.send(f"RCPT TO:<r{n}@x>\r\n".encode()) == ([], RCPT_OK)
    too_many = b"452 4.5.3 Error: too many recipients\r\n"
    assert c.send(b"RCPT TO:<r3@x>\r\n") == ([Rejected("rcpt", 452, "recipients")], too_many)
    assert c.send(b"RCPT TO:<r4@x>\r\nRCPT TO:<r5@x>\r\n") == ([], too_many + too_many)
    assert c.send(b"DATA\r\n") == ([], GO_AHEAD)
    (msg,), _ = c.send(b"x\r\n.\r\n")
    assert msg.rcpt_to == ("r0@x", "r1@x", "r2@x")
    c.stored("Q")
    # a new transaction starts counting afresh, and reports its own rejection once
    c.send(b"MAIL FROM:<a@b>\r\n")
    events, out = c.send(b"RCPT TO:<1@x>\r\nRCPT TO:<2@x>\r\nRCPT TO:<3@x>\r\nRCPT TO:<4@x>\r\n")
    assert (events, out) == ([Rejected("rcpt", 452, "recipients")], RCPT_OK * 3 + too_many)


def test_size_parameter_over_limit_refused_at_mail():
    c = Client(limits=SmtpLimits(max_message_size=1000))
    assert c.send(b"MAIL FROM:<a@b> SIZE=1001\r\n") == ([Rejected("mail", 552, "size")], TOO_BIG)
    assert c.send(b"MAIL FROM:<a@b> BODY=8BITMIME size=99999999999999999999\r\n") == (
        [Rejected("mail", 552, "size")],
        TOO_BIG,
    )
    assert c.send(b"RCPT TO:<c@d>\r\n")[1] == NEED_MAIL
    assert c.send(b"MAIL FROM:<a@b> SIZE=1000\r\n") == ([], MAIL_OK)


def test_size_parameter_not_a_number_ignored():
    c = Client(limits=SmtpLimits(max_message_size=10))
    assert c.send(b"MAIL FROM:<a@b> SIZE=lots\r\n") == ([], MAIL_OK)


def test_message_over_size_refused_after_terminator():
    c = Client(limits=SmtpLimits(max_message_size=1000))
    c.open_data()
    assert c.send(b"x" * 999 + b"\r\n") == ([], b"")  # 1001 bytes of content
    assert c.send(b".\r\n") == ([Rejected("data", 552, "size")], TOO_BIG)
    assert not c.server.waiting
    # the session goes on, with a fresh transaction
    assert c.send(b"RCPT TO:<c@d>\r\n")[1] == b"503 5.5.1 Error: need MAIL command\r\n"
    assert c.message(b"small\r\n.\r\n").data == b"small\r\n"


def test_message_at_size_limit_accepted():
    c = Client(limits=SmtpLimits(max_message_size=1000))
    c.open_data()
    (msg,), _ = c.send(b"y" * 998 + b"\r\n.\r\n")
    assert len(msg.data) == 1000


@pytest.mark.parametrize("chunk_size", [1, 7, 100, 999, 1000, 1001, 4096, 10_000])
def test_oversize_message_streamed_stays_bounded(chunk_size):
    limit = 1000
    c = Client(limits=SmtpLimits(max_message_size=limit))
    c.open_data()
    content = (b"0123456789abcdef.\r\n..\r\n" * 500)[: 10 * limit]
    for i in range(0, len(content), chunk_size):
        assert c.send(content[i : i + chunk_size]) == ([], b"")
        assert c.server.buffered <= limit + 8
    assert c.send(b"\r\n.\r\nNOOP\r\n") == ([Rejected("data", 552, "size")], TOO_BIG + OK)
    assert c.server.buffered == 0


def test_terminator_found_after_truncation_when_it_straddles_reads():
    c = Client(limits=SmtpLimits(max_message_size=10))
    c.open_data()
    for piece in (b"z" * 50 + b"\r", b"\n", b".", b"\r", b"\n"):
        events, out = c.send(piece)
    assert (events, out) == ([Rejected("data", 552, "size")], TOO_BIG)


def test_oversize_tail_is_not_a_false_terminator():
    # After truncation only a tail is kept; ".\r\n" at its start must not end the message.
    c = Client(limits=SmtpLimits(max_message_size=10))
    c.open_data()
    assert c.send(b"z" * 50 + b"x.\r\nY") == ([], b"")
    assert c.send(b"more") == ([], b"")
    assert c.send(b"\r\n.\r\n") == ([Rejected("data", 552, "size")], TOO_BIG)


@pytest.mark.parametrize("chunk_size", [1000, 4096, 100_000])
def test_line_too_long_is_cut_and_run_as_postfix_does(chunk_size):
    # Postfix reads line_length_limit bytes, skips the rest of the line and runs what it read.
    c = Client()
    line = b"MAIL FROM:<" + b"A" * 100_000
    for i in range(0, len(line), chunk_size):
        assert c.send(line[i : i + chunk_size]) == ([], b"")
        assert c.server.buffered <= c.server.max_line
    reply = b"501 5.1.7 Bad sender address syntax"
    events, out = c.send(b">\r\nNOOP\r\n")
    assert [e.detail for e in events] == ["bad sender address"]
    assert out == reply + b"\r\n" + OK
    assert c.message(b"x\r\n.\r\n").mail_from == "a@b.example"


def test_line_too_long_in_one_chunk_with_lf():
    c = Client(limits=SmtpLimits(max_line=64))
    assert c.send(b"RSET " + b"x" * 100 + b"\r\nNOOP\r\n")[1] == (
        b"501 5.5.4 Syntax: RSET\r\n" + OK
    )
    assert c.send(b"EHLO " + b"h" * 100 + b"\r\n") == ([Helo("EHLO", "h" * 59)], EHLO_REPLY)


def test_line_too_long_refused_by_a_persona_that_refuses_it():
    c = Client(limits=SmtpLimits(max_line=64), dialect=dialect("sendmail"))
    c.server.resume()  # the banner waits out greet_pause
    c.server.data_to_send()
    events, out = c.send(b"NOOP " + b"x" * 100 + b"\r\nNOOP\r\n")
    assert out.startswith(b"421 4.7.0 ") and b"Command too long" in out
    assert events[0].detail == "line too long"


def test_a_long_line_read_in_pieces_by_exim():
    """smtp_read_command(): a full buffer is an unrecognized command, the byte after it is
    lost, the rest of the line is read as the next command: the 4th unknown one closes."""
    c = Client(limits=SmtpLimits(max_line=64), dialect=dialect("exim"))
    events, out = c.send(b"NOOP " + b"x" * 100 + b"\r\nNOOP\r\n")
    # 64 bytes, one lost, then "xxx..." (40 bytes) as a command of its own.
    assert out == b"500 unrecognized command\r\n" * 2 + b"250 OK\r\n"
    assert [e.detail for e in events] == ["unknown command"] * 2
    events, out = c.send(b"NOOP " + b"x" * 400 + b"\r\n")
    assert out == b"500 unrecognized command\r\n500 Too many unrecognized commands\r\n"
    assert c.server.closing


def test_line_length_boundary():
    c = Client(limits=SmtpLimits(max_line=64))
    ok_line = b"HELO " + b"x" * (64 - 6)  # 63 bytes, 64 with its CR
    assert c.send(ok_line + b"\r\n")[0] == [Helo("HELO", "x" * 58)]
    long_line = b"HELO " + b"y" * (64 - 4)  # 65 bytes
    assert c.send(long_line + b"\n")[0] == [Helo("HELO", "y" * 59)]


def test_long_lines_inside_data_are_fine():
    c = Client(limits=SmtpLimits(max_line=64))
    c.open_data()
    (msg,), _ = c.send(b"h" * 5000 + b"\r\n.\r\n")
    assert msg.data == b"h" * 5000 + b"\r\n"


def test_error_limit():
    c = Client(limits=SmtpLimits(max_errors=3))
    reply = UNKNOWN
    assert c.send(b"BAD1\r\n") == ([error("unknown command", reply, b"BAD1")], reply + b"\r\n")
    assert c.send(b"\r\n")[1] == b"500 5.5.2 Error: bad syntax\r\n"
    assert not c.server.closing
    events, out = c.send(b"BAD3\r\nNOOP\r\n")
    assert events == [
        error("unknown command", reply, b"BAD3"),
        Rejected("connect", 421, "errors"),
    ]
    assert out == reply + b"\r\n421 4.7.0 mx.example.net Error: too many errors\r\n"
    assert c.server.closing
    assert c.send(b"NOOP\r\n") == ([], b"")


def test_error_limit_counts_every_kind_of_client_error():
    c = Client(limits=SmtpLimits(max_errors=4, max_line=16))
    c.send(b"RCPT TO:<a@b>\r\nVRFY\r\n")
    c.send(b"ETRN x\r\n")  # before EHLO
    assert not c.server.closing
    events, out = c.send(b"L" * 40 + b"\r\n")
    assert events[-1] == Rejected("connect", 421, "errors")
    assert out.endswith(b"421 4.7.0 mx.example.net Error: too many errors\r\n")
    assert c.server.closing


def test_postfix_error_delay_and_hard_limit():
    """smtpd_soft_error_limit 10: from the 10th error on every reply waits 1 s (the machine
    holds it for the adapter's timer); smtpd_hard_error_limit 20: then 421 and close."""
    c = Client()
    _, out = c.send(b"XX\r\n" * 9)
    assert out == (UNKNOWN + b"\r\n") * 9 and c.server.delay == 0
    _, out = c.send(b"XX\r\n")
    assert out == UNKNOWN + b"\r\n"  # the 10th error's reply is not yet delayed
    _, out = c.send(b"NOOP\r\n")
    assert out == b"" and c.server.delay == 1.0 and c.server.waiting  # the 250 is held
    assert c.server.resume() == [] and c.server.data_to_send() == OK
    assert c.server.delay == 0
    for _n in range(11, 20):
        _events, out = c.send(b"XX\r\n")
        assert out == b"" and c.server.delay == 1.0
        c.server.resume()
        assert c.server.data_to_send() == UNKNOWN + b"\r\n"
    _events, out = c.send(b"XX\r\n")  # the 20th error
    c.server.resume()
    # 20 errors: the 421 is itself delayed, sent with the 20th error's reply (no read between
    # them, so no flush), then the session ends.
    assert c.server.data_to_send() == b"" and c.server.delay == 1.0 and not c.server.closing
    c.server.resume()
    assert c.server.data_to_send() == (
        UNKNOWN + b"\r\n421 4.7.0 mx.example.net Error: too many errors\r\n"
    )
    assert c.server.closing


def test_replies_pipelined_before_a_delay_wait_with_it():
    """A real server flushes its replies only when it waits for input: what a client
    pipelined is answered all at once after the delay, never the first replies before it."""
    c = Client()
    c.send(b"XX\r\n" * 9)
    _, out = c.send(b"XX\r\nNOOP\r\nNOOP\r\n")
    assert out == b"" and c.server.delay == 1.0
    c.server.resume()
    assert c.server.data_to_send() == b"" and c.server.delay == 1.0  # the second NOOP's wait
    c.server.resume()
    assert c.server.data_to_send() == UNKNOWN + b"\r\n" + OK + OK


def test_exim_error_limits():
    c = Client(dialect=dialect("exim"), client_ip="192.0.2.1")
    c.send(b"EHLO c\r\n")
    # three unknown commands answered, the fourth ends the session (smtp_max_unknown_commands)
    _, out = c.send(b"X1\r\nX2\r\nX3\r\nX4\r\n")
    assert out == b"500 unrecognized command\r\n" * 3 + b"500 Too many unrecognized commands\r\n"
    assert c.server.closing
    # smtp_max_synprot_errors: the fourth protocol error's reply goes on, then the end
    c = Client(dialect=dialect("exim"), client_ip="192.0.2.1")
    c.send(b"EHLO c\r\n")
    _, out = c.send(b"RCPT TO:<a@b>\r\n" * 4)
    assert out == b"503 sender not yet given\r\n" * 3 + (
        b"503-sender not yet given\r\n503 Too many syntax or protocol errors\r\n"
    )
    assert c.server.closing


def test_messages_per_connection_limit():
    c = Client(limits=SmtpLimits(max_messages=2), client_ip="192.0.2.1")
    for n in range(2):
        c.message(b"x\r\n.\r\n")
        c.stored(f"Q{n}")
    line = b"MAIL FROM:<a@b>"
    reply = b"450 4.7.1 Error: too much mail from 192.0.2.1"
    assert c.send(line + b"\r\nNOOP\r\n") == (
        [Rejected("mail", 450, "messages"), error("too many messages", reply, line)],
        reply + b"\r\n" + OK,
    )
    assert not c.server.closing  # Postfix's rate limit refuses, the session goes on


def test_nothing_after_closing_even_data():
    c = Client(limits=SmtpLimits(max_errors=1))
    c.send(b"?\r\n")
    assert c.server.closing
    for data in (b"EHLO x\r\n", b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\n", b"\n"):
        assert c.send(data) == ([], b"")


def test_the_setup_shared_by_sessions_lands_on_the_attributes_it_names():
    """SmtpServer takes what a persona and its limits imply from one cached tuple, unpacked
    by position: each field must reach the attribute of its own name, for every persona."""
    from spampot.dialects import available, raw
    from spampot.protocols.smtp import _setup

    names = [n for n in available() if raw(n).get("kind") == "smtp"]
    assert "postfix" in names and "exim" in names
    limits = SmtpLimits(max_line=700, max_message_size=5_000_000, max_errors=7)
    for name in names:
        for require_helo in (False, True):
            server = SmtpServer(HOST, dialect(name), limits, require_helo=require_helo)
            setup = _setup(dialect(name), limits, require_helo)
            for field, value in setup._asdict().items():
                attr = field if field == "require_helo" else f"_{field}"
                assert getattr(server, attr) == value, (name, field)
