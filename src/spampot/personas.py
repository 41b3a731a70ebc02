"""Which SMTP server a tunnelled spammer seems to reach.

Paper §4.1.2: a tunnel to port 25 gets "an SMTP banner similar to the one that would be given
by the requested SMTP server". Without DNS (invariant 1) the sensor cannot know that server, so:

- a big provider's MX (Google, Microsoft 365 / Outlook, Yahoo, Mail.ru, QQ, NetEase, GMX and
  WEB.DE, ...) answers in that provider's own format, from the built-in table
  ``dialects/targets/providers.toml`` (data);
- any other name gets one of the common MTAs (Postfix, Exim, Sendmail, Exchange), in the
  proportions a mail survey of the Internet shows, under the name that was asked for;
- a bare address gets a plausible reverse name of a hosting or access network, never a
  placeholder such as ``localhost.localdomain``.

The choice depends on the requested host and the sensor only, never on the client: two
spammers asking for the same MX see the same server, and two sensors differ (seeded by the
sensor name), so the fleet cannot be fingerprinted by one banner.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import re
import tomllib
from dataclasses import dataclass
from importlib import resources

_HOST_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9._-]{0,252})")


@dataclass(frozen=True, slots=True)
class _Provider:
    name: str
    suffixes: tuple[str, ...]  # requested hosts ending in one of these (lower case)
    dialect: str
    servers: tuple[str, ...]  # what the provider's MX calls itself; {n} a number, {h} hex


@dataclass(frozen=True, slots=True)
class _Table:
    providers: tuple[_Provider, ...]
    generic: tuple[tuple[str, int], ...]  # (dialect, weight)
    reverse_names: tuple[str, ...]  # styles for a bare IPv4 address
    reverse_names_v6: tuple[str, ...]


@functools.lru_cache(maxsize=1)
def _table() -> _Table:
    text = (
        resources.files("spampot.dialects").joinpath("targets", "providers.toml").read_text("utf-8")
    )
    raw = tomllib.loads(text)
    providers = tuple(
        _Provider(
            p["name"], tuple(s.lower() for s in p["suffixes"]), p["dialect"], tuple(p["servers"])
        )
        for p in raw["provider"]
    )
    generic = tuple((g["dialect"], int(g["weight"])) for g in raw["generic"])
    return _Table(providers, generic, tuple(raw["reverse_names"]), tuple(raw["reverse_names_v6"]))


def _digest(*parts: str) -> int:
    key = "\0".join(parts).encode("utf-8", "backslashreplace")
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")


def _provider(host: str) -> _Provider | None:
    for provider in _table().providers:
        for suffix in provider.suffixes:
            bare = suffix.lstrip(".")
            if host.endswith("." + bare) or (host == bare and suffix[0] != "."):
                return provider
    return None


def generic_dialects() -> tuple[str, ...]:
    """The common MTAs a tunnelled server other than a big provider's MX may be."""
    return tuple(name for name, _ in _table().generic)


def tunnel_persona(
    sensor: str, target_host: str, dialects: tuple[str, ...] = ()
) -> tuple[str, str]:
    """(server name for banner and EHLO, dialect name) for a tunnel to ``target_host``.

    ``dialects`` narrows the common MTAs to these (their proportions kept); empty: all.
    """
    host = target_host.strip().rstrip(".").lower()
    h = _digest(sensor, host)
    table = _table()
    provider = _provider(host)
    if provider is not None:
        style = provider.servers[h % len(provider.servers)]
        return _fill(style, h >> 8), provider.dialect
    generic = tuple((n, w) for n, w in table.generic if n in dialects) or table.generic
    total = sum(weight for _, weight in generic)
    pick = (h >> 16) % total
    dialect = generic[-1][0]
    for name, weight in generic:
        if pick < weight:
            dialect = name
            break
        pick -= weight
    return server_name(sensor, target_host), dialect


def server_name(sensor: str, target_host: str) -> str:
    """The name a server reached as ``target_host`` gives itself.

    A plausible host name is used as asked (a client string in a banner: only letters,
    digits, dots, hyphens, underscores). An address gets a reverse name in one of the styles
    hosting and access networks use; anything else the same, from its digest.
    """
    name = target_host.strip().rstrip(".")
    try:
        address = ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        address = None
    if address is None and _HOST_NAME.fullmatch(name) and not name.replace(".", "").isdigit():
        return name
    h = _digest(sensor, name.lower())
    table = _table()
    if isinstance(address, ipaddress.IPv4Address):
        a, b, c, d = address.packed
        style = table.reverse_names[h % len(table.reverse_names)]
        return style.format(a=a, b=b, c=c, d=d, n=(h >> 8) % 900_000 + 100_000,
                            h=f"{(h >> 8) & 0xFFFFFFFF:08x}")  # fmt: skip
    style = table.reverse_names_v6[h % len(table.reverse_names_v6)]
    return _fill(style, h >> 8)


def _fill(style: str, h: int) -> str:
    return style.format(n=h % 90 + 10, m=(h >> 8) % 900_000 + 100_000,
                        h=f"{(h >> 8) & 0xFFFFFFFF:08x}",
                        H=f"{(h >> 8) & 0xFFFFFFFFFFFF:012X}")  # fmt: skip
