"""``spampot export``: threat-intelligence feeds from the warehouse, for a period and sensors.

Three formats, each a directory of files:

- ``lists``: plain text (one value a line, ``#`` comments: what blocklist tools such as
  ipset, Postfix access maps or DNS RPZ builders read) and CSV with count and first/last seen,
  for source addresses, advertised domains, URLs, attachment hashes and relay-test mailboxes;
- ``misp``: a MISP feed (one event per day: ``<uuid>.json``, ``manifest.json``,
  ``hashes.csv``) made with PyMISP, which MISP's "Add feed" fetches as it is; event and
  attribute UUIDs derive from the values, so a re-export updates the same events;
- ``stix``: one STIX 2.1 bundle made with the ``stix2`` library: indicators for advertised
  domains, URLs and attachment hashes, observed-data (count, first/last seen) for source
  addresses, file objects for attachments, email-message objects for the top subjects.

The sensors' own addresses and names never appear: every address a client reached
(``dst_ip``), every sensor name (events and inventory) and host (inventory) and its registered
domain, and values given with ``--exclude`` are looked for in every value (an address or name
not inside a longer one), and a value holding one is left out, counted in the export's summary.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from spampot.analysis.content.urls import registered_domain
from spampot.analysis.sql import load_sql

FORMATS = ("lists", "misp", "stix")
NAMESPACE = uuid.UUID("5d1d2c8e-6b8a-4f0e-9b6c-2f6f3d5a9e01")  # spampot's, for uuid5 ids
PRODUCER = "spampot"
SUBJECTS_PER_DAY = 20  # email-subject attributes per daily MISP event (most frequent)
STIX_SUBJECTS = 50  # email-message objects: the most frequent subjects
STIX_LIMIT = 10_000  # indicators (and observed addresses) per kind in a bundle, by default


@dataclass(slots=True)
class Redactor:
    """Leaves out any value naming a sensor: an identity not inside a longer word or number
    (``192.0.2.10`` is not in ``192.0.2.100``; ``br-01`` is in ``br-01-report.zip``)."""

    identities: set[str]
    dropped: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _pattern: re.Pattern[str] | None = None

    def __post_init__(self) -> None:
        names = sorted({i.strip().lower() for i in self.identities if i and i.strip()}, key=len)
        if names:
            alternatives = "|".join(re.escape(n) for n in reversed(names))
            self._pattern = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)

    def clean(self, kind: str, value: Any) -> bool:
        """True when ``value`` names no sensor; counts it under ``kind`` when it does."""
        if self._pattern is None or value is None:
            return True
        texts = value if isinstance(value, list) else [value]
        if any(self._pattern.search(str(t)) for t in texts):
            self.dropped[kind] += 1
            return False
        return True


@dataclass(frozen=True, slots=True)
class Indicator:
    value: Any
    count: int
    first_seen: dt.datetime
    last_seen: dt.datetime
    extra: dict[str, Any] = field(default_factory=dict)


def sensor_identities(
    con: duckdb.DuckDBPyConnection, names: Iterable[str], exclude: Iterable[str]
) -> set[str]:
    """Every address a client reached, every sensor name and host, what ``exclude`` adds, and
    the registered domain of each host name among them (it names the sensor's operator)."""
    found = {str(r[0]) for r in con.execute(load_sql("export_sensor_identities")).fetchall()}
    identities = found | {n for n in names if n} | {e for e in exclude if e}
    for name in list(identities):
        domain = registered_domain(name.strip().lower().rstrip("."))
        if domain and "." in name and domain != name:
            identities.add(domain)
    return identities


def _indicators(
    con: duckdb.DuckDBPyConnection, name: str, kind: str, redactor: Redactor, limit: int = 0
) -> list[Indicator]:
    """The rows of ``sql/<name>.sql`` that name no sensor, the ``limit`` most frequent."""
    sql = load_sql(name)
    if limit:
        sql = f"SELECT * FROM ({sql}) AS ranked ORDER BY count DESC, value ASC LIMIT {int(limit)}"
    cursor = con.execute(sql)
    columns = [d[0] for d in cursor.description]
    out = []
    for row in cursor.fetchall():
        record = dict(zip(columns, row, strict=True))
        if not redactor.clean(kind, record["value"]) or not redactor.clean(
            kind, record.get("filename")
        ):
            continue
        extra = {
            k: v
            for k, v in record.items()
            if k not in ("value", "count", "first_seen", "last_seen")
        }
        out.append(
            Indicator(
                record["value"],
                int(record["count"]),
                record["first_seen"],
                record["last_seen"],
                extra,
            )
        )
    return out


def _iso(value: dt.datetime) -> str:
    return value.replace(tzinfo=dt.UTC).isoformat().replace("+00:00", "Z")


# --- lists ----------------------------------------------------------------------------------

LISTS = {
    # file stem: (sql, kind, header)
    "sources": ("export_sources", "ip-src", "addresses that sent spam through the sensors"),
    "domains": ("export_domains", "domain", "registered domains the spam advertised"),
    "urls": ("export_urls", "url", "URLs the spam carried"),
    "attachments": ("export_attachments", "sha256", "SHA-256 of the spam's attachments"),
    "mailboxes": ("export_mailbox_days", "email-dst", "mailboxes relay tests were sent to"),
}


def write_lists(
    con: duckdb.DuckDBPyConnection, out: Path, redactor: Redactor, scope: str
) -> dict[str, int]:
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, int] = {}
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for stem, (sql, kind, header) in LISTS.items():
        items = _indicators(con, sql, kind, redactor)
        if stem == "mailboxes":  # recipient lists of each day: one mailbox a line, all days
            merged: dict[str, Indicator] = {}
            for item in items:
                for box in item.value or []:
                    old = merged.get(box)
                    merged[box] = (
                        Indicator(box, item.count, item.first_seen, item.last_seen, {})
                        if old is None
                        else Indicator(
                            box,
                            old.count + item.count,
                            min(old.first_seen, item.first_seen),
                            max(old.last_seen, item.last_seen),
                            {},
                        )
                    )
            items = sorted(merged.values(), key=lambda i: (-i.count, i.value))
        with open(out / f"{stem}.txt", "w", encoding="utf-8") as f:
            f.write(f"# {header}\n# {scope}; made by {PRODUCER} at {stamp}\n")
            for item in items:
                f.write(f"{item.value}\n")
        extra_keys = sorted({k for item in items for k in item.extra})
        with open(out / f"{stem}.csv", "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["value", "count", "first_seen", "last_seen", *extra_keys])
            for item in items:
                writer.writerow(
                    [
                        item.value,
                        item.count,
                        _iso(item.first_seen),
                        _iso(item.last_seen),
                        *(item.extra.get(k) for k in extra_keys),
                    ]
                )
        written[stem] = len(items)
    return written


# --- MISP -----------------------------------------------------------------------------------

_MISP_COMMENT = {
    "ip-src": "sent spam through an open-proxy/relay honeypot",
    "domain": "advertised in spam",
    "url": "carried in spam",
    "sha256": "spam attachment",
    "email-subject": "spam subject",
    "email-dst": "mailbox a relay test was sent to (the spammer's own)",
}


def write_misp(
    con: duckdb.DuckDBPyConnection, out: Path, redactor: Redactor, scope: str
) -> dict[str, int]:
    """One MISP event per day, then manifest.json and hashes.csv as MISP's own tool makes."""
    from pymisp import MISPEvent, MISPOrganisation
    from pymisp.tools import feed_meta_generator

    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.json"):
        old.unlink()
    per_day: dict[dt.date, list[tuple[str, Any, int, dt.datetime, dt.datetime]]] = defaultdict(list)
    for day, kind, value, count, first, last in con.execute(load_sql("export_days")).fetchall():
        if redactor.clean(kind, value):
            per_day[day].append((kind, value, int(count), first, last))
    for day, boxes, count, first, last in con.execute(load_sql("export_mailbox_days")).fetchall():
        for box in boxes or []:
            if redactor.clean("email-dst", box):
                per_day[day].append(("email-dst", box, int(count), first, last))
    org = MISPOrganisation()
    org.name = PRODUCER
    org.uuid = str(uuid.uuid5(NAMESPACE, "organisation"))
    attributes = 0
    for day in sorted(per_day):
        event = MISPEvent()
        event.uuid = str(uuid.uuid5(NAMESPACE, f"misp-day/{day.isoformat()}"))
        event.info = f"spampot: spam captured on {day.isoformat()} ({scope})"
        event.date = day
        event.threat_level_id = 3  # low: spam
        event.analysis = 2  # completed
        event.Orgc = org
        event.add_tag("tlp:clear")
        items = per_day[day]
        subjects = sorted((i for i in items if i[0] == "email-subject"), key=lambda i: -i[2])
        keep = [i for i in items if i[0] != "email-subject"] + subjects[:SUBJECTS_PER_DAY]
        for kind, value, count, first, last in keep:
            event.add_attribute(
                kind,
                str(value),
                uuid=str(uuid.uuid5(NAMESPACE, f"misp-day/{day.isoformat()}/{kind}/{value}")),
                comment=f"{_MISP_COMMENT[kind]}: {count} time(s)",
                first_seen=first.replace(tzinfo=dt.UTC),
                last_seen=last.replace(tzinfo=dt.UTC),
                to_ids=kind not in ("email-subject", "email-dst"),
            )
            attributes += 1
        with open(out / f"{event.uuid}.json", "w", encoding="utf-8") as f:
            json.dump(event.to_feed(with_meta=False), f, ensure_ascii=False)
    feed_meta_generator(out)
    return {"events": len(per_day), "attributes": attributes}


# --- STIX 2.1 -------------------------------------------------------------------------------


def _stix_string(value: str) -> str:
    """A string literal of the STIX patterning language (its §9.2: \\ and ' escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def write_stix(
    con: duckdb.DuckDBPyConnection,
    out: Path,
    redactor: Redactor,
    scope: str,
    limit: int = STIX_LIMIT,
) -> dict[str, int]:
    """The bundle holds the ``limit`` most frequent of each kind: the stix2 library validates
    every object it builds (an indicator's pattern through the STIX pattern grammar, 1.3 ms),
    and one JSON document of millions of objects is no feed anyone loads."""
    import stix2

    out.mkdir(parents=True, exist_ok=True)
    identity = stix2.Identity(
        id=f"identity--{uuid.uuid5(NAMESPACE, 'identity')}",
        name=PRODUCER,
        identity_class="system",
        description="Open-proxy and open-relay spam honeypot network",
    )
    objects: list[Any] = [identity]
    counts: dict[str, int] = defaultdict(int)

    def indicator(key: str, pattern: str, item: Indicator, name: str) -> None:
        objects.append(
            stix2.Indicator(
                id=f"indicator--{uuid.uuid5(NAMESPACE, key)}",
                created_by_ref=identity.id,
                name=name,
                description=f"Seen {item.count} time(s) in spam captured by honeypots ({scope})",
                indicator_types=["malicious-activity"],
                pattern=pattern,
                pattern_type="stix",
                valid_from=_iso(item.first_seen),
                labels=["spam"],
            )
        )
        counts["indicator"] += 1

    for item in _indicators(con, "export_domains", "domain", redactor, limit):
        value = str(item.value)
        indicator(f"domain/{value}", f"[domain-name:value = {_stix_string(value)}]", item,
                  f"Spam-advertised domain {value}")  # fmt: skip
    for item in _indicators(con, "export_urls", "url", redactor, limit):
        value = str(item.value)
        indicator(f"url/{value}", f"[url:value = {_stix_string(value)}]", item,
                  f"Spam URL {value}")  # fmt: skip
    for item in _indicators(con, "export_attachments", "sha256", redactor, limit):
        value = str(item.value)
        indicator(f"sha256/{value}", f"[file:hashes.'SHA-256' = {_stix_string(value)}]", item,
                  f"Spam attachment {item.extra.get('filename') or value}")  # fmt: skip
        file_obj = stix2.File(
            hashes={"SHA-256": value},
            name=item.extra.get("filename") or None,
            size=item.extra.get("size"),
            mime_type=item.extra.get("type"),
        )
        objects += [file_obj, _observed(stix2, identity, file_obj, item, f"file/{value}")]
        counts["file"] += 1
    for item in _indicators(con, "export_sources", "ip-src", redactor, limit):
        value = str(item.value)
        kind = stix2.IPv6Address if ":" in value else stix2.IPv4Address
        address = kind(value=value)
        objects += [address, _observed(stix2, identity, address, item, f"source/{value}")]
        counts["source"] += 1
    for item in _indicators(con, "export_subjects", "email-subject", redactor, STIX_SUBJECTS):
        message = stix2.EmailMessage(is_multipart=False, subject=str(item.value))
        objects += [message, _observed(stix2, identity, message, item, f"subject/{item.value}")]
        counts["email-message"] += 1
    bundle = stix2.Bundle(objects=objects, id=f"bundle--{uuid.uuid4()}")
    # The library's pretty printer sorts properties in time quadratic in the bundle's size
    # (150 s for 1,000 objects): serialise plainly, indent with json.
    text = json.dumps(
        json.loads(bundle.serialize(ensure_ascii=False)), indent=1, ensure_ascii=False
    )
    (out / "bundle.json").write_text(text + "\n", encoding="utf-8")
    return dict(counts)


def _observed(stix2: Any, identity: Any, obj: Any, item: Indicator, key: str) -> Any:
    first, last = _iso(item.first_seen), _iso(item.last_seen)
    return stix2.ObservedData(
        id=f"observed-data--{uuid.uuid5(NAMESPACE, 'observed/' + key)}",
        created_by_ref=identity.id,
        first_observed=first,
        last_observed=last,
        number_observed=max(1, item.count),
        object_refs=[obj.id],
    )


def export(
    con: duckdb.DuckDBPyConnection,
    fmt: str,
    out: Path,
    redactor: Redactor,
    scope: str,
    stix_limit: int = STIX_LIMIT,
) -> dict[str, int]:
    if fmt == "stix":
        return write_stix(con, out, redactor, scope, stix_limit)
    writer = {"lists": write_lists, "misp": write_misp}[fmt]
    return writer(con, out, redactor, scope)
