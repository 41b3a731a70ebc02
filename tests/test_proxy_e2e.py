"""The open-proxy emulators end to end: real clients tunnel mail to the SMTP emulator."""

from __future__ import annotations

import gzip
import smtplib
import socket
import subprocess

import pytest
import socks  # PySocks: a second, independent SOCKS client implementation

from conftest import need_tool

BODY = b"Subject: via proxy\r\n\r\n.leading dot\r\nbody\r\n"


def message_events(sensor, n: int) -> list[dict]:
    events = sensor.wait_events(
        lambda ev: sum(e["eventid"] == "spampot.smtp.message" for e in ev) >= n
    )
    return [e for e in events if e["eventid"] == "spampot.smtp.message"]


def requests(sensor, n: int) -> list[dict]:
    events = sensor.wait_events(
        lambda ev: sum(e["eventid"] == "spampot.proxy.request" for e in ev) >= n
    )
    return [e for e in events if e["eventid"] == "spampot.proxy.request"]


CURL_PROXIES = [
    ("socks4", "socks4", "192.0.2.25", None),
    ("socks4a", "socks4a", "mx.example.org", None),
    ("socks5", "socks5", "192.0.2.25", None),
    ("socks5h", "socks5", "mx.example.org", None),
    ("socks5h-auth", "socks5", "mx.example.org", ("spam", "pa:ss")),
    ("http", "http", "mx.example.org", None),
]
CROSS_PROTOCOL = "cross_protocol = true\n"  # appended to the test sensor's [ports]


def curl_mail(
    sensor, tmp_path, scheme: str, protocol: str, creds=None
) -> subprocess.CompletedProcess:
    curl = need_tool("curl")
    body = tmp_path / "m.eml"
    body.write_bytes(BODY)
    # socks4 and socks5 (not "h") resolve locally: --resolve hands curl an address, so no
    # name is looked up anywhere.
    port = sensor.ports["http" if protocol == "http" else "socks"]
    user = f"{creds[0]}:{creds[1].replace(':', '%3A')}@" if creds else ""
    proxy = f"{scheme.removesuffix('-auth')}://{user}127.0.0.1:{port}"
    return subprocess.run(
        [curl, "-sS", "--proxy", proxy, "--proxytunnel",
         "--resolve", "mx.example.org:25:192.0.2.25", "smtp://mx.example.org:25/curl.example",
         "--mail-from", "s@spam.example",
         "--mail-rcpt", "one@example.org", "--mail-rcpt", "two@example.org", "-T", str(body)],
        check=False, timeout=30, capture_output=True,
    )  # fmt: skip


@pytest.mark.parametrize(("scheme", "protocol", "host", "creds"), CURL_PROXIES,
                         ids=[c[0] for c in CURL_PROXIES])  # fmt: skip
def test_curl_sends_mail_through_every_proxy_kind(
    sensor_factory, tmp_path, scheme, protocol, host, creds
):
    sensor = sensor_factory()
    done = curl_mail(sensor, tmp_path, scheme, protocol, creds)
    assert done.returncode == 0, done.stderr
    port = sensor.ports["http" if protocol == "http" else "socks"]
    (event,) = message_events(sensor, 1)
    assert event["via"] == protocol and event["dst_port"] == port
    assert event["target_host"] == host and event["target_port"] == 25
    assert event["rcpt_to"] == ["one@example.org", "two@example.org"]
    assert gzip.decompress((sensor.data_dir / "spool" / event["file"]).read_bytes()) == BODY
    (request,) = requests(sensor, 1)
    assert request["protocol"] == protocol and request["outcome"] == "smtp"
    assert request["method"] == "CONNECT" and request["target_host"] == host
    if creds:
        # curl offers "no authentication" too, and Dante picks it: the password is never sent.
        assert request["auth"] == {"method": "none", "username": None, "password": None}


def test_a_name_that_cannot_resolve_is_refused_as_dante_refuses_it(sensor, tmp_path):
    done = subprocess.run(
        [need_tool("curl"), "-sS", "--proxy", f"socks4a://127.0.0.1:{sensor.ports['socks']}",
         "smtp://mx.nowhere.invalid:25/x", "--mail-rcpt", "v@example.org", "-T", "/dev/null"],
        check=False, timeout=30, capture_output=True,
    )  # fmt: skip
    assert done.returncode == 97, done.stderr  # curl: the SOCKS4 request was rejected
    (request,) = requests(sensor, 1)
    assert (request["protocol"], request["target_host"], request["outcome"]) == (
        "socks4a",
        "mx.nowhere.invalid",
        "other",
    )


