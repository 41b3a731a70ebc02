"""A full protocol workout against one sensor: every way a client can ask it to reach out.

Run as a script (``python workout.py SMTP_PORT PROXY_PORT``), on the host or inside a network
namespace with ``ip netns exec``; prints a JSON summary on stdout. The clients talk to the
sensor on 127.0.0.1 only and resolve nothing themselves: targets are names only where the
proxy protocol carries the name (SOCKS4a, SOCKS5h, HTTP), and IP literals elsewhere.
"""

from __future__ import annotations

import json
import shutil
import smtplib
import socket
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

HOST = "127.0.0.1"
# Every client connection comes from this address, so that the namespace test can tell the
# workout's connections from any the sensor might open (those would come from 127.0.0.1).
CLIENT = "127.0.0.2"
MAIL = b"From: a@b.example\r\nTo: v@example.org\r\nSubject: workout\r\n\r\nbody\r\n"

# Names and addresses on and off the Internet, a cloud metadata address, the sensor's own host.
NAMES = ["gmail-smtp-in.l.google.com", "mx.example.org", "localhost"]
# A name no resolver answers for: the proxies refuse it as their lookup would fail.
UNRESOLVABLE = "internal.corp.local"
ADDRESSES_V4 = ["8.8.8.8", "192.0.2.25", "10.0.0.1", "169.254.169.254", "127.0.0.1"]
ADDRESSES_V6 = ["2001:4860:4860::8888", "::1"]


def curl(*args: str) -> int:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "5", "--interface", CLIENT, "-o", "/dev/null", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=15,
        check=False,
    ).returncode


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def raw(port: int, payload: bytes) -> bytes:
    """Send one request and read what comes back until the sensor closes or 2 s pass."""
    with socket.create_connection((HOST, port), timeout=2, source_address=(CLIENT, 0)) as s:
        s.sendall(payload)
        got = b""
        try:
            while len(got) < 65536:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
        except TimeoutError:
            pass
        return got


