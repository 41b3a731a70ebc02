"""Hypothesis against the SMTP machine: hostile bytes in any chunking never break it.

Examples per test come from SPAMPOT_FUZZ_EXAMPLES (default 300, so CI stays fast); a long run
sets e.g. SPAMPOT_FUZZ_EXAMPLES=100000.
"""

from __future__ import annotations

import base64
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import event as note_event
from hypothesis import strategies as st

from spampot.protocols.common import ClientError
from spampot.protocols.smtp import MessageReceived, Rejected, SmtpLimits, SmtpServer
from test_smtp_protocol import assert_replies

HOST = "mx.example.net"
EXAMPLES = int(os.environ.get("SPAMPOT_FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# Bytes the machine may hold beyond its limits: the DATA sentinel and a partial terminator.
SLACK = 8


def bound(limits: SmtpLimits) -> int:
    return max(limits.max_line, limits.max_message_size) + SLACK


class Run:
    """Feeds one machine like the adapter does and checks every invariant after every read."""

    def __init__(self, limits: SmtpLimits, require_helo: bool, defer: list[bool]) -> None:
        self.server = SmtpServer(HOST, None, limits, require_helo=require_helo)
        self.limits = limits
        self.defer = defer
        self.events: list = []
        self.out = bytearray()
        self.stored = 0
        self.deferred = 0
        self._take_output()

    def _take_output(self) -> None:
        out = self.server.data_to_send()
        assert_replies(out)
        self.out += out

    def _resolve(self, events: list) -> None:
        """Answer every MessageReceived at once, as the adapter does after its write."""
        while events:
            self.events += events
            more: list = []
            for event in events:
                if isinstance(event, MessageReceived):
                    assert event is events[-1]  # nothing is parsed while the disk works
                    assert self.server.waiting
                    n = self.stored + self.deferred
                    if self.defer and self.defer[n % len(self.defer)]:
                        self.deferred += 1
                        more += self.server.message_deferred()
                    else:
                        self.stored += 1
                        more += self.server.message_stored("ID")
            events = more

    def feed(self, chunk: bytes) -> None:
        server = self.server
        assert not server.waiting
        was_closing = server.closing
        events = server.receive_data(chunk)
        if was_closing:
            assert events == []
            assert server.data_to_send() == b""
            return
        self._resolve(events)
        self._take_output()
        assert not server.waiting
        # Invariant 3: memory is bounded by the limits, whatever the client sends.
        assert server.buffered <= bound(self.limits), server.buffered
        if server.closing:
            assert server.buffered == 0  # nothing after QUIT or a 421 is kept

    def check_events(self) -> None:
        limits = self.limits
        out = bytes(self.out)
        for event in self.events:
            if isinstance(event, MessageReceived):
                assert 1 <= len(event.rcpt_to) <= limits.max_recipients
                assert len(event.data) <= limits.max_message_size
            elif isinstance(event, ClientError):
                assert event.reply + b"\r\n" in out
                assert len(event.raw) <= 256
            elif isinstance(event, Rejected):
                assert (event.stage, event.code, event.why) in {
                    ("mail", 552, "size"),
                    ("mail", 421, "messages"),
                    ("rcpt", 452, "recipients"),
                    ("data", 552, "size"),
                    ("data", 452, "storage"),
                    ("connect", 421, "errors"),
                }
        queued = out.count(b"250 2.0.0 Ok: queued as ID\r\n")
        assert queued == self.stored == self.server.messages
        assert self.server.messages <= limits.max_messages
        assert out.count(b"452 4.3.1 Insufficient system storage\r\n") == self.deferred


limit_values = st.builds(
    SmtpLimits,
    max_line=st.integers(8, 300),
    max_message_size=st.integers(0, 2000),
    max_recipients=st.integers(1, 4),
    max_messages=st.integers(1, 4),
    max_errors=st.integers(1, 40),
)
any_limits = st.one_of(st.just(SmtpLimits()), limit_values)


def split(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(stream) + 1) for c in cuts})
    chunks, last = [], 0
    for p in points:
        chunks.append(stream[last:p])
        last = p
    chunks.append(stream[last:])
    return chunks


# --- arbitrary bytes --------------------------------------------------------------------------

