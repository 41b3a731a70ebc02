"""The simulation profile: what synthetic traffic looks like, read from TOML.

Every key has a default calibrated on the paper (§4.2, Tables 2-6), so an empty profile
reproduces the paper's shape. A profile file replaces whole keys: ``[[origin]]`` entries replace
the built-in origin table, ``[[port]]`` entries the port table, ``[[sensor]]`` entries the fleet.
Unknown keys are errors, as in the sensor's configuration.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import math
import tomllib
from dataclasses import dataclass, field, fields, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

# Paper Table 3: the top country codes and their share of emails (%).
TABLE3 = {"TW": 73.43, "CN": 15.80, "US": 5.67, "CA": 1.27, "JP": 1.03, "HK": 0.84,
          "KR": 0.78, "UA": 0.34, "DE": 0.18, "BR": 0.16}  # fmt: skip
# Paper Table 4: (ASN, name, country, % of emails).
TABLE4 = [(9924, "TFN-TW", "TW", 32.60), (3462, "HINET", "TW", 25.04),
          (17623, "CNCGROUP", "CN", 12.43), (4780, "SEEDNET", "TW", 10.38),
          (9919, "NCIC-TW", "TW", 1.75), (4837, "CHINA169", "CN", 1.72),
          (33322, "NDCHOST", "US", 1.59), (4134, "CHINANET", "CN", 1.39),
          (18429, "EXTRALAN", "TW", 1.29), (7271, "LOOKAS", "CA", 1.07)]  # fmt: skip
# Paper Table 5: (port, module, % of emails). The module is what clients speak on the port.
TABLE5 = [(1080, "socks", 37.31), (8080, "http", 34.79), (80, "http", 10.92),
          (3128, "http", 6.17), (8000, "http", 2.76), (6588, "http", 2.29),
          (25, "smtp", 1.46), (4480, "http", 1.38), (3127, "socks", 1.00),
          (3382, "http", 0.96), (81, "http", 0.96)]  # fmt: skip
# Paper Table 6: requests to each proxy module by outcome (%).
TABLE6_HTTP = {"smtp": 97.62, "other": 0.12, "get": 0.25, "error": 2.01}
TABLE6_SOCKS = {"smtp": 87.31, "other": 1.97, "error": 10.72}
# Paper Table 2.
PAPER_START = dt.date(2006, 6, 10)
PAPER_DAYS = 466
PAPER_EMAILS = 524_585_779
PAPER_UNIQUE_IPS = 216_888
RECIPIENTS_PER_SPAM = 9.16
# Emails per tunnel, from Tables 5 and 6: the HTTP ports carried 60.23 % of 524.6 M emails over
# 89.5 M tunnels to port 25 (3.53 each); the SOCKS ports 38.31 % over 46.8 M (4.30 each).
MESSAGES_PER_SESSION = {"smtp": 3.0, "http": 3.53, "socks": 4.30}
# Share of the remaining emails of the paper (0.50 %) spread over other countries.
TAIL_SHARE = 100.0 - sum(TABLE3.values())

PROTOCOLS = ("smtp", "http", "socks")
HTTP_OUTCOMES = ("smtp", "other", "get", "error")
SOCKS_OUTCOMES = ("smtp", "other", "error")
SOCKS_VERSIONS = ("socks4", "socks4a", "socks5")


class ProfileError(ValueError):
    """A profile file is unreadable or holds a wrong key or value."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where sessions come from: one AS in one country, and its address ranges."""

    country: str  # ISO 3166 code as a geo database gives it; "" for "no database knows"
    asn: int  # 0 when unknown
    as_name: str
    share: float  # relative weight of emails (the tables' %)
    networks: tuple[str, ...]
    drift: float = 0.0  # -1..1: share × (1 + drift × (2t - 1)) over the period (t in 0..1)


@dataclass(frozen=True, slots=True)
class PortShare:
    port: int
    protocol: str  # "smtp" (direct), "http" or "socks": what clients speak there
    share: float
    drift: float = 0.0


@dataclass(frozen=True, slots=True)
class SensorSpec:
    name: str
    tags: tuple[str, ...] = ()
    weight: float = 1.0
    isp: str = ""


