"""Offline simulation: a sensor-shaped dataset written straight to disk.

For each simulated sensor it writes what the collector brings home (``raw/<sensor>/``) or what
a sensor holds (``<sensor>/spool/``): hourly event files ``events/<sensor>-<hour>[-n].jsonl.gz``
with the sensor's own event encoding, and, if asked, the messages under
``<day>/<port>/<ip>/<HHMMSS>-<queue id>.eml.gz`` whose sha256 the events carry.

Every random draw is made for a whole day at once with numpy, from a generator seeded with
(seed, day): the dataset depends on the profile alone, not on how many worker processes made
it. Workers split the sensors; each formats only its sensors' lines.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import json
import multiprocessing
import os
import random
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from json.encoder import encode_basestring as _js
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np

from spampot import __version__
from spampot.config import table1_module
from spampot.layout import EVENTS, CentralLayout, SensorLayout
from spampot.protocols.common import printable
from spampot.protocols.detect import ProxyServer
from spampot.protocols.proxy import ProxyPolicy, ProxyRequest
from spampot.protocols.smtp_dialect import queue_id
from spampot.sensor.events import EventBuffer
from spampot.sensor.paths import ip_component
from spampot.sensor.spool import gzip_bytes
from spampot.simulate import clients
from spampot.simulate.bodies import Campaigns
from spampot.simulate.profile import Profile
from spampot.simulate.wire import Mail, Measured, SessionMeter

LAYOUTS = ("raw", "spool")
BODY_MODES = ("none", "sample", "all")
OUTCOME_CODES = ("smtp", "other", "get", "error")
_SMTP, _OTHER, _GET, _ERROR = range(4)
# The paper's Table 6 modules, from the protocol a request event names.
_MODULE = {
    "http": "http",
    "socks4": "socks",
    "socks4a": "socks",
    "socks5": "socks",
    "unknown": "unknown",
}

# Where spammers point their tunnels: mail exchangers of the big free-mail providers of the
# period (by name or by address), and, for tunnels to other ports, IRC, web and POP servers.
_MX_NAMES = (
    "mx1.hotmail.com",
    "mx2.hotmail.com",
    "mx1.mail.yahoo.com",
    "mx.yahoo.com.tw",
    "mta5.am0.yahoodns.net",
    "gmail-smtp-in.l.google.com",
    "mx.aol.com",
    "mx.sina.com.cn",
    "mx.163.com",
    "mx.pchome.com.tw",
    "ms1.hinet.net",
    "mx.seed.net.tw",
    "mx.terra.com.br",
    "mx.uol.com.br",
    "mx.bol.com.br",
)
_OTHER_PORTS = (80, 443, 6667, 110, 8080, 5190, 23, 1863)
_WEB_HOSTS = (
    "www.google.com",
    "www.yahoo.com",
    "proxyjudge.info",
    "www.example.com",
    "azenv.net",
    "checkip.dyndns.org",
)
_VICTIM_DOMAINS = (
    ("hotmail.com", 20),
    ("yahoo.com", 14),
    ("yahoo.com.tw", 12),
    ("msn.com", 6),
    ("aol.com", 6),
    ("gmail.com", 5),
    ("pchome.com.tw", 5),
    ("sina.com", 4),
    ("163.com", 4),
    ("ms1.hinet.net", 3),
    ("seed.net.tw", 3),
    ("uol.com.br", 3),
    ("terra.com.br", 3),
    ("bol.com.br", 2),
    ("ig.com.br", 2),
    ("comcast.net", 2),
    ("earthlink.net", 2),
    ("gmx.de", 2),
)
_SYLLABLES = "ka lo mi na ru te shi chen wang li lin hu ma jo an el sa ri do be".split()  # noqa: SIM905


@dataclass(frozen=True, slots=True)
class OfflineOptions:
    out: Path
    layout: str = "raw"  # "raw": <out>/raw/<sensor>/; "spool": <out>/<sensor>/spool/
    bodies: str = "none"  # "none", "sample" (bodies_rate of the messages) or "all"
    bodies_rate: float = 0.01
    compress_level: int = 6
    rotate_bytes: int = 64 * 1024 * 1024
    jobs: int = 1

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}")
        if self.bodies not in BODY_MODES:
            raise ValueError(f"bodies must be one of {BODY_MODES}")
        if not 0 <= self.compress_level <= 9 or self.jobs < 1 or self.rotate_bytes < 1:
            raise ValueError("compress_level 0-9, jobs and rotate_bytes at least 1")


@dataclass
class Counts:
    """What was generated, in the units of the paper's tables (so a report can be checked)."""

    messages: int = 0
    recipients: int = 0
    sessions: int = 0
    events: int = 0
    event_files: int = 0
    message_files: int = 0
    requests: Counter[str] = field(default_factory=Counter)  # "<module>/<outcome>"
    relay_tests: Counter[str] = field(default_factory=Counter)  # per tester mailbox
    protocols: Counter[str] = field(default_factory=Counter)  # proxy.request protocol field
    countries: Counter[str] = field(default_factory=Counter)  # emails
    ases: Counter[str] = field(default_factory=Counter)  # emails, "<asn> <name> (<cc>)"
    ports: Counter[int] = field(default_factory=Counter)  # emails
    sensors: Counter[str] = field(default_factory=Counter)  # emails
    days: Counter[str] = field(default_factory=Counter)  # emails
    ip_ids: set[int] = field(default_factory=set)  # sources that sent a message (Table 2)
    all_ip_ids: set[int] = field(default_factory=set)  # sources of any session

    def merge(self, other: Counts) -> None:
        for name in (
            "messages",
            "recipients",
            "sessions",
            "events",
            "event_files",
            "message_files",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in (
            "requests",
            "protocols",
            "countries",
            "ases",
            "ports",
            "sensors",
            "days",
            "relay_tests",
        ):
            getattr(self, name).update(getattr(other, name))
        self.ip_ids |= other.ip_ids
        self.all_ip_ids |= other.all_ip_ids

    def as_dict(self, profile: Profile, ip_strings: list[str]) -> dict[str, Any]:
        unique_ips = {ip_strings[i] for i in self.ip_ids}
        asns = {key.split(" ", 1)[0] for key in self.ases}
        return {
            "first_day": min(self.days) if self.days else None,
            "last_day": max(self.days) if self.days else None,
            "days": len(self.days),
            "messages": self.messages,
            "recipients": self.recipients,
            "recipients_per_message": round(self.recipients / self.messages, 4)
            if self.messages
            else 0.0,
            "sessions": self.sessions,
            "events": self.events,
            "event_files": self.event_files,
            "message_files": self.message_files,
            "unique_ips": len(unique_ips),
            "unique_ips_all_sessions": len({ip_strings[i] for i in self.all_ip_ids}),
            "unique_ases": len(asns),
            "unique_countries": len({k for k in self.countries if k}),
            "proxy_requests": _nested(self.requests),
            "proxy_protocols": dict(sorted(self.protocols.items())),
            "countries": dict(self.countries.most_common()),
            "ases": dict(self.ases.most_common()),
            "ports": {str(k): v for k, v in self.ports.most_common()},
            "sensors": dict(sorted(self.sensors.items())),
            "sensor_tags": {s.name: list(s.tags) for s in profile.sensors},
            "messages_per_day": dict(sorted(self.days.items())),
            "relay_tests": sum(self.relay_tests.values()),
            "relay_mailboxes": dict(self.relay_tests.most_common()),
            "seed": profile.seed,
        }


def _nested(requests: Counter[str]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for key, n in sorted(requests.items()):
        module, outcome = key.split("/")
        out.setdefault(module, {})[outcome] = n
    for table in out.values():
        table["total"] = sum(table.values())
    return out


class _Plan:
    """Everything drawn once for the whole run: address pools, victims, names, campaigns."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        rng = np.random.default_rng([profile.seed, 1])
        prng = random.Random(profile.seed)
        origins = profile.origins
        shares = np.array([o.share for o in origins], dtype=float)
        self.origin_share = shares / shares.sum()
        self.origin_drift = np.array([o.drift for o in origins], dtype=float)
        # Address pools: each origin gets addresses in proportion to its share (at least one),
        # drawn uniformly over its networks (weighted by their size).
        total_ips = profile.effective_unique_ips()
        sizes = np.maximum(1, np.round(self.origin_share * total_ips)).astype(np.int64)
        self.pool_start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self.pool_size = sizes
        ips: list[str] = []
        for origin, n in zip(origins, sizes.tolist(), strict=True):
            nets = [ipaddress.ip_network(x) for x in origin.networks]
            usable = np.array([max(1, n.num_addresses - 2) for n in nets], dtype=float)
            pick = rng.choice(len(nets), size=n, p=usable / usable.sum())
            for k in pick.tolist():
                net = nets[k]
                span = net.num_addresses - 2
                offset = 0 if span < 1 else 1 + prng.randrange(span)  # IPv6 spans exceed int64
                ips.append(str(net.network_address + offset))
        self.ips = ips
        self.origin_country = [o.country for o in origins]
        self.origin_key = [f"{o.asn} {o.as_name} ({o.country or '??'})" for o in origins]
        # Ports and their modules.
        ports = profile.ports
        pshare = np.array([p.share for p in ports], dtype=float)
        self.port_share = pshare / pshare.sum()
        self.port_drift = np.array([p.drift for p in ports], dtype=float)
        self.port_numbers = [p.port for p in ports]
        self.port_module = [p.protocol for p in ports]
        # Fleet.
        weights = np.array([s.weight for s in profile.sensors], dtype=float)
        self.sensor_p = weights / weights.sum()
        # Day volumes: weekday/weekend and lognormal noise, then an exact split of the total.
        day_w = np.exp(rng.normal(0.0, profile.daily_sigma, profile.days))
        weekdays = np.array(
            [(profile.start + dt.timedelta(days=d)).weekday() for d in range(profile.days)]
        )
        day_w[weekdays >= 5] *= profile.weekend_factor
        self.day_messages = rng.multinomial(profile.messages, day_w / day_w.sum())
        # Hours of the day (UTC): busiest during the Asian working day, as Table 3 suggests.
        hours = np.arange(24)
        hour_w = 1.0 + 0.6 * np.cos((hours - 5) / 24 * 2 * np.pi)
        self.hour_p = hour_w / hour_w.sum()
        # Recipients: a victim list, addresses drawn with a skew (popular lists get reused).
        domains = [d for d, _ in _VICTIM_DOMAINS]
        dweights = np.array([w for _, w in _VICTIM_DOMAINS], dtype=float)
        nv = profile.victims
        syl = rng.integers(0, len(_SYLLABLES), size=(nv, 4)).tolist()
        nsyl = rng.integers(2, 5, size=nv).tolist()
        dom = rng.choice(len(domains), size=nv, p=dweights / dweights.sum()).tolist()
        victims = [
            "".join(_SYLLABLES[x] for x in syl[i][: nsyl[i]])
            + (str(i % 997) if i % 3 == 0 else "")
            + "@"
            + domains[dom[i]]
            for i in range(nv)
        ]
        self.victims = victims
        self.victims_js = [_js(v) for v in victims]
        self.helos = [
            prng.choice(["", "[{ip}]"]) or "".join(prng.choices(_SYLLABLES, k=3))
            for _ in range(500)
        ]
        self.mx_ips = [
            str(
                ipaddress.IPv4Address(
                    prng.choice([0x40000000, 0x42000000, 0xCB000000, 0xD8000000])
                    + prng.randrange(1 << 24)
                )
            )
            for _ in range(2000)
        ]
        self.campaigns = Campaigns(profile.seed, profile.campaigns or 1)
        # The spammers' own mailboxes that relay tests go to, at free-mail providers.
        self.testers = [
            "".join(prng.choices(_SYLLABLES, k=3))
            + str(prng.randrange(100))
            + "@"
            + prng.choice(("yahoo.com.tw", "hotmail.com", "sina.com", "163.com"))
            for _ in range(12)
        ]
        self.relay_permille = round(profile.relay_tests * 10_000)
        self.prototypes = _prototypes()


def _request(
    key: str, code: int, host: str, port: int, userpass: tuple[str, str] = ("", "")
) -> list[bytes]:
    """What a spam tool sends for a request of kind ``key`` (a protocol, or ``socks5+auth``)
    and Table 6 outcome ``code``, one turn (the server answers in between) a chunk."""
    if key == "unknown":
        return [clients.junk()]
    if key == "http":
        if code == _GET:
            return [clients.http_get(host)]
        if code == _ERROR:
            return [clients.http_malformed()]
        return [clients.http_connect(host, port, host_header=code == _OTHER)]
    if key in ("socks4", "socks4a"):
        if code == _ERROR:
            return [clients.socks4_bad_command(host, port)]
        if key == "socks4":
            return [clients.socks4_connect(host, port)]
        return [clients.socks4a_connect(host, port)]
    if key == "socks5+auth":
        return [
            clients.socks5_greeting(userpass=True),
            clients.socks5_userpass(*userpass),
            clients.socks5_request(host, port),
        ]
    command = 9 if code == _ERROR else 1  # an unknown command: the request is refused
    return [clients.socks5_greeting(), clients.socks5_request(host, port, command)]


def _prototypes() -> dict[tuple[str, int], dict[str, Any]]:
    """(protocol, outcome) -> the fields of the sensor's own ``proxy.request`` event.

    Each kind of request is fed once to the sensor's protocol machine; the generator then only
    swaps in each session's target, headers and credentials.
    """
    ip, name = "198.51.100.25", "mx.example.com"
    requests: dict[tuple[str, int], list[bytes]] = {
        ("http", _SMTP): _request("http", _SMTP, ip, 25),
        ("http", _OTHER): _request("http", _OTHER, ip, 443),
        ("http", _GET): _request("http", _GET, name, 80),
        ("http", _ERROR): _request("http", _ERROR, ip, 25),
        ("unknown", _ERROR): _request("unknown", _ERROR, ip, 25),
        ("socks4", _SMTP): _request("socks4", _SMTP, ip, 25),
        ("socks4", _OTHER): _request("socks4", _OTHER, ip, 80),
        ("socks4", _ERROR): _request("socks4", _ERROR, ip, 25),
        ("socks4a", _SMTP): _request("socks4a", _SMTP, name, 25),
        ("socks4a", _OTHER): _request("socks4a", _OTHER, name, 80),
        ("socks5", _SMTP): _request("socks5", _SMTP, name, 25),
        ("socks5", _OTHER): _request("socks5", _OTHER, ip, 80),
        ("socks5", _ERROR): _request("socks5", _ERROR, ip, 25),
        ("socks5+auth", _SMTP): _request("socks5+auth", _SMTP, name, 25, ("user", "pass")),
    }
    out: dict[tuple[str, int], dict[str, Any]] = {}
    policy = ProxyPolicy()
    for key, chunks in requests.items():
        machine = ProxyServer(policy, http_date="Thu, 01 Jan 1970 00:00:00 GMT")
        events: list[ProxyRequest] = []
        for chunk in chunks:
            events += machine.receive_data(chunk)
        events += machine.connection_lost()
        event = events[0]
        auth = event.auth
        out[key] = {
            "protocol": event.protocol,
            "version": event.version,
            "method": event.method,
            "target_host": event.target_host,
            "target_port": event.target_port,
            "auth": None
            if auth is None
            else {"method": auth.method, "username": auth.username, "password": auth.password},
            "outcome": event.outcome,
            "reply": event.reply,
            "error": event.error,
            "headers": [list(h) for h in event.headers] or None,
            "module": event.module,
            "input": printable(event.leftover)
            if event.outcome == "error" and event.leftover
            else None,
        }
    # SOCKS4a errors look like SOCKS4 ones: the bad command comes before any host name.
    out[("socks4a", _ERROR)] = out[("socks4", _ERROR)]
    return out


@dataclass(frozen=True, slots=True)
class _Draws:
    """One day's draws: per session (``s_``), per message (``m_``), per recipient (``r_``)."""

    s_port: np.ndarray
    s_outcome: np.ndarray
    s_nmsg: np.ndarray
    s_origin: np.ndarray
    s_ip: np.ndarray
    s_start: np.ndarray
    s_sport: np.ndarray
    s_id: np.ndarray
    s_version: np.ndarray
    s_junk: np.ndarray
    s_name: np.ndarray
    s_auth: np.ndarray
    s_target: np.ndarray
    s_helo: np.ndarray
    s_rtt: np.ndarray
    first: np.ndarray  # index of the session's first message
    m_rcpts: np.ndarray
    m_rcpt_end: np.ndarray
    r_victim: np.ndarray
    m_campaign: np.ndarray
    m_variant: np.ndarray
    m_qid: np.ndarray
    m_time: np.ndarray
    m_body: np.ndarray
    r_list: list[int]  # r_victim as Python ints, made once a day
    s_close: np.ndarray


class _StampClock:
    """A stand-in for the sensor's Clock: the event encoder asks it for the time."""

    __slots__ = ("stamp",)

    def __init__(self) -> None:
        self.stamp = ""

    def now(self) -> tuple[float, str]:
        return 0.0, self.stamp


class _SensorOut:
    """One sensor's directory: rotated event files and message files."""

    def __init__(self, base: Path, name: str, opts: OfflineOptions) -> None:
        self.base = base
        self.name = name
        self.opts = opts
        self.events_dir = base / EVENTS  # spool/events/, or raw/<sensor>/events/ (its copy)
        self.events_dir.mkdir(parents=True, exist_ok=True)
        self.carry: list[tuple[float, bytes]] = []
        self._dirs: set[str] = set()
        self.files = 0
        self.started = False
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="simulate-gzip")
        self._pending: list[Future[None]] = []

    def write_hour(self, hour: str, lines: list[bytes]) -> None:
        """``<sensor>-<hour>.jsonl.gz``, then ``-1``, ``-2``… past ``rotate_bytes`` as the
        sensor's size rotation names them."""
        n = 0
        chunk: list[bytes] = []
        size = 0
        limit = self.opts.rotate_bytes
        for line in lines:
            chunk.append(line)
            size += len(line)
            if size >= limit:
                self._write_events(hour, n, chunk)
                n += 1
                chunk, size = [], 0
        if chunk:
            self._write_events(hour, n, chunk)

    def _write_events(self, hour: str, n: int, chunk: list[bytes]) -> None:
        name = f"{self.name}-{hour}-{n}.jsonl.gz" if n else f"{self.name}-{hour}.jsonl.gz"
        # zlib lets go of the GIL while it compresses: a thread does it beside the formatting.
        self._pending.append(self._pool.submit(self._compress, name, b"".join(chunk)))
        if len(self._pending) > 8:
            self._pending.pop(0).result()
        self.files += 1

    def _compress(self, name: str, blob: bytes) -> None:
        path = self.events_dir / name
        tmp = path.with_name("." + name + ".tmp")
        tmp.write_bytes(gzip_bytes(blob, self.opts.compress_level))
        os.replace(tmp, path)

    def close(self) -> None:
        for future in self._pending:
            future.result()
        self._pending = []
        self._pool.shutdown()

    def write_message(self, relpath: str, data: bytes) -> None:
        path = os.path.join(self.base, relpath)
        parent = os.path.dirname(path)
        if parent not in self._dirs:
            os.makedirs(parent, exist_ok=True)
            self._dirs.add(parent)
        with open(path, "wb") as f:
            f.write(gzip_bytes(data, self.opts.compress_level))


def sensor_base(opts: OfflineOptions, sensor: str) -> Path:
    if opts.layout == "raw":
        return CentralLayout(opts.out).raw_for(sensor)
    return SensorLayout(opts.out / sensor).spool


def simulate_offline(profile: Profile, opts: OfflineOptions) -> dict[str, Any]:
    """Write the dataset; returns the counts of what was generated."""
    plan = _Plan(profile)
    jobs = min(opts.jobs, len(profile.sensors))
    if jobs == 1:
        counts = _run_worker(plan, opts, 0, 1)
    else:
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(jobs) as pool:
            parts = pool.starmap(_run_worker, [(plan, opts, w, jobs) for w in range(jobs)])
        counts = Counts()
        for part in parts:
            counts.merge(part)
    if opts.layout == "spool":
        for s in profile.sensors:
            layout = SensorLayout(opts.out / s.name)
            for d in (layout.tmp, layout.events):
                d.mkdir(parents=True, exist_ok=True)
    else:
        write_inventory(profile, opts.out / "inventory.toml")
    return counts.as_dict(profile, plan.ips)


# A well-formed ed25519 public key line whose key is all zeros: it pins no real host.
_NO_HOST_KEY = "ssh-ed25519 " + base64.b64encode(
    b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + bytes(32)
).decode("ascii")


def write_inventory(profile: Profile, path: Path) -> None:
    """A central inventory for the simulated fleet, so reports get the sensors' tags.

    The data dir is the file's own directory (``raw/`` beside it). The sensors are disabled
    and their hosts are under ``.invalid`` (RFC 2606): nothing will try to collect from them.
    """
    lines = [
        "# The simulated fleet (spampot simulate offline): tags for spampot report.",
        "[central]",
        'data_dir = "."',
        "",
    ]
    for s in profile.sensors:
        tags = ", ".join(_js(t) for t in s.tags)
        lines += [
            "[[sensor]]",
            f"name = {_js(s.name)}",
            f"host = {_js(s.name + '.sim.invalid')}",
            'key = "/dev/null"',
            f"host_key = {_js(_NO_HOST_KEY)}",
            f"tags = [{tags}]",
            f"isp = {_js(s.isp)}",
            "enabled = false",
            "",
        ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


def _run_worker(plan: _Plan, opts: OfflineOptions, worker: int, jobs: int) -> Counts:
    profile = plan.profile
    mine = [i for i in range(len(profile.sensors)) if i % jobs == worker]
    outs = {
        i: _SensorOut(sensor_base(opts, profile.sensors[i].name), profile.sensors[i].name, opts)
        for i in mine
    }
    counts = Counts()
    for day in range(profile.days):
        _day(plan, opts, day, outs, counts)
    for out in outs.values():
        if out.carry:
            _flush(out, out.carry, None)
        out.close()
        counts.event_files += out.files
    return counts


def _day(
    plan: _Plan, opts: OfflineOptions, day: int, outs: dict[int, _SensorOut], counts: Counts
) -> None:
    profile = plan.profile
    rng = np.random.default_rng([profile.seed, 2, day])
    total = int(plan.day_messages[day])
    t = (day + 0.5) / profile.days
    date = profile.start + dt.timedelta(days=day)
    day0 = dt.datetime(date.year, date.month, date.day, tzinfo=dt.UTC).timestamp()

    # --- sessions: per port, tunnels (or direct sessions) carrying the day's messages --------
    pw = plan.port_share * (1 + plan.port_drift * (2 * t - 1))
    per_port = rng.multinomial(total, pw / pw.sum())
    mps = dict(profile.messages_per_session)
    port_ix: list[np.ndarray] = []
    outcome: list[np.ndarray] = []
    nmsg: list[np.ndarray] = []
    for p, m in enumerate(per_port.tolist()):
        module = plan.port_module[p]
        sessions = 0 if m == 0 else max(1, min(m, round(m / mps[module])))
        if sessions:
            extra = rng.multinomial(m - sessions, np.full(sessions, 1.0 / sessions))
            port_ix.append(np.full(sessions, p))
            outcome.append(np.zeros(sessions, dtype=np.int64))
            nmsg.append(extra + 1)
        if module == "smtp":
            continue
        shares = profile.module_share(module)
        for code, name in enumerate(OUTCOME_CODES):
            if code == _SMTP or name not in shares:
                continue
            k = int(rng.poisson(max(sessions, 0.5 * (m > 0)) * shares[name] / shares["smtp"]))
            if k:
                port_ix.append(np.full(k, p))
                outcome.append(np.full(k, code))
                nmsg.append(np.zeros(k, dtype=np.int64))
    if not port_ix:
        return
    s_port = np.concatenate(port_ix)
    s_outcome = np.concatenate(outcome)
    s_nmsg = np.concatenate(nmsg)
    n = len(s_port)
    ow = plan.origin_share * (1 + plan.origin_drift * (2 * t - 1))
    s_origin = rng.choice(len(ow), size=n, p=ow / ow.sum())
    s_ip = plan.pool_start[s_origin] + (plan.pool_size[s_origin] * rng.random(n) ** 2).astype(
        np.int64
    )
    s_sensor = rng.choice(len(plan.sensor_p), size=n, p=plan.sensor_p)
    s_start = day0 + rng.choice(24, size=n, p=plan.hour_p) * 3600.0 + rng.random(n) * 3600.0
    s_sport = rng.integers(1024, 65536, size=n)
    s_id = rng.integers(0, 1 << 48, size=n)
    s_version = rng.choice(3, size=n, p=_norm(profile.socks_versions))
    s_junk = rng.random(n) < profile.junk_share
    s_name = rng.random(n) < profile.target_names
    s_auth = rng.random(n) < profile.socks5_auth
    s_target = rng.integers(0, 1 << 30, size=n)
    s_helo = rng.integers(0, len(plan.helos), size=n)
    s_rtt = 0.05 + rng.exponential(0.2, size=n)
    # --- messages --------------------------------------------------------------------------
    m_total = int(s_nmsg.sum())
    m_session = np.repeat(np.arange(n), s_nmsg)
    extra = rng.negative_binomial(1.5, 1.5 / (1.5 + profile.recipients_mean - 1), size=m_total)
    m_rcpts = np.minimum(1 + extra, profile.recipients_max)
    r_total = int(m_rcpts.sum())
    r_victim = (len(plan.victims) * rng.random(r_total) ** 2).astype(np.int64)
    m_rcpt_end = np.cumsum(m_rcpts)
    m_campaign = ((profile.campaigns or 1) * rng.random(m_total) ** 2).astype(np.int64) + day * 7
    m_variant = rng.integers(0, 1 << 31, size=m_total)
    m_qid = rng.integers(0, 1 << 40, size=m_total)
    gaps = 0.3 + rng.exponential(0.8, size=m_total)
    cum = np.cumsum(gaps)
    first = np.concatenate([[0], np.cumsum(s_nmsg)[:-1]])
    if m_total:
        # Each message follows the previous one of its session by its gap.
        before = (cum - gaps)[np.minimum(first, m_total - 1)]
        m_time = (s_start + s_rtt - before)[m_session] + cum
    else:
        m_time = cum
    if m_total:
        last = m_time[np.clip(first + s_nmsg - 1, 0, m_total - 1)]
        s_last = np.where(s_nmsg > 0, last, s_start + s_rtt)
    else:
        s_last = s_start + s_rtt
    s_close = s_last + np.where(s_outcome == _SMTP, 0.15, 0.051)
    if profile.campaigns == 0:
        m_campaign = m_variant
    if opts.bodies == "all":
        m_body = np.ones(m_total, dtype=bool)
    elif opts.bodies == "sample":
        m_body = rng.random(m_total) < opts.bodies_rate
    else:
        m_body = np.zeros(m_total, dtype=bool)

    # --- this worker's sessions, formatted ---------------------------------------------------
    draws = _Draws(
        s_port,
        s_outcome,
        s_nmsg,
        s_origin,
        s_ip,
        s_start,
        s_sport,
        s_id,
        s_version,
        s_junk,
        s_name,
        s_auth,
        s_target,
        s_helo,
        s_rtt,
        first,
        m_rcpts,
        m_rcpt_end,
        r_victim,
        m_campaign,
        m_variant,
        m_qid,
        m_time,
        m_body,
        r_victim.tolist(),
        s_close,
    )
    for si, out in outs.items():
        sel = np.flatnonzero(s_sensor == si)
        if sel.size == 0 and not out.carry:
            continue
        lines = _format(plan, opts, out, si, sel, date, day0, draws, counts)
        _flush(out, out.carry + lines, day0 + 86400.0)


def _flush(out: _SensorOut, lines: list[tuple[float, bytes]], until: float | None) -> None:
    """Write the hours that are complete; keep lines at or after ``until`` for the next day."""
    lines.sort(key=itemgetter(0))
    if until is not None:
        cut = len(lines)
        while cut and lines[cut - 1][0] >= until:
            cut -= 1
        out.carry = lines[cut:]
        lines = lines[:cut]
    else:
        out.carry = []
    hour = -1
    chunk: list[bytes] = []
    for when, line in lines:
        h = int(when // 3600)
        if h != hour:
            if chunk:
                out.write_hour(_hour(hour), chunk)
            hour, chunk = h, []
        chunk.append(line)
    if chunk:
        out.write_hour(_hour(hour), chunk)


def _hour(hour: int) -> str:
    return time.strftime("%Y%m%dT%H", time.gmtime(hour * 3600))


def _norm(pairs: tuple[tuple[str, float], ...]) -> np.ndarray:
    w = np.array([v for _, v in pairs], dtype=float)
    return w / w.sum()


_SESSION_KEYS = ("session", "src_ip", "src_port", "dst_ip", "dst_port")
_MESSAGE_FIELDS = (
    "via",
    "target_host",
    "target_port",
    "helo",
    "mail_from",
    "mail_params",
    "rcpt_to",
    "size",
    "sha256",
    "queue_id",
    "file",
    "bdat",
)
_CLOSE_FIELDS = ("duration_s", "bytes_in", "bytes_out", "reason")


def _template(sensor: str, eventid: str, fields: tuple[str, ...]) -> str:
    """A %-format string for one kind of event line, made by the sensor's own encoder.

    Every value becomes a ``%s`` slot for a JSON fragment, in the order the encoder writes
    the keys: timestamp, the session fields, message, then ``fields``.
    """
    clock = _StampClock()
    slots = [f"@@{i}@@" for i in range(len(_SESSION_KEYS) + len(fields) + 2)]
    clock.stamp = slots[0]
    base = dict(zip(_SESSION_KEYS, slots[1:], strict=False))
    rest = slots[1 + len(_SESSION_KEYS) :]
    extra = dict(zip(fields, rest[1:], strict=True))
    line = EventBuffer(sensor, clock).encode(eventid, base, rest[0], **extra)  # type: ignore[arg-type]
    text = line.decode("utf-8").replace("%", "%%")
    at = -1
    for slot in slots:
        quoted = f'"{slot}"'
        assert text.find(quoted) > at, "the encoder's key order changed"
        at = text.find(quoted)
        text = text.replace(quoted, "%s")
    return text


def _format(
    plan: _Plan,
    opts: OfflineOptions,
    out: _SensorOut,
    si: int,
    sel: np.ndarray,
    date: dt.date,
    day0: float,
    a: _Draws,
    counts: Counts,
) -> list[tuple[float, bytes]]:
    """The event lines of one sensor's sessions of one day, with their times.

    Lines of the frequent kinds are filled into templates made by the sensor's encoder
    (:func:`_template`); proxy requests and the start event go through the encoder itself.
    """
    profile = plan.profile
    sensor = profile.sensors[si].name
    clock = _StampClock()
    encode = EventBuffer(sensor, clock).encode  # type: ignore[arg-type]  # only .now() is used
    t_open = _template(sensor, "session.open", ())
    t_message = _template(sensor, "smtp.message", _MESSAGE_FIELDS)
    t_close = _template(sensor, "session.close", _CLOSE_FIELDS)
    meter = SessionMeter(
        sensor,
        profile.sensor_address,
        tuple(p for p, m in zip(plan.port_numbers, plan.port_module, strict=True) if m == "http"),
    )
    lines: list[tuple[float, bytes]] = []
    add = lines.append
    stamps = _Stamps(date, day0)
    if not out.started:
        out.started = True
        clock.stamp = stamps(day0)
        listeners = [
            f"0.0.0.0:{p}/{'smtp' if m == 'smtp' else 'proxy'}"
            for p, m in sorted(set(zip(plan.port_numbers, plan.port_module, strict=True)))
        ]
        base0 = dict.fromkeys(_SESSION_KEYS)
        add(
            (
                day0,
                encode(
                    "sensor.start",
                    base0,
                    f"spampot {__version__} sensor {sensor} listening on "
                    f"{len(listeners)} socket(s)",
                    version=__version__,
                    listeners=listeners,
                    worker=0,
                    detail=None,
                ),
            )
        )
        counts.events += 1
    dst_ip = profile.sensor_address
    dst_js = _js(dst_ip)
    ips = plan.ips
    victims = plan.victims
    victims_js = plan.victims_js
    helos = plan.helos
    testers = plan.testers
    relay_permille = plan.relay_permille
    campaigns = plan.campaigns
    protos = plan.prototypes
    port_numbers = plan.port_numbers
    port_module = plan.port_module
    mx_ips = plan.mx_ips
    country = plan.origin_country
    as_key = plan.origin_key
    write_bodies = opts.bodies != "none"
    m_body = a.m_body.tolist() if write_bodies else None
    versions = ("socks4", "socks4a", "socks5")
    day_key = date.isoformat()
    # Per-message values of this sensor's sessions only, as Python objects.
    firsts = a.first[sel]
    counts_m = a.s_nmsg[sel]
    if counts_m.sum():
        m_ix = np.concatenate(
            [
                np.arange(f, f + k)
                for f, k in zip(firsts.tolist(), counts_m.tolist(), strict=True)
                if k
            ]
        )
    else:
        m_ix = np.zeros(0, dtype=np.int64)
    m_rcpts = a.m_rcpts[m_ix].tolist()
    m_end = a.m_rcpt_end[m_ix].tolist()
    m_campaign = a.m_campaign[m_ix].tolist()
    m_variant = a.m_variant[m_ix].tolist()
    m_qid = a.m_qid[m_ix].tolist()
    m_time = a.m_time[m_ix].tolist()
    m_stamp = _iso(a.m_time[m_ix])
    open_stamp = _iso(a.s_start[sel])
    req_stamp = _iso(a.s_start[sel] + a.s_rtt[sel])
    close_stamp = _iso(a.s_close[sel])
    close_time = a.s_close[sel].tolist()
    m_global = m_ix.tolist()
    r_victim = a.r_list
    sha256 = hashlib.sha256
    mi = 0
    rows = zip(
        *(
            getattr(a, k)[sel].tolist()
            for k in (
                "s_port",
                "s_outcome",
                "s_nmsg",
                "s_origin",
                "s_ip",
                "s_start",
                "s_sport",
                "s_id",
                "s_version",
                "s_junk",
                "s_name",
                "s_auth",
                "s_target",
                "s_helo",
                "s_rtt",
            )
        ),
        strict=True,
    )
    for j, (
        p_ix,
        code,
        nm,
        origin,
        ip_ix,
        start,
        sport,
        sid,
        version,
        junk,
        by_name,
        auth,
        tsel,
        helo_ix,
        rtt,
    ) in enumerate(rows):
        port = port_numbers[p_ix]
        module = port_module[p_ix]
        ip = ips[ip_ix]
        ip_js = _js(ip)
        frag = (f'"{sid:012x}"', ip_js, str(sport), dst_js, str(port))
        add(
            (
                start,
                (
                    t_open
                    % (
                        f'"{open_stamp[j]}Z"',
                        *frag,
                        _js(f"New connection: {ip}:{sport} ({dst_ip}:{port})"),
                    )
                ).encode(),
            )
        )
        counts.sessions += 1
        counts.all_ip_ids.add(ip_ix)
        now = start + rtt
        via_js = '"smtp"'
        target_js = port_js = "null"
        wire = Measured()
        tunnel_host: str | None = None
        if module != "smtp":
            if code == _ERROR and junk:
                proto = "unknown"
            elif module == "http":
                proto = "http"
            else:
                proto = versions[version]
            key = "socks5+auth" if proto == "socks5" and code == _SMTP and auth else proto
            fields = dict(protos[(key, code)])
            host = mx_ips[tsel % len(mx_ips)]
            if fields["target_host"] is not None:
                if code == _GET:
                    host = _WEB_HOSTS[tsel % len(_WEB_HOSTS)]
                elif by_name and proto != "socks4" and code != _ERROR:
                    host = _MX_NAMES[tsel % len(_MX_NAMES)]
                old = fields["target_host"]
                fields["target_host"] = host
                if code == _OTHER:
                    fields["target_port"] = _OTHER_PORTS[(tsel >> 8) % len(_OTHER_PORTS)]
                if fields["headers"]:
                    new = host if code == _GET else f"{host}:{fields['target_port']}"
                    old = old if code == _GET else f"{old}:443"
                    fields["headers"] = [[k, v.replace(old, new)] for k, v in fields["headers"]]
            userpass = ("", "")
            if key == "socks5+auth":
                userpass = (f"u{tsel % 9973}", f"p{tsel % 7919}")
                fields["auth"] = {
                    "method": "userpass",
                    "username": userpass[0],
                    "password": userpass[1],
                }
            # What the client sent and was answered, counted by the sensor's proxy machine.
            meter.proxy(
                module,
                _request(key, code, host, fields["target_port"] or 25, userpass),
                ip,
                stamps.http_date(now),
                f"{sid:012x}",
                wire,
            )
            clock.stamp = req_stamp[j] + "Z"
            message = (
                f"{fields['protocol']} {fields['method'] or '?'} "
                f"{fields['target_host']}:{fields['target_port']} -> {fields['outcome']}"
            )
            base = dict(zip(_SESSION_KEYS, (f"{sid:012x}", ip, sport, dst_ip, port), strict=True))
            add((now, encode("proxy.request", base, message, **fields)))
            counts.events += 1
            # Table 6 counts a request in the module of the port it came to, as the paper
            # does (junk on an HTTP port is one of the HTTP module's errors).
            table6 = table1_module(port) or _MODULE[proto]
            counts.requests[f"{table6}/{OUTCOME_CODES[code]}"] += 1
            counts.protocols[fields["protocol"]] += 1
            if code == _SMTP:
                via_js = _js(fields["protocol"])
                target_js = _js(fields["target_host"])
                port_js = str(fields["target_port"])
                tunnel_host = fields["target_host"]
        smtp_session = code == _SMTP
        if smtp_session:
            # The persona the sensor answers as, and its queue ids' style.
            style = meter.queue_style(tunnel_host)
            helo = helos[helo_ix]
            helo_name = f"[{ip}]" if helo == "[{ip}]" else helo
            helo_js = _js(helo_name)
            ip_dir = ip_component(ip)
            recipients = 0
            # A session whose first message tests the relay (decided by its random id).
            tester = testers[sid % len(testers)] if sid % 10_000 < relay_permille else None
            mails: list[Mail] = []
            kept: list[tuple[float, str, str, str, int, str, int]] = []
            for nth in range(nm):
                k = m_rcpts[mi]
                end = m_end[mi]
                picked = r_victim[end - k : end]
                rcpt_js = ",".join(map(victims_js.__getitem__, picked))
                rcpts = tuple(map(victims.__getitem__, picked))
                if tester is not None and nth == 0:
                    k = 1
                    rcpt_js = _js(tester)
                    rcpts = (tester,)
                campaign = m_campaign[mi]
                variant = m_variant[mi]
                when = m_time[mi]
                qid = queue_id(style, m_qid[mi], when)
                stamp = m_stamp[mi]
                hms = stamp[11:19]
                mail_from = f"{_SYLLABLES[variant % 20]}{variant % 9973}@" + (
                    campaigns.sender_domain(campaign)
                )
                if tester is not None and nth == 0:
                    data = campaigns.relay_test(
                        variant,
                        mail_from,
                        tester,
                        stamps.mail_date(when, hms),
                        dst_ip,
                        port,
                        None if target_js == "null" else json.loads(target_js),
                    )
                    counts.relay_tests[tester] += 1
                else:
                    data = campaigns.message(
                        campaign,
                        variant,
                        mail_from,
                        victims[picked[0]],
                        stamps.mail_date(when, hms),
                        f"{qid}.{variant:x}",
                    )
                mails.append(Mail(mail_from, rcpts, data, qid))
                kept.append((when, stamp, qid, mail_from, k, rcpt_js, m_global[mi]))
                recipients += k
                mi += 1
            # The dialogue through the sensor's SMTP machine: what it stores of each message
            # and the bytes each way.
            meter.smtp(
                tunnel_host,
                sid,
                dst_ip if tunnel_host is not None else ip,
                stamps.mail_date(now, stamps(now)[11:19]),
                helo_name,
                mails,
                wire,
            )
            for (when, stamp, qid, mail_from, k, rcpt_js, body_ix), (_, stored) in zip(
                kept, wire.stored, strict=True
            ):
                hms = stamp[11:19]
                relpath = f"{stamp[:10]}/{port}/{ip_dir}/{hms[:2]}{hms[3:5]}{hms[6:8]}-{qid}.eml.gz"
                add(
                    (
                        when,
                        (
                            t_message
                            % (
                                f'"{stamp}Z"',
                                *frag,
                                _js(f"Message {qid} from <{mail_from}> to {k} recipient(s)"),
                                via_js,
                                target_js,
                                port_js,
                                helo_js,
                                _js(mail_from),
                                '""',
                                "[" + rcpt_js + "]",
                                str(len(stored)),
                                f'"{sha256(stored).hexdigest()}"',
                                _js(qid),
                                _js(relpath),
                                "false",  # bdat: simulated spam is sent with DATA
                            )
                        ).encode(),
                    )
                )
                if write_bodies and m_body[body_ix]:  # type: ignore[index]
                    out.write_message(relpath, stored)
                    counts.message_files += 1
            if nm:
                counts.messages += nm
                counts.ip_ids.add(ip_ix)
                counts.recipients += recipients
                counts.countries[country[origin]] += nm
                counts.ases[as_key[origin]] += nm
                counts.ports[port] += nm
                counts.sensors[out.name] += nm
                counts.days[day_key] += nm
                counts.events += nm
        close = close_time[j]
        duration = round(close - start, 6)
        add(
            (
                close,
                (
                    t_close
                    % (
                        f'"{close_stamp[j]}Z"',
                        *frag,
                        f'"Connection lost after {duration:.3f} s"',
                        repr(duration),
                        str(wire.bytes_in),
                        str(wire.bytes_out),
                        '"quit"' if smtp_session else '"client closed"',
                    )
                ).encode(),
            )
        )
        counts.events += 2
    return lines


def _iso(t: np.ndarray) -> list[str]:
    """RFC 3339 times to the microsecond (without the Z), made by numpy for a whole array."""
    us = np.round(t * 1e6).astype(np.int64).astype("datetime64[us]")
    return np.datetime_as_string(us, unit="us").tolist()


class _Stamps:
    """RFC 3339 event timestamps and RFC 5322 dates for times near one day."""

    __slots__ = ("day0", "days", "mail_days")

    def __init__(self, date: dt.date, day0: float) -> None:
        self.day0 = day0
        dates = [date + dt.timedelta(days=i) for i in range(3)]
        self.days = [d.isoformat() for d in dates]
        # RFC 5322 §3.3, with English names whatever the locale.
        self.mail_days = [
            f"{_DAYS[d.weekday()]}, {d.day:02d} {_MONTHS[d.month - 1]} {d.year} " for d in dates
        ]

    def __call__(self, t: float) -> str:
        micros = round((t - self.day0) * 1_000_000)
        seconds, us = divmod(micros, 1_000_000)
        d, rem = divmod(seconds, 86400)
        h, rem = divmod(rem, 3600)
        m, s = divmod(rem, 60)
        return f"{self.days[d]}T{h:02d}:{m:02d}:{s:02d}.{us:06d}Z"

    def js(self, t: float) -> str:
        return f'"{self(t)}"'

    def mail_date(self, t: float, hms: str) -> str:
        return f"{self.mail_days[int((t - self.day0) // 86400)]}{hms} +0000"

    def http_date(self, t: float) -> str:
        """RFC 9110 §5.6.7's IMF-fixdate."""
        return f"{self.mail_days[int((t - self.day0) // 86400)]}{self(t)[11:19]} GMT"


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
