"""The per-command counters the personas keep, measured against the real Debian 12 servers
(tests/differential/probes_designed.toml: smtp/noop-flood, smtp/talks-before-banner,
smtp/errors-forgiven-after-mail, smtp/bdat-bare-cr): Sendmail's checksmtpattack() slowdowns
and greet_pause early talkers, Postfix's junk-command limit and forgiven errors, Exim's
nonmail-command limit, and how each counts a BDAT message's bytes. Every delay is held for
the adapter's timer, never slept."""

from __future__ import annotations

from spampot.protocols.smtp import HOLD_LIMIT, MessageReceived, Rejected
from test_smtp_protocol import Client, dialect

OK_POSTFIX = b"250 2.0.0 Ok\r\n"


def greeted(name: str) -> Client:
    c = Client(dialect=dialect(name), client_ip="192.0.2.7")
    if c.server.delay:  # Sendmail's greet_pause
        c.server.resume()
        c.server.data_to_send()
    c.send(b"EHLO client.example\r\n")
    return c


def test_sendmail_slows_repeated_noops_exponentially_on_the_timer():
    """MaxNOOPCommands 20: the 20th NOOP's reply waits 1 s, the 21st 2 s, then 4, 8, 16 ...;
    the replies before it wait with it (Sendmail flushes only when it waits for input)."""
    c = greeted("sendmail")
    _, out = c.send(b"NOOP\r\n" * 24)
    assert out == b"" and c.server.delay == 1.0
    waits = []
    while c.server.delay:
        waits.append(c.server.delay)
        c.server.resume()
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0]  # 31 s in all, as the real one took
    assert c.server.data_to_send() == b"250 2.0.0 OK\r\n" * 24
    _, out = c.send(b"NOOP\r\n")
    assert out == b"" and c.server.delay == 32.0


def test_sendmail_slows_vrfy_and_expn_together():
    c = greeted("sendmail")
    for _ in range(5):
        assert c.send(b"VRFY root\r\n")[1].startswith(b"250 ")
    assert c.send(b"EXPN root\r\n")[1] == b"" and c.server.delay == 1.0  # the 6th of the two


def test_a_delay_holds_at_most_an_output_buffer():
    """A connection in a delay costs no more than HOLD_LIMIT and the reply that waits: the
    older replies are written as a full output buffer would be."""
    c = greeted("sendmail")
    c.send(b"NOOP\r\n" * 19)
    _, out = c.send(b"HELP\r\n" * 10 + b"NOOP\r\n")
    assert c.server.delay == 1.0
    assert len(out) > 0 and c.server.buffered <= HOLD_LIMIT


def test_sendmail_answers_a_client_that_talks_before_the_banner():
    c = Client(dialect=dialect("sendmail"), client_ip="192.0.2.7")
    assert c.banner == b"" and c.server.delay == 1.0
    _events, out = c.send(b"EHLO x.example\r\nMAIL FROM:<a@b.example>\r\nNOOP\r\nRSET\r\nQUIT\r\n")
    assert out == b""  # nothing before the greeting's second is up
    c.server.resume()
    assert c.server.data_to_send() == (
        b"554 mx.example.net ESMTP not accepting messages\r\n"
        b"554 5.5.0 SMTP protocol error\r\n"
        b"550 5.0.0 Command rejected\r\n"
        b"250 2.0.0 OK\r\n"
        b"250 2.0.0 Reset state\r\n"
        b"221 2.0.0 mx.example.net closing connection\r\n"
    )
    assert c.server.closing
    # A client that waits for the greeting is answered as usual.
    c = greeted("sendmail")
    assert c.send(b"MAIL FROM:<a@b.example>\r\n")[1].startswith(b"250 2.1.0 ")


def test_sendmail_early_talker_meets_the_bad_command_limit():
    c = Client(dialect=dialect("sendmail"), client_ip="192.0.2.7")
    c.send(b"VRFY root\r\n" * 26)
    c.server.resume()
    out = c.server.data_to_send()
    assert out.count(b"550 5.0.0 Command rejected\r\n") == 25
    assert out.endswith(b"421 4.7.0 mx.example.net Too many bad commands; closing connection\r\n")
    assert c.server.closing


def test_postfix_junk_commands_past_100_count_as_errors():
    """smtpd_junk_command_limit: EHLO and 100 NOOPs are free; from then on each NOOP is also
    an error (counted after its reply), the 11th such reply is delayed, and at 20 errors the
    session ends: 120 NOOPs answered, then 421, as the real Postfix does."""
    c = greeted("postfix")
    _, out = c.send(b"NOOP\r\n" * 110)
    assert out == OK_POSTFIX * 110 and not c.server.delay
    answered = 110
    for _ in range(40):  # bounded: the session ends long before
        if c.server.closing:
            break
        if c.server.delay:
            c.server.resume()
            out = c.server.data_to_send()
        else:
            _, out = c.send(b"NOOP\r\n")
            assert out == b"" and c.server.delay == 1.0  # every reply now waits 1 s
        answered += out.count(OK_POSTFIX)
    assert answered == 120
    assert out.endswith(b"421 4.7.0 mx.example.net Error: too many errors\r\n")