def _default_sensors() -> tuple[SensorSpec, ...]:
    # The paper's 10 sensors, on broadband lines in Brazil; which were residential is not said,
    # so six residential and four business ones give the tag filters something to split.
    return tuple(
        SensorSpec(
            f"br-{i:02d}",
            ("residential",) if i <= 6 else ("business",),
            1.0 + 0.1 * i,
            "residential broadband" if i <= 6 else "business line",
        )
        for i in range(1, 11)
    )


def _origins() -> tuple[Origin, ...]:
    return default_origins()  # defined below, with the tables it reads


def _default_ports() -> tuple[PortShare, ...]:
    # Figure 3's shapes are not in the text: 1080 gains over 8080 across the period as an
    # illustration; the drifts cancel, so the period's totals stay Table 5's.
    drift = {1080: 0.4, 8080: -0.4 * 37.31 / 34.79}
    return tuple(PortShare(p, m, s, round(drift.get(p, 0.0), 4)) for p, m, s in TABLE5)


@dataclass(frozen=True, slots=True)
class Profile:
    seed: int = 2007
    start: dt.date = PAPER_START
    days: int = 30
    messages: int = 100_000
    #: Distinct source addresses; 0 scales the paper's 216,888 to the message count.
    unique_ips: int = 0
    sensors: tuple[SensorSpec, ...] = field(default_factory=_default_sensors)
    origins: tuple[Origin, ...] = field(default_factory=lambda: _origins())
    ports: tuple[PortShare, ...] = field(default_factory=_default_ports)
    http_outcomes: tuple[tuple[str, float], ...] = tuple(TABLE6_HTTP.items())
    socks_outcomes: tuple[tuple[str, float], ...] = tuple(TABLE6_SOCKS.items())
    #: SOCKS versions spoken on SOCKS ports (the paper does not split them).
    socks_versions: tuple[tuple[str, float], ...] = (
        ("socks4", 30.0),
        ("socks4a", 10.0),
        ("socks5", 60.0),
    )
    #: Share of error requests that are binary junk (protocol "unknown") rather than a
    #: malformed request of the port's protocol.
    junk_share: float = 0.2
    messages_per_session: tuple[tuple[str, float], ...] = tuple(MESSAGES_PER_SESSION.items())
    recipients_mean: float = RECIPIENTS_PER_SPAM
    recipients_max: int = 1000
    #: Distinct recipient addresses the spammers' lists hold.
    victims: int = 200_000
    #: Content campaigns (near-identical messages); 0 makes every message its own.
    campaigns: int = 200
    #: Day-to-day variation of the volume (lognormal sigma) and weekend factor.
    daily_sigma: float = 0.25
    weekend_factor: float = 0.8
    #: Share of proxied sessions that name the SMTP server by host name instead of address.
    target_names: float = 0.3
    #: Share of SOCKS5 sessions that authenticate with username/password.
    socks5_auth: float = 0.1
    #: Share of sessions carrying mail whose first message is a relay test to one of the
    #: spammers' own mailboxes (an assumption: the paper does not count them).
    relay_tests: float = 0.01
    #: Where the sensors say they are (dst_ip in events).
    sensor_address: str = "192.0.2.10"

    def module_share(self, protocol: str) -> dict[str, float]:
        pairs = self.http_outcomes if protocol == "http" else self.socks_outcomes
        return dict(pairs)

    @property
    def end(self) -> dt.date:
        return self.start + dt.timedelta(days=self.days - 1)

    def effective_unique_ips(self) -> int:
        """The paper saw 216,888 addresses in 524.6 M emails; fewer messages, fewer addresses.

        Scaled with the square root of the message count (a population that is revisited,
        not renewed), and never more than the message count.
        """
        if self.unique_ips:
            return self.unique_ips
        scaled = PAPER_UNIQUE_IPS * math.sqrt(self.messages / PAPER_EMAILS)
        return max(1, min(self.messages, round(scaled)))


# --- the default origin table --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OriginRow:
    """One line of origins.tsv: a network GeoLite2 places in ``country`` and names ``as_name``."""

    country: str
    asn: int
    as_name: str
    network: str
    registry_name: str


@cache
def origin_rows() -> tuple[OriginRow, ...]:
    text = resources.files("spampot.simulate").joinpath("origins.tsv").read_text("utf-8")
    rows = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        cc, asn, name, net, org = line.split("\t")
        rows.append(OriginRow(cc, int(asn), name, net, org))
    return tuple(rows)


