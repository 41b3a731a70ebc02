"""Country and AS of each source address, from offline databases.

Every row of the warehouse carries what the databases said at ingest time and which databases
(and versions) said it, so history never shifts when a database is updated. Each field comes
from exactly one configured source, the best one that provides it:

- ``country`` (where the address is): MaxMind GeoLite2 Country > geoip2fast;
- ``asn``, ``as_name``: MaxMind GeoLite2 ASN > ip2asn TSV > geoip2fast (name only: the
  geoip2fast data carries AS names but no AS numbers);
- ``as_country`` (where the AS is registered): ip2asn TSV only.

An address no database knows is kept with null fields (reported as unknown), never dropped.
"""

from __future__ import annotations

import bisect
import contextlib
import datetime as dt
import gzip
import ipaddress
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

FIELDS = ("country", "asn", "as_name", "as_country")


class GeoSourceError(ValueError):
    """A database file is missing or is not what it claims to be."""


class GeoSource(Protocol):
    """One database. ``lookup`` returns the fields it knows (absent or None when unknown)."""

    label: str  # e.g. "GeoLite2-ASN 2026-11-24": written into every row it enriched
    provides: frozenset[str]

    def lookup(self, ip: str) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class GeoInfo:
    country: str | None = None
    asn: int | None = None
    as_name: str | None = None
    as_country: str | None = None


class Geoip2fastSource:
    """The ``geoip2fast`` package's bundled data: offline, no sign-up, IPv4 and IPv6.

    Its country+ASN file holds country codes and AS *names*, but no AS numbers.
    """

    provides = frozenset({"country", "as_name"})

    def __init__(self) -> None:
        import geoip2fast

        self._db = geoip2fast.GeoIP2Fast(
            verbose=False, geoip2fast_data_file="geoip2fast-asn-ipv6.dat.gz"
        )
        info = self._db.get_database_info()
        self.label = f"geoip2fast {geoip2fast.__version__} ({info.get('source_info', '?')})"

    def lookup(self, ip: str) -> dict[str, Any]:
        try:
            found = self._db.lookup(ip)
        except Exception:  # the package reports odd input in several ways; unknown is right
            return {}
        country = getattr(found, "country_code", "") or ""
        name = getattr(found, "asn_name", "") or ""
        return {
            "country": country if len(country) == 2 and country != "--" else None,
            "as_name": name or None,
        }


class MaxMindSource:
    """A MaxMind ``.mmdb`` file: GeoLite2/GeoIP2 Country (or City), or GeoLite2/GeoIP2 ASN."""

    def __init__(self, path: Path) -> None:
        import maxminddb

        try:
            self._reader = maxminddb.open_database(str(path))
        except (OSError, ValueError) as exc:
            raise GeoSourceError(f"{path}: not a readable MaxMind database ({exc})") from exc
        meta = self._reader.metadata()
        built = dt.datetime.fromtimestamp(meta.build_epoch, dt.UTC).date().isoformat()
        self.label = f"{meta.database_type} {built}"
        self.is_asn = "ASN" in meta.database_type.upper()
        self.provides = frozenset({"asn", "as_name"} if self.is_asn else {"country"})

    def lookup(self, ip: str) -> dict[str, Any]:
        try:
            record = self._reader.get(ip)
        except ValueError:
            return {}
        if not isinstance(record, dict):
            return {}
        if self.is_asn:
            asn = record.get("autonomous_system_number")
            return {
                "asn": asn if isinstance(asn, int) else None,
                "as_name": record.get("autonomous_system_organization") or None,
            }
        for key in ("country", "registered_country"):
            place = record.get(key)
            if isinstance(place, dict) and place.get("iso_code"):
                return {"country": place["iso_code"]}
        return {}


