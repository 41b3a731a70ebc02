"""The Prometheus management listener: ``spampot health`` figures as metrics, on request.

Served by worker 0 with prometheus_client's own HTTP server (a thread), from a collector that
builds every family at scrape time from the same report ``spampot health`` gives, minus what
talks to the network: the daemon opens no outbound connection (no NTP query, DESIGN.md
invariant 1) and does not probe its own listeners on every scrape.
"""

from __future__ import annotations

import socket
import socketserver
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import CollectorRegistry, ProcessCollector, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from spampot.config import Config
from spampot.sensor.health import health_report, parse_rfc3339

SPOOL_CACHE_SECONDS = 60.0  # the spool walk is the costly part; a backlog changes slowly


class SensorCollector(Collector):
    def __init__(self, config: Config, listeners: int) -> None:
        self.config = config
        self.listeners = listeners
        self._lock = threading.Lock()
        self._spool: tuple[float, dict[str, Any]] | None = None

    def collect(self) -> Iterator[Metric]:
        with self._lock:  # one scrape at a time: the report reads files and walks the spool
            report = health_report(self.config, live=False)
            now = time.monotonic()
            if self._spool is not None and now - self._spool[0] < SPOOL_CACHE_SECONDS:
                report["spool"] = self._spool[1]
            else:
                self._spool = (now, report["spool"])
        yield from families(report, self.listeners, self.config.sensor.workers)


def _gauge(name: str, doc: str, value: float | None) -> Iterator[Metric]:
    if value is not None:
        yield GaugeMetricFamily(name, doc, value=value)


def families(report: dict[str, Any], listeners: int = 0, workers: int = 1) -> Iterator[Metric]:
    """Metric families for one health report; names follow the Prometheus conventions."""
    traffic = report["traffic"]
    totals = traffic["totals"]
    for name, key, doc in (
        ("spampot_sessions", "sessions", "TCP sessions opened by clients."),
        ("spampot_messages", "messages", "Messages captured (stored on disk)."),
        ("spampot_received_bytes", "bytes_in", "Bytes received from clients."),
        ("spampot_sent_bytes", "bytes_out", "Bytes sent to clients."),
    ):
        yield CounterMetricFamily(name, doc, value=totals[key])
    requests = CounterMetricFamily(
        "spampot_proxy_requests",
        "Requests to the HTTP and SOCKS modules by protocol and outcome (paper Table 6).",
        labels=["protocol", "outcome"],
    )
    for key, n in sorted(totals["proxy_requests"].items()):
        protocol, _, outcome = key.partition("/")
        requests.add_metric([protocol, outcome], n)
    yield requests
    rejects = CounterMetricFamily(
        "spampot_smtp_rejects", "SMTP commands or messages refused, by reason.", labels=["why"]
    )
    for why, n in sorted(totals["rejects"].items()):
        rejects.add_metric([why], n)
    yield rejects
    yield from _gauge(
        "spampot_last_message_timestamp_seconds",
        "When the last message was captured.",
        parse_rfc3339(traffic["last_message"]),
    )
    yield from _gauge(
        "spampot_start_timestamp_seconds",
        "When the sensor's workers started.",
        parse_rfc3339(traffic["since"]),
    )

    iface = traffic["interface"]
    if "rx_bytes" in iface:
        for direction, prefix in (("receive", "rx"), ("transmit", "tx")):
            for unit in ("bytes", "packets"):
                family = CounterMetricFamily(
                    f"spampot_interface_{direction}_{unit}",
                    f"{unit.capitalize()} {direction}d on the capture interface (net/dev).",
                    labels=["interface"],
                )
                family.add_metric([iface["name"]], iface[f"{prefix}_{unit}"])
                yield family

    system = report["system"]
    yield from _gauge(
        "spampot_boot_timestamp_seconds",
        "When the machine booted.",
        parse_rfc3339(system["boot_time"]),
    )
    if system["load"] is not None:
        for minutes, value in zip((1, 5, 15), system["load"], strict=True):
            yield GaugeMetricFamily(
                f"spampot_load{minutes}", f"Load average over {minutes} minute(s).", value=value
            )
    yield GaugeMetricFamily("spampot_cpus", "Processors online.", value=system["cpus"])

    disk = report["disk"]
    if "total_bytes" in disk:
        for name, key, doc in (
            ("spampot_data_dir_size_bytes", "total_bytes", "Size of the data dir's filesystem."),
            ("spampot_data_dir_avail_bytes", "avail_bytes", "Bytes the sensor may still write."),
            ("spampot_data_dir_inodes", "inodes_total", "Inodes of the data dir's filesystem."),
            ("spampot_data_dir_inodes_used", "inodes_used", "Inodes in use."),
        ):
            yield GaugeMetricFamily(name, doc, value=disk[key])

    processes = report["processes"]
    yield GaugeMetricFamily(
        "spampot_workers_fresh",
        "Worker processes whose counters were written recently.",
        value=sum(1 for w in processes["workers"] if w["fresh"]),
    )
    yield GaugeMetricFamily(
        "spampot_workers_configured", "Worker processes configured.", value=workers
    )
    yield GaugeMetricFamily("spampot_listeners", "Sockets worker 0 listens on.", value=listeners)

    spool = report["spool"]
    yield GaugeMetricFamily(
        "spampot_spool_files", "Files in the spool not yet collected.", value=spool["files"]
    )
    yield GaugeMetricFamily(
        "spampot_spool_bytes", "Bytes in the spool not yet collected.", value=spool["bytes"]
    )
    yield from _gauge(
        "spampot_last_collection_timestamp_seconds",
        "When the central server last collected the spool.",
        parse_rfc3339(report["collection"]["time"]),
    )


def start_exporter(config: Config, listeners: int) -> bool:
    """Listen on the management address; False (and a line on stderr) when it cannot."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SensorCollector(config, listeners))
    ProcessCollector(registry=registry)  # process_* of worker 0: memory, CPU, descriptors
    try:
        server = _management_server(config.metrics.address, config.metrics.port)
    except OSError as exc:
        print(
            f"spampot: cannot serve metrics on {config.metrics.address} port "
            f"{config.metrics.port}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return False
    server.set_app(make_wsgi_app(registry))
    threading.Thread(target=server.serve_forever, name="spampot-metrics", daemon=True).start()
    return True


class _ManagementServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True

    def server_bind(self) -> None:
        # http.server's server_bind names the server with socket.getfqdn(address): a reverse
        # look-up, i.e. a DNS query for any address not in /etc/hosts. The sensor makes none
        # (DESIGN.md invariant 1); the address is the name.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)
        self.setup_environ()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _management_server(address: str, port: int) -> _ManagementServer:
    """A threaded WSGI server on an IP literal (the config checks it is one)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    server_class = type("_Server", (_ManagementServer,), {"address_family": family})
    return server_class((address, port), _QuietHandler)
