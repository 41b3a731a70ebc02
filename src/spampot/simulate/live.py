"""Live simulation: spammer sessions against a running sensor, over loopback only.

Each session is planned first (:class:`SessionSpec`: port, protocol, outcome, source address,
messages), then played by a small asyncio client that speaks as spam tools do: direct SMTP,
HTTP CONNECT, SOCKS 4/4a/5, GETs, tunnels to other ports, malformed requests and binary junk.
When the sensor trusts this host's PROXY-protocol headers (``[sensor] proxy_protocol``), each
session can start with a v1 or v2 header naming a source drawn from the profile's origins, so
one loopback client presents the paper's countries and ASes.

Rate, count, duration, concurrency and every read are bounded; any target that is not a
loopback address is refused before a socket is opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from spampot.config import table1_module
from spampot.simulate import clients
from spampot.simulate.bodies import Campaigns
from spampot.simulate.profile import Origin, Profile

PROXY_MODES = ("off", "v1", "v2", "mixed")
_MX = ("mx1.hotmail.com", "mx.yahoo.com.tw", "gmail-smtp-in.l.google.com", "mx.163.com",
       "198.51.100.25", "203.0.113.9")  # fmt: skip
_VICTIMS = ("hotmail.com", "yahoo.com.tw", "msn.com", "pchome.com.tw", "163.com", "uol.com.br")
_MAX_REPLY = 64 * 1024  # longest answer read from the sensor: its error pages are ~1.4 kB


class LiveError(ValueError):
    """The live simulation was asked for something it refuses (a non-loopback target)."""


def require_loopback(host: str) -> str:
    """``host`` if it is a loopback address literal; names are refused (no resolution)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise LiveError(f"{host!r} is not an IP address; use 127.0.0.1 or ::1") from None
    if not ip.is_loopback:
        raise LiveError(f"refusing {host}: live simulation talks to loopback sensors only")
    return str(ip)


@dataclass(frozen=True, slots=True)
class Targets:
    """The sensor's ports by what is spoken there."""

    host: str
    smtp: tuple[int, ...] = ()
    http: tuple[int, ...] = ()
    socks: tuple[int, ...] = ()

    def ports(self, module: str) -> tuple[int, ...]:
        return {"smtp": self.smtp, "http": self.http, "socks": self.socks}[module]


@dataclass(frozen=True, slots=True)
class MessageSpec:
    mail_from: str
    rcpt_to: tuple[str, ...]
    data: bytes


@dataclass(frozen=True, slots=True)
class SessionSpec:
    port: int
    module: str  # "smtp", "http", "socks": the port's module (Table 5)
    protocol: str  # "smtp", "http", "socks4", "socks4a", "socks5", "unknown"
    outcome: str  # Table 6: "smtp", "other", "get", "error"
    target_host: str = ""
    target_port: int = 25
    source: tuple[str, int] | None = None  # presented with the PROXY protocol
    proxy_version: int = 0
    userpass: tuple[str, str] | None = None  # SOCKS5 credentials
    helo: str = "client.example"
    messages: tuple[MessageSpec, ...] = ()
    origin: Origin | None = None


@dataclass
class SessionResult:
    spec: SessionSpec
    # The server's answer to each message's final dot: every persona words it its own way
    # ("Ok: queued as ID", "OK id=ID", "ID Message accepted for delivery", ...).
    queued: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True, slots=True)
class LiveOptions:
    sessions: int = 100  # at most this many sessions
    duration: float = 60.0  # and for at most this long (seconds)
    rate: float = 50.0  # sessions started per second, at most
    concurrency: int = 20
    timeout: float = 10.0  # per read
    proxy_protocol: str = "off"

    def __post_init__(self) -> None:
        if self.proxy_protocol not in PROXY_MODES:
            raise LiveError(f"proxy_protocol must be one of {PROXY_MODES}")
        if self.sessions < 0 or self.duration <= 0 or self.rate <= 0 or self.concurrency < 1:
            raise LiveError("sessions, duration, rate and concurrency must be positive")