class Ip2AsnSource:
    """The public ip2asn TSV (``range_start range_end AS_number country_code AS_description``).

    Plain or gzip-compressed; IPv4 and IPv6 ranges, possibly mixed in one file. AS 0 ("Not
    routed") means unknown. The country is the AS's registration country.
    """

    provides = frozenset({"asn", "as_name", "as_country"})

    def __init__(self, path: Path) -> None:
        v4: list[tuple[int, int, int, str, str]] = []
        v6: list[tuple[int, int, int, str, str]] = []
        try:
            opener = gzip.open if _is_gzip(path) else open
            with opener(path, "rt", encoding="utf-8", errors="replace") as f:
                for number, line in enumerate(f, 1):
                    parts = line.rstrip("\n").split("\t")
                    if not line.strip():
                        continue
                    if len(parts) < 5:
                        raise GeoSourceError(f"{path}:{number}: expected 5 tab-separated fields")
                    try:
                        start = ipaddress.ip_address(parts[0])
                        end = ipaddress.ip_address(parts[1])
                        asn = int(parts[2])
                    except ValueError as exc:
                        raise GeoSourceError(f"{path}:{number}: {exc}") from exc
                    if asn == 0:
                        continue  # "Not routed"
                    country = parts[3] if len(parts[3]) == 2 and parts[3] != "--" else ""
                    row = (int(start), int(end), asn, country, parts[4])
                    (v4 if start.version == 4 else v6).append(row)
        except (OSError, EOFError, zlib.error) as exc:  # missing, or a broken gzip stream
            raise GeoSourceError(
                f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}"
            ) from exc
        v4.sort()
        v6.sort()
        self._ranges = {4: v4, 6: v6}
        self._starts = {4: [r[0] for r in v4], 6: [r[0] for r in v6]}
        mtime = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).date().isoformat()
        self.label = f"ip2asn {path.name} {mtime}"

    def lookup(self, ip: str) -> dict[str, Any]:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return {}
        value = int(address)
        starts = self._starts[address.version]
        i = bisect.bisect_right(starts, value) - 1
        if i < 0:
            return {}
        start, end, asn, country, name = self._ranges[address.version][i]
        if not start <= value <= end:
            return {}
        return {"asn": asn, "as_name": name or None, "as_country": country or None}


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"  # the gzip magic number (RFC 1952 §2.3.1)


class Enricher:
    """Looks each distinct address up once; each field from the best source that has it."""

    def __init__(self, sources: Sequence[GeoSource]) -> None:
        self.sources = tuple(sources)
        self._field_source: dict[str, GeoSource] = {}
        for name in FIELDS:
            for source in self.sources:
                if name in source.provides:
                    self._field_source[name] = source
                    break
        used = []
        for source in self.sources:
            names = [f for f in FIELDS if self._field_source.get(f) is source]
            if names:
                used.append((source, names))
        self._used = used
        self.label = "; ".join(f"{'+'.join(names)}: {s.label}" for s, names in used) or "none"

    @property
    def has_asn_numbers(self) -> bool:
        return "asn" in self._field_source

    @property
    def has_as_country(self) -> bool:
        return "as_country" in self._field_source

    def lookup(self, ip: str) -> GeoInfo:
        values: dict[str, Any] = {}
        for source, names in self._used:
            found = source.lookup(ip)
            for name in names:
                values[name] = found.get(name)
        return GeoInfo(**values)

    def lookup_many(self, ips: Iterable[str]) -> dict[str, list[Any]]:
        """Columns (``src_ip``, the FIELDS, ``geo_source``) for a batch of distinct addresses."""
        columns: dict[str, list[Any]] = {"src_ip": [], **{f: [] for f in FIELDS}}
        for ip in ips:
            info = self.lookup(ip)
            columns["src_ip"].append(ip)
            columns["country"].append(info.country)
            columns["asn"].append(info.asn)
            columns["as_name"].append(info.as_name)
            columns["as_country"].append(info.as_country)
        columns["geo_source"] = [self.label] * len(columns["src_ip"])
        return columns


def build_enricher(
    *,
    country_mmdb: Path | None = None,
    asn_mmdb: Path | None = None,
    ip2asn: Path | None = None,
    geoip2fast: bool = True,
) -> Enricher:
    """Sources in order of preference; geoip2fast last, as the offline fallback."""
    sources: list[GeoSource] = []
    for path in (country_mmdb, asn_mmdb):
        if path is not None:
            sources.append(MaxMindSource(path))
    if ip2asn is not None:
        sources.append(Ip2AsnSource(ip2asn))
    if geoip2fast:
        with contextlib.suppress(ImportError):
            sources.append(Geoip2fastSource())
    return Enricher(sources)
