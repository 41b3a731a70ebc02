"""Hypothesis against the SMTP machine: hostile bytes in any chunking never break it.

Examples per test come from SPAMPOT_FUZZ_EXAMPLES (default 300, so CI stays fast); a long run
sets e.g. SPAMPOT_FUZZ_EXAMPLES=100000.
"""

from __future__ import annotations

import base64
import os

from hypothesis import HealthCheck, example, given, settings
from hypothesis import event as note_event
from hypothesis import strategies as st

from spampot.dialects import available, load, raw
from spampot.protocols.common import ClientError
from spampot.protocols.smtp import (
    HOLD_LIMIT,
    MessageReceived,
    Rejected,
    SmtpLimits,
    SmtpServer,
    StartTls,
    State,
    TlsInfo,
)
from spampot.protocols.smtp_dialect import SmtpDialect
from test_smtp_protocol import assert_replies

HOST = "mx.example.net"
QID = "QIDQIDQID"  # a queue id no reply holds otherwise: its count is the count of 250s
TLS = TlsInfo("TLSv1.3", "TLS_AES_128_GCM_SHA256", "mx.example.net")
DIALECTS = [load(name, SmtpDialect) for name in available() if raw(name).get("kind") == "smtp"]
dialects = st.sampled_from(DIALECTS)
EXAMPLES = int(os.environ.get("SPAMPOT_FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# Bytes the machine may hold beyond its limits: the DATA sentinel and a partial terminator.
SLACK = 8


def bound(server: SmtpServer) -> int:
    """A line or a message (the persona's size within the sensor's cap), and the replies
    held during a delay (HOLD_LIMIT and the one that waits)."""
    longest_reply = server.dialect.echo_limit + 1024
    return max(server.max_line, server.message_limit) + SLACK + HOLD_LIMIT + longest_reply


class Run:
    """Feeds one machine like the adapter does and checks every invariant after every read."""

    def __init__(
        self,
        limits: SmtpLimits,
        require_helo: bool,
        defer: list[bool],
        dialect: SmtpDialect = DIALECTS[0],
        auth_offer: str = "tls",
    ) -> None:
        self.server = SmtpServer(
            HOST,
            dialect,
            limits,
            require_helo=require_helo,
            client_ip="192.0.2.1",
            tls_available=True,
            auth_offer=auth_offer,
            session_tag="gsmtp-id",
        )
        self.limits = limits
        self.defer = defer
        self.events: list = []
        self.out = bytearray()
        self.stored = 0
        self.deferred = 0
        self.delays = 0
        self.tls_started = 0
        self._resolve([])
        self._take_output()

    def _take_output(self) -> None:
        out = self.server.data_to_send()
        assert_replies(out, self.server.dialect.echo_limit)
        self.out += out

    def _resolve(self, events: list) -> None:
        """Answer what the adapter answers: every MessageReceived at once (after its write),
        every error delay when its timer fires, every STARTTLS with a handshake."""
        server = self.server
        while True:
            self.events += events
            more: list = []
            for event in events:
                if isinstance(event, MessageReceived):
                    assert event is events[-1]  # nothing is parsed while the disk works
                    assert server.waiting
                    n = self.stored + self.deferred
                    if self.defer and self.defer[n % len(self.defer)]:
                        self.deferred += 1
                        more += server.message_deferred()
                    else:
                        self.stored += 1
                        more += server.message_stored(QID)
                elif isinstance(event, StartTls):
                    assert event is events[-1]  # nothing after STARTTLS runs as a command
            if more:
                events = more
            elif server.delay and server.state is not State.STORING:
                self.delays += 1  # the persona's error delay: the timer fires
                events = server.resume()
            elif server.starting_tls and not server.closing:
                self._take_output()  # the 220 goes out in plaintext first
                self.tls_started += 1
                server.tls_started(TLS)
                events = server.receive_data(b"")
            else:
                return

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
        assert not server.waiting and not server.starting_tls
        # Invariant 3: memory is bounded by the limits, whatever the client sends.
        assert server.buffered <= bound(server), server.buffered
        if server.closing:
            assert server.buffered == 0  # nothing after QUIT or a 421 is kept

    def check_events(self) -> None:
        limits = self.limits
        out = bytes(self.out)
        for event in self.events:
            if isinstance(event, MessageReceived):
                assert 1 <= len(event.rcpt_to) <= limits.max_recipients
                # The persona's limit within the sensor's cap (Sendmail names no limit).
                size = limits.max_message_size or self.server.dialect.message_size_limit
                assert len(event.data) <= min(size or limits.message_cap, limits.message_cap)
            elif isinstance(event, ClientError):
                assert event.reply + b"\r\n" in out
                assert len(event.raw) <= 256
            elif isinstance(event, Rejected):
                assert (event.stage, event.code, event.why) in {
                    ("mail", 552, "size"),
                    ("mail", 450, "messages"),
                    ("rcpt", 452, "recipients"),
                    ("data", 552, "size"),
                    ("data", 451, "storage"),
                    ("data", 452, "storage"),
                    ("connect", 221, "forbidden"),
                    ("connect", 421, "forbidden"),
                } or (event.stage, event.why) == ("connect", "errors")
        # Every stored message got its queued reply (and only those: the id is unique).
        assert self.stored == self.server.messages
        if "{queue_id}" in self.server.dialect.replies["queued"]:
            assert out.count(QID.encode()) == self.stored
        assert self.server.messages <= limits.max_messages
        storage = [e for e in self.events if isinstance(e, Rejected) and e.why == "storage"]
        assert len(storage) == self.deferred


limit_values = st.builds(
    SmtpLimits,
    max_line=st.integers(8, 300),
    max_message_size=st.integers(1, 2000),
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
    b"STARTTLS\r\n",
    b"BDAT 5\r\n",
    b"BDAT 3 LAST\r\n",
    b"BDAT 0 LAST\r\n",
    b"GET / HTTP/1.0\r\n",
    b"\x16\x03\x01\x00\x05",
    b"XX\r\n" * 12,
]
noise = st.lists(st.one_of(st.binary(max_size=64), st.sampled_from(FRAGMENTS)), max_size=40)


@FUZZ
@given(
    pieces=noise,
    cuts=st.lists(st.integers(min_value=0), max_size=20),
    limits=any_limits,
    require_helo=st.booleans(),
    dialect=dialects,
)
def test_arbitrary_bytes_in_arbitrary_chunks(pieces, cuts, limits, require_helo, dialect):
    stream = b"".join(pieces)
    run = Run(limits, require_helo, defer=[], dialect=dialect)
    for chunk in split(stream, cuts):
        run.feed(chunk)
    run.check_events()


@FUZZ
@given(chunks=st.lists(st.binary(max_size=512), max_size=30), limits=any_limits, dialect=dialects)
def test_raw_random_chunks(chunks, limits, dialect):
    run = Run(limits, False, defer=[], dialect=dialect)
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
# What the personas' own path readers (smtp_address.py) refuse: an empty domain, a route in
# the local part, a token past Sendmail's MAXNAME, an address past Exim's 256, text after
# the path, a localhost sender, unknown and repeated parameters, a comment, a lone quote.
ADDRESSES += [
    b"<victim@>",
    b"<a@b@c.example>",
    b"<" + b"t" * 300 + b"@x.example>",
    b"<" + b"a." * 140 + b"x@y.example>",
    b"<a@b.example> trailing",
    b"<a@localhost>",
    b"<a@[127.0.0.1]>",
    b"<postmaster>",
    b'<"unclosed@x>',
    b"<a(comment)@b.example>",
    b"<@r1,@r2u@h>",
    b"phrase words <a@b.example>",
]
PARAMS = [
    b"", b"", b" SIZE=10", b" SIZE=100000000", b" BODY=8BITMIME", b" size=0 SMTPUTF8",
    b" RET=HDRS ENVID=x", b" NOTIFY=NEVER", b" FOO=BAR", b" BODY=", b" =x", b' "q" PRDR',
]  # fmt: skip
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
                *("starttls", "bdat", "bdat", "forbidden", "errors"),
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
        return draw(st.sampled_from([b"VRFY postmaster", b"VRFY", b"VRFY nosuchuser"]))
    if kind == "starttls":
        return draw(st.sampled_from([b"STARTTLS", b"STARTTLS x", b"starttls"]))
    if kind == "bdat":
        return draw(bdat_block())
    if kind == "forbidden":
        return draw(st.sampled_from([b"GET / HTTP/1.1", b"CONNECT a:25", b"Subject: x", b"1"]))
    if kind == "errors":
        return b"\r\n".join([b"XYZZY"] * draw(st.integers(1, 25)))
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
def bdat_block(draw) -> bytes:
    """RFC 3030 chunks: "BDAT n [LAST]" and n bytes (any bytes, CRLF and dots included),
    sometimes with a wrong count, so the chunk boundary falls anywhere."""
    chunks = draw(st.lists(st.binary(max_size=40), min_size=1, max_size=3))
    out = b""
    for i, chunk in enumerate(chunks):
        count = len(chunk) + draw(st.sampled_from([0, 0, 0, 0, -1, 1, 7]))
        last = b" LAST" if i == len(chunks) - 1 and draw(st.integers(0, 3)) else b""
        verb = draw(st.sampled_from([b"BDAT", b"bdat"]))
        out += verb + b" " + str(max(count, 0)).encode() + last + b"\r\n" + chunk
    return out.removesuffix(b"\r\n")


@st.composite
def transaction(draw) -> list[bytes]:
    mail = b"MAIL FROM:" + draw(st.sampled_from(ADDRESSES)) + draw(st.sampled_from(PARAMS))
    rcpts = draw(st.lists(st.sampled_from(ADDRESSES), min_size=1, max_size=5))
    body = draw(st.one_of(data_block(), bdat_block()))
    return [mail] + [b"RCPT TO:" + rcpt for rcpt in rcpts] + [body]


@st.composite
def session(draw) -> bytes:
    """A plausible client: greeting, transactions and stray commands, some of them mangled."""
    lines: list[bytes] = []
    if draw(st.integers(0, 4)):
        lines.append(draw(st.sampled_from([b"EHLO client.example", b"HELO c", b"ehlo x"])))
    if draw(st.integers(0, 2)) == 0:
        lines += [b"STARTTLS", b"EHLO again"]
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
    dialect=dialects,
    auth_offer=st.sampled_from(["tls", "always", "never"]),
)
def test_plausible_sessions(stream, cuts, limits, require_helo, defer, dialect, auth_offer):
    whole = Run(limits, require_helo, defer, dialect, auth_offer)
    whole.feed(stream)
    whole.check_events()
    for kind in {type(e).__name__ for e in whole.events} | {whole.server.state.name}:
        note_event(kind)  # shown by --hypothesis-show-statistics: how deep the sessions go
    chunked = Run(limits, require_helo, defer, dialect, auth_offer)
    for chunk in split(stream, cuts):
        chunked.feed(chunk)
    chunked.check_events()
    # The machine does not care how TCP cut the stream (up to STARTTLS: what the client
    # pipelined behind it is thrown away, what came after the handshake is read).
    assert_same_up_to_starttls(chunked, whole)


@FUZZ
@given(stream=session(), limits=any_limits, dialect=dialects)
@example(  # a CR where an over-long line is cut: content, whether the line came whole or not
    stream=b"HELO c\rVRFY postmaster\rMAIL FROM:<a@b.example>\r\nQUIT\r\n",
    limits=SmtpLimits(max_line=23),
    dialect=next(d for d in DIALECTS if d.name == "postfix"),
)
def test_plausible_sessions_one_byte_at_a_time(stream, limits, dialect):
    whole = Run(limits, False, [], dialect)
    whole.feed(stream)
    single = Run(limits, False, [], dialect)
    for i in range(len(stream)):
        single.feed(stream[i : i + 1])
    single.check_events()
    assert_same_up_to_starttls(single, whole)


def assert_same_up_to_starttls(one: Run, other: Run) -> None:
    starts = [i for i, e in enumerate(other.events) if isinstance(e, StartTls)]
    if not starts:
        assert one.events == other.events
        assert one.out == other.out
        return
    k = starts[0]
    assert one.events[:k] == other.events[:k]
    assert isinstance(one.events[k], StartTls)
