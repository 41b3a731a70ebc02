"""The address a client really reached, behind an nftables/iptables ``redirect`` (NAT).

An unprivileged sensor listens on high ports and the firewall redirects the Table 1 ports to
them (deploy/spampot-redirect.nft). The socket then shows the high port; the kernel's
connection tracking still knows the original destination, which ``SO_ORIGINAL_DST``
(netfilter's getsockopt, linux/netfilter_ipv4.h; ``IP6T_SO_ORIGINAL_DST`` for IPv6) returns.
Events, spool paths and reports must name the port the spammer chose, not ours.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from typing import Any

SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h
IP6T_SO_ORIGINAL_DST = 80  # linux/netfilter_ipv6/ip6_tables.h


def original_destination(sock: Any) -> tuple[str, int] | None:
    """(address, port) before NAT, or None when the connection was not redirected."""
    if sock is None:
        return None
    try:
        if sock.family == socket.AF_INET6:
            raw = sock.getsockopt(socket.IPPROTO_IPV6, IP6T_SO_ORIGINAL_DST, 28)
            port = struct.unpack_from("!H", raw, 2)[0]
            address = ipaddress.IPv6Address(raw[8:24])
            plain = address.ipv4_mapped or address
            return str(plain), port
        raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    except OSError:
        return None  # ENOENT: no conntrack entry, i.e. not redirected
    port = struct.unpack_from("!H", raw, 2)[0]
    return str(ipaddress.IPv4Address(raw[4:8])), port
