"""How each persona reads MAIL/RCPT paths (smtp_address.py), its HELP topics and VRFY of local
names, and the sensor's cap on a message apart from the SIZE a persona advertises.

The expected replies are what the real Debian 12 servers answered in the differential suite
(tests/differential/), written out here so a change to the rules shows at once."""

from __future__ import annotations

import pytest

from spampot.analysis.content.limits import DEFAULT_LIMITS
from spampot.protocols.smtp import MessageReceived, Rejected, SmtpLimits
from spampot.protocols.smtp_address import Fault, Path, check_path, sender_refused_at_rcpt
from test_smtp_protocol import Client, dialect

HOST = "mx.example.net"


def session(name: str, *lines: bytes, limits: SmtpLimits | None = None) -> tuple[list, bytes]:
    """A fresh session of persona ``name``: every line sent; the replies to the last one."""
    c = Client(dialect=dialect(name), limits=limits, client_ip="192.0.2.7")
    if c.server.delay:  # Sendmail's greet_pause
        c.server.resume()
        c.server.data_to_send()
    for line in lines[:-1]:
        c.send(line + b"\r\n")
    return c.send(lines[-1] + b"\r\n")


EXIM = [
    (b"HELO c.example", b"MAIL FROM:<a@b.example> BODY=8BITMIME",
     b"501 <a@b.example> BODY=8BITMIME: malformed address: BODY=8BITMIME may not follow "
     b"<a@b.example> \r\n"),
    (b"EHLO c.example", b"MAIL FROM:<a@b.example> BODY=8BITMIME", b"250 OK\r\n"),
    (b"EHLO c.example", b"MAIL FROM:<a@b.example> SMTPUTF8",
     b"501 SMTPUTF8 used when not advertised\r\n"),
    (b"EHLO c.example", b"MAIL FROM:<a@b.example> RET=HDRS",
     b"501 <a@b.example> RET=HDRS: malformed address: RET=HDRS may not follow <a@b.example> "
     b"\r\n"),
    (b"EHLO c.example", b"MAIL FROM:<" + b"a" * 300 + b"@example.net>",
     b"501 <" + b"a" * 300 + b"@example.net>: address is ridiculously long: " + b"a" * 64
     + b"...\r\n"),
    (b"EHLO c.example", b"MAIL FROM:<a@b.example", b"501 <a@b.example: '>' missing at end of "
     b"address\r\n"),
    (b"EHLO c.example", b"MAIL FROM:<a@[192.0.2.1]>",
     b"501 <a@[192.0.2.1]>: domain literals not allowed\r\n"),
    (b"EHLO c.example", b"MAIL FROM:<alice>",
     b"501 <alice>: sender address must contain a domain\r\n"),
    (b"EHLO c.example", b"MAIL FROM:<>", b"250 OK\r\n"),
]  # fmt: skip

EXIM_RCPT = [
    (b"RCPT TO:<victim@>", b"501 <victim@>: domain missing or malformed\r\n"),
    (b"RCPT TO:<victim%example.org@mx.example.org>", b"550 restricted characters in address\r\n"),
    (b"RCPT TO:<example.org!victim>",
     b"501 <example.org!victim>: recipient address must contain a domain\r\n"),
    (b"RCPT TO:<postmaster>", b"250 Accepted\r\n"),
    (b"RCPT TO:<a@[127.0.0.1]>", b"501 <a@[127.0.0.1]>: domain literals not allowed\r\n"),
    (b"RCPT TO:<@relay.example:victim@example.org>", b"250 Accepted\r\n"),
    (b'RCPT TO:<"victim"@example.org> NOTIFY=NEVER',
     b'501 <"victim"@example.org> NOTIFY=NEVER: malformed address: NOTIFY=NEVER may not '
     b'follow <"victim"@example.org> \r\n'),
    (b"RCPT TO:<victim@example.org>", b"250 Accepted\r\n"),
]  # fmt: skip


@pytest.mark.parametrize(("greeting", "mail", "reply"), EXIM)
def test_exim_reads_the_sender_as_exim_does(greeting, mail, reply):
    assert session("exim", greeting, mail)[1] == reply


@pytest.mark.parametrize(("rcpt", "reply"), EXIM_RCPT)
def test_exim_reads_the_recipient_as_exim_does(rcpt, reply):
    _events, out = session("exim", b"EHLO c.example", b"MAIL FROM:<a@b.example>", rcpt)
    assert out == reply