def test_username_password_when_it_is_the_only_method_offered(sensor):
    auth = b"\x01\x04spam\x05pa:ss"
    request = b"\x05\x01\x00\x03\x0emx.example.org\x00\x19"
    reply = exchange(sensor.ports["socks"], b"\x05\x01\x02" + auth + request + b"QUIT\r\n")
    assert reply[:4] == b"\x05\x02\x01\x00" and reply[4:6] == b"\x05\x00"
    assert b"220 mx.example.org" in reply
    (event,) = requests(sensor, 1)
    assert event["auth"] == {"method": "userpass", "username": "spam", "password": "pa:ss"}


# PySocks' HTTP mode reads the CONNECT reply through a buffered file and drops whatever came
# with it, here the 220 greeting that checkers expect at once: curl covers HTTP instead.
@pytest.mark.parametrize(("kind", "protocol"), [(socks.SOCKS4, "socks4"), (socks.SOCKS5, "socks5")])
def test_pysocks_client_and_banner_names_requested_host(sensor, kind, protocol):
    port = sensor.ports["http" if protocol == "http" else "socks"]
    sock = socks.socksocket()
    sock.set_proxy(kind, "127.0.0.1", port, rdns=protocol != "socks4")
    sock.settimeout(10)
    target = "192.0.2.25" if protocol == "socks4" else "mx1.victim.example"
    sock.connect((target, 25))
    client = smtplib.SMTP(timeout=10)
    client.sock = sock
    client.file = None
    code, banner = client.getreply()
    assert code == 220
    if protocol != "socks4":
        assert banner.startswith(b"mx1.victim.example ")
    client.ehlo("bot")
    client.sendmail("a@spam.example", ["v@victim.example"], BODY)
    client.quit()
    (event,) = message_events(sensor, 1)
    assert event["via"] == protocol and event["target_host"] == target


def exchange(port: int, data: bytes, read_until_close: bool = True) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while read_until_close:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def test_table6_outcomes_are_logged(sensor):
    http, socks_port = sensor.ports["http"], sensor.ports["socks"]
    assert exchange(http, b"CONNECT mail.example.org:25 HTTP/1.1\r\n\r\nQUIT\r\n").startswith(
        b"HTTP/1.1 200 Connection established\r\n\r\n220 mail.example.org "
    )
    assert exchange(http, b"CONNECT web.example.org:443 HTTP/1.1\r\n\r\n").startswith(
        b"HTTP/1.1 500 Internal Server Error"
    )
    get = exchange(http, b"GET http://www.example.org/ HTTP/1.0\r\n\r\n")
    assert get.startswith(b"HTTP/1.1 502 Bad Gateway") and b"Via: 1.1 mx.sensor.example" in get
    assert exchange(http, b"\x16\x03\x01\x02\x00junk") == b""  # Squid waits for a line end
    assert exchange(http, b"GARBAGE\r\n\r\n").startswith(b"HTTP/1.1 400")
    # SOCKS4 to port 80: Dante's connection fails (0x5B); SOCKS5 BIND is granted.
    assert exchange(socks_port, b"\x04\x01\x00\x50\xc0\x00\x02\x01\x00")[:2] == b"\x00\x5b"
    bind = exchange(socks_port, b"\x05\x01\x00\x05\x02\x00\x01\xc0\x00\x02\x01\x00\x19")
    assert bind[2:8] == b"\x05\x00\x00\x01\x7f\x00" and len(bind) == 12
    events = requests(sensor, 7)
    outcomes = [(e["protocol"], e["module"], e["method"], e["outcome"]) for e in events]
    assert outcomes == [
        ("http", "http", "CONNECT", "smtp"),
        ("http", "http", "CONNECT", "other"),
        ("http", "http", "GET", "get"),
        ("unknown", "http", "", "error"),
        ("http", "http", "", "error"),
        ("socks4", "socks", "CONNECT", "other"),
        ("socks5", "socks", "BIND", "other"),
    ]
    assert all(e["dst_port"] in (http, socks_port) for e in events)
    assert events[3]["input"] == "\\x16\\x03\\x01\\x02\\x00junk"  # what was tried


def test_each_port_answers_as_its_server(sensor):
    """A Squid port answers a SOCKS greeting as Squid (it waits for a line); a Dante port
    closes on an HTTP request without a word. Both are logged with what was tried."""
    http, socks_port = sensor.ports["http"], sensor.ports["socks"]
    assert exchange(http, b"\x05\x01\x00\x05\x01\x00\x03\x0emx.example.org\x00\x19") == b""
    assert exchange(socks_port, b"CONNECT 192.0.2.25:25 HTTP/1.0\r\n\r\nQUIT\r\n") == b""
    events = requests(sensor, 2)
    assert sorted((e["protocol"], e["module"], e["dst_port"], e["outcome"]) for e in events) == [
        ("http", "socks", socks_port, "error"),
        ("socks5", "http", http, "error"),
    ]