def plan_sessions(
    profile: Profile, targets: Targets, proxy_protocol: str = "off"
) -> Iterator[SessionSpec]:
    """An endless stream of sessions drawn from the profile (the paper's shares by default).

    Ports of the profile the sensor listens on for the same module are used as they are;
    the others are mapped onto the sensor's ports of that module.
    """
    rng = random.Random(profile.seed)
    campaigns = Campaigns(profile.seed, profile.campaigns or 1)
    usable = [p for p in profile.ports if targets.ports(p.protocol)]
    if not usable:
        raise LiveError("the sensor has no port for any module of the profile")
    weights = [p.share for p in usable]
    origins = profile.origins
    oweights = [o.share for o in origins]
    mps = dict(profile.messages_per_session)
    versions = [v for v, _ in profile.socks_versions]
    vweights = [w for _, w in profile.socks_versions]
    n = 0
    while True:
        n += 1
        port_share = rng.choices(usable, weights)[0]
        module = port_share.protocol
        ports = targets.ports(module)
        port = port_share.port if port_share.port in ports else rng.choice(ports)
        outcome = "smtp"
        if module != "smtp":
            shares = profile.module_share(module)
            names = [k for k, v in shares.items() if v > 0]
            outcome = rng.choices(names, [shares[k] for k in names])[0]
        if module == "smtp":
            protocol = "smtp"
        elif outcome == "error" and rng.random() < profile.junk_share:
            protocol = "unknown"
        elif module == "http":
            protocol = "http"
        else:
            protocol = rng.choices(versions, vweights)[0]
            if protocol == "socks4a" and outcome == "error":
                protocol = "socks4"  # a bad command is refused before any host name
        origin = source = None
        version = 0
        if proxy_protocol != "off":
            origin = rng.choices(origins, oweights)[0]
            source = (_address_in(origin, rng), rng.randrange(1024, 65536))
            version = {"v1": 1, "v2": 2}.get(proxy_protocol) or rng.choice((1, 2))
        host = rng.choice(_MX)
        if protocol == "socks4" or outcome == "other":
            host = host if host[0].isdigit() else "198.51.100.25"
        if outcome == "get":
            host = "www.example.com"
        target_port = {"smtp": 25, "other": rng.choice((80, 443, 6667)), "get": 80}.get(outcome, 25)
        messages: tuple[MessageSpec, ...] = ()
        if outcome == "smtp":
            count = 1 + _poisson(rng, mps[module] - 1)
            messages = tuple(_message(rng, campaigns, profile, n, k) for k in range(count))
        userpass = None
        if protocol == "socks5" and rng.random() < profile.socks5_auth:
            userpass = (f"u{rng.randrange(10**4)}", f"p{rng.randrange(10**4)}")
        yield SessionSpec(
            port=port,
            module=module,
            protocol=protocol,
            outcome=outcome,
            target_host=host,
            target_port=target_port,
            source=source,
            proxy_version=version,
            userpass=userpass,
            helo=f"pc{rng.randrange(1000)}.example",
            messages=messages,
            origin=origin,
        )


def _address_in(origin: Origin, rng: random.Random) -> str:
    net = ipaddress.ip_network(rng.choice(origin.networks))
    span = net.num_addresses - 2
    return str(net.network_address + (0 if span < 1 else 1 + rng.randrange(span)))


def _poisson(rng: random.Random, mean: float) -> int:
    # Knuth's method; means here are a few units.
    limit, k, p = pow(2.718281828459045, -mean), 0, rng.random()
    while p > limit and k < 1000:
        k += 1
        p *= rng.random()
    return k


def _message(
    rng: random.Random, campaigns: Campaigns, profile: Profile, session: int, k: int
) -> MessageSpec:
    count = min(profile.recipients_max, 1 + _poisson(rng, profile.recipients_mean - 1))
    rcpts = tuple(f"user{rng.randrange(10**6)}@{rng.choice(_VICTIMS)}" for _ in range(count))
    campaign = rng.randrange(campaigns.count)
    variant = rng.getrandbits(31)
    mail_from = f"news{variant % 9973}@{campaigns.sender_domain(campaign)}"
    date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())
    data = campaigns.message(campaign, variant, mail_from, rcpts[0], date, f"{session}.{k}")
    return MessageSpec(mail_from, rcpts, data)


# --- playing sessions ------------------------------------------------------------------------