def main() -> int:
    smtp_port, proxy_port = int(sys.argv[1]), int(sys.argv[2])
    steps: dict[str, object] = {}
    mail = Path(tempfile.mkdtemp()) / "mail.txt"
    mail.write_bytes(MAIL)
    smtp_args = ["--mail-from", "a@b.example", "--mail-rcpt", "v@example.org", "-T", str(mail)]
    proxy = f"{HOST}:{proxy_port}"

    # Direct SMTP, with recipients everywhere.
    if shutil.which("swaks"):
        swaks = ["swaks", "--server", HOST, "--port", str(smtp_port), "--timeout", "5"]
        swaks += ["--local-interface", CLIENT, "--helo", "client.example", "--from", "a@b.example"]
        swaks += ["--to", "v@gmail.com,w@[8.8.8.8],x@localhost"]
        steps["swaks"] = subprocess.run(
            swaks, stdin=subprocess.DEVNULL, capture_output=True, timeout=20, check=False
        ).returncode
    with smtplib.SMTP(
        HOST, smtp_port, local_hostname="client.example", timeout=5, source_address=(CLIENT, 0)
    ) as smtp:
        refused = smtp.sendmail("a@b.example", ["v@example.org", "postmaster@[10.0.0.1]"], MAIL)
        steps["smtplib"] = len(refused)

    # Tunnels to port 25 through every proxy protocol curl speaks.
    for host in NAMES:
        for scheme in ("socks4a", "socks5h"):
            steps[f"{scheme} {host}:25"] = curl(
                "--proxy", f"{scheme}://{proxy}", f"smtp://{host}", *smtp_args
            )
        steps[f"http {host}:25"] = curl(
            "--proxytunnel", "--proxy", f"http://{proxy}", f"smtp://{host}", *smtp_args
        )
    for scheme in ("socks4a", "socks5h"):
        steps[f"{scheme} {UNRESOLVABLE}:25 refused"] = curl(
            "--proxy", f"{scheme}://{proxy}", f"smtp://{UNRESOLVABLE}", *smtp_args
        )
    steps[f"http {UNRESOLVABLE}:25 refused"] = curl(
        "--proxytunnel", "--proxy", f"http://{proxy}", f"smtp://{UNRESOLVABLE}", *smtp_args
    )
    for host in ADDRESSES_V4 + ADDRESSES_V6:
        schemes = ("socks5", "http") if ":" in host else ("socks4", "socks5", "http")
        for scheme in schemes:
            tunnel = ["--proxytunnel"] if scheme == "http" else []
            steps[f"{scheme} {host}:25"] = curl(
                *tunnel, "--proxy", f"{scheme}://{proxy}", f"smtp://{url_host(host)}", *smtp_args
            )
    steps[f"http CONNECT own smtp port {smtp_port}"] = curl(
        "--proxytunnel", "--proxy", f"http://{proxy}", f"smtp://{HOST}:{smtp_port}", *smtp_args
    )

    # Tunnels to other ports: web, TLS, SSH, the sensor's own proxy port.
    for target in ("www.example.com:80", "www.google.com:443", "internal.corp.local:22"):
        host, port = target.rsplit(":", 1)
        scheme = "https" if port == "443" else "http"
        for proxy_scheme in ("socks4a", "socks5h"):
            steps[f"{proxy_scheme} {target}"] = curl(
                "--proxy", f"{proxy_scheme}://{proxy}", f"{scheme}://{host}:{port}/"
            )
        steps[f"http CONNECT {target}"] = curl(
            "--proxytunnel", "--proxy", f"http://{proxy}", f"{scheme}://{host}:{port}/"
        )
    for host in ("8.8.8.8", "169.254.169.254", "127.0.0.1"):
        for scheme in ("socks4", "socks5"):
            steps[f"{scheme} {host}:{proxy_port}"] = curl(
                "--proxy", f"{scheme}://{proxy}", f"http://{host}:{proxy_port}/"
            )
    steps["socks5 [2001:db8::1]:443"] = curl(
        "--proxy", f"socks5://{proxy}", "https://[2001:db8::1]:443/"
    )

    # HTTP proxy requests with absolute URIs: GET, HEAD, POST, a proxy judge, metadata.
    for url in (
        "http://www.example.com/",
        "http://169.254.169.254/latest/meta-data/",
        "http://proxyjudge.example/azenv.php",
        f"http://127.0.0.1:{smtp_port}/",
        "http://[2001:db8::1]/",
    ):
        steps[f"GET {url}"] = curl("--proxy", f"http://{proxy}", url)
    steps["HEAD"] = curl("-I", "--proxy", f"http://{proxy}", "http://www.example.com/")
    steps["POST"] = curl("-d", "a=b", "--proxy", f"http://{proxy}", "http://www.example.com/")

    # What curl does not send: BIND, UDP ASSOCIATE, raw CONNECT lines, junk.
    steps["socks4 BIND"] = len(raw(proxy_port, b"\x04\x02\x00\x19\x08\x08\x08\x08\x00"))
    steps["socks5 BIND"] = len(
        raw(proxy_port, b"\x05\x01\x00\x05\x02\x00\x01\x08\x08\x08\x08\x00\x19")
    )
    steps["socks5 UDP ASSOCIATE"] = len(
        raw(proxy_port, b"\x05\x01\x00\x05\x03\x00\x01\x00\x00\x00\x00\x00\x35")
    )
    name = b"dns.google"
    steps["socks5 CONNECT dns.google:53"] = len(
        raw(proxy_port, b"\x05\x01\x00\x05\x01\x00\x03" + bytes([len(name)]) + name
            + struct.pack("!H", 53))
    )  # fmt: skip
    for line in (
        b"CONNECT 8.8.8.8:25 HTTP/1.0\r\n\r\nEHLO x\r\nQUIT\r\n",
        b"CONNECT [2001:4860:4860::8888]:25 HTTP/1.1\r\nHost: x\r\n\r\nQUIT\r\n",
        b"CONNECT localhost:22 HTTP/1.1\r\n\r\n",
        b"GET http://user:pw@intranet.local:8080/x HTTP/1.1\r\nHost: intranet.local\r\n\r\n",
        b"\x16\x03\x01\x00\x05hello",
    ):
        steps[f"raw {line[:40]!r}"] = len(raw(proxy_port, line))

    print(json.dumps(steps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
