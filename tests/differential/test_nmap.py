"""``nmap -sV`` names the sensor's services as the software it imitates.

nmap runs in the sensor's namespace against its ports 25, 3128, 8080 (HTTP proxy) and 1080
(SOCKS). The same scan of the real Postfix, Squid and Dante shows what nmap says of the real
thing, so these checks can fail: the sensor must be named Postfix smtpd on 25, Squid http
proxy on 3128 and 8080, a SOCKS5 service on 1080, and never Apache.

Before the Squid and Dante personas nmap said of the sensor "http Apache httpd" on 1080, 3128
and 8080; it now says what it says of the real servers.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
import realservers

from conftest import need_tool

PORTS = (25, 1080, 3128, 8080)


def scan(server: realservers.Server) -> dict[int, tuple[str, str]]:
    """{port: (service name, product)} as ``nmap -sV`` reports them."""
    need_tool("nmap")
    out = server.netns.run(
        "nmap", "-sV", "-Pn", "-n", "-p", ",".join(map(str, PORTS)), "-oX", "-", "127.0.0.1",
        timeout=300,
    )  # fmt: skip
    found = {}
    for port in ET.fromstring(out).iter("port"):
        service = port.find("service")
        if service is None:
            continue
        found[int(port.get("portid", 0))] = (service.get("name", ""), service.get("product", ""))
    return found


@pytest.fixture(scope="module")
def sensor_scan(sensors) -> dict[int, tuple[str, str]]:
    return scan(sensors["postfix"])


@pytest.fixture(scope="module")
def real_scan(proxies) -> dict[int, tuple[str, str]]:
    """Squid, Dante and Postfix share a namespace: one scan sees all three."""
    return scan(proxies[0])


def test_nmap_names_the_real_software(real_scan):
    """The control: what the sensor's checks below ask for is what nmap says of the real
    Postfix, Squid and Dante."""
    assert real_scan[25] == ("smtp", "Postfix smtpd")
    assert real_scan[3128] == ("http-proxy", "Squid http proxy")
    assert real_scan[8080] == ("http-proxy", "Squid http proxy")
    assert real_scan[1080][0] == "socks5"


def test_nmap_names_the_sensor_postfix_smtpd_on_25(sensor_scan):
    assert sensor_scan[25] == ("smtp", "Postfix smtpd")


@pytest.mark.parametrize("port", [3128, 8080])
def test_nmap_names_the_sensor_squid_on_http_proxy_ports(sensor_scan, port):
    assert sensor_scan[port] == ("http-proxy", "Squid http proxy")


def test_nmap_names_the_sensor_socks5_on_1080(sensor_scan):
    assert sensor_scan[1080][0] == "socks5"


def test_nmap_never_names_apache(sensor_scan):
    assert not [port for port, (_, product) in sensor_scan.items() if "Apache" in product]
