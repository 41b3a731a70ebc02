"""How each emulated MTA reads a MAIL FROM / RCPT TO path, and what it refuses in it.

Pure functions, sans-I/O: the SMTP machine hands over the text after ``FROM:``/``TO:`` and gets
back either the path and its ESMTP parameters, or a :class:`Fault` naming the dialect's reply
key and the fields to fill in. Which rules apply is the dialect's ``address_syntax``:

``plain``
    :func:`spampot.protocols.smtp.split_path` alone (the providers' MXes, Exchange).
``postfix``
    Postfix 3.7's smtpd: an address whose domain is empty is "Bad ... address syntax"
    (trivial-rewrite flags the malformed domain, smtpd_check_addr() refuses it).
``exim``
    Exim 4.96's smtp_in.c and parse.c: ESMTP options are taken from the end of the line, and
    only after EHLO (extract_option()); the rest must be one RFC 822 address
    (parse_extract_address(): ``domain literals not allowed``, ``domain missing or
    malformed``, ``address is ridiculously long``, ``malformed address: X may not follow
    Y``); an address without a domain is refused but for ``postmaster``; Debian's RCPT ACL
    denies local parts with ``@ % !`` (and ``/ |`` before a local domain) as "restricted
    characters in address".
``sendmail``
    Sendmail 8.17 with Debian's sendmail.cf: prescan() refuses a token longer than MAXNAME
    (256) as "prescan: token too long"; ruleset 3 (cf/m4/proto.m4 canonify) refuses
    ``user@`` ("Hostname required") and ``a@b@c`` ("Invalid route address"); with
    FEATURE(delay_checks) the sender checks run at each RCPT, so a sender at ``localhost``
    or ``[127.0.0.1]`` from a remote client gets "Real domain name required for sender
    address" there.

The texts are the dialect's replies (keys below); this module only decides which one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = ["ADDRESS_REPLY_KEYS", "Fault", "Path", "check_path", "sender_refused_at_rcpt"]

#: Replies a dialect defines for its address_syntax (optional for the others).
ADDRESS_REPLY_KEYS = frozenset(
    {
        "addr_unbalanced",
        "addr_local_part",
        "addr_quote",
        "addr_at_expected",
        "addr_domain_literal",
        "addr_domain",
        "addr_trailing",
        "addr_too_long",
        "addr_no_local_part",
        "addr_route_colon",
        "addr_route_domain",
        "addr_utf8_param",
        "addr_restricted",
        "mail_addr_no_domain",
        "rcpt_addr_no_domain",
        "addr_token_long",
        "addr_hostname",
        "addr_route",
        "rcpt_sender_domain",
    }
)

ADDRESS_SYNTAXES = frozenset({"plain", "postfix", "exim", "sendmail"})


class Path(NamedTuple):
    """A path the server takes: the address (no brackets) and the ESMTP parameters. (A tuple:
    every MAIL and RCPT makes one, and a tuple is made in a fraction of a dataclass's time.)"""

    address: bytes
    params: bytes


@dataclass(frozen=True, slots=True)
class Fault:
    """The server refuses the path: ``key`` is the dialect's reply, ``fields`` fill it in."""

    key: str
    fields: dict[str, bytes] = field(default_factory=dict)


def check_path(
    style: str,
    role: str,
    text: bytes,
    split: tuple[bytes, bytes] | None,
    *,
    esmtp: bool,
    params: tuple[str, ...],
    host: str,
) -> tuple[bytes, bytes] | Fault | None:
    """The path after ``FROM:``/``TO:`` (``text``) read as ``style`` reads it.

    ``split`` is the generic reading (:func:`~spampot.protocols.smtp.split_path`), used by
    every style but Exim's; None means it found no path (the caller's own error then).
    ``role`` is "mail" or "rcpt"; ``params`` the parameter names the server knows.
    """
    if style == "exim":
        return _exim(role, text.strip(b" \t"), esmtp, params, host)
    if split is None:
        return None
    if style == "postfix":
        # Postfix: an empty domain is RESOLVE_FLAG_ERROR (here, not in a function of its
        # own: every MAIL and RCPT of the default persona comes this way).
        if split[0].endswith(b"@"):
            return Fault("bad_sender" if role == "mail" else "bad_recipient")
        return split
    if style == "sendmail":
        return _sendmail(text.strip(b" \t"), Path(*split))
    return split


# --- Sendmail -------------------------------------------------------------------------------

_SENDMAIL_NAME_MAX = 256  # MAXNAME (conf.h): the longest token prescan() takes
_SENDMAIL_SHORT = 203  # MAXSHORTSTR: shortenstring() keeps 100 + "..." + 100
#: prescan()'s token breaks: the operators ($o, ".:%@!^/[]+") and RFC 822 specials.
_SENDMAIL_TOKEN = re.compile(rb'[^\s.:%@!^/\[\]+()<>,;"\\]+')


def _shorten(text: bytes) -> bytes:
    """Sendmail's shortenstring(): a long address as its first and last 100 bytes."""
    if len(text) < _SENDMAIL_SHORT:
        return text
    half = (_SENDMAIL_SHORT - 3) // 2
    return text[:half] + b"..." + text[-half:]


def _unquoted_ats(address: bytes) -> int:
    count = 0
    quoted = False
    for c in address:
        if c == 0x22:
            quoted = not quoted
        elif c == 0x40 and not quoted:
            count += 1
    return count


def _sendmail(written: bytes, path: Path) -> Path | Fault:
    shown = written.split(None, 1)[0] if written.split() else written
    address = path.address
    if any(len(t) > _SENDMAIL_NAME_MAX for t in _SENDMAIL_TOKEN.findall(address)):
        return Fault("addr_token_long", {"path": _shorten(shown)})
    if address.endswith(b"@"):  # R$+ <@>: "user@" (also "a@b@": the focus is the last @)
        return Fault("addr_hostname", {"path": shown})
    route_free = address
    if route_free.startswith(b"@") and b":" in route_free:  # <@a,@b:user@host>
        route_free = route_free.split(b":", 1)[1]
    if _unquoted_ats(route_free) > 1:  # R$* @ $* < @ $* > $*: "a@b@c"
        return Fault("addr_route", {"path": shown})
    return path


_LOCAL_SENDER_DOMAINS = frozenset(
    {b"localhost", b"[127.0.0.1]", b"[ipv6:::1]", b"[ipv6:0:0:0:0:0:0:0:1]"}
)


def sender_refused_at_rcpt(style: str, sender: bytes, host: str) -> bool:
    """Sendmail's check_mail, run at RCPT (FEATURE(delay_checks)): a sender at the local
    host's names (localhost, its loopback literals, localhost.$m) from a client that is not
    local is refused at every recipient."""
    if style != "sendmail" or b"@" not in sender:
        return False
    domain = sender.rpartition(b"@")[2].rstrip(b".").lower()
    if domain in _LOCAL_SENDER_DOMAINS:
        return True
    own = host.partition(".")[2].lower().encode()
    return bool(own) and domain == b"localhost." + own


# --- Exim -----------------------------------------------------------------------------------

_EXIM_SPECIALS = frozenset(b'()<>@,;:\\".[]')
_EXIM_ADDRESS_MAX = 256  # EXIM_EMAILADDR_MAX (exim.h)
#: Debian's exim4.conf.template: CHECK_RCPT_LOCAL_LOCALPARTS, CHECK_RCPT_REMOTE_LOCALPARTS.
_EXIM_LOCAL_RESTRICTED = re.compile(rb"^\.|[@%!/|]")
_EXIM_REMOTE_RESTRICTED = re.compile(rb"^[./|]|[@%!]|/\.\./")


#: Bytes of a domain's atom (letters, digits, hyphens; allow_utf8_domains is false), and of
#: a domain literal as parse.c reads it after a bare local part.
_DOMAIN_BYTE = [(chr(c).isalnum() and c < 128) or c == 0x2D for c in range(256)]
_LITERAL_BYTE = [33 <= c <= 126 and c not in b"[]\\" for c in range(256)]


class _Refused(Exception):
    def __init__(self, key: str, **fields: bytes) -> None:
        super().__init__(key)
        self.key = key
        self.fields = fields


def _exim_option(data: bytes) -> tuple[bytes, bytes, bytes] | None:
    """extract_option(): the last ``NAME[=value]`` word, as (name, value, rest before it)."""
    data = data.rstrip()
    v = len(data) - 1
    while v > 0 and data[v] != 0x3D and data[v] not in b" \t":
        if data[v] == 0x22:  # a quoted local part may hold spaces
            v -= 1
            while v > 0 and data[v] != 0x22:
                v -= 1
            if v <= 0:
                return None
        v -= 1
    if v <= 0:
        return None
    if data[v] == 0x3D:
        n = v
        while n > 0 and chr(data[n - 1]).isalpha():
            n -= 1
        if n <= 0 or data[n - 1] not in b" \t":
            return None
        return data[n:v], data[v + 1 :], data[: n - 1]
    return data[v + 1 :], data[v + 1 :], data[:v]


def _exim(role: str, data: bytes, esmtp: bool, known: tuple[str, ...], host: str) -> Path | Fault:
    params: list[bytes] = []
    rest = data
    while esmtp:
        option = _exim_option(rest)
        if option is None:
            break
        name, value, before = option
        upper = name.upper().decode("ascii", "replace")
        if upper == "SMTPUTF8":  # SMTPUTF8 is not advertised (smtputf8_advertise_hosts)
            return Fault("addr_utf8_param")
        if upper not in known or (upper != "PRDR" and not value):
            break  # put back: the address parse below refuses it
        params.insert(0, rest[len(before) :].strip())
        rest = before.rstrip()
    try:
        address, domain = _ExtractAddress(rest, null_ok=role == "mail").run()
    except _Refused as err:
        return Fault(err.key, {"arg": rest, **err.fields})
    if address and not domain:
        if role == "mail":
            return Fault("mail_addr_no_domain", {"arg": rest})
        if address.lower() != b"postmaster":  # RFC 5321 §4.5.1: always accepted
            return Fault("rcpt_addr_no_domain", {"arg": rest})
    if role == "rcpt" and domain:
        local = address[: -len(domain) - 1].replace(b'"', b"")
        is_local = domain.lower() in (host.lower().encode(), b"localhost")
        restricted = _EXIM_LOCAL_RESTRICTED if is_local else _EXIM_REMOTE_RESTRICTED
        if restricted.search(local):
            return Fault("addr_restricted")
    return Path(address, b" ".join(params))


class _ExtractAddress:
    """parse_extract_address() for one SMTP path: raises _Refused with Exim's fault."""

    def __init__(self, text: bytes, *, null_ok: bool) -> None:
        self.s = text
        self.i = 0
        self.null_ok = null_ok

    def _peek(self) -> int:
        return self.s[self.i] if self.i < len(self.s) else 0

    def _skip(self) -> None:
        """skip_comment(): white space and (comments)."""
        s = self.s
        while self.i < len(s):
            if s[self.i] in b" \t":
                self.i += 1
            elif s[self.i] == 0x28:
                depth = 0
                while self.i < len(s):
                    c = s[self.i]
                    self.i += 1
                    if c == 0x5C:
                        self.i += 1
                    elif c == 0x28:
                        depth += 1
                    elif c == 0x29:
                        depth -= 1
                        if depth == 0:
                            break
            else:
                return

    def _local_part(self, null_ok: bool) -> bytes:
        out = bytearray()
        while True:
            self._skip()
            start = len(out)
            if self._peek() == 0x22:
                out.append(0x22)
                self.i += 1
                while self.i < len(self.s) and self.s[self.i] != 0x22:
                    if self.s[self.i] == 0x5C and self.i + 1 < len(self.s):
                        out.append(self.s[self.i])
                        self.i += 1
                    out.append(self.s[self.i])
                    self.i += 1
                if self.i >= len(self.s):
                    raise _Refused("addr_quote")
                out.append(0x22)
                self.i += 1
            else:
                while self.i < len(self.s):
                    c = self.s[self.i]
                    if c != 0x5C and (c <= 32 or c == 127 or c in _EXIM_SPECIALS):
                        break
                    out.append(c)
                    self.i += 1
                    if c == 0x5C and self.i < len(self.s):
                        out.append(self.s[self.i])
                        self.i += 1
            self._skip()
            if len(out) == start and self._peek() != 0x2E:
                if start == 0 and not null_ok:
                    raise _Refused("addr_local_part")
                return bytes(out)
            if self._peek() != 0x2E:
                return bytes(out)
            while self._peek() == 0x2E:
                out.append(0x2E)
                self.i += 1

    def _domain(self) -> bytes:
        self._skip()
        if self._peek() == 0x5B:
            # allow_domain_literals is false: refused whatever the literal holds.
            raise _Refused("addr_domain_literal")
        out = bytearray()
        while True:
            start = len(out)
            if self._peek() != 0x2D:
                while self.i < len(self.s) and _DOMAIN_BYTE[self.s[self.i]]:
                    out.append(self.s[self.i])
                    self.i += 1
            self._skip()
            if len(out) == start:
                raise _Refused("addr_domain")
            if self._peek() != 0x2E:
                return bytes(out)
            out.append(0x2E)
            self.i += 1
            self._skip()

    def _route(self) -> None:
        """read_route(): ``@a,@b:`` before the address, read and dropped."""
        commas = False
        while self._peek() == 0x40:
            self.i += 1
            self._domain()
            if self._peek() != 0x2C:
                break
            self.i += 1
            commas = True
            self._skip()
        if self._peek() == 0x3A:
            self.i += 1
            self._skip()
        else:
            raise _Refused("addr_route_colon" if commas else "addr_no_local_part")

    def _addr_spec(self, term: int) -> tuple[bytes, bytes]:
        local = self._local_part(False)
        if self._peek() == term:
            return local, b""
        if self._peek() != 0x40:
            raise _Refused("addr_at_expected", local=local)
        self.i += 1
        domain = self._domain()
        return local + b"@" + domain, domain

    def run(self) -> tuple[bytes, bytes]:
        """(address, domain): the operative address and its domain (b"" if none)."""
        s = self.s
        self._skip()
        start = self.i
        address = self._local_part(True)
        domain = b""
        end = self.i
        if self._peek() not in (0x40, 0x3C):
            if self.i >= len(s):
                if not address:
                    raise _Refused("addr_local_part")
                return self._done(address, domain, start, end)
            while self._peek() != 0x3C:  # a phrase before <route-addr>
                try:
                    self._local_part(False)
                except _Refused as err:
                    raise _Refused(err.key) from None
        if self._peek() == 0x3C:
            self.i += 1
            self._skip()
            start = self.i
            routed = False
            if self._peek() == 0x40:
                self._route()
                routed = True
            if self.null_ok and not routed and self._peek() == 0x3E:
                address, domain = b"", b""
            else:
                address, domain = self._addr_spec(0x3E)
                if routed and not domain:
                    raise _Refused("addr_route_domain")
            end = self.i
            if self._peek() != 0x3E:
                if self.i >= len(s):
                    raise _Refused("addr_unbalanced")
                raise _Refused("addr_trailing", rest=s[self.i : self.i + 32], lead=s[: self.i])
            self.i += 1
            self._skip()
        elif not address:  # "@route:user@host" without brackets
            self._route()
            address, domain = self._addr_spec(0)
            end = self.i
            if not domain:
                raise _Refused("addr_route_domain")
        else:  # local@domain (parse.c reads this domain allowing literals)
            self.i += 1
            domain = self._domain_or_literal()
            address = address + b"@" + domain
            end = self.i
        if self.i < len(s):
            raise _Refused("addr_trailing", rest=s[self.i : self.i + 32], lead=s[: self.i])
        return self._done(address, domain, start, end)

    def _domain_or_literal(self) -> bytes:
        self._skip()
        if self._peek() != 0x5B:
            return self._domain()
        start = self.i
        self.i += 1
        while self.i < len(self.s) and _LITERAL_BYTE[self.s[self.i]]:
            self.i += 1
        if self._peek() != 0x5D:
            raise _Refused("addr_domain")
        self.i += 1
        domain = self.s[start : self.i]
        self._skip()
        return domain

    def _done(self, address: bytes, domain: bytes, start: int, end: int) -> tuple[bytes, bytes]:
        while end > start and self.s[end - 1] in b" \t":
            end -= 1
        if end - start > _EXIM_ADDRESS_MAX:
            raise _Refused("addr_too_long", head=address[:64])
        return address, domain
