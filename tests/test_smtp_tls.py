"""STARTTLS, SMTPS, AUTH and BDAT against a real sensor, with real clients (smtplib, swaks,
curl through the sensor's own SOCKS5 and HTTP proxies)."""

from __future__ import annotations

import base64
import gzip
import smtplib
import socket
import ssl
import subprocess

import pytest

from conftest import Sensor, free_port, need_tool

BODY = b"Subject: over TLS\r\nFrom: a@spam.example\r\n\r\nSecret offer.\r\n..dotted line\r\n"


def _client_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # a snakeoil certificate, as on a fresh Debian
    return context


def _messages(sensor: Sensor, count: int = 1) -> list[dict]:
    events = sensor.wait_events(
        lambda ev: sum(e["eventid"] == "spampot.smtp.message" for e in ev) >= count,
        timeout=20,
    )
    return [e for e in events if e["eventid"] == "spampot.smtp.message"]


def _stored(sensor: Sensor, event: dict) -> bytes:
    return gzip.decompress((sensor.data_dir / "spool" / event["file"]).read_bytes())


def test_starttls_with_smtplib_captures_everything_with_tls_fields(sensor):
    cert = sensor.data_dir / "tls" / "snakeoil.pem"
    assert cert.exists()  # made at first start, never shipped
    with smtplib.SMTP("127.0.0.1", sensor.smtp_port, timeout=20) as client:
        _, features = client.ehlo("client.example")
        assert b"STARTTLS" in features and b"AUTH" not in features
        client.starttls(context=_client_context())
        _code, features = client.ehlo("client.example")
        assert b"AUTH PLAIN LOGIN" in features and b"STARTTLS" not in features
        refused = client.sendmail("a@spam.example", ["v1@example.org", "v2@example.org"], BODY)
        assert refused == {}
        assert isinstance(client.sock, ssl.SSLSocket)
        peer = client.sock.getpeercert(binary_form=True)
    (event,) = _messages(sensor)
    assert event["tls"]["version"] in ("TLSv1.2", "TLSv1.3")
    assert event["tls"]["cipher"]
    assert event["rcpt_to"] == ["v1@example.org", "v2@example.org"]
    assert _stored(sensor, event) == BODY  # smtplib dot-stuffs, the sensor unstuffs
    # The certificate names the host, as Debian's snakeoil does.
    from cryptography import x509

    name = x509.load_der_x509_certificate(peer).subject.rfc4514_string()
    assert name == "CN=mx.sensor.example"
    tls_events = [e for e in sensor.events() if e["eventid"] == "spampot.smtp.tls"]
    assert len(tls_events) == 1


def test_auth_after_starttls_is_logged_and_refused_as_postfix_does(sensor):
    with smtplib.SMTP("127.0.0.1", sensor.smtp_port, timeout=20) as client:
        client.ehlo("c")
        client.starttls(context=_client_context())
        client.ehlo("c")
        with pytest.raises(smtplib.SMTPAuthenticationError) as info:
            client.login("alice", "s3cret")
        assert info.value.smtp_code == 535
        assert b"authentication failure" in info.value.smtp_error
        # Refused, yet the relay still takes the mail.
        assert client.sendmail("a@spam.example", ["v@example.org"], BODY) == {}
    # smtplib tries each mechanism offered (PLAIN, then LOGIN): every attempt is logged.
    events = sensor.wait_events(
        lambda ev: sum(e["eventid"] == "spampot.smtp.auth" for e in ev) >= 2
    )
    auths = [e for e in events if e["eventid"] == "spampot.smtp.auth"]
    assert [a["mechanism"] for a in auths] == ["PLAIN", "LOGIN"]
    for auth in auths:
        assert (auth["username"], auth["password"], auth["result"]) == (
            "alice",
            "s3cret",
            "failed",
        )
        assert auth["tls"]["version"]


def test_plaintext_pipelined_after_starttls_is_not_run(sensor):
    """CVE-2011-0411: commands sent with STARTTLS in one packet are thrown away, and logged."""
    with socket.create_connection(("127.0.0.1", sensor.smtp_port), timeout=10) as sock:
        sock.recv(512)
        sock.sendall(b"EHLO x\r\n")
        assert sock.recv(4096).endswith(b"250 CHUNKING\r\n")
        sock.sendall(b"STARTTLS\r\nMAIL FROM:<injected@x>\r\n")
        assert sock.recv(512) == b"220 2.0.0 Ready to start TLS\r\n"
        tls = _client_context().wrap_socket(sock, server_hostname="mx.sensor.example")
        tls.sendall(b"EHLO y\r\nRCPT TO:<v@example.org>\r\n")
        out = b""
        while not out.endswith(b"Error: need MAIL command\r\n"):
            chunk = tls.recv(4096)
            assert chunk
            out += chunk
    events = sensor.wait_events(
        lambda ev: any(e.get("error") == "plaintext after STARTTLS" for e in ev)
    )
    (err,) = [e for e in events if e.get("error") == "plaintext after STARTTLS"]
    assert "injected" in err["input"]


