"""Turning client-controlled values into path components that cannot escape the spool."""

from __future__ import annotations

import ipaddress
import re

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_IPV4 = re.compile(r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
                   r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])")  # fmt: skip


def ip_component(address: str) -> str:
    """The client address as a directory name.

    The value comes from the socket (or a trusted PROXY header), never from the SMTP dialogue;
    it is still normalised so that nothing but digits, hex, dots and dashes reach the path:
    IPv4-mapped IPv6 becomes IPv4 and IPv6 colons become dashes (DESIGN.md).
    """
    if _IPV4.fullmatch(address):  # the common case, from the kernel: already canonical
        return address
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "invalid-" + _UNSAFE.sub("_", address)[:64].lstrip(".")
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.compressed.replace(":", "-")


def name_component(value: str, limit: int = 64) -> str:
    """A configured name (sensor name) made safe for a file name."""
    safe = _UNSAFE.sub("_", value)[:limit].lstrip(".")
    return safe or "_"