def test_postfix_forgives_errors_once_a_message_is_queued():
    c = greeted("postfix")
    c.send(b"FOO\r\n" * 9)
    for line in (b"MAIL FROM:<a@b.example>", b"RCPT TO:<v@example.org>", b"DATA"):
        c.send(line + b"\r\n")
    c.send(b"Subject: x\r\n\r\nHello.\r\n.\r\n")
    assert c.stored("4AB3C2D1E0")[1].startswith(b"250 2.0.0 Ok: queued as")
    _, out = c.send(b"FOO\r\n" * 9)
    assert out.count(b"500 5.5.2") == 9 and not c.server.delay  # counting starts again
    exim = greeted("exim")  # Exim forgives nothing: its limit (3) is per session
    exim.send(b"FOO\r\n" * 4)
    assert exim.server.closing


def test_a_queued_message_waits_behind_a_delayed_reply_of_the_same_read():
    """Past Postfix's soft error limit every reply waits for the timer; a message pipelined
    in the same read is queued (and its errors forgiven) while DATA's reply still waits, and
    its "queued as" goes out after that reply, never ahead of it."""
    c = greeted("postfix")
    c.send(b"FOO\r\n" * 10)
    events, out = c.send(
        b"MAIL FROM:<a@b.example>\r\nRCPT TO:<v@example.org>\r\nDATA\r\nHi\r\n.\r\n"
    )
    assert out == b""
    server, sent = c.server, b""
    for _ in range(10):  # the adapter: the timer fires, the disk acknowledges
        if any(isinstance(e, MessageReceived) for e in events):
            events = server.message_stored("4AB3C2D1E0")
        elif server.delay:
            events = server.resume()
        else:
            break
        sent += server.data_to_send()
    assert sent.endswith(
        b"250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
        b"250 2.0.0 Ok: queued as 4AB3C2D1E0\r\n"
    )


def test_exim_ends_the_session_at_the_eleventh_nonmail_command():
    c = greeted("exim")
    events, out = c.send(b"NOOP\r\n" * 11)
    assert out == b"250 OK\r\n" * 10 + b"554 Too many nonmail commands\r\n"
    assert Rejected("connect", 554, "errors") in events and c.server.closing
    # RSET, HELO/EHLO and STARTTLS are free once per message.
    c = greeted("exim")
    _, out = c.send(b"RSET\r\n" + b"NOOP\r\n" * 10)
    assert out == b"250 Reset OK\r\n" + b"250 OK\r\n" * 10 and not c.server.closing
    assert c.send(b"EHLO again.example\r\n")[1] == b"554 Too many nonmail commands\r\n"


def bdat(name: str, *chunks: bytes) -> bytes:
    c = greeted(name)
    for line in (b"MAIL FROM:<a@b.example>", b"RCPT TO:<v@example.org>"):
        c.send(line + b"\r\n")
    out = b""
    for chunk in chunks:
        out += c.send(chunk)[1]
        if c.server.waiting:
            out += c.stored("4AB3C2D1E0")[1]
    return out


def test_bdat_sizes_as_each_server_counts_them():
    assert bdat("postfix", b"BDAT 7 LAST\r\nHello.\n").startswith(b"250 2.0.0 Ok: 8 bytes queued")
    assert bdat("postfix", b"BDAT 7\r\nHello.\r", b"BDAT 3 LAST\r\n\nA\n") == (
        b"250 2.0.0 Ok: 7 bytes\r\n250 2.0.0 Ok: 11 bytes queued as 4AB3C2D1E0\r\n"
    )
    assert bdat("exim", b"BDAT 7 LAST\r\nHello.\n").startswith(b"250- 7 byte chunk, total 9\r\n")
    assert bdat("exim", b"BDAT 7\r\nHello.\r", b"BDAT 3 LAST\r\n\nA\n").startswith(
        b"250 7 byte chunk received\r\n250- 3 byte chunk, total 12\r\n"
    )
    # A body that starts with a header: no blank line added.
    head = b"Subject: x\r\n\r\nHello.\r\n"
    assert bdat("exim", b"BDAT %d LAST\r\n" % len(head) + head).startswith(
        b"250- 22 byte chunk, total 22\r\n"
    )
