"""Smoke tests of the launcher (realservers.py): each real server starts in its own network
namespace, answers as the software it is, is open as a spammer would find it, and can reach
nothing outside; the namespaces and processes are gone afterwards."""

from __future__ import annotations

import errno
import re
import socket
import subprocess
import time

import pytest
import realservers
from netns import PREFIX, Netns, reap_stale


def read_until(sock: socket.socket, pattern: bytes, timeout: float = 20.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while not re.search(pattern, data) and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def smtp_relay(server: realservers.Server) -> list[bytes]:
    """Banner, EHLO, and MAIL/RCPT to a domain that is not the server's: the relay test."""
    replies = []
    with server.connect(timeout=30) as sock:
        replies.append(read_until(sock, rb"^220 .*\r\n"))
        for line, last in (
            (b"EHLO relay-test.example\r\n", rb"(?m)^250 .*\r\n"),
            (b"MAIL FROM:<spammer@example.net>\r\n", rb"\r\n"),
            (b"RCPT TO:<victim@example.org>\r\n", rb"\r\n"),
            (b"QUIT\r\n", rb"\r\n"),
        ):
            sock.sendall(line)
            replies.append(read_until(sock, last))
    return replies


def assert_sealed(server: realservers.Server) -> None:
    server.netns.check_sealed()
    # No route out: a connect to an outside address fails in the kernel, without a packet.
    with server.netns.socket() as sock:
        sock.settimeout(5)
        with pytest.raises(OSError) as err:
            sock.connect(("192.0.2.1", 25))
        assert err.value.errno == errno.ENETUNREACH


@pytest.mark.parametrize(
    ("name", "banner"),
    [
        ("postfix", rb"^220 mail\.example\.com ESMTP Postfix \(Debian/GNU\)\r\n$"),
        ("exim4", rb"^220 mail\.example\.com ESMTP Exim 4\.96 \w{3}, .* [+-]\d{4}\r\n$"),
        ("sendmail", rb"^220 mail\.example\.com ESMTP Sendmail 8\.17\.1\.9/8\.17\.1\.9/Debian"),
    ],
)
def test_real_mta_is_an_open_relay_that_cannot_reach_out(request, name, banner):
    server = request.getfixturevalue(name)
    banner_line, ehlo, mail, rcpt, quit_ = smtp_relay(server)
    assert re.search(banner, banner_line), banner_line
    assert ehlo.startswith(b"250-mail.example.com"), ehlo
    assert mail.startswith(b"250"), mail
    assert rcpt.startswith(b"250"), rcpt  # relaying to a foreign domain: open
    assert quit_.startswith(b"221"), quit_
    assert_sealed(server)


def test_real_squid_is_open_and_tunnels_to_the_upstream_mx(squid):
    with squid.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        page = read_until(sock, rb"</html>")
    assert page.startswith(b"HTTP/1.1 400 Bad Request\r\nServer: squid/5.7\r\n"), page[:200]
    assert b"X-Squid-Error: ERR_INVALID_URL" in page
    with squid.connect(8080) as sock:
        sock.sendall(b"CONNECT mx.example.org:25 HTTP/1.1\r\nHost: mx.example.org:25\r\n\r\n")
        tunnel = read_until(sock, rb"220 .*\r\n")
    assert tunnel == (
        b"HTTP/1.1 200 Connection established\r\n\r\n"
        b"220 mail.example.com ESMTP Postfix (Debian/GNU)\r\n"
    )
    squid.netns.check_sealed()


def test_real_dante_is_open_without_authentication(dante):
    with dante.connect() as sock:
        sock.sendall(b"\x05\x02\x00\x02")  # offers no-auth and username/password
        assert read_until(sock, rb"^..") == b"\x05\x00"
        sock.sendall(b"\x05\x01\x00\x03\x0emx.example.org\x00\x19")
        reply = read_until(sock, rb"220 .*\r\n")
    assert reply[:4] == b"\x05\x00\x00\x01", reply
    assert reply[10:].startswith(b"220 mail.example.com ESMTP Postfix"), reply
    dante.netns.check_sealed()


def test_sensor_runs_in_a_namespace_with_the_chosen_dialect_and_ports(sensors):
    pf = sensors["postfix"]
    assert set(pf.ports) == {25, 3128, 8080, 1080}
    with pf.connect(25) as sock:
        assert read_until(sock, rb"\r\n").startswith(b"220 mail.example.com ESMTP Postfix")
    with sensors["exim"].connect(25) as sock:
        assert b"Exim 4.96" in read_until(sock, rb"\r\n")
    with sensors["sendmail"].connect(25) as sock:
        assert b"Sendmail 8.17" in read_until(sock, rb"\r\n")
    with pytest.raises(OSError):
        sensors["exim"].connect(3128, timeout=2)  # only the ports asked for
    assert_sealed(pf)


def test_a_namespace_and_everything_in_it_are_gone_after_close(prepared):
    with Netns("cleanup") as ns:
        sleeper = subprocess.Popen([*ns.prefix, "sleep", "600"])
        deadline = time.monotonic() + 10
        while not ns.pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ns.pids()
    assert sleeper.wait(timeout=10) != 0
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert ns.name not in listed


def test_namespaces_of_a_run_that_died_are_reaped_and_live_ones_kept(prepared):
    """A run killed before its teardown leaves namespaces; the next run closes them (the
    owner's pid is in the name), and never those of a run still going."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    orphan = f"{PREFIX}orphan-{dead.pid}-abcdef"
    subprocess.run(["ip", "netns", "add", orphan], check=True)
    sleeper = subprocess.Popen(["ip", "netns", "exec", orphan, "sleep", "600"])
    try:
        deadline = time.monotonic() + 10
        while not subprocess.run(
            ["ip", "netns", "pids", orphan], capture_output=True, text=True
        ).stdout.strip():
            assert time.monotonic() < deadline, "sleep never ran in the orphan namespace"
            time.sleep(0.05)
        with Netns("alive") as alive:  # reaps on creation
            deadline = time.monotonic() + 10
            while sleeper.poll() is None and time.monotonic() < deadline:
                reaped = reap_stale()
                if orphan in reaped:
                    break
                time.sleep(0.1)
            assert sleeper.wait(timeout=10) != 0
            listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
            assert orphan not in listed.stdout
            assert alive.name in listed.stdout
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
        subprocess.run(["ip", "netns", "del", orphan], capture_output=True, check=False)
