"""A real sensor's own files through ingest and report: the format as the sensor writes it.

The sensor trusts PROXY headers from loopback (as behind a front end), so test clients can
present documentation addresses that the fixture databases place in Taiwan and the US.
"""

from __future__ import annotations

import shutil
import socket
import time

from analysis_data import write_ip2asn, write_mmdbs
from spampot.analysis.enrich import build_enricher
from spampot.analysis.filters import ReportFilter, SensorInfo
from spampot.analysis.ingest import IngestConfig, ingest
from spampot.analysis.report import ReportOptions, build_report
from spampot.analysis.warehouse import open_warehouse

BODY = (
    "Subject: Cheap meds\r\n\r\nGenuine pills at the lowest price ever seen online, no"
    " prescription needed, discreet worldwide shipping within days, order now and save.\r\n"
)


def wait_listening(port: int) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class Client:
    def __init__(self, port: int, source: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        family = "TCP6" if ":" in source else "TCP4"
        dst = "2001:db8::10" if ":" in source else "192.0.2.10"
        self.sock.sendall(f"PROXY {family} {source} {dst} 40000 {port}\r\n".encode())
        self.file = self.sock.makefile("rb")

    def reply(self) -> bytes:
        lines = []
        while True:
            line = self.file.readline()
            lines.append(line)
            if len(line) < 4 or line[3:4] != b"-":
                return b"".join(lines)

    def smtp(self, rcpts: list[str], body: str) -> None:
        assert self.reply().startswith(b"220")
        for command in [b"EHLO spammer.example", b"MAIL FROM:<a@spam.example>"] + [
            f"RCPT TO:<{r}>".encode() for r in rcpts
        ]:
            self.sock.sendall(command + b"\r\n")
            assert self.reply()[:1] == b"2", command
        self.sock.sendall(b"DATA\r\n")
        assert self.reply().startswith(b"354")
        self.sock.sendall(body.encode() + b".\r\n")
        assert self.reply().startswith(b"250")
        self.sock.sendall(b"QUIT\r\n")
        self.reply()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def test_real_sensor_files_to_report(sensor_factory, tmp_path):
    sensor = sensor_factory(start=False, name="e2e")
    text = sensor.config_path.read_text()
    sensor.config_path.write_text(
        text.replace("allow_root = true", "allow_root = true\nproxy_protocol = true")
    )
    sensor.start(wait=False)  # its banner waits for a PROXY header from loopback
    wait_listening(sensor.smtp_port)
    direct = Client(sensor.smtp_port, "203.0.113.5")
    direct.smtp(["x@a.example", "y@b.example"], BODY)
    direct.close()
    via_socks = Client(sensor.ports["socks"], "203.0.113.6")
    via_socks.sock.sendall(b"\x05\x01\x00")
    assert via_socks.file.read(2) == b"\x05\x00"
    host = b"mx.victim.example"
    via_socks.sock.sendall(b"\x05\x01\x00\x03" + bytes([len(host)]) + host + b"\x00\x19")
    assert via_socks.file.read(10)[:2] == b"\x05\x00"
    via_socks.smtp(["z@a.example"], BODY)
    via_socks.close()
    web = Client(sensor.ports["http"], "2001:db8:1::9")
    web.sock.sendall(b"GET http://www.example.com/ HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
    assert web.file.readline().startswith(b"HTTP/1.")
    web.close()
    sensor.wait_events(lambda ev: sum(e["eventid"] == "spampot.session.close" for e in ev) >= 3)
    assert sensor.stop() == 0

    # What collection would mirror: spool/ as raw/<sensor>/ (the stop closed the event log
    # into spool/events/).
    raw = tmp_path / "raw" / "test-sensor"
    shutil.copytree(sensor.data_dir / "spool", raw)

    country, asn = write_mmdbs(tmp_path)
    enricher = build_enricher(
        country_mmdb=country, asn_mmdb=asn, ip2asn=write_ip2asn(tmp_path / "a.gz")
    )
    result = ingest(IngestConfig(tmp_path / "raw", tmp_path / "wh", threads=2), enricher)
    assert result.rows["messages"] == 2 and result.rows["proxy_requests"] == 2

    inventory = {"test-sensor": SensorInfo(("residential",), "Cable Co")}
    con = open_warehouse(tmp_path / "wh", ReportFilter(), inventory)
    report = build_report(con, ReportOptions(raw_dir=tmp_path / "raw"), inventory)
    con.close()
    stats = dict(report.table("table2_general").rows)
    assert stats["Total emails collected"] == 2
    assert stats["Total recipients"] == 3
    assert stats["Unique IPs sending spam"] == 2
    assert report.table("table3_countries").rows == [(1, "TW", 2, 100.0)]
    assert [r[1:3] for r in report.table("table4_ases").rows] == [(9924, "TFN-TW")]
    ports = {(r[1], r[2]) for r in report.table("table5_ports").rows}
    assert ports == {(sensor.smtp_port, "SMTP"), (sensor.ports["socks"], "SOCKS")}
    outcomes = {(r[0], r[1]): r[2] for r in report.table("table6_proxy_requests").rows}
    assert outcomes[("SOCKS", "connection to 25/TCP")] == 1
    assert outcomes[("HTTP", "get")] == 1
    assert [r[1] for r in report.table("top_destinations").rows] == [
        "mx.victim.example",
        "www.example.com",
    ]
    campaigns = report.table("campaigns").records()
    assert [(c["subject"], c["sampled"], c["sources"]) for c in campaigns] == [("Cheap meds", 2, 2)]