class _Peer:
    """Reads with a timeout and a bound; the sensor's replies are small."""

    def __init__(self, reader: asyncio.StreamReader, timeout: float) -> None:
        self.reader = reader
        self.timeout = timeout

    async def exactly(self, n: int) -> bytes:
        return await asyncio.wait_for(self.reader.readexactly(n), self.timeout)

    async def until(self, marker: bytes) -> bytes:
        return await asyncio.wait_for(self.reader.readuntil(marker), self.timeout)

    async def reply(self) -> tuple[int, str]:
        """One SMTP reply (RFC 5321 §4.2: continuation lines have '-' after the code)."""
        text = b""
        while len(text) < _MAX_REPLY:
            line = await self.until(b"\n")
            text += line
            if len(line) < 4 or line[3:4] != b"-":
                return int(line[:3]), text.decode("ascii", "replace")
        raise ConnectionError("SMTP reply too long")

    async def response(self) -> bytes:
        """One HTTP response, read by its Content-Length: the proxy may keep the connection
        open for the next request (keep-alive), so its end is not the connection's."""
        head = await self.until(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length" and value.strip().isdigit():
                length = min(int(value), _MAX_REPLY)
        return head + (await self.exactly(length) if length else b"")

    async def rest(self) -> bytes:
        """What the sensor sends until it closes (an error page, a refusal)."""
        data = b""
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while len(data) < _MAX_REPLY:
                chunk = await asyncio.wait_for(self.reader.read(4096), self.timeout)
                if not chunk:
                    break
                data += chunk
        return data


async def _expect(peer: _Peer, writer: asyncio.StreamWriter, line: bytes, code: int) -> str:
    if line:
        writer.write(line)
    got, text = await peer.reply()
    if got != code:
        raise ConnectionError(f"expected {code}, got {text.strip()!r}")
    return text


async def _smtp(peer: _Peer, writer: asyncio.StreamWriter, spec: SessionSpec) -> list[str]:
    await _expect(peer, writer, b"", 220)
    await _expect(peer, writer, clients.smtp_ehlo(spec.helo), 250)
    queued = []
    for msg in spec.messages:
        *envelope, data = clients.smtp_envelope(msg.mail_from, msg.rcpt_to)
        for line in envelope:
            await _expect(peer, writer, line, 250)
        await _expect(peer, writer, data, 354)
        text = await _expect(peer, writer, clients.smtp_data(msg.data), 250)
        queued.append(text.strip())
    await _expect(peer, writer, clients.smtp_quit(), 221)
    return queued


async def play(spec: SessionSpec, host: str, timeout: float = 10.0) -> SessionResult:
    """One session against the sensor at ``host`` (loopback only)."""
    require_loopback(host)
    result = SessionResult(spec)
    writer: asyncio.StreamWriter | None = None
    try:
        reader, opened = await asyncio.wait_for(asyncio.open_connection(host, spec.port), timeout)
        writer = opened
        peer = _Peer(reader, timeout)
        if spec.source is not None:
            # The header names the client the front end saw and the address it reached.
            sensor_ip = opened.get_extra_info("peername")[0]
            src_ip, src_port = spec.source
            opened.write(
                clients.proxy_header(spec.proxy_version, src_ip, src_port, sensor_ip, spec.port)
            )
        result.queued = await _converse(peer, opened, spec)
    except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, asyncio.TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), timeout)
    return result


