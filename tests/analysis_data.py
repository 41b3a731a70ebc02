"""Small datasets in the sensor's exact on-disk format, with answers known by construction.

Events are encoded by the sensor's own :class:`EventBuffer` (only the clock is set by hand),
rotated files are named as the sensor names them, messages sit where the sensor puts them;
the tree is what ``spampot collect`` mirrors into ``raw/<sensor>/``.
"""

from __future__ import annotations

import datetime as dt
import gzip
import ipaddress
from collections import defaultdict
from pathlib import Path
from typing import Any

from spampot.sensor.events import Clock, EventBuffer
from spampot.sensor.paths import ip_component


class FixedClock(Clock):
    """The sensor's clock, showing a time set by the test."""

    def __init__(self) -> None:
        super().__init__()
        self.t = 0.0

    def now(self) -> tuple[float, str]:
        second = int(self.t)
        if second != self._second:
            self._tick(second)
        return self.t, f"{self._prefix}.{min(round((self.t - second) * 1e6), 999999):06d}Z"


def ts(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()


class SensorData:
    """One sensor's spool as collected: ``raw/<name>/events/…`` and message files."""

    def __init__(self, raw_dir: Path, name: str) -> None:
        self.dir = raw_dir / name
        self.name = name
        self.clock = FixedClock()
        self.buffer = EventBuffer(name, self.clock)
        self.lines: dict[str, list[bytes]] = defaultdict(list)  # by hour
        self._n = 0

    def _next(self) -> int:
        self._n += 1
        return self._n

    def _base(self, src_ip: str, dst_port: int) -> dict[str, Any]:
        return {
            "session": f"{self._next():012x}",
            "src_ip": src_ip,
            "src_port": 40000 + self._n % 20000,
            "dst_ip": "192.0.2.10",
            "dst_port": dst_port,
        }

    def _emit(self, when: float, eventid: str, base: dict[str, Any], **fields: Any) -> None:
        self.clock.t = when
        hour = self.clock.now()[1][:13].replace("-", "")
        self.lines[hour].append(self.buffer.encode(eventid, base, "test event", **fields))

    def message(
        self,
        when: str,
        src_ip: str,
        dst_port: int,
        rcpt_to: list[str],
        body: str = "Buy now",
        subject: str = "Offer",
        via: str | None = None,
    ) -> str:
        """A whole session that delivers one email; returns the message's path under raw/."""
        t = ts(when)
        via = via or ("smtp" if dst_port == 25 else "socks5")
        base = self._base(src_ip, dst_port)
        self._emit(t, "session.open", base)
        target: tuple[str | None, int | None] = (None, None)
        if via != "smtp":
            target = ("mx.victim.example", 25)
            self._emit(
                t,
                "proxy.request",
                base,
                protocol=via,
                version="5" if via == "socks5" else "HTTP/1.1",
                method="CONNECT",
                target_host=target[0],
                target_port=25,
                auth=None,
                outcome="smtp",
                reply="granted",
                error=None,
                headers=None,
            )
        queue_id = f"{self._next():010X}"
        day = when[:10]
        hhmmss = when[11:19].replace(":", "")
        rel = f"{day}/{dst_port}/{ip_component(src_ip)}/{hhmmss}-{queue_id}.eml.gz"
        data = (
            f"From: a@spam.example\r\nTo: {rcpt_to[0]}\r\nSubject: {subject}\r\n\r\n{body}\r\n"
        ).encode()
        path = self.dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(data))
        self._emit(
            t + 0.5,
            "smtp.message",
            base,
            via=via,
            target_host=target[0],
            target_port=target[1],
            helo="spammer.example",
            mail_from="a@spam.example",
            mail_params=None,
            rcpt_to=rcpt_to,
            size=len(data),
            sha256="0" * 64,
            queue_id=queue_id,
            file=rel,
        )
        self._emit(
            t + 1,
            "session.close",
            base,
            duration_s=1.0,
            bytes_in=len(data) + 100,
            bytes_out=200,
            reason="quit",
        )
        return f"{self.name}/{rel}"

    def proxy_request(
        self,
        when: str,
        src_ip: str,
        dst_port: int,
        protocol: str,
        outcome: str,
        target: tuple[str | None, int | None] = ("www.example.com", 80),
        method: str = "CONNECT",
    ) -> None:
        """A proxy connection that ends with its one request (no email)."""
        t = ts(when)
        base = self._base(src_ip, dst_port)
        self._emit(t, "session.open", base)
        self._emit(
            t,
            "proxy.request",
            base,
            protocol=protocol,
            version=None,
            method=method,
            target_host=target[0],
            target_port=target[1],
            auth={"method": "userpass", "username": "u", "password": "p"},
            outcome=outcome,
            reply="refused",
            error="bad request" if outcome == "error" else None,
            headers=None,
        )
        self._emit(
            t + 0.1,
            "session.close",
            base,
            duration_s=0.1,
            bytes_in=30,
            bytes_out=40,
            reason="client closed",
        )

    def smtp_reject(self, when: str, src_ip: str) -> None:
        base = self._base(src_ip, 25)
        self._emit(ts(when), "smtp.reject", base, stage="rcpt", code=452, why="recipients")

    def write(self) -> list[Path]:
        """Rotated event files, one per hour, named as the sensor names them."""
        out = self.dir / "events"
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for hour, lines in sorted(self.lines.items()):
            n = 0
            path = out / f"{self.name}-{hour}.jsonl.gz"
            while path.exists():
                n += 1
                path = out / f"{self.name}-{hour}-{n}.jsonl.gz"
            path.write_bytes(gzip.compress(b"".join(lines)))
            written.append(path)
        self.lines.clear()
        return written


