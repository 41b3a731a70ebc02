"""Derive the simulator's default source networks from the geoip2fast package's data.

geoip2fast ships MaxMind's GeoLite2 Country and ASN data (IPv4, AS names but no AS numbers).
This picks, for each AS of the paper's Table 4, the largest networks GeoLite2 names after that
AS and places in the AS's country; for each country of Table 3, the largest other ASes there;
and the largest ASes of each of the next 155 countries by address space (the paper saw 3,006
ASes in 165 country codes). Every network taken lies wholly in its country by the same data
(checked at every /24, or 4,096 addresses spread over it), so the report places its addresses
where the simulator counts them. Rows without a Table 4 number get a number from the
private-use range (RFC 6996), since the source has none. Output:
src/spampot/simulate/origins.tsv. Run it again to refresh:

    pip install geoip2fast && python tools/derive_sim_origins.py
"""

from __future__ import annotations

import gzip
import ipaddress
import os
import pickle
import re
from collections import defaultdict
from pathlib import Path

import geoip2fast
from geoip2fast import GeoIP2Fast

# Table 4: (ASN, the paper's name, country, pattern of the GeoLite2 organisation name).
TABLE4 = [
    (9924, "TFN-TW", "TW", r"^Taiwan Fixed Network"),
    (3462, "HINET", "TW", r"^Data Communication Business Group$"),
    (17623, "CNCGROUP", "CN", r"^China Unicom Shenzen network$"),
    (4780, "SEEDNET", "TW", r"^Digital United Inc\.$"),
    (9919, "NCIC-TW", "TW", r"^New Century InfoComm Tech"),
    (4837, "CHINA169", "CN", r"^CHINA UNICOM China169 Backbone$"),
    (33322, "NDCHOST", "US", r"^NDCHOST$"),
    (4134, "CHINANET", "CN", r"^Chinanet$"),
    (18429, "EXTRALAN", "TW", r"^Extra-Lan Technologies"),
    (7271, "LOOKAS", "CA", r"^LOOKAS$"),
]
TABLE3 = ["TW", "CN", "US", "CA", "JP", "HK", "KR", "UA", "DE", "BR"]
PRIVATE_ASN = 4_200_000_000  # RFC 6996 32-bit private use
NETS_PER_TOP_AS = 4
# The paper saw 3,006 ASes in 165 country codes: besides Table 4's ten, up to this many other
# ASes in each Table 3 country and in each of the next 155 countries by address space.
OTHER_ASES_PER_COUNTRY = 160
TAIL_COUNTRIES = 155
TAIL_ASES_PER_COUNTRY = 12
# A network is taken only if every one of these many addresses spread over it (every /24 of
# anything up to a /12) is in the same country: the report places each simulated address
# with the same data, so a network split between countries would move emails across them.
DENSE_SAMPLES = 4096
OUT = Path(__file__).resolve().parents[1] / "src/spampot/simulate/origins.tsv"


def main() -> None:
    data_dir = os.path.dirname(geoip2fast.__file__)
    with gzip.open(os.path.join(data_dir, "geoip2fast-asn.dat.gz")) as f:
        blob = pickle.load(f)  # the package's own data file
    tables = blob[3]
    names = tables[3]
    starts = [x for chunk in tables[5] for x in chunk]
    name_ix = [x for chunk in tables[7] for x in chunk]
    lens = [x for chunk in tables[9] for x in chunk]
    geo = GeoIP2Fast(geoip2fast_data_file="geoip2fast-asn.dat.gz", verbose=False)
    info = geo.get_database_info()

    def country(net: ipaddress.IPv4Network) -> str | None:
        """The network's country when all its sampled addresses agree (see DENSE_SAMPLES)."""
        step = max(1, net.num_addresses // DENSE_SAMPLES)
        first = int(net.network_address)
        codes: set[str] = set()
        for offset in range(0, net.num_addresses, step):
            codes.add(geo.lookup(str(ipaddress.IPv4Address(first + offset))).country_code)
            if len(codes) > 1:
                return None
        codes.add(geo.lookup(str(net[-1])).country_code)
        return codes.pop() if len(codes) == 1 else None

    def first_country(net: ipaddress.IPv4Network) -> str:
        return str(geo.lookup(str(net[0])).country_code)

    by_name: dict[str, list[ipaddress.IPv4Network]] = defaultdict(list)
    for start, ix, length in zip(starts, name_ix, lens, strict=True):
        if ix and length <= 24:
            by_name[names[ix]].append(ipaddress.IPv4Network((start, length)))
    rows: list[tuple[str, int, str, str, str]] = []
    used_names: set[str] = set()
    for asn, label, cc, pattern in TABLE4:
        matching = [n for n in by_name if re.search(pattern, n)]
        nets = sorted((net for n in matching for net in by_name[n]), key=lambda n: (n.prefixlen, n))
        picked = [net for net in nets if country(net) == cc][:NETS_PER_TOP_AS]
        assert picked, label
        used_names.update(matching)
        rows += [(cc, asn, label, str(net), matching[0]) for net in picked]
    # The largest network of every other organisation, by the country of its first address
    # (the dense check comes when one is picked).
    biggest: dict[str, list[tuple[int, str, ipaddress.IPv4Network]]] = defaultdict(list)
    for name, nets in by_name.items():
        if name in used_names:
            continue
        net = min(nets, key=lambda n: (n.prefixlen, n))
        cc = first_country(net)
        if re.fullmatch(r"[A-Z]{2}", cc):
            biggest[cc].append((net.prefixlen, name, net))

    def pick(cc: str, wanted: int) -> list[tuple[str, ipaddress.IPv4Network]]:
        out = []
        for _, name, net in sorted(biggest[cc]):
            if len(out) == wanted:
                break
            if country(net) == cc:
                out.append((name, net))
        return out

    next_asn = PRIVATE_ASN
    for cc in TABLE3:
        for name, net in pick(cc, OTHER_ASES_PER_COUNTRY):
            next_asn += 1
            rows.append((cc, next_asn, _clean(name), str(net), name))
    space = {cc: sum(2 ** (32 - p) for p, _, _ in v) for cc, v in biggest.items()}
    tail = [cc for cc in sorted(space, key=lambda c: (-space[c], c)) if cc not in TABLE3]
    taken = 0
    for cc in tail:
        if taken == TAIL_COUNTRIES:
            break
        picked = pick(cc, TAIL_ASES_PER_COUNTRY)
        taken += bool(picked)
        for name, net in picked:
            next_asn += 1
            rows.append((cc, next_asn, _clean(name), str(net), name))
    with OUT.open("w") as out:
        out.write(
            f"# derived by tools/derive_sim_origins.py from geoip2fast data {info['source_info']}\n"
        )
        out.write("# country\tasn\tas_name\tnetwork\tgeolite2_organisation\n")
        for cc, asn, label, net, org in rows:
            out.write(f"{cc}\t{asn}\t{label}\t{net}\t{_clean(org)}\n")
    print(f"{len(rows)} rows written to {OUT}")


def _clean(name: str) -> str:
    return re.sub(r"[^ -~]|[\t\"\\]", "", name).strip()[:60] or "unnamed"


if __name__ == "__main__":
    main()
