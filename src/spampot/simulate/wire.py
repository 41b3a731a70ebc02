"""What a sensor counts of a simulated session, measured by running the sensor's own machines.

A sensor's ``session.close`` says how many bytes the client sent (``bytes_in``) and how many
it was sent back (``bytes_out``); an ``smtp.message`` says how large the stored message is
(``size``) and its SHA-256. The offline simulator writes no invented figures for them: for
each simulated session, :class:`SessionMeter` builds the bytes the spam tool sends (the
functions of :mod:`spampot.simulate.clients`, which the live simulator sends to a real
sensor), feeds them, one client turn at a time as the live client does, to the protocol
machines the sensor runs on that port (the proxy machine, then the SMTP persona the sensor
would choose for the tunnel's target, or the direct port's persona), answers each message
as the sensor does once it is stored (with a queue id in the persona's style), and counts
what goes each way. The message's size and hash are those of the bytes the SMTP machine
hands over to be stored.

The sensor's settings are those of a default configuration (``spampot.config``: the Postfix
persona on direct SMTP ports, STARTTLS offered, every tunnel persona); its host name is the
simulated sensor's name, and its Squid persona's port the first HTTP port of the profile
(3128 if it is one), as ``Config.squid_port`` chooses. Times in replies (the banner's date,
an error page's) are the session's, so their lengths are what a sensor would have written.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from spampot.config import ProxySection, SmtpSection
from spampot.dialects import load as load_dialect
from spampot.personas import tunnel_persona
from spampot.protocols.detect import ProxyServer
from spampot.protocols.proxy import TUNNEL_SMTP
from spampot.protocols.proxy import ProxyRequest as ProxyEvent
from spampot.protocols.smtp import MessageReceived, SmtpServer
from spampot.protocols.smtp_dialect import SmtpDialect, queue_id
from spampot.simulate import clients

# The sensor's [proxy] and [smtp] sections as a fresh configuration has them.
_PROXY = ProxySection()
_SMTP = SmtpSection()
# Replies that wait (a persona's greet pause or slowdown) are released at once: the client
# waits for them, and what is counted is the bytes, not the time.
_MAX_RESUMES = 16


@functools.cache
def _dialect(name: str) -> SmtpDialect:
    return load_dialect(name, SmtpDialect)


@dataclass(frozen=True, slots=True)
class Mail:
    """One message as the client sends it: envelope and the message's bytes (CRLF lines)."""

    mail_from: str
    rcpt_to: tuple[str, ...]
    data: bytes
    queue_id: str  # the id the sensor gives it, in the persona's style (:meth:`queue_style`)


@dataclass(slots=True)
class Measured:
    """What the sensor counted of one session."""

    bytes_in: int = 0
    bytes_out: int = 0
    # Per message: (its queue id, the bytes the SMTP machine handed over to be stored).
    stored: list[tuple[str, bytes]] = field(default_factory=list)
    tunnel: bool = False  # the proxy request opened a tunnel to the SMTP persona


class SessionMeter:
    """The sensor's machines for one simulated sensor (its name is its SMTP host name)."""

    def __init__(self, sensor: str, address: str, http_ports: tuple[int, ...] = ()) -> None:
        self.sensor = sensor
        self.address = address  # the sensor's address: what a tunnel's server sees
        self.hostname = sensor
        squid_port = 3128 if 3128 in http_ports or not http_ports else http_ports[0]
        self.squid = _PROXY.squid(sensor, squid_port)
        self.socks = _PROXY.socks_dialect
        self.policy = _PROXY.policy
        self.limits = _SMTP.limits

    def proxy(
        self,
        role: str,
        chunks: list[bytes],
        client_ip: str,
        http_date: str,
        session: str,
        measured: Measured,
    ) -> ProxyEvent | None:
        """Feed a proxy request, turn by turn; returns the machine's request event."""
        machine = ProxyServer(
            self.policy,
            role,
            socks_dialect=self.socks,
            squid=self.squid,
            local_address=self.address,
            client_address=client_ip,
            http_date=http_date,
            port_seed=session.encode(),
        )
        events: list[ProxyEvent] = []
        for chunk in chunks:
            measured.bytes_in += len(chunk)
            events += machine.receive_data(chunk)
            measured.bytes_out += len(machine.data_to_send())
            if machine.closing:
                break
        if not events:
            events += machine.connection_lost()
        event = events[0] if events else None
        measured.tunnel = event is not None and event.tunnel == TUNNEL_SMTP
        return event

    def persona(self, target_host: str | None) -> tuple[str, str]:
        """(server name, dialect) the sensor answers as: a tunnel's target's, or its own."""
        if target_host is None:
            return self.hostname, _SMTP.dialect
        return tunnel_persona(self.sensor, target_host, _SMTP.tunnel_dialects)

    def queue_style(self, target_host: str | None) -> str:
        """The queue id style of the persona answering a tunnel to ``target_host``."""
        return _dialect(self.persona(target_host)[1]).queue_id

    def smtp(
        self,
        target_host: str | None,
        session_bits: int,
        client_ip: str,
        mail_date: str,
        helo: str,
        mails: list[Mail],
        measured: Measured,
    ) -> None:
        """An SMTP dialogue (EHLO, each message, QUIT), each turn after the last reply."""
        name, dialect_name = self.persona(target_host)
        dialect = _dialect(dialect_name)
        session_tag = (
            queue_id("google", session_bits, 0.0) if "{id}" in dialect.replies["banner"] else ""
        )
        machine = SmtpServer(
            name,
            dialect,
            self.limits,
            require_helo=_SMTP.require_helo,
            date=mail_date,
            client_ip=client_ip,
            tls_available=_SMTP.starttls,
            auth_offer=_SMTP.auth,
            session_tag=session_tag,
        )
        out = self._replies(machine)
        turns: list[tuple[bytes, Mail | None]] = [(clients.smtp_ehlo(helo), None)]
        for each in mails:
            turns += [(line, None) for line in clients.smtp_envelope(each.mail_from, each.rcpt_to)]
            turns.append((clients.smtp_data(each.data), each))
        turns.append((clients.smtp_quit(), None))
        for data, mail in turns:
            if machine.closing:
                break
            measured.bytes_in += len(data)
            for event in machine.receive_data(data):
                if isinstance(event, MessageReceived):
                    assert mail is not None
                    measured.stored.append((mail.queue_id, event.data))
                    machine.message_stored(mail.queue_id)
            out += self._replies(machine)
        measured.bytes_out += out

    @staticmethod
    def _replies(machine: SmtpServer) -> int:
        """The bytes the machine sends now, held replies included (the client waits)."""
        out = len(machine.data_to_send())
        for _ in range(_MAX_RESUMES):
            if not machine.delay:
                break
            machine.resume()
            out += len(machine.data_to_send())
        return out