# --- fixture address databases --------------------------------------------------------------

# (network, country of the addresses, AS number, AS name, AS registration country)
NETWORKS = [
    ("203.0.113.0/24", "TW", 9924, "TFN-TW", "TW"),
    ("198.51.100.0/24", "CN", 4837, "CHINA169", "CN"),
    ("2001:db8:1::/48", "US", 33322, "NDCHOST", "US"),
    ("100.64.0.0/16", "BR", 28573, "CLARO", "BR"),
]
# 192.0.2.0/24 and 2001:db8:ffff::/48 are in no database: unknown.


def write_mmdbs(directory: Path) -> tuple[Path, Path]:
    """A GeoLite2-Country-like and a GeoLite2-ASN-like database of NETWORKS."""
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    country = MMDBWriter(
        ip_version=6, ipv4_compatible=True, database_type="GeoLite2-Country", languages=["en"]
    )
    asn = MMDBWriter(
        ip_version=6, ipv4_compatible=True, database_type="GeoLite2-ASN", languages=["en"]
    )
    for network, cc, number, name, _as_cc in NETWORKS:
        country.insert_network(IPSet([network]), {"country": {"iso_code": cc}})
        asn.insert_network(
            IPSet([network]),
            {"autonomous_system_number": number, "autonomous_system_organization": name},
        )
    paths = (directory / "GeoLite2-Country.mmdb", directory / "GeoLite2-ASN.mmdb")
    country.to_db_file(str(paths[0]))
    asn.to_db_file(str(paths[1]))
    return paths


def write_ip2asn(path: Path) -> Path:
    """The ip2asn TSV format, gzip-compressed, with a "Not routed" range as the real file has."""
    lines = ["0.0.0.0\t0.255.255.255\t0\tNone\tNot routed"]
    for network, _cc, number, name, as_cc in NETWORKS:
        net = ipaddress.ip_network(network)
        lines.append(f"{net[0]}\t{net[-1]}\t{number}\t{as_cc}\t{name}")
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    return path


# --- the known dataset ---------------------------------------------------------------------

TEMPLATE_A = (
    "Dear friend, genuine Swiss replica watches at the lowest prices of the year. Rolex,"
    " Omega and Breitling models ship within {n} days to any country, discreet packaging and"
    " full warranty included. Order today and receive a second watch free of charge, only"
    " {n} pieces left in stock, visit our shop now."
)
TEMPLATE_B = (
    "Increase your stock portfolio by {n} percent this week: the small company everyone is"
    " talking about announces record earnings on Monday, analysts expect the share price to"
    " triple before the market closes on Friday, buy before it is too late and tell a friend."
)

