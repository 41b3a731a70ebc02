"""Probe sets (TOML data beside this file) and the client that sends them.

A probe is one fresh connection: read what the server says first (an SMTP banner; nothing on
a proxy port), then send each step and read its reply. A step's bytes are written in TOML as
text whose code points are the bytes (U+0000-U+00FF, so ``"\\u00ff"`` is the byte 0xFF and
``"\\u0000"`` a NUL), or as ``hex``. The reply to a step is complete when

- ``until`` (a regular expression over the reply, bytes as latin-1) matches, else
- SMTP port: ``replies`` final reply lines (``NNN text``; default 1) have arrived,
- HTTP port: a whole response has (headers, then Content-Length bytes or the last chunk),
- SOCKS port: nothing more came for ``IDLE`` seconds (SOCKS replies say nothing of their end),

or the server closed, or the step's ``timeout`` (``STEP_TIMEOUT``) passed: a real server that
says nothing is an answer too. A pause is not an end on SMTP and HTTP (Postfix sleeps a second
before each reply once a client has made ten errors). After the last step the client waits
``CLOSE_WAIT`` for the server to close: whether it did is part of the transcript.
"""

from __future__ import annotations

import re
import select
import socket
import time
import tomllib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).parent
DESIGNED = HERE / "probes_designed.toml"
HELDOUT = HERE / "probes_heldout.toml"

# Port roles; every server listens on the standard port of its role.
PORTS = {"smtp": 25, "http": 3128, "http-alt": 8080, "socks": 1080}
FAMILY = {"smtp": "smtp", "http": "http", "http-alt": "http", "socks": "socks"}

STEP_TIMEOUT = 8.0  # Postfix's error delay is 1 s, Sendmail's greet_pause 1 s: well within
IDLE = 1.0
CLOSE_WAIT = 3.0  # a loaded machine (CI, or several test runs at once) may take a while to close
MAX_REPLY = 1 << 20  # bounds every read (a proxy page is ~3 KiB)
PARALLEL = 12  # connections at once per server (Debian's Sendmail throttles at 15/s)


@dataclass(frozen=True)
class Step:
    data: bytes
    until: str = ""
    replies: int = 1
    timeout: float = 0.0  # 0: STEP_TIMEOUT


@dataclass(frozen=True)
class Probe:
    id: str
    port: str  # a key of PORTS
    steps: tuple[Step, ...]
    banner: bool  # read what the server says before the first step
    note: str = ""

    @property
    def family(self) -> str:
        return FAMILY[self.port]


@dataclass
class Transcript:
    """What a server answered to one probe: one reply per read (banner first if read)."""

    probe: str
    replies: list[bytes] = field(default_factory=list)
    closed: bool = False
    error: str = ""


def _step(raw: object) -> Step:
    if isinstance(raw, str):
        return Step(raw.encode("latin-1"))
    assert isinstance(raw, dict), raw
    data = bytes.fromhex(raw["hex"]) if "hex" in raw else raw["send"].encode("latin-1")
    # Long inputs are written short: prefix + send * repeat + suffix.
    data = (
        raw.get("prefix", "").encode("latin-1")
        + data * raw.get("repeat", 1)
        + raw.get("suffix", "").encode("latin-1")
    )
    return Step(data, raw.get("until", ""), raw.get("replies", 1), raw.get("timeout", 0.0))


def load(path: Path) -> list[Probe]:
    doc = tomllib.loads(path.read_text(encoding="utf-8"))
    probes = []
    for raw in doc["probe"]:
        port = raw["port"]
        if port not in PORTS:
            raise ValueError(f"{raw['id']}: unknown port role {port}")
        steps = tuple(_step(s) for s in raw.get("steps", ()))
        banner = raw.get("banner", FAMILY[port] == "smtp")
        probes.append(Probe(raw["id"], port, steps, banner, raw.get("note", "")))
    ids = [p.id for p in probes]
    if len(ids) != len(set(ids)):
        raise ValueError(f"{path.name}: duplicate probe ids")
    return probes