def test_bdat_with_smtplib_is_stored_byte_exact(sensor):
    chunk1 = b"Subject: chunked\r\n\r\n.leading dot kept\r\n"
    chunk2 = b"\x00\xff binary \r\n.\r\nnot an end\r\n"
    with smtplib.SMTP("127.0.0.1", sensor.smtp_port, timeout=20) as client:
        code, features = client.ehlo("c")
        assert b"CHUNKING" in features
        client.mail("a@spam.example")
        client.rcpt("v@example.org")
        client.send(f"BDAT {len(chunk1)}\r\n".encode() + chunk1)
        assert client.getreply() == (250, f"2.0.0 Ok: {len(chunk1)} bytes".encode())
        client.send(f"BDAT {len(chunk2)} LAST\r\n".encode() + chunk2)
        code, reply = client.getreply()
        total = len(chunk1) + len(chunk2)
        assert code == 250 and reply.startswith(f"2.0.0 Ok: {total} bytes queued as ".encode())
    (event,) = _messages(sensor)
    assert event["bdat"] is True
    assert _stored(sensor, event) == chunk1 + chunk2  # no dot-unstuffing, nothing changed


def test_swaks_tls_and_auth(sensor):
    swaks = need_tool("swaks")
    result = subprocess.run(
        [swaks, "--server", f"127.0.0.1:{sensor.smtp_port}", "--to", "v@example.org",
         "--from", "a@spam.example", "-tls", "--auth", "LOGIN", "--auth-user", "bob",
         "--auth-password", "hunter2", "--timeout", "20"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    # swaks stops at the refused AUTH (exit 28): what a real Postfix would make it do.
    assert "STARTTLS" in result.stdout
    assert "535 5.7.8 Error: authentication failed" in result.stdout, result.stdout
    events = sensor.wait_events(lambda ev: any(e["eventid"] == "spampot.smtp.auth" for e in ev))
    (auth,) = [e for e in events if e["eventid"] == "spampot.smtp.auth"]
    assert (auth["mechanism"], auth["username"], auth["password"]) == ("LOGIN", "bob", "hunter2")
    result = subprocess.run(
        [swaks, "--server", f"127.0.0.1:{sensor.smtp_port}", "--to", "v@example.org",
         "--from", "a@spam.example", "-tls", "--timeout", "20"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    (event,) = _messages(sensor)
    assert event["tls"]["version"]


@pytest.mark.parametrize("proxy", ["socks5h", "http"])
def test_curl_ssl_reqd_through_the_sensors_proxies(sensor, tmp_path, proxy):
    """A spam tool tunnelling to an MX and insisting on TLS: STARTTLS inside the tunnel."""
    curl = need_tool("curl")
    mail = tmp_path / "mail.txt"
    mail.write_bytes(BODY)
    port = sensor.ports["socks" if proxy == "socks5h" else "http"]
    command = [curl, "--silent", "--show-error", "--max-time", "30", "--ssl-reqd", "--insecure",
               "--proxy", f"{proxy}://127.0.0.1:{port}", "smtp://mx.victim.example",
               "--mail-from", "a@spam.example", "--mail-rcpt", "v@victim.example",
               "-T", str(mail)]  # fmt: skip
    if proxy == "http":
        command.insert(1, "--proxytunnel")
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    (event,) = _messages(sensor)
    assert event["via"] == ("socks5" if proxy == "socks5h" else "http")
    assert event["target_host"] == "mx.victim.example"
    assert event["tls"]["version"]
    assert _stored(sensor, event) == BODY


def test_smtps_port_speaks_tls_from_the_first_byte(sensor_factory):
    port = free_port()
    sensor = sensor_factory(f"[smtp]\nsmtps_ports = [{port}]\n")
    with smtplib.SMTP_SSL("127.0.0.1", port, timeout=20, context=_client_context()) as client:
        code, features = client.ehlo("c")
        assert code == 250 and b"AUTH PLAIN LOGIN" in features
        assert client.sendmail("a@spam.example", ["v@example.org"], BODY) == {}
    (event,) = _messages(sensor)
    assert event["dst_port"] == port and event["tls"]["version"]


def test_tls_garbage_is_logged_and_closed(sensor):
    with socket.create_connection(("127.0.0.1", sensor.smtp_port), timeout=10) as sock:
        sock.recv(512)
        sock.sendall(b"EHLO x\r\nSTARTTLS\r\n")
        out = b""
        while b"Ready to start TLS" not in out:
            out += sock.recv(4096)
        sock.sendall(b"\x16\x03\x01\x00\x05hello" + b"\x00" * 64)
        sock.settimeout(10)
        while sock.recv(4096):
            pass
    events = sensor.wait_events(
        lambda ev: any(str(e.get("error", "")).startswith("TLS:") for e in ev)
    )
    assert [e for e in events if str(e.get("error", "")).startswith("TLS:")]
    assert any(e.get("reason") == "tls error" for e in events)


def test_auth_plain_initial_response_over_tls_logged(sensor):
    with smtplib.SMTP("127.0.0.1", sensor.smtp_port, timeout=20) as client:
        client.ehlo("c")
        client.starttls(context=_client_context())
        client.ehlo("c")
        token = base64.b64encode(b"\0carol\0pw").decode()
        assert client.docmd("AUTH", f"PLAIN {token}")[0] == 535
    events = sensor.wait_events(lambda ev: any(e["eventid"] == "spampot.smtp.auth" for e in ev))
    (auth,) = [e for e in events if e["eventid"] == "spampot.smtp.auth"]
    assert (auth["mechanism"], auth["username"], auth["password"]) == ("PLAIN", "carol", "pw")
