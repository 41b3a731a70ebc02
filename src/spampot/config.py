"""Configuration: one TOML file read into frozen dataclasses.

Every key has a default, so an empty file (or none) is a working sensor with the ports of the
paper's Table 1. Unknown keys are errors: a typo must not silently leave a default in force.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import socket
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from spampot.layout import DEFAULT_SENSOR_DATA_DIR, SensorLayout
from spampot.personas import generic_dialects
from spampot.protocols.http_proxy import MAX_BODY_BYTES, MAX_HEADER_BYTES
from spampot.protocols.proxy import ProxyPolicy
from spampot.protocols.smtp import SmtpLimits
from spampot.protocols.smtp_dialect import smtp_dialect_error
from spampot.protocols.socks import MAX_USERID, SocksDialect, load_dialect
from spampot.protocols.squid import SquidPersona
from spampot.protocols.squid import load_dialect as load_squid

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# The paper's Table 1 (DESIGN.md "Default ports").
TABLE1_SMTP = (25,)
TABLE1_HTTP = (80, 81, 2282, 3128, 3332, 3382, 3802, 4480, 5490, 6588, 8000, 8080, 8090, 11120,
               57123, 63809, 65506)  # fmt: skip
TABLE1_SOCKS = (559, 1029, 1080, 1202, 1813, 1978, 1979, 2280, 2425, 3127, 3380, 3800, 4471,
                4777, 4894, 5748, 6042, 7531, 9938, 10000, 10001, 10232, 11117, 15859, 19086,
                24971, 24972, 24973, 30021, 30022, 35612, 38994, 40934, 41457, 57123,
                63808)  # fmt: skip


def table1_module(port: int) -> str | None:
    """``http`` or ``socks``: the module a port belongs to in the paper's Table 1, for a
    port in exactly one of its proxy lists (Table 6 counts requests by it); else None."""
    http, socks = port in TABLE1_HTTP, port in TABLE1_SOCKS
    return "http" if http and not socks else "socks" if socks and not http else None


_LIMITS = SmtpLimits()
#: What AUTH the SMTP emulator offers (smtp.auth).
AUTH_OFFERS = ("tls", "always", "never")


class ConfigError(ValueError):
    """The configuration file is unreadable or holds a wrong key or value."""


# Restart-only keys, declared here and nowhere else: a SIGHUP keeps their running values and
# the sensor.reload event names the ones that changed. A whole section is restart-only when its
# class says RESTART_ONLY = True (sockets, identity, processes, the health recorder, the metrics
# listener are set up once); a single key when its field carries this metadata (what the writer
# process was started with).
_RESTART = "restart_only"


def restart_only(default: Any) -> Any:
    """A field whose value only a restart changes."""
    return field(default=default, metadata={_RESTART: True})


def split_server(server: str) -> tuple[str, int]:
    """An ``ntp_servers`` entry: ``host``, ``host:port``, ``[v6]:port`` or a bare IPv6
    address; the port defaults to 123. Raises ValueError on a bad port."""
    if server.startswith("["):
        host, _, rest = server[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else 123
    if server.count(":") == 1:
        host, port = server.split(":")
        return host, int(port)
    return server, 123


@dataclass(frozen=True, slots=True)
class SensorSection:
    RESTART_ONLY: ClassVar[bool] = True

    name: str = ""  # "" = this machine's short host name
    hostname: str = ""  # banner name on direct SMTP; "" = this machine's host name
    data_dir: str = DEFAULT_SENSOR_DATA_DIR
    bind: tuple[str, ...] = ("0.0.0.0", "::")
    allow_partial_bind: bool = False
    workers: int = 1
    listen_backlog: int = 1024
    # HAProxy PROXY protocol v1/v2 before the client's bytes, accepted only from these
    # networks (a front end, NAT helper or the traffic simulator on loopback).
    proxy_protocol: bool = False
    proxy_protocol_from: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    # Started as root, the sensor binds its ports, then runs as this user (and its primary
    # group unless ``group`` is set). "" keeps root, which is refused unless allow_root.
    user: str = "nobody"
    group: str = ""
    allow_root: bool = False
    # Behind a firewall redirect (deploy/spampot-redirect.nft), record the port the client
    # reached before NAT (SO_ORIGINAL_DST) instead of the high port the sensor listens on.
    original_dst: bool = False


@dataclass(frozen=True, slots=True)
class LimitsSection:
    """Connections and time a client may hold; enforced per worker process."""

    max_connections: int = 16384
    max_connections_per_ip: int = 256
    # A proxy request (or a trusted front end's PROXY header) must arrive within this.
    handshake_timeout: float = 30.0
    # RFC 5321 §4.5.3.2.7: a server should wait at least 5 minutes for the next command.
    command_timeout: float = 300.0
    # RFC 5321 §4.5.3.2.5/6: a client may take 3 minutes per DATA block; idle longer is gone.
    data_timeout: float = 300.0
    # Whole connection, however active: a slow trickle cannot hold a slot for ever.
    session_timeout: float = 1800.0


@dataclass(frozen=True, slots=True)
class SmtpSection:
    # The persona of direct SMTP ports: a dialect file in spampot/dialects/ (postfix, exim,
    # sendmail, exchange). Tunnelled servers get theirs from the requested host (personas.py).
    dialect: str = "postfix"
    # The common MTAs a tunnelled server other than a big provider's MX may be (postfix,
    # exim, exchange, sendmail), in the proportions of dialects/targets/providers.toml;
    # empty: all of them.
    tunnel_dialects: tuple[str, ...] = ()
    # STARTTLS with a certificate made at first start in <data_dir>/tls/ (Debian's snakeoil).
    starttls: bool = True
    # AUTH offered "tls" (only after STARTTLS, as Postfix with smtpd_tls_auth_only), "always"
    # or "never"; every attempt is logged and answered as a wrong password.
    auth: str = "tls"
    # SMTPS (RFC 8314, TLS from the first byte) and submission (RFC 6409) ports; none by
    # default, as Debian's Postfix and Exim listen on neither until configured to.
    smtps_ports: tuple[int, ...] = ()
    submission_ports: tuple[int, ...] = ()
    require_helo: bool = False
    max_line: int = _LIMITS.max_line
    max_message_size: int = _LIMITS.max_message_size
    message_cap: int = _LIMITS.message_cap
    max_recipients: int = _LIMITS.max_recipients
    max_messages: int = _LIMITS.max_messages
    max_errors: int = _LIMITS.max_errors

    @property
    def limits(self) -> SmtpLimits:
        return SmtpLimits(
            max_line=self.max_line,
            max_message_size=self.max_message_size,
            message_cap=self.message_cap,
            max_recipients=self.max_recipients,
            max_messages=self.max_messages,
            max_errors=self.max_errors,
        )


@dataclass(frozen=True, slots=True)
class PortsSection:
    RESTART_ONLY: ClassVar[bool] = True

    smtp: tuple[int, ...] = TABLE1_SMTP
    http: tuple[int, ...] = TABLE1_HTTP
    socks: tuple[int, ...] = TABLE1_SOCKS
    # false runs an SMTP-only sensor.
    proxies: bool = True
    # A port only under ``http`` is answered by the Squid persona whatever the client speaks,
    # one only under ``socks`` by the Dante persona; a port in both lists (57123) detects
    # HTTP, SOCKS4 and SOCKS5 from the first byte. true makes every proxy port detect.
    cross_protocol: bool = False


@dataclass(frozen=True, slots=True)
class ProxySection:
    non_smtp: str = "refuse"  # "refuse" (the paper) or "web"
    smtp_ports: tuple[int, ...] = (25,)
    web_ports: tuple[int, ...] = (80, 8080, 8000, 3128)
    # "" = the address each client connected to (see ProxyPolicy.public_address).
    public_address: str = ""
    # The Squid persona's version, in its Server header, Via and page footers (the pages are
    # Squid 5.7's, as Debian 12 ships it).
    squid_version: str = "5.7"
    web_server_software: str = "Apache"
    page_title: str = "Welcome"
    max_header_bytes: int = MAX_HEADER_BYTES
    max_body_bytes: int = MAX_BODY_BYTES
    max_socks_userid: int = MAX_USERID

    @property
    def policy(self) -> ProxyPolicy:
        return ProxyPolicy(
            smtp_ports=frozenset(self.smtp_ports),
            non_smtp=self.non_smtp,
            web_ports=frozenset(self.web_ports),
            public_address=self.public_address,
            web_server_software=self.web_server_software,
            page_title=self.page_title,
        )

    def squid(self, hostname: str, port: int) -> SquidPersona:
        """The Squid persona, calling itself ``hostname`` (Squid's visible_hostname default),
        its first http_port ``port``."""
        return SquidPersona(load_squid(version=self.squid_version), hostname, port)

    @property
    def socks_dialect(self) -> SocksDialect:
        return load_dialect("dante")


@dataclass(frozen=True, slots=True)
class SpoolSection:
    compress_level: int = restart_only(6)
    fsync: bool = restart_only(True)
    # Under either floor (or past the quota) the SMTP emulator answers 452 4.3.1 at MAIL,
    # as a real MTA short of queue space does; the spammer retries later.
    min_free_bytes: int = 256 * 1024 * 1024
    min_free_inodes: int = 10_000
    quota_bytes: int = 0  # 0 = no quota on the data dir's size


@dataclass(frozen=True, slots=True)
class EventsSection:
    rotate_bytes: int = restart_only(64 * 1024 * 1024)
    flush_interval: float = 1.0


@dataclass(frozen=True, slots=True)
class HealthSection:
    """What ``spampot health`` measures and how the daemon keeps its counters."""

    RESTART_ONLY: ClassVar[bool] = True

    interface: str = ""  # capture interface; "" = the one holding the default route
    # Where boot time, uptime, load and interface counters are read (node_exporter's
    # --path.procfs: a container reads its host's /proc mounted elsewhere).
    procfs: str = "/proc"
    # Each worker writes its counters to <data_dir>/state/ this often, and worker 0 records
    # the interface counters; the 15-minute figures are differences of these samples.
    sample_interval: float = 10.0
    # NTP servers asked directly, by address ("a.b.c.d", "a.b.c.d:port", "[v6]:port"): names
    # would need DNS, which the sensor's firewall blocks. Empty: the local chronyd or ntpd
    # (or systemd-timesyncd) says how far off the clock is.
    ntp_servers: tuple[str, ...] = ()
    ntp_timeout: float = 2.0
    chrony_socket: str = ""  # chronyc -h: "" = chronyc's default (the local chronyd)
    connect_timeout: float = 1.0  # per listener, for the "accepting" check on loopback
    spool_scan_limit: int = 1_000_000  # spool entries counted at most for the backlog


@dataclass(frozen=True, slots=True)
class MetricsSection:
    """The Prometheus management listener (off by default)."""

    RESTART_ONLY: ClassVar[bool] = True

    enabled: bool = False
    address: str = "127.0.0.1"
    port: int = 9725


@dataclass(frozen=True, slots=True)
class Config:
    sensor: SensorSection = field(default_factory=SensorSection)
    smtp: SmtpSection = field(default_factory=SmtpSection)
    ports: PortsSection = field(default_factory=PortsSection)
    proxy: ProxySection = field(default_factory=ProxySection)
    spool: SpoolSection = field(default_factory=SpoolSection)
    events: EventsSection = field(default_factory=EventsSection)
    health: HealthSection = field(default_factory=HealthSection)
    metrics: MetricsSection = field(default_factory=MetricsSection)
    limits: LimitsSection = field(default_factory=LimitsSection)

    @property
    def sensor_name(self) -> str:
        return self.sensor.name or socket.gethostname().split(".", 1)[0]

    @property
    def smtp_hostname(self) -> str:
        return self.sensor.hostname or socket.gethostname()

    @property
    def data_dir(self) -> Path:
        return Path(self.sensor.data_dir)

    @property
    def layout(self) -> SensorLayout:
        """Every path in the data dir (spampot.layout)."""
        return SensorLayout(self.data_dir)

    @property
    def trusted_proxies(self) -> tuple[IPNetwork, ...]:
        """Networks whose PROXY headers are believed; empty when the protocol is off."""
        if not self.sensor.proxy_protocol:
            return ()
        return tuple(ipaddress.ip_network(n, strict=False) for n in self.sensor.proxy_protocol_from)

    @property
    def squid_port(self) -> int:
        """The Squid persona's first http_port, which X-Cache-Lookup names: 3128 (Debian's
        squid.conf) when it is an HTTP port, else the first one listed."""
        http = self.ports.http
        return 3128 if 3128 in http or not http else http[0]

    def listeners(self) -> list[tuple[int, str]]:
        """(port, role) for every port that listens. Roles: "smtp", "submission", "smtps";
        "http" (only in ``ports.http``: the Squid persona), "socks" (only in ``ports.socks``:
        Dante), "proxy" (in both, or every proxy port under ``ports.cross_protocol``: the
        protocol is detected per client)."""
        roles = {port: "smtp" for port in self.ports.smtp}
        roles.update({port: "submission" for port in self.smtp.submission_ports})
        roles.update({port: "smtps" for port in self.smtp.smtps_ports})
        if self.ports.proxies:
            http, socks = set(self.ports.http), set(self.ports.socks)
            for port in sorted(http | socks):
                both = self.ports.cross_protocol or (port in http and port in socks)
                roles.setdefault(port, "proxy" if both else "http" if port in http else "socks")
        return sorted(roles.items())


def restart_only_keys() -> list[str]:
    """``section.key`` for every restart-only key, in the order of the file."""
    keys = []
    for section in dataclasses.fields(Config):
        cls = _SECTIONS[section.name]
        whole = getattr(cls, "RESTART_ONLY", False)
        keys += [
            f"{section.name}.{f.name}"
            for f in dataclasses.fields(cls)
            if whole or f.metadata.get(_RESTART, False)
        ]
    return keys


def restart_needed(old: Config, new: Config) -> list[str]:
    """The restart-only keys whose value differs between ``old`` and ``new``."""
    return [key for key in restart_only_keys() if _value(old, key) != _value(new, key)]


def keep_restart_only(new: Config, running: Config) -> Config:
    """``new`` with every restart-only key put back to its ``running`` value."""
    changes: dict[str, dict[str, Any]] = {}
    for key in restart_only_keys():
        section, name = key.split(".")
        changes.setdefault(section, {})[name] = _value(running, key)
    return dataclasses.replace(
        new,
        **{s: dataclasses.replace(getattr(new, s), **kv) for s, kv in changes.items()},
    )


def _value(config: Config, key: str) -> Any:
    section, name = key.split(".")
    return getattr(getattr(config, section), name)


_SECTIONS: dict[str, type] = {
    "sensor": SensorSection,
    "smtp": SmtpSection,
    "ports": PortsSection,
    "proxy": ProxySection,
    "spool": SpoolSection,
    "events": EventsSection,
    "health": HealthSection,
    "metrics": MetricsSection,
    "limits": LimitsSection,
}


def _section(cls: type, name: str, values: Any) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"[{name}] must be a table")
    defaults = cls()
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"[{name}] unknown key(s): {', '.join(unknown)}")
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        default = getattr(defaults, key)
        # An empty default list says nothing of its items: the annotation does.
        items = typing.get_args(hints[key])[:1] if default == () else ()
        kwargs[key] = _coerce(f"{name}.{key}", default, value, items[0] if items else None)
    return cls(**kwargs)


def _coerce(where: str, default: Any, value: Any, item_kind: type | None = None) -> Any:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{where} must be a non-negative integer")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(f"{where} must be a positive number")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list")
        kind = type(default[0]) if default else (item_kind or str)
        items = tuple(_coerce(where + "[]", kind(), v) for v in value)
        if kind is int and any(not 0 < p < 65536 for p in items):
            raise ConfigError(f"{where} holds a port outside 1..65535")
        return items
    raise ConfigError(f"{where}: unsupported value")  # pragma: no cover - schema bug


def load_config(path: Path | None = None, **overrides: Any) -> Config:
    """Read ``path`` (None = built-in defaults) and apply command-line overrides.

    ``overrides`` are ``section__key=value`` pairs, e.g. ``sensor__data_dir="/tmp/x"``.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                raw = tomllib.load(f)
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
    for dotted, value in overrides.items():
        if value is None:
            continue
        section, key = dotted.split("__", 1)
        raw.setdefault(section, {})[key] = value
    unknown = sorted(set(raw) - set(_SECTIONS))
    if unknown:
        raise ConfigError(f"unknown section(s): {', '.join(unknown)}")
    sections = {name: _section(_SECTIONS[name], name, raw.get(name, {})) for name in _SECTIONS}
    config = Config(**sections)
    if config.sensor.workers < 1:
        raise ConfigError("sensor.workers must be at least 1")
    if not 0 <= config.spool.compress_level <= 9:
        raise ConfigError("spool.compress_level must be 0..9")
    if not 0 < config.metrics.port < 65536:
        raise ConfigError("metrics.port must be 1..65535")
    try:  # a name would be looked up, and the sensor resolves none
        ipaddress.ip_address(config.metrics.address)
    except ValueError:
        raise ConfigError("metrics.address must be an IP address") from None
    problem = smtp_dialect_error(config.smtp.dialect)
    if problem is not None:
        raise ConfigError(f"smtp.dialect: {problem}")
    unknown_tunnel = sorted(set(config.smtp.tunnel_dialects) - set(generic_dialects()))
    if unknown_tunnel:
        raise ConfigError(
            f"smtp.tunnel_dialects: unknown {', '.join(unknown_tunnel)} "
            f"(known: {', '.join(generic_dialects())})"
        )
    if config.smtp.message_cap < 1:
        raise ConfigError("smtp.message_cap must be at least 1 byte")
    if config.smtp.auth not in AUTH_OFFERS:
        raise ConfigError(f"smtp.auth must be one of {', '.join(AUTH_OFFERS)}")
    if config.smtp.smtps_ports and not config.smtp.starttls:
        raise ConfigError("smtp.smtps_ports needs smtp.starttls (the certificate)")
    for server in config.health.ntp_servers:
        try:
            host, port = split_server(server)
            ipaddress.ip_address(host)
        except ValueError:
            raise ConfigError(
                f"health.ntp_servers: {server!r} is not an address (a.b.c.d, a.b.c.d:port or "
                "[v6]:port): a name needs DNS, which the sensor's firewall blocks; leave the "
                "list empty to ask the local chronyd or ntpd"
            ) from None
        if not 0 < port < 65536:
            raise ConfigError(f"health.ntp_servers: {server!r}: port must be 1..65535")
    try:
        config.trusted_proxies  # noqa: B018 - validates the networks
    except ValueError as exc:
        raise ConfigError(f"sensor.proxy_protocol_from: {exc}") from exc
    try:
        config.proxy.policy  # noqa: B018 - validates non_smtp and public_address
    except ValueError as exc:
        raise ConfigError(f"[proxy] {exc}") from exc
    if not re.fullmatch(r"[0-9][0-9A-Za-z.\-]{0,31}", config.proxy.squid_version):
        raise ConfigError("proxy.squid_version must be a version number such as 5.7")
    return config