# --- when is a reply complete ---------------------------------------------------------------

_SMTP_FINAL = re.compile(rb"(?m)^\d{3}(?: [^\r\n]*)?\r?\n")


def _smtp_done(buf: bytes, step: Step) -> bool:
    return len(_SMTP_FINAL.findall(buf)) >= step.replies


def _http_done(buf: bytes, step: Step) -> bool:
    head, sep, body = buf.partition(b"\r\n\r\n")
    if not sep:
        return False
    status = re.match(rb"HTTP/\d\.\d (\d{3})", head)
    if status is None:
        return True  # not HTTP: whatever came at once is the answer
    code = int(status.group(1))
    if step.data.startswith(b"HEAD ") or code in (204, 304) or 100 <= code < 200:
        return True
    if step.data.startswith(b"CONNECT ") and code == 200:
        return False  # a tunnel: what comes through it, until the timeout or close
    length = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
    if length:
        return len(body) >= int(length.group(1))
    if re.search(rb"(?im)^transfer-encoding:\s*chunked\s*$", head):
        return body.endswith(b"0\r\n\r\n")
    return False  # until close (or the timeout)


_DONE: dict[str, Callable[[bytes, Step], bool]] = {
    "smtp": _smtp_done,
    "http": _http_done,
    "socks": lambda buf, step: False,
}


def _read(
    sock: socket.socket, done: Callable[[bytes], bool], idle: float, timeout: float = 0.0
) -> tuple[bytes, bool]:
    """(reply, closed): until done(reply), EOF, ``idle`` quiet after data (0: no such end),
    or the timeout."""
    buf = b""
    deadline = time.monotonic() + (timeout or STEP_TIMEOUT)
    while len(buf) < MAX_REPLY:
        now = time.monotonic()
        wait = deadline - now
        if buf and idle:
            wait = min(wait, idle)
        if wait <= 0:
            return buf, False
        ready, _, _ = select.select([sock], [], [], wait)
        if not ready:
            return buf, False
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return buf, True
        if not chunk:
            return buf, True
        buf += chunk
        if done(buf):
            return buf, False
    return buf, False


def _step_done(step: Step, done_for: Callable[[bytes, Step], bool]) -> Callable[[bytes], bool]:
    if step.until:
        pattern = re.compile(step.until.encode("latin-1"), re.S)
        return lambda buf: bool(pattern.search(buf))
    return lambda buf: done_for(buf, step)


def run_probe(connect: Callable[[int], socket.socket], probe: Probe) -> Transcript:
    out = Transcript(probe.id)
    done_for = _DONE[probe.family]
    idle = IDLE if probe.family == "socks" else 0.0
    try:
        sock = connect(PORTS[probe.port])
    except OSError as exc:
        out.error = f"connect: {exc.strerror or exc}"
        return out
    with sock:
        try:
            if probe.banner:
                first = Step(b"", replies=1)
                reply, out.closed = _read(sock, lambda b: done_for(b, first), idle)
                out.replies.append(reply)
            for step in probe.steps:
                if out.closed:
                    break
                try:
                    sock.sendall(step.data)
                except (BrokenPipeError, ConnectionResetError):
                    out.closed = True
                    break
                done = _step_done(step, done_for)
                reply, out.closed = _read(sock, done, 0.0 if step.until else idle, step.timeout)
                out.replies.append(reply)
            if not out.closed:
                # Whatever comes unasked, and whether the server closes.
                tail, out.closed = _read(sock, lambda b: False, CLOSE_WAIT, CLOSE_WAIT)
                if tail:
                    out.replies.append(tail)
        except OSError as exc:
            out.error = f"{type(exc).__name__}: {exc}"
    return out


def run_set(
    connect: Callable[[int], socket.socket], probes: list[Probe], parallel: int = PARALLEL
) -> dict[str, Transcript]:
    """Every probe on a fresh connection, ``parallel`` at a time."""
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        done = pool.map(lambda p: run_probe(connect, p), probes)
        return {t.probe: t for t in done}
