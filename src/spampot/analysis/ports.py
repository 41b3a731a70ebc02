"""What usually listens on a TCP port: the "usual service" column of the paper's Table 5.

The paper's own names first (Table 5), then the ports every proxy scanner tries. A port not
listed is shown as unknown rather than with a guess.
"""

from __future__ import annotations

from spampot.config import TABLE1_HTTP, TABLE1_SOCKS, table1_module

PORT_SERVICES: dict[int, str] = {
    # The paper's Table 5, with its wording.
    25: "smtp",
    80: "http",
    81: "alternate http",
    1080: "socks",
    3127: "MyDoom Backdoor",
    3128: "Squid",
    3382: "Sobig.f Backdoor",
    4480: "Proxy+",
    6588: "AnalogX",
    8000: "alternate http",
    8080: "alternate http",
    # Other common open-proxy ports (IANA names or the software known to use them).
    443: "https",
    587: "submission",
    1081: "socks (alternate)",
    3129: "Squid (alternate)",
    3130: "Squid ICP",
    4145: "socks (alternate)",
    8081: "alternate http",
    8088: "alternate http",
    8090: "alternate http",
    8118: "Privoxy",
    8888: "alternate http",
    9050: "Tor socks",
    10000: "Webmin",
}


def usual_service(port: int | None) -> str:
    if port is None:
        return "unknown"
    return PORT_SERVICES.get(port, "unknown")


def port_modules() -> list[tuple[int, str]]:
    """Port -> the module (``HTTP`` or ``SOCKS``) it belongs to in the paper's Table 1.

    Table 6 counts a request in the module of the port it came to, as the paper does; a port
    in both lists (57123) or in neither is classed by the protocol the client spoke.
    """
    ports = sorted({*TABLE1_HTTP, *TABLE1_SOCKS})
    return [(p, m.upper()) for p in ports if (m := table1_module(p)) is not None]


def port_modules_sql() -> str:
    """:func:`port_modules` as a query that DuckDB and Spark SQL both run (the view
    ``port_modules`` the report's SQL reads)."""
    rows = ", ".join(f"({port}, '{module}')" for port, module in port_modules())
    return f"SELECT * FROM (VALUES {rows}) AS t(port, module)"