def test_cross_protocol_keeps_every_protocol_on_every_proxy_port(sensor_factory):
    sensor = sensor_factory(CROSS_PROTOCOL)
    http, socks_port = sensor.ports["http"], sensor.ports["socks"]
    reply = exchange(http, b"\x05\x01\x00\x05\x01\x00\x03\x0emx.example.org\x00\x19QUIT\r\n")
    assert reply[:2] == b"\x05\x00" and reply[2:4] == b"\x05\x00" and b"220 mx.example.org" in reply
    reply = exchange(socks_port, b"CONNECT 192.0.2.25:25 HTTP/1.0\r\n\r\nQUIT\r\n")
    assert reply.startswith(b"HTTP/1.1 200 Connection established\r\n\r\n220 ")
    events = requests(sensor, 2)
    assert [(e["protocol"], e["module"], e["dst_port"]) for e in events] == [
        ("socks5", "socks", http),
        ("http", "http", socks_port),
    ]


def test_judge_page_shows_what_squid_forwards(sensor):
    reply = exchange(
        sensor.ports["http"],
        b"GET http://judge.example/azenv.php HTTP/1.1\r\nHost: judge.example\r\n"
        b"User-Agent: checker/1.0\r\nProxy-Connection: keep-alive\r\nConnection: close\r\n\r\n",
    )
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"\r\nVia: 1.1 mx.sensor.example (squid/5.7)\r\n" in head
    assert b"REMOTE_ADDR = 127.0.0.1\n" in body  # the address the client connected to
    assert b"HTTP_USER_AGENT = checker/1.0\n" in body
    assert b"HTTP_VIA = 1.1 mx.sensor.example (squid/5.7)\n" in body
    assert b"HTTP_X_FORWARDED_FOR = 127.0.0.1\n" in body  # forwarded_for on, as Debian's
    assert b"PROXY_CONNECTION" not in body  # hop-by-hop: not forwarded


def test_non_smtp_web_policy_answers_inside_the_tunnel(sensor_factory):
    sensor = sensor_factory(extra='[proxy]\nnon_smtp = "web"\n')
    reply = exchange(
        sensor.ports["http"],
        b"CONNECT www.example.org:80 HTTP/1.1\r\n\r\nGET /index.html HTTP/1.1\r\n"
        b"Host: www.example.org\r\n\r\n",
    )
    assert reply.startswith(b"HTTP/1.1 200 Connection established\r\n\r\nHTTP/1.1 200 OK\r\n")
    reply = exchange(sensor.ports["http"], b"CONNECT www.example.org:443 HTTP/1.1\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 500")  # no TLS is emulated: still a failure
    events = sensor.wait_events(
        lambda ev: (
            any(e["eventid"] == "spampot.web.request" for e in ev)
            and sum(e["eventid"] == "spampot.proxy.request" for e in ev) >= 2
        )
    )
    first, second = [e for e in events if e["eventid"] == "spampot.proxy.request"]
    assert (first["outcome"], first["target_port"]) == ("other", 80)
    assert (second["outcome"], second["target_port"]) == ("other", 443)
    (web,) = [e for e in events if e["eventid"] == "spampot.web.request"]
    assert web["method"] == "GET" and web["path"] == "/index.html"
    assert web["host"] == "www.example.org" and web["session"] == first["session"]


