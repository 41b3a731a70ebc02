"""Which SMTP server a tunnelled spammer seems to reach.

Paper §4.1.2: a tunnel to port 25 gets "an SMTP banner similar to the one that would be given
by the requested SMTP server". Without DNS (invariant 1) the sensor cannot know that server, so
it picks a plausible persona: stable for one (source, requested host) pair, so a spammer who
checks twice sees the same server, and different from sensor to sensor (seeded by the sensor
name), so the fleet cannot be fingerprinted by one banner.
"""

from __future__ import annotations

import hashlib
import re

from spampot.protocols.smtp import SmtpPersona

# Banners as the real servers print them (software versions of current stable distributions).
PERSONAS: tuple[SmtpPersona, ...] = (
    SmtpPersona("Postfix"),
    SmtpPersona("Postfix (Debian/GNU)"),
    SmtpPersona("Postfix (Ubuntu)"),
    SmtpPersona("Exim 4.96", banner="{host} ESMTP {software} {date}", auth_equals=False),
    SmtpPersona(
        "Sendmail 8.17.1.9/8.17.1.9", banner="{host} ESMTP {software}; {date}", auth_equals=False
    ),
    SmtpPersona(
        "Microsoft ESMTP MAIL Service",
        banner="{host} {software} ready at {date}",
        auth_equals=False,
    ),
)

_HOST_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9._-]{0,252})")
_DOTTED_NUMBERS = re.compile(r"[0-9.]+")

# Names a misconfigured MTA reached by address tends to give itself.
_IP_HOST_STYLES = ("localhost.localdomain", "mail.localdomain", "mx{n}", "smtp{n}.localdomain")


def _digest(sensor: str, src_ip: str, target_host: str) -> int:
    key = "\0".join((sensor, src_ip, target_host.lower())).encode("utf-8", "backslashreplace")
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")


def choose_persona(sensor: str, src_ip: str, target_host: str) -> tuple[str, SmtpPersona]:
    """(name for banner and EHLO, persona) for a tunnel from ``src_ip`` to ``target_host``."""
    h = _digest(sensor, src_ip, target_host)
    persona = PERSONAS[h % len(PERSONAS)]
    name = target_host.strip().rstrip(".")
    # A client string in a banner: only a plausible host name is used as it is. Addresses
    # (all digits and dots, or with colons, which no name has) get a local-looking name.
    if _HOST_NAME.fullmatch(name) and not _DOTTED_NUMBERS.fullmatch(name):
        return name, persona
    style = _IP_HOST_STYLES[(h >> 8) % len(_IP_HOST_STYLES)]
    return style.format(n=(h >> 16) % 9 + 1), persona