FRAGMENTS = [
    b"\r\n",
    b"\n",
    b"\r",
    b".",
    b"\r\n.\r\n",
    b"\n.\n",
    b"EHLO x\r\n",
    b"HELO x\n",
    b"MAIL FROM:<a@b>\r\n",
    b"RCPT TO:<c@d>\r\n",
    b"DATA\r\n",
    b"AUTH LOGIN\r\n",
    b"AUTH PLAIN\r\n",
    b"RSET\r\n",
    b"QUIT\r\n",
]
noise = st.lists(st.one_of(st.binary(max_size=64), st.sampled_from(FRAGMENTS)), max_size=40)


@FUZZ
@given(
    pieces=noise,
    cuts=st.lists(st.integers(min_value=0), max_size=20),
    limits=any_limits,
    require_helo=st.booleans(),
)
def test_arbitrary_bytes_in_arbitrary_chunks(pieces, cuts, limits, require_helo):
    stream = b"".join(pieces)
    run = Run(limits, require_helo, defer=[])
    for chunk in split(stream, cuts):
        run.feed(chunk)
    run.check_events()


@FUZZ
@given(chunks=st.lists(st.binary(max_size=512), max_size=30), limits=any_limits)
def test_raw_random_chunks(chunks, limits):
    run = Run(limits, False, defer=[])
    for chunk in chunks:
        run.feed(chunk)
    run.check_events()


# --- plausible sessions -----------------------------------------------------------------------

ADDRESSES = [
    b"<a@b.example>",
    b"<>",
    b" <x@y>",
    b"<@r1,@r2:u@h>",
    b"<u%h@relay>",
    b'<"john doe"@x>',
    b'<"a>b"@x>',
    b'<"a\\"b"@x>',
    b"<h!u>",
    b"<u@[192.0.2.1]>",
    b"<u@[IPv6:2001:db8::1]>",
    b"x@y",
    b"<unclosed",
    b"",
    b"<\xff\xfe@x>",
]
PARAMS = [b"", b"", b" SIZE=10", b" SIZE=100000000", b" BODY=8BITMIME", b" size=0 SMTPUTF8"]
ENDINGS = [b"\r\n"] * 6 + [b"\n"] * 3 + [b"\r\r\n", b"\r", b""]
BODY_LINES = [
    b"",
    b".",
    b"..",
    b"...",
    b".x",
    b"..x",
    b" .",
    b"Subject: hello",
    b"\x80\xff 8-bit \x00",
    b"a.b",
    b".\r",
    b"QUIT",
    b"x" * 120,
]


def b64(raw: bytes) -> bytes:
    return base64.b64encode(raw)


AUTH_EXCHANGES = [
    b"AUTH PLAIN " + b64(b"\0user\0pass"),
    b"AUTH PLAIN\r\n" + b64(b"authz\0u\0p"),
    b"AUTH LOGIN\r\n" + b64(b"user") + b"\r\n" + b64(b"pass"),
    b"AUTH LOGIN " + b64(b"user") + b"\r\n" + b64(b"\xffpw"),
    b"AUTH LOGIN\r\n*",
    b"AUTH LOGIN\r\n" + b64(b"user") + b"\r\n*",
    b"AUTH PLAIN\r\n!!!",
    b"AUTH CRAM-MD5",
    b"AUTH",
]


@st.composite
def command(draw) -> bytes:
    kind = draw(
        st.sampled_from(
            [
                *("helo", "mail", "mail", "rcpt", "rcpt", "rcpt", "data", "data", "rset"),
                *("noop", "vrfy", "help", "auth", "junk", "empty", "long", "quit"),
            ]
        )
    )
    if kind == "helo":
        return draw(st.sampled_from([b"EHLO", b"HELO"])) + draw(
            st.sampled_from([b" client.example", b"", b" [192.0.2.1]", b" \xff"])
        )
    if kind == "mail":
        return b"MAIL FROM:" + draw(st.sampled_from(ADDRESSES)) + draw(st.sampled_from(PARAMS))
    if kind == "rcpt":
        return b"RCPT TO:" + draw(st.sampled_from(ADDRESSES))
    if kind == "data":
        return draw(data_block())
    if kind == "auth":
        return draw(st.sampled_from(AUTH_EXCHANGES))
    if kind == "long":
        return b"NOOP " + b"x" * draw(st.integers(0, 400))
    if kind == "vrfy":
        return draw(st.sampled_from([b"VRFY postmaster", b"VRFY"]))
    if kind == "junk":
        return draw(st.binary(max_size=20)).replace(b"\n", b"")
    return {"rset": b"RSET", "noop": b"NOOP", "help": b"HELP", "empty": b"", "quit": b"QUIT"}[kind]