@cache
def default_origins() -> tuple[Origin, ...]:
    """Tables 3 and 4 as origins, with networks from origins.tsv.

    Each Table 4 AS keeps its share. What a Table 3 country has beyond its Table 4 ASes (e.g.
    TW 73.43 % − 71.06 %) is split evenly over that country's other ASes in the table; the
    paper's last 0.50 % goes to the remaining countries with a Zipf-like decline.
    """
    rows = origin_rows()
    grouped: dict[tuple[str, int, str], list[str]] = {}
    for row in rows:
        grouped.setdefault((row.country, row.asn, row.as_name), []).append(row.network)
    top = {asn: share for asn, _, _, share in TABLE4}
    # Figure 2's shapes are not in the text: Chinese ASes gain on Taiwanese ones across the
    # period as an illustration, with drifts that cancel so Table 3's totals hold.
    drift = {17623: 0.5, 4837: 0.5, 4134: 0.5, 9924: -0.5 * (12.43 + 1.72 + 1.39) / 32.60}
    origins: list[Origin] = []
    residual = {cc: share for cc, share in TABLE3.items()}
    for _, _, cc, share in TABLE4:
        residual[cc] -= share
    others: dict[str, list[tuple[int, str, list[str]]]] = {}
    tail: list[tuple[str, int, str, list[str]]] = []
    for (cc, asn, name), nets in grouped.items():
        if asn in top:
            origins.append(
                Origin(cc, asn, name, top[asn], tuple(nets), round(drift.get(asn, 0), 4))
            )
        elif cc in TABLE3:
            others.setdefault(cc, []).append((asn, name, nets))
        else:
            tail.append((cc, asn, name, nets))
    for cc, entries in others.items():
        each = max(residual[cc], 0.0) / len(entries)
        origins += [Origin(cc, asn, name, each, tuple(nets)) for asn, name, nets in entries]
    weights = [1.0 / (i + 10) for i in range(len(tail))]
    scale = TAIL_SHARE / sum(weights) if weights else 0.0
    origins += [
        Origin(cc, asn, name, round(w * scale, 6), tuple(nets))
        for (cc, asn, name, nets), w in zip(tail, weights, strict=True)
    ]
    return tuple(origins)


# --- reading a profile file ----------------------------------------------------------------

_LIST_KEYS = {"origin": "origins", "port": "ports", "sensor": "sensors"}
_TABLE_KEYS = {
    "http_outcomes": HTTP_OUTCOMES,
    "socks_outcomes": SOCKS_OUTCOMES,
    "socks_versions": SOCKS_VERSIONS,
    "messages_per_session": PROTOCOLS,
}