async def _converse(peer: _Peer, writer: asyncio.StreamWriter, spec: SessionSpec) -> list[str]:
    p, host, port = spec.protocol, spec.target_host, spec.target_port
    if p == "smtp":
        return await _smtp(peer, writer, spec)
    if p == "unknown":
        # No line end: an HTTP proxy port waits for one, a SOCKS port closes. Either way the
        # tool gives up.
        writer.write(clients.junk())
        await writer.drain()
        return []
    if p == "http":
        if spec.outcome == "smtp":
            writer.write(clients.http_connect(host, 25))
            head = await peer.until(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise ConnectionError(f"CONNECT refused: {head[:40]!r}")
            return await _smtp(peer, writer, spec)
        writer.write(
            {
                "other": lambda: clients.http_connect(host, port, host_header=True),
                "get": lambda: clients.http_get(host),
                "error": clients.http_malformed,
            }[spec.outcome]()
        )
        await (peer.response() if spec.outcome == "get" else peer.rest())
        return []
    if p in ("socks4", "socks4a"):
        if spec.outcome == "error":
            writer.write(clients.socks4_bad_command("198.51.100.25", 25))
        elif p == "socks4":
            writer.write(clients.socks4_connect(host, port))
        else:
            writer.write(clients.socks4a_connect(host, port))
        reply = await peer.exactly(8)
        if spec.outcome == "smtp":
            if reply[1] != 0x5A:
                raise ConnectionError(f"SOCKS4 refused: {reply!r}")
            return await _smtp(peer, writer, spec)
        await peer.rest()
        return []
    # SOCKS5 (RFC 1928): greeting, the method, optional RFC 1929 credentials, the request.
    writer.write(clients.socks5_greeting(userpass=spec.userpass is not None))
    method = await peer.exactly(2)
    if method[1] == 2:
        user, password = spec.userpass or ("", "")
        writer.write(clients.socks5_userpass(user, password))
        await peer.exactly(2)
    command = 9 if spec.outcome == "error" else 1
    writer.write(clients.socks5_request(host, port, command))
    if spec.outcome == "error":
        await peer.rest()  # an unknown command: closed without a reply
        return []
    reply = await peer.exactly(4)
    size = {1: 4, 4: 16}.get(reply[3]) or (await peer.exactly(1))[0]  # 3: a name, its length
    await peer.exactly(size + 2)
    if spec.outcome == "smtp":
        if reply[1] != 0:
            raise ConnectionError(f"SOCKS5 refused: {reply!r}")
        return await _smtp(peer, writer, spec)
    await peer.rest()
    return []


async def run_live(
    specs: Iterator[SessionSpec], targets: Targets, opts: LiveOptions
) -> list[SessionResult]:
    """Play sessions at ``opts.rate`` per second, ``opts.concurrency`` at a time, until
    ``opts.sessions`` are done or ``opts.duration`` has passed."""
    host = require_loopback(targets.host)
    results: list[SessionResult] = []
    gate = asyncio.Semaphore(opts.concurrency)
    tasks: set[asyncio.Task[None]] = set()
    loop = asyncio.get_running_loop()
    began = loop.time()
    deadline = began + opts.duration

    async def one(spec: SessionSpec) -> None:
        try:
            results.append(await play(spec, host, opts.timeout))
        finally:
            gate.release()

    for n, spec in enumerate(specs):
        if n >= opts.sessions:
            break
        due = began + n / opts.rate
        now = loop.time()
        if due > now:
            await asyncio.sleep(due - now)
        if loop.time() >= deadline:
            break
        await gate.acquire()
        task = asyncio.create_task(one(spec))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=max(0.0, deadline - loop.time()) + opts.timeout * 4)
    for task in list(tasks):
        task.cancel()
    return results


def summarise(results: list[SessionResult]) -> dict[str, Any]:
    """Counts of what the sensor acknowledged, in the offline counts' terms."""
    requests: Counter[str] = Counter()
    protocols: Counter[str] = Counter()
    countries: Counter[str] = Counter()
    ases: Counter[str] = Counter()
    ports: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    messages = recipients = 0
    sources = set()
    module_of = {"http": "http", "unknown": "unknown"}
    for r in results:
        spec = r.spec
        if r.error is not None:
            failed[r.error.split(":", 1)[0]] += 1
        if spec.protocol != "smtp":
            # The module the report counts it in: the port's in Table 1, else what was spoken.
            module = table1_module(spec.port) or module_of.get(spec.protocol, "socks")
            requests[f"{module}/{spec.outcome}"] += 1
            protocols[spec.protocol] += 1
        sent = len(r.queued)
        messages += sent
        recipients += sum(len(m.rcpt_to) for m in spec.messages[:sent])
        if sent:
            ports[str(spec.port)] += sent
            sources.add(spec.source[0] if spec.source else "loopback")
            if spec.origin is not None:
                o = spec.origin
                countries[o.country] += sent
                ases[f"{o.asn} {o.as_name} ({o.country or '??'})"] += sent
    nested: dict[str, dict[str, int]] = {}
    for key, n in sorted(requests.items()):
        module, outcome = key.split("/")
        nested.setdefault(module, {})[outcome] = n
    for table in nested.values():
        table["total"] = sum(table.values())
    return {
        "sessions": len(results),
        "failed": sum(failed.values()),
        "failures": dict(failed),
        "messages": messages,
        "recipients": recipients,
        "unique_ips": len(sources),
        "proxy_requests": nested,
        "proxy_protocols": dict(sorted(protocols.items())),
        "countries": dict(countries.most_common()),
        "ases": dict(ases.most_common()),
        "ports": dict(ports.most_common()),
    }
