#!/usr/bin/env python3
"""Agreement of the SMTP dialects with the real servers, on a developer's probe set.

Each probe (below) is one fresh connection: the banner is read, then every command is sent
and its reply awaited (DATA content as one block), and QUIT. The same lines go to the real
Debian 12 server that the differential launcher (tests/differential/realservers.py) runs in a
network namespace, and to the sensor's SMTP machine with that server's dialect. Replies are
compared after normalising the server's name, dates, addresses and queue ids. As root, after
the launcher's cache is prepared (.ci/run does it). This is a development aid for tuning the
dialect files; the differential suite's own probe sets and normalisation are the reference.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "differential"))
import realservers

from spampot.dialects import load
from spampot.protocols.smtp import MessageReceived, SmtpServer
from spampot.protocols.smtp_dialect import SmtpDialect

PROBES = {
    "ehlo": ["EHLO client.example"],
    "helo": ["HELO client.example"],
    "helo_noarg": ["HELO"],
    "ehlo_noarg": ["EHLO"],
    "mail_nohelo": ["MAIL FROM:<a@b.example>"],
    "rcpt_nomail": ["EHLO c", "RCPT TO:<c@d.example>"],
    "data_nomail": ["EHLO c", "DATA"],
    "data_norcpt": ["EHLO c", "MAIL FROM:<a@b.example>", "DATA"],
    "nested": ["EHLO c", "MAIL FROM:<a@b.example>", "MAIL FROM:<a@b.example>"],
    "mail_syntax": ["EHLO c", "MAIL FOO"],
    "mail_nobracket": ["EHLO c", "MAIL FROM:a@b.example"],
    "mail_unterminated": ["EHLO c", "MAIL FROM:<a@b.example"],
    "mail_size": ["EHLO c", "MAIL FROM:<a@b.example> SIZE=999999999999"],
    "mail_badparam": ["EHLO c", "MAIL FROM:<a@b.example> FOO=BAR"],
    "null_sender": ["EHLO c", "MAIL FROM:<>"],
    "rcpt_syntax": ["EHLO c", "MAIL FROM:<a@b.example>", "RCPT FOO"],
    "rcpt_empty": ["EHLO c", "MAIL FROM:<a@b.example>", "RCPT TO:<>"],
    "rcpt_local": ["EHLO c", "MAIL FROM:<a@b.example>", "RCPT TO:<root>"],
    "rcpt_badparam": ["EHLO c", "MAIL FROM:<a@b.example>", "RCPT TO:<c@d.example> FOO=BAR"],
    "full": [
        "EHLO c",
        "MAIL FROM:<a@b.example>",
        "RCPT TO:<c@d.example>",
        "DATA",
        "Subject: x",
        "",
        "hi",
        ".",
        "QUIT",
    ],
    "rset": ["RSET"],
    "noop": ["NOOP"],
    "noop_arg": ["NOOP x"],
    "rset_arg": ["RSET x"],
    "help": ["HELP"],
    "help_arg": ["HELP MAIL"],
    "vrfy": ["VRFY root"],
    "vrfy_remote": ["VRFY <a@b.example>"],
    "vrfy_none": ["VRFY nosuchuser"],
    "vrfy_noarg": ["VRFY"],
    "expn": ["EXPN root"],
    "etrn": ["ETRN example.com"],
    "etrn_noarg": ["ETRN"],
    "etrn_helo": ["EHLO c", "ETRN example.com"],
    "turn": ["TURN"],
    "unknown": ["XYZZY"],
    "empty": [""],
    "spaces": ["   "],
    "lower": ["ehlo c", "mail from:<a@b.example>"],
    "quit_arg": ["QUIT now"],
    "auth_noehlo": ["AUTH PLAIN AGEAYg=="],
    "auth_plain": ["EHLO c", "AUTH PLAIN AGEAYg=="],
    "auth_login": ["EHLO c", "AUTH LOGIN"],
    "auth_cram": ["EHLO c", "AUTH CRAM-MD5"],
    "starttls_noehlo": ["STARTTLS"],
    "starttls_arg": ["EHLO c", "STARTTLS x"],
    "bdat": ["EHLO c", "MAIL FROM:<a@b.example>", "RCPT TO:<c@d.example>", "BDAT 3 LAST", "hi"],
    "bdat_nomail": ["EHLO c", "BDAT 3 LAST"],
    "bdat_syntax": ["EHLO c", "MAIL FROM:<a@b.example>", "RCPT TO:<c@d.example>", "BDAT x"],
    "get": ["GET / HTTP/1.0"],
    "post": ["POST / HTTP/1.0"],
    "connect": ["CONNECT a.example:25 HTTP/1.0"],
    "header": ["Subject: hi"],
    "nonletter": ["1234"],
    "nul": ["HELO \x00"],
    "badutf8": ["HELO \xff\xfe"],
    "utf8": ["EHLO c", "MAIL FROM:<\u00e4@b.example>"],
    "dsn": [
        "EHLO c",
        "MAIL FROM:<a@b.example> RET=HDRS ENVID=x",
        "RCPT TO:<c@d.example> NOTIFY=NEVER",
    ],
    "8bit": ["EHLO c", "MAIL FROM:<a@b.example> BODY=8BITMIME"],
    "errors": ["XYZZY"] * 25,
    "longline": ["EHLO " + "a" * 3000],
    "xclient": ["XCLIENT NAME=x"],
    "ehlo_twice_txn": ["EHLO c", "MAIL FROM:<a@b.example>", "EHLO d", "RCPT TO:<c@d.example>"],
}


def norm(text, host):
    text = text.replace(host, "HOST")
    text = re.sub(r"\w{3}, \s?\d+ \w{3} \d{4} [\d:]+ ([+-]\d{4}|GMT)( \(\w+\))?", "DATE", text)
    text = re.sub(r"\[?\d+\.\d+\.\d+\.\d+\]?", "IP", text)
    text = re.sub(r"queued as [0-9A-F]+", "queued as QID", text)
    text = re.sub(r"id=\S+", "id=QID", text)
    text = re.sub(r"\b[0-9A-Za-z]{14} Message accepted", "QID Message accepted", text)
    return [line for line in text.split("\r\n") if line]


def _reply(sock):
    got = b""
    try:
        while not re.search(rb"(^|\r\n)\d{3} [^\r\n]*\r\n$", got):
            c = sock.recv(4096)
            if not c:
                break
            got += c
    except (TimeoutError, ConnectionResetError):
        pass
    return got


def talk_real(server, lines):
    """One command at a time, each reply awaited (the DATA content goes as one block)."""
    sock = server.connect(timeout=30)
    sock.settimeout(8)
    got = _reply(sock)
    body = None
    for line in [*lines, "QUIT"]:
        if body is not None:
            body.append(line)
            if line == ".":
                sock.sendall("".join(b + "\r\n" for b in body).encode("latin-1"))
                got += _reply(sock)
                body = None
            continue
        try:
            sock.sendall((line + "\r\n").encode("latin-1"))
        except (BrokenPipeError, ConnectionResetError):
            break
        r = _reply(sock)
        got += r
        if not r:
            break
        if r.startswith(b"354"):
            body = []
    sock.close()
    return got.decode("latin-1")


def talk_ours(dialect, host, lines):
    s = SmtpServer(
        host,
        load(dialect, SmtpDialect),
        client_ip="192.0.2.1",
        date="Sun, 29 Nov 2026 08:52:54 +0000",
        tls_available=True,
    )
    ev = []
    out = b""
    data = "".join(x + "\r\n" for x in [*lines, "QUIT"]).encode("latin-1")
    first = True
    while True:
        out += s.data_to_send()
        if s.delay:
            ev = s.resume()
            continue
        if any(isinstance(e, MessageReceived) for e in ev):
            ev = s.message_stored("ABCDEF0123")
            continue
        if first:
            first = False
            ev = s.receive_data(data)
            continue
        break
    return out.decode("latin-1")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("servers", nargs="*", default=["postfix", "exim", "sendmail"])
    p.add_argument("-v", "--verbose", action="store_true", help="print every difference")
    p.add_argument("--json-out", type=Path)
    args = p.parse_args()
    launch = {"postfix": realservers.postfix, "exim": realservers.exim4,
              "sendmail": realservers.sendmail}  # fmt: skip
    report = {}
    for which in args.servers:
        results = {}
        with launch[which]() as server:
            for name, lines in PROBES.items():
                real = talk_real(server, lines)
                host = real.split(" ")[1] if real.startswith("220") else "x"
                results[name] = (norm(real, host), norm(talk_ours(which, host, lines), host))
        same = sum(a == b for a, b in results.values())
        report[which] = {"identical": same, "probes": len(results), "results": results}
        print(f"{which}: {same}/{len(results)} identical", file=sys.stderr)
        for name, (a, b) in results.items():
            if a != b and args.verbose:
                print(f"DIFF {name}\n  real: {a}\n  ours: {b}", file=sys.stderr)
    text = json.dumps(report, indent=1)
    if args.json_out:
        args.json_out.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