INVENTORY = """
[central]
data_dir = "."

[[sensor]]
name = "res-1"
host = "res-1.example.net"
key = "key"
host_key = "{key}"
tags = ["residential"]
isp = "Cable Co"

[[sensor]]
name = "res-2"
host = "res-2.example.net"
key = "key"
host_key = "{key}"
tags = ["residential"]
isp = "DSL Co"

[[sensor]]
name = "biz-1"
host = "biz-1.example.net"
key = "key"
host_key = "{key}"
tags = ["business"]
isp = "Business Co"
"""
# A syntactically valid ed25519 public key line (type name inside the blob).
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def build_known(raw_dir: Path) -> None:
    """The dataset whose every table is worked out by hand in test_analysis_report.py."""
    res1 = SensorData(raw_dir, "res-1")
    res2 = SensorData(raw_dir, "res-2")
    biz1 = SensorData(raw_dir, "biz-1")
    # Day 1, 2026-03-02.
    for i in range(4):
        res1.message(
            f"2026-03-02T10:0{i}:00",
            "203.0.113.5",
            1080,
            ["u1@a.example", "u2@a.example" if i else "u2@A.EXAMPLE", "u3@b.example"],
            body=TEMPLATE_A.format(n=i + 3),
            subject="Replica watches",
        )
    for i in range(2):
        res1.message(
            f"2026-03-02T11:0{i}:00",
            "198.51.100.7",
            8080,
            ["v@a.example"],
            via="http",
            body=TEMPLATE_B.format(n=100 + i),
            subject="Hot stock tip",
        )
    biz1.message(
        "2026-03-02T12:00:00",
        "2001:db8:1::9",
        25,
        ["w1@c.example", "w2@c.example"],
        body="A message about nothing in particular, written once and never again.",
        subject="Hello",
    )
    # Day 2, 2026-03-03.
    for i in range(2):
        res2.message(
            f"2026-03-03T08:0{i}:00",
            "203.0.113.6",
            1080,
            ["x1@e.example", "x2@e.example", "x3@e.example"],
            via="socks4",
            body=TEMPLATE_A.format(n=20 + i),
            subject="Replica watches",
        )
    biz1.message(
        "2026-03-03T09:00:00",
        "192.0.2.77",
        3128,
        ["y@b.example"],
        via="http",
        body="Meeting notes from the quarterly review, nothing to buy here at all.",
        subject="Notes",
    )
    res1.message(
        "2026-03-03T23:59:59",
        "2001:db8:ffff::1",
        25,
        ["z@c.example"],
        body="Completely different words about gardening, tomatoes and the summer rain.",
        subject="Garden",
    )
    # Day 4, 2026-03-05 (nothing on day 3).
    biz1.message(
        "2026-03-05T00:00:00",
        "100.64.1.1",
        8080,
        [f"d{i}@d.example" for i in range(5)],
        via="http",
        body="Lottery winner notification: claim your prize of one million by replying.",
        subject="You won",
    )
    # Proxy requests without email, all on res-1.
    res1.proxy_request("2026-03-02T13:00:00", "203.0.113.5", 8080, "http", "other",
                       ("www.example.com", 443))  # fmt: skip
    for minute in (1, 2):
        res1.proxy_request(f"2026-03-02T13:0{minute}:00", "203.0.113.5", 8080, "http", "get",
                           ("www.example.com", 80), method="GET")  # fmt: skip
    res1.proxy_request("2026-03-02T13:03:00", "203.0.113.5", 80, "http", "error", (None, None),
                       method=None)  # fmt: skip
    res1.proxy_request("2026-03-02T14:00:00", "198.51.100.7", 1080, "socks5", "other",
                       ("irc.example.net", 6667))  # fmt: skip
    for minute in (1, 2):
        res1.proxy_request(f"2026-03-02T14:0{minute}:00", "198.51.100.7", 1080, "socks4",
                           "error", (None, None), method=None)  # fmt: skip
    res1.proxy_request("2026-03-02T15:00:00", "192.0.2.1", 3128, "unknown", "error",
                       (None, None), method=None)  # fmt: skip
    biz1.smtp_reject("2026-03-02T16:00:00", "198.51.100.7")
    for sensor in (res1, res2, biz1):
        sensor.write()


def write_inventory(path: Path) -> Path:
    path.write_text(INVENTORY.format(key=HOST_KEY))
    return path
