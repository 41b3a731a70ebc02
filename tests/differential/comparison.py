"""Send a probe set to a real server and to the sensor, normalise, compare, count agreement.

A probe agrees on *text* when everything the server sent on the connection, normalised, is
byte-identical and both closed it (or neither did). The whole stream is compared, not reply
by reply: where one read ended and the next began follows timing (Exim answers a 100 KB line
in pieces as it reads it), not the software. It agrees on *code* when the codes are the same:
the SMTP final-line codes of the whole stream; the HTTP status or SOCKS status bytes of each
reply (those replies are read whole); and whether the server closed.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import probes as probeset
from normalise import normalise_reply, reply_code, smtp_codes
from realservers import Server

SETS = {"designed": probeset.DESIGNED, "heldout": probeset.HELDOUT}

# pair name -> (real server, sensor dialect whose sensor answers, protocol family)
PAIRS: dict[str, tuple[str, str, str]] = {
    "postfix": ("postfix", "postfix", "smtp"),
    "exim": ("exim4", "exim", "smtp"),
    "sendmail": ("sendmail", "sendmail", "smtp"),
    "squid": ("squid", "postfix", "http"),
    "dante": ("dante", "postfix", "socks"),
}


@dataclass
class Side:
    replies: list[bytes]  # normalised, one per read (for display)
    stream: bytes  # everything, normalised: what is compared
    closed: bool
    error: str
    codes: str

    def to_json(self) -> dict:
        return {
            "replies": [r.decode("latin-1") for r in self.replies],
            "stream": self.stream.decode("latin-1"),
            "closed": self.closed,
            "error": self.error,
            "codes": self.codes,
        }


@dataclass
class ProbeResult:
    probe: str
    real: Side
    sensor: Side

    @property
    def same_code(self) -> bool:
        return self.real.codes == self.sensor.codes

    @property
    def same_text(self) -> bool:
        r, s = self.real, self.sensor
        return (r.stream, r.closed, r.error) == (s.stream, s.closed, s.error)


@dataclass
class PairResult:
    pair: str
    probe_set: str
    results: list[ProbeResult]

    @property
    def total(self) -> int:
        return len(self.results)

    @property
    def same_code(self) -> int:
        return sum(r.same_code for r in self.results)

    @property
    def same_text(self) -> int:
        return sum(r.same_text for r in self.results)

    def to_json(self) -> dict:
        return {
            "pair": self.pair,
            "probe_set": self.probe_set,
            "total": self.total,
            "same_code": self.same_code,
            "same_text": self.same_text,
            "probes": [
                {
                    "id": r.probe,
                    "same_code": r.same_code,
                    "same_text": r.same_text,
                    "real": r.real.to_json(),
                    "sensor": r.sensor.to_json(),
                }
                for r in self.results
            ],
        }


def _side(t: probeset.Transcript, family: str) -> Side:
    replies = [normalise_reply(r, family) for r in t.replies]
    # A SOCKS reply's bound port is found at the start of a read (each read whole, until
    # idle or the expected bytes); everything else is normalised as one stream.
    if family == "socks":
        stream = b"".join(replies)
    else:
        stream = normalise_reply(b"".join(t.replies), family)
    # Codes of the normalised replies: a raw SOCKS reply's ephemeral port could hold a line
    # feed that makes the banner after it look like the start of a line.
    codes = [smtp_codes(stream)] if family == "smtp" else [reply_code(r) for r in replies]
    closed = ["close"] if t.closed else []
    return Side(replies, stream, t.closed, t.error, "|".join(codes + closed))


def compare(
    real: Server,
    sensor: Server,
    probes: list[probeset.Probe],
    family: str,
    together: bool = True,
) -> list[ProbeResult]:
    """Both sides at once (each ``probes.PARALLEL`` connections at a time), or one after the
    other (``together=False``: a server compared with itself would see twice as many
    connections at once, past Exim's smtp_accept_max of 20)."""
    with ThreadPoolExecutor(max_workers=2 if together else 1) as pool:
        real_f = pool.submit(probeset.run_set, real.connect, probes)
        sensor_f = pool.submit(probeset.run_set, sensor.connect, probes)
        got_real, got_sensor = real_f.result(), sensor_f.result()
    return [
        ProbeResult(p.id, _side(got_real[p.id], family), _side(got_sensor[p.id], family))
        for p in probes
    ]


def run_pairs(
    reals: dict[str, Server],
    sensors: dict[str, Server],
    pairs: list[str] | None = None,
    sets: list[str] | None = None,
) -> list[PairResult]:
    """Every pair at once (the servers are independent, and most of a probe's time is spent
    waiting: for a close, a timeout, Postfix's error delay); one pair's probe sets one after
    the other, so a server never sees more than ``probes.PARALLEL`` connections at once
    (Exim refuses past 20)."""
    set_names = sets or list(SETS)
    loaded = {name: probeset.load(SETS[name]) for name in set_names}

    def one_pair(pair: str) -> list[PairResult]:
        real_name, dialect, family = PAIRS[pair]
        out = []
        for set_name in set_names:
            chosen = [p for p in loaded[set_name] if p.family == family]
            results = compare(reals[real_name], sensors[dialect], chosen, family)
            out.append(PairResult(pair, set_name, results))
        return out

    chosen_pairs = pairs or list(PAIRS)
    with ThreadPoolExecutor(max_workers=len(chosen_pairs)) as pool:
        per_pair = list(pool.map(one_pair, chosen_pairs))
    # In the table's order: by probe set, then pair.
    return [r for set_name in set_names for rs in per_pair for r in rs if r.probe_set == set_name]


def table(results: list[PairResult]) -> str:
    """The agreement table, in Markdown (the README's)."""
    lines = [
        "| pair | probe set | same code | same text |",
        "|---|---|---|---|",
    ]
    for r in results:
        pct = 100 * r.same_text / r.total if r.total else 0
        lines.append(
            f"| {r.pair} | {r.probe_set} | {r.same_code}/{r.total} | "
            f"{r.same_text}/{r.total} ({pct:.0f} %) |"
        )
    return "\n".join(lines)


def _lines(side: Side, width: int) -> list[str]:
    """One display line per CRLF-ended line of each reply, bytes escaped as in b"..." (a
    SOCKS reply is binary: only CRLF splits), folded at ``width``."""
    out = []
    for n, reply in enumerate(side.replies):
        parts = reply.split(b"\r\n")
        parts = [p + b"\r\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
        for i, part in enumerate(parts or [b""]):
            text = (f"#{n} " if i == 0 else "   ") + repr(part)[2:-1]
            out += [text[k : k + width] for k in range(0, len(text), width)] or [""]
    if side.error:
        out.append(f"[error: {side.error}]")
    out.append("[closed]" if side.closed else "[open]")
    return out


def side_by_side(result: ProbeResult, width: int = 78) -> str:
    left, right = _lines(result.real, width), _lines(result.sensor, width)
    rows = [f"--- {result.probe}  (code {'same' if result.same_code else 'DIFFERS'})"]
    rows.append(f"{'real':<{width}} | sensor")
    for n in range(max(len(left), len(right))):
        a = left[n] if n < len(left) else ""
        b = right[n] if n < len(right) else ""
        mark = "|" if a == b else "*"
        rows.append(f"{a:<{width}} {mark} {b}")
    return "\n".join(rows)


def write_json(results: list[PairResult], path: Path) -> None:
    path.write_text(json.dumps([r.to_json() for r in results], indent=1) + "\n")