@st.composite
def mutated(draw, line: bytes) -> bytes:
    case = draw(st.sampled_from(["keep", "keep", "lower", "swap", "random"]))
    if case == "lower":
        line = line.lower()
    elif case == "swap":
        line = line.swapcase()
    elif case == "random":
        mask = draw(st.integers(0, 2**64 - 1))
        line = bytes(
            (b ^ 0x20) if chr(b).isalpha() and b < 128 and mask >> (i % 64) & 1 else b
            for i, b in enumerate(line)
        )
    change = draw(st.sampled_from(["none"] * 6 + ["insert", "delete", "truncate"]))
    if line and change != "none":
        at = draw(st.integers(0, len(line) - 1))
        if change == "insert":
            line = line[:at] + bytes([draw(st.integers(0, 255))]) + line[at:]
        elif change == "delete":
            line = line[:at] + line[at + 1 :]
        else:
            line = line[:at]
    return line


@st.composite
def data_block(draw) -> bytes:
    """DATA, a body full of dots and odd bytes, and (mostly) the terminator."""
    lines = draw(st.lists(st.one_of(st.sampled_from(BODY_LINES), st.binary(max_size=30))))
    ending = draw(st.sampled_from([b"\r\n", b"\n"]))
    body = b"".join(line.replace(b"\n", b"") + ending for line in lines)
    return b"DATA\r\n" + body + draw(st.sampled_from([b".", b".", b".", b""]))


@st.composite
def transaction(draw) -> list[bytes]:
    mail = b"MAIL FROM:" + draw(st.sampled_from(ADDRESSES)) + draw(st.sampled_from(PARAMS))
    rcpts = draw(st.lists(st.sampled_from(ADDRESSES), min_size=1, max_size=5))
    return [mail] + [b"RCPT TO:" + rcpt for rcpt in rcpts] + [draw(data_block())]


@st.composite
def session(draw) -> bytes:
    """A plausible client: greeting, transactions and stray commands, some of them mangled."""
    lines: list[bytes] = []
    if draw(st.integers(0, 4)):
        lines.append(draw(st.sampled_from([b"EHLO client.example", b"HELO c", b"ehlo x"])))
    if draw(st.integers(0, 2)) == 0:
        lines.append(draw(st.sampled_from(AUTH_EXCHANGES)))
    blocks = st.one_of(transaction(), command().map(lambda line: [line]))
    for block in draw(st.lists(blocks, max_size=8)):
        lines += block
    if draw(st.booleans()):
        lines.append(b"QUIT")
    parts = []
    for line in lines:
        if draw(st.integers(0, 9)) == 0:
            line = draw(mutated(line))
        ending = draw(st.sampled_from(ENDINGS))
        parts.append(line.replace(b"\r\n", ending) + ending)
    return b"".join(parts)


@FUZZ
@given(
    stream=session(),
    cuts=st.lists(st.integers(min_value=0), max_size=30),
    limits=any_limits,
    require_helo=st.booleans(),
    defer=st.lists(st.booleans(), max_size=4),
)
def test_plausible_sessions(stream, cuts, limits, require_helo, defer):
    whole = Run(limits, require_helo, defer)
    whole.feed(stream)
    whole.check_events()
    for kind in {type(e).__name__ for e in whole.events} | {whole.server.state.name}:
        note_event(kind)  # shown by --hypothesis-show-statistics: how deep the sessions go
    chunked = Run(limits, require_helo, defer)
    for chunk in split(stream, cuts):
        chunked.feed(chunk)
    chunked.check_events()
    # The machine does not care how TCP cut the stream.
    assert chunked.events == whole.events
    assert chunked.out == whole.out


@FUZZ
@given(stream=session(), limits=any_limits)
def test_plausible_sessions_one_byte_at_a_time(stream, limits):
    whole = Run(limits, False, [])
    whole.feed(stream)
    single = Run(limits, False, [])
    for i in range(len(stream)):
        single.feed(stream[i : i + 1])
    single.check_events()
    assert single.events == whole.events
    assert single.out == whole.out