def test_persona_depends_on_the_host_and_the_sensor_never_the_client():
    from spampot.personas import tunnel_persona

    hosts = [f"mx{i}.example{i}.org" for i in range(30)]
    a = [tunnel_persona("sensor-a", h) for h in hosts]
    assert a == [tunnel_persona("sensor-a", h) for h in hosts]
    b = [tunnel_persona("sensor-b", h) for h in hosts]
    assert [p for _, p in a] != [p for _, p in b]
    assert {name for name, _ in a} == set(hosts)  # a requested name is the banner's name
    assert {p for _, p in a} <= {"postfix", "exim", "sendmail", "exchange"}
    # The big providers answer in their own formats, whatever the sensor.
    for sensor in ("sensor-a", "sensor-b"):
        assert tunnel_persona(sensor, "gmail-smtp-in.l.google.com") == ("mx.google.com", "google")
        assert tunnel_persona(sensor, "alt4.gmail-smtp-in.l.google.com.")[1] == "google"
        assert tunnel_persona(sensor, "contoso-com.mail.protection.outlook.com")[1] == "outlook"
        assert tunnel_persona(sensor, "mta7.am0.yahoodns.net")[1] == "yahoo"
        assert tunnel_persona(sensor, "mxs.mail.ru") == ("mxs.mail.ru", "mailru")
        assert tunnel_persona(sensor, "mx3.qq.com")[1] == "qq"
        assert tunnel_persona(sensor, "163mx01.mxmail.netease.com")[1] == "netease"
        assert tunnel_persona(sensor, "mx00.gmx.net")[1] == "gmx"
        assert tunnel_persona(sensor, "mx-ha02.web.de")[0].startswith("mx-ha.web.de (mxweb")
    assert tunnel_persona("s", "notgmail.com")[1] != "google"
    # A bare address gets a plausible reverse name, never a placeholder.
    for address in ("192.0.2.25", "[198.51.100.7]", "2001:db8::25"):
        name, _ = tunnel_persona("sensor-a", address)
        assert name and address.strip("[]") not in name
        assert "localhost" not in name and "localdomain" not in name
    name, _ = tunnel_persona("sensor-a", "evil\r\n250 forged")
    assert "\n" not in name and "\r" not in name


def test_tunnel_dialects_narrow_the_common_mtas_and_leave_the_providers():
    from spampot.config import ConfigError, load_config
    from spampot.personas import tunnel_persona

    hosts = [f"mx{i}.example{i}.org" for i in range(40)]
    assert {tunnel_persona("s", h)[1] for h in hosts} == {"postfix", "exim", "exchange", "sendmail"}
    assert {tunnel_persona("s", h, ("postfix",))[1] for h in hosts} == {"postfix"}
    assert {tunnel_persona("s", h, ("exim", "sendmail"))[1] for h in hosts} == {"exim", "sendmail"}
    assert tunnel_persona("s", "mx.example0.org", ("postfix",))[0] == "mx.example0.org"
    assert tunnel_persona("s", "gmail-smtp-in.l.google.com", ("postfix",))[1] == "google"
    assert load_config(None, smtp__tunnel_dialects=["exim"]).smtp.tunnel_dialects == ("exim",)
    with pytest.raises(ConfigError, match="tunnel_dialects"):
        load_config(None, smtp__tunnel_dialects=["qmail"])


def test_a_tunnel_meets_the_configured_mta(sensor_factory):
    sensor = sensor_factory(extra='[smtp]\ntunnel_dialects = ["sendmail"]\n')
    for i in range(3):  # each waits out Sendmail's greet_pause (1 s)
        host = f"mx{i}.example{i}.org".encode()
        # QUIT only after the banner: Sendmail's greet_pause refuses a client that talks first.
        with socket.create_connection(("127.0.0.1", sensor.ports["http"]), timeout=10) as s:
            s.sendall(b"CONNECT " + host + b":25 HTTP/1.1\r\n\r\n")
            reply = b""
            while b"\r\n220 " not in reply and b"\r\n\r\n220 " not in reply:
                chunk = s.recv(4096)
                assert chunk, reply
                reply += chunk
            while not reply.endswith(b"\r\n"):
                reply += s.recv(4096)
            s.sendall(b"QUIT\r\n")
        assert b"ESMTP Sendmail" in reply, reply


def test_two_clients_asking_for_the_same_mx_meet_the_same_server(sensor):
    """The persona of a tunnelled server never depends on the client (the issue found 6 of
    6 names showing different software to two addresses)."""
    seen = []
    for source in ("127.0.0.1", "127.0.0.2"):
        with socket.create_connection(
            ("127.0.0.1", sensor.ports["socks"]), timeout=10, source_address=(source, 0)
        ) as s:
            s.sendall(b"\x05\x01\x00")
            assert s.recv(2) == b"\x05\x00"
            host = b"mail.victim-company.example"
            s.sendall(b"\x05\x01\x00\x03" + bytes([len(host)]) + host + b"\x00\x19")
            assert s.recv(10)[:2] == b"\x05\x00"
            banner = b""
            while not banner.endswith(b"\r\n"):
                chunk = s.recv(512)
                assert chunk
                banner += chunk
            s.sendall(b"EHLO c\r\nQUIT\r\n")
            rest = b""
            while chunk := s.recv(4096):
                rest += chunk
        # The persona's words, without the date some banners carry.
        seen.append((banner.split(b" ")[:4], rest.split(b"\r\n")[1:]))
    assert seen[0] == seen[1]
    assert seen[0][0][:2] == [b"220", b"mail.victim-company.example"]