def test_exim_echoes_a_long_command_whole_but_bounded():
    """Exim echoes the whole path (its command buffer bounds it); every reply line stays
    within the persona's echo_limit, whatever the client sends."""
    path = b"<" + b"b" * 10000 + b"@example.net>"
    _events, out = session("exim", b"EHLO c.example", b"MAIL FROM:" + path)
    assert out.startswith(b"501 " + path + b": address is ridiculously long: ")  # whole
    # A longer line is read in pieces of the command buffer: no reply can echo more.
    _events, out = session("exim", b"EHLO c.example", b"MAIL FROM:<" + b"b" * 100_000 + b">")
    assert out == b"500 unrecognized command\r\n" * 3 + b"500 Too many unrecognized commands\r\n"
    assert max(len(x) for x in out.split(b"\r\n")) <= dialect("exim").echo_limit


SENDMAIL = [
    (b"MAIL FROM spammer@example.net",
     b'501 5.5.2 Syntax error in parameters scanning "FROM"\r\n'),
    (b"MAIL FROM:<" + b"a" * 300 + b"@example.net>",
     b"553 5.1.0 <" + b"a" * 99 + b"..." + b"a" * 87 + b"@example.net>... prescan: token too "
     b"long\r\n"),
    (b"MAIL FROM:<a@b.example> SMTPUTF8", b"555 5.5.4 SMTPUTF8 parameter unrecognized\r\n"),
    (b"MAIL FROM:<a@b.example> SIZE=999999999999", b"250 2.1.0 <a@b.example>... Sender ok\r\n"),
]  # fmt: skip

SENDMAIL_RCPT = [
    (b"RCPT TO:<victim@example.org>", b"250 2.1.5 <victim@example.org>... Recipient ok\r\n"),
    (b"RCPT TO:<victim@>", b"553 5.1.3 <victim@>... Hostname required\r\n"),
    (b"RCPT TO:<a@b.example@[127.0.0.1]>",
     b"553 5.1.3 <a@b.example@[127.0.0.1]>... Invalid route address\r\n"),
    (b"RCPT TO:<postmaster>", b"250 2.1.5 <postmaster>... Recipient ok (will queue)\r\n"),
    (b"RCPT TO:<anyone@mx.example.net>",
     b"250 2.1.5 <anyone@mx.example.net>... Recipient ok (will queue)\r\n"),
    (b"RCPT TO:<v%example.org@mx.example.net>",
     b"250 2.1.5 <v%example.org@mx.example.net>... Recipient ok\r\n"),
]  # fmt: skip


@pytest.mark.parametrize(("mail", "reply"), SENDMAIL)
def test_sendmail_reads_the_sender_as_sendmail_does(mail, reply):
    assert session("sendmail", b"EHLO c.example", mail)[1] == reply


@pytest.mark.parametrize(("rcpt", "reply"), SENDMAIL_RCPT)
def test_sendmail_reads_the_recipient_as_sendmail_does(rcpt, reply):
    _events, out = session("sendmail", b"EHLO c.example", b"MAIL FROM:<a@b.example>", rcpt)
    assert out == reply


@pytest.mark.parametrize("sender", [b"<a@[127.0.0.1]>", b"<a@localhost>", b"<a@LOCALHOST.>"])
def test_sendmail_refuses_a_local_sender_at_each_recipient(sender):
    """FEATURE(delay_checks): check_mail runs at RCPT; a remote client's sender at the host's
    own loopback names gets 553 5.5.4 there, at every recipient, and the session goes on."""
    c = Client(dialect=dialect("sendmail"), client_ip="192.0.2.7")
    c.server.resume()
    for line in (b"EHLO c.example", b"MAIL FROM:" + sender):
        c.send(line + b"\r\n")
    for _ in range(2):
        _events, out = c.send(b"RCPT TO:<v@example.org>\r\n")
        assert out == (
            b"553 5.5.4 <v@example.org>... Real domain name required for sender address\r\n"
        )
    assert not c.server.closing
    assert not sender_refused_at_rcpt("sendmail", b"a@example.org", HOST)
    assert not sender_refused_at_rcpt("exim", b"a@localhost", HOST)