def load_profile(path: Path | None = None, **overrides: Any) -> Profile:
    """The default profile, with ``path`` (TOML) and then non-None ``overrides`` over it."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            values = tomllib.loads(path.read_text("utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ProfileError(f"{path}: {exc}") from exc
    values.update({k: v for k, v in overrides.items() if v is not None})
    return profile_from_dict(values)


def profile_from_dict(values: dict[str, Any]) -> Profile:
    known = {f.name for f in fields(Profile)}
    kwargs: dict[str, Any] = {}
    defaults = Profile()
    for key, value in values.items():
        if key in _LIST_KEYS:
            kwargs[_LIST_KEYS[key]] = _entries(key, value)
        elif key in _TABLE_KEYS:
            kwargs[key] = _shares(key, value, _TABLE_KEYS[key])
        elif key == "start":
            kwargs[key] = _date(value)
        elif key in known and key not in _LIST_KEYS.values():
            kwargs[key] = _scalar(key, getattr(defaults, key), value)
        else:
            raise ProfileError(f"unknown profile key {key!r}")
    profile = replace(defaults, **kwargs)
    _check(profile)
    return profile


def _entries(key: str, value: Any) -> tuple[Any, ...]:
    if not isinstance(value, list) or not value:
        raise ProfileError(f"[[{key}]] must be a non-empty array of tables")
    cls = {"origin": Origin, "port": PortShare, "sensor": SensorSpec}[key]
    names = {f.name for f in fields(cls)}
    out = []
    for i, entry in enumerate(value):
        if not isinstance(entry, dict):
            raise ProfileError(f"[[{key}]] #{i + 1} must be a table")
        unknown = sorted(set(entry) - names)
        if unknown:
            raise ProfileError(f"[[{key}]] #{i + 1}: unknown key(s) {', '.join(unknown)}")
        entry = dict(entry)
        for list_key in ("networks", "tags"):
            if list_key in entry:
                if not isinstance(entry[list_key], list):
                    raise ProfileError(f"[[{key}]] #{i + 1}: {list_key} must be an array")
                entry[list_key] = tuple(str(x) for x in entry[list_key])
        try:
            out.append(cls(**entry))
        except TypeError as exc:
            raise ProfileError(f"[[{key}]] #{i + 1}: {exc}") from exc
    return tuple(out)


def _shares(key: str, value: Any, allowed: tuple[str, ...]) -> tuple[tuple[str, float], ...]:
    if not isinstance(value, dict):
        raise ProfileError(f"[{key}] must be a table")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise ProfileError(f"[{key}] unknown key(s): {', '.join(unknown)}")
    for k, v in value.items():
        if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
            raise ProfileError(f"{key}.{k} must be a non-negative number")
    return tuple((k, float(value.get(k, 0.0))) for k in allowed)


def _date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError as exc:
        raise ProfileError(f"start: {exc}") from exc


def _scalar(key: str, default: Any, value: Any) -> Any:
    if isinstance(default, int) and not isinstance(default, bool):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ProfileError(f"{key} must be a non-negative integer")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ProfileError(f"{key} must be a non-negative number")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ProfileError(f"{key} must be a string")
        return value
    raise ProfileError(f"{key} cannot be set here")  # pragma: no cover


def _check(p: Profile) -> None:
    if p.days < 1:
        raise ProfileError("days must be at least 1")
    if not p.sensors:
        raise ProfileError("at least one sensor is needed")
    names = [s.name for s in p.sensors]
    if len(set(names)) != len(names):
        raise ProfileError("sensor names must be unique")
    for s in p.sensors:
        if not s.name or not all(c.isalnum() or c in "._-" for c in s.name):
            raise ProfileError(f"sensor name {s.name!r}: letters, digits, '.', '_', '-' only")
    for o in p.origins:
        if not o.networks:
            raise ProfileError(f"origin {o.as_name!r} has no networks")
        for net in o.networks:
            try:
                ipaddress.ip_network(net)
            except ValueError as exc:
                raise ProfileError(f"origin {o.as_name!r}: {exc}") from exc
        if not -1.0 <= o.drift <= 1.0:
            raise ProfileError(f"origin {o.as_name!r}: drift must be within -1..1")
    for port in p.ports:
        if port.protocol not in PROTOCOLS:
            raise ProfileError(f"port {port.port}: protocol must be one of {PROTOCOLS}")
        if not 0 < port.port < 65536 or not -1.0 <= port.drift <= 1.0:
            raise ProfileError(f"port {port.port}: port or drift out of range")
    if sum(o.share for o in p.origins) <= 0 or sum(x.share for x in p.ports) <= 0:
        raise ProfileError("origin and port shares must not all be zero")
    if dict(p.http_outcomes)["smtp"] <= 0 or dict(p.socks_outcomes)["smtp"] <= 0:
        raise ProfileError("the smtp outcome share of each module must be positive")
    if sum(v for _, v in p.socks_versions) <= 0:
        raise ProfileError("socks_versions must not all be zero")
    if any(v < 1.0 for _, v in p.messages_per_session):
        raise ProfileError("messages_per_session values must be at least 1")
    if p.recipients_mean < 1 or p.recipients_max < 1 or p.victims < 1:
        raise ProfileError("recipients_mean, recipients_max and victims must be at least 1")
    for key in ("junk_share", "target_names", "socks5_auth", "relay_tests"):
        if getattr(p, key) > 1:
            raise ProfileError(f"{key} must be within 0..1")
    try:
        ipaddress.ip_address(p.sensor_address)
    except ValueError as exc:
        raise ProfileError(f"sensor_address: {exc}") from exc


def origins_ip2asn(profile: Profile) -> str:
    """The profile's networks as ip2asn TSV lines (range_start, range_end, AS number, country,
    AS description), sorted by address, one line per network."""
    rows = []
    for o in profile.origins:
        for net in o.networks:
            n = ipaddress.ip_network(net)
            rows.append((n.version, int(n.network_address), n, o))
    rows.sort(key=lambda r: (r[0], r[1]))
    return "".join(
        f"{n.network_address}\t{n.broadcast_address}\t{o.asn}\t{o.country or 'None'}\t{o.as_name}\n"
        for _, _, n, o in rows
    )