def test_sendmail_vrfy_expn_and_help_topics():
    assert session("sendmail", b"EHLO c", b"VRFY root")[1] == b"250 2.1.5 <root@mx.example.net>\r\n"
    assert session("sendmail", b"EHLO c", b"VRFY nosuchuser")[1] == (
        b"250 2.1.5 <nosuchuser@mx.example.net>\r\n"
    )
    assert session("sendmail", b"EHLO c", b"EXPN postmaster")[1] == (
        b"250 2.1.5 <postmaster@mx.example.net>\r\n"
    )
    assert session("sendmail", b"HELP MAIL")[1] == (
        b"214-2.0.0 MAIL From:<sender> [ <parameters> ]\r\n"
        b"214-2.0.0 \tSpecifies the sender.  Parameters are ESMTP extensions.\r\n"
        b'214-2.0.0 \tSee "HELP DSN" for details.\r\n'
        b"214 2.0.0 End of HELP info\r\n"
    )
    assert session("sendmail", b"HELP NOSUCHTOPICATALL")[1] == (
        b'504 5.3.0 HELP topic "nosuchtopi" unknown\r\n'
    )
    assert session("sendmail", b"HELP")[1].startswith(b"214-2.0.0 This is sendmail version 8")


def test_postfix_refuses_an_empty_domain():
    _events, out = session("postfix", b"EHLO c", b"MAIL FROM:<a@b.example>", b"RCPT TO:<victim@>")
    assert out == b"501 5.1.3 Bad recipient address syntax\r\n"
    assert session("postfix", b"EHLO c", b"MAIL FROM:<a@>")[1] == (
        b"501 5.1.7 Bad sender address syntax\r\n"
    )


def test_check_path_plain_and_unknown_styles_keep_the_generic_reading():
    split = Path(b"a@b", b"")
    assert check_path("plain", "mail", b"<a@b>", split, esmtp=True, params=(), host=HOST) == split
    assert check_path("postfix", "rcpt", b"<a@b>", split, esmtp=True, params=(), host=HOST) == (
        split
    )
    fault = check_path("exim", "rcpt", b"<a@>", None, esmtp=True, params=(), host=HOST)
    assert fault == Fault("addr_domain", {"arg": b"<a@>"})


# --- the sensor's cap on one message, apart from the persona's SIZE ---------------------------


def test_a_provider_persona_advertises_its_size_but_holds_at_most_the_cap():
    """Google says SIZE 157286400; the sensor holds at most smtp.message_cap of a message,
    then answers Google's own size refusal at the end of DATA and stores nothing."""
    cap = 64 * 1024
    c = Client(dialect=dialect("google"), limits=SmtpLimits(message_cap=cap))
    assert b"250-SIZE 157286400\r\n" in c.send(b"EHLO c.example\r\n")[1]
    # MAIL's SIZE= is checked against what is advertised, as the real MX would.
    assert c.send(b"MAIL FROM:<a@b.example> SIZE=100000000\r\n")[1].startswith(b"250 ")
    c.send(b"RCPT TO:<v@example.org>\r\n")
    assert c.send(b"DATA\r\n")[1].startswith(b"354 ")
    line = b"x" * 998 + b"\r\n"
    for _ in range(4 * cap // len(line)):
        events, out = c.send(line)
        assert c.server.buffered <= cap + 1024  # held bytes stay bounded
    events, out = c.send(b".\r\n")
    assert out.startswith(b"552 5.3.4 Your message exceeded Google's message size limits.")
    assert Rejected("data", 552, "size") in events
    assert not [e for e in events if isinstance(e, MessageReceived)]


def test_the_cap_also_bounds_bdat_and_a_message_within_it_is_stored():
    c = Client(dialect=dialect("outlook"), limits=SmtpLimits(message_cap=1000))
    for line in (b"EHLO c", b"MAIL FROM:<a@b.example>", b"RCPT TO:<v@example.org>"):
        c.send(line + b"\r\n")
    events, out = c.send(b"BDAT 600\r\n" + b"y" * 600)
    assert out.startswith(b"250 ")
    events, out = c.send(b"BDAT 600 LAST\r\n" + b"y" * 600)
    assert Rejected("data", 552, "size") in events
    for line in (b"MAIL FROM:<a@b.example>", b"RCPT TO:<v@example.org>"):
        c.send(line + b"\r\n")
    events, out = c.send(b"BDAT 900 LAST\r\n" + b"z" * 900)
    assert [e.data for e in events if isinstance(e, MessageReceived)] == [b"z" * 900]


def test_the_cap_is_the_one_source_of_the_content_bound():
    assert DEFAULT_LIMITS.max_message_bytes == SmtpLimits().message_cap == 32 * 1024 * 1024
