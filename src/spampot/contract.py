"""The event contract: every event a sensor writes, its fields, their types, which are required.

This module is the one source of that fact (DESIGN.md, "Facts written once"). The sensor's
encoder refuses an event id or a field that is not declared here; the simulator builds its
lines through that encoder; the ingest validates every line with :data:`DECODER` (a line that
does not match goes to quarantine, never to the tables) and takes the warehouse's input
columns from :data:`COLUMNS`; the SQL reads those columns. It depends on nothing in the
project, so every layer may import it.

Each event is a msgspec Struct tagged by its ``eventid``: the classes are the schema and, at
once, a validating decoder written in C (about a microsecond a line). A field without a
default is required (it may still be ``null`` where its type says ``| None``); a field with
a default may be absent. Fields not in :data:`STORED` are kept in the event files for people
and pipelines (``message``, replies, headers) but never reach Parquet.

To declare a new event: a new class here (``tag="spampot.<name>"``), added to ``EVENTS``; a
new field: a new attribute, and its name in ``STORED`` if the warehouse is to keep it. A test
(tests/test_contract.py) fails until the ingest and its SQL know every stored field.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Final, Literal

import msgspec

PREFIX: Final = "spampot."

Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
# At most what a BIGINT column holds (a count beyond it is no real count).
Count = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
# Bounded so that a hostile or corrupted line cannot put megabytes in one cell. The sensor's
# own limits are far below (a header line is at most max_header_bytes, an address 256 bytes).
Text = Annotated[str, msgspec.Meta(max_length=65536)]
Short = Annotated[str, msgspec.Meta(max_length=1024)]
Address = Annotated[str, msgspec.Meta(min_length=2, max_length=64)]  # an IPv4 or IPv6 literal


class TlsField(msgspec.Struct, forbid_unknown_fields=True):
    """What a session's TLS handshake negotiated (STARTTLS or SMTPS)."""

    version: Short
    cipher: Short
    sni: Short | None


class Event(msgspec.Struct, kw_only=True, tag_field="eventid", omit_defaults=False):
    """Fields every event has. Sensor-wide events (``sensor.*``) have null session fields."""

    # RFC 3339 (an offset is required: a naive time is no instant); the sensor writes
    # microseconds and Z (UTC).
    timestamp: Annotated[dt.datetime, msgspec.Meta(tz=True)]
    sensor: Short
    session: Short | None
    src_ip: Address | None
    src_port: Port | None
    dst_ip: Address | None
    dst_port: Port | None
    message: Text = ""
    # On every event of a session that came through a trusted PROXY-protocol front end.
    proxied_by: Address | None = None
    # On every event of a session after its TLS handshake (STARTTLS, SMTPS).
    tls: TlsField | None = None


class SessionEvent(Event, kw_only=True):
    """An event of one TCP connection: its address fields are required and not null."""

    session: Short
    src_ip: Address
    src_port: Port
    dst_ip: Address
    dst_port: Port


class ProxyAuthField(msgspec.Struct, forbid_unknown_fields=True):
    method: Short
    username: Text | None
    password: Text | None


Header = tuple[Text, Text]
Protocol = Literal["http", "socks4", "socks4a", "socks5", "unknown"]
# Table 6's classes (paper §4.2): a tunnel to 25 handed to the SMTP emulator, a tunnel to any
# other port, a GET/HEAD/POST answered with a page, anything invalid.
Outcome = Literal["smtp", "other", "get", "error"]
# The emulator that answered (Table 6's "module"): the Squid persona, the Dante persona, or
# none (a port serving both, reached with a first byte that is neither protocol).
Module = Literal["http", "socks", "unknown"]


class SessionOpen(SessionEvent, tag="spampot.session.open", kw_only=True):
    pass


class SessionClose(SessionEvent, tag="spampot.session.close", kw_only=True):
    duration_s: Annotated[float, msgspec.Meta(ge=0)]
    bytes_in: Count
    bytes_out: Count
    reason: Short


class SessionError(SessionEvent, tag="spampot.session.error", kw_only=True):
    error: Text


class ProxyRequest(SessionEvent, tag="spampot.proxy.request", kw_only=True):
    protocol: Protocol
    version: Short | None
    method: Text | None
    target_host: Text | None
    target_port: Port | None
    auth: ProxyAuthField | None
    outcome: Outcome
    reply: Text | None = None
    error: Text | None = None
    headers: list[Header] | None = None
    # Absent from events written before ports had roles: then the protocol names it.
    module: Module | None = None
    # What an invalid request sent (escaped, at most 256 bytes): the log of what was tried.
    input: Text | None = None


class WebRequest(SessionEvent, tag="spampot.web.request", kw_only=True):
    method: Text
    host: Text | None
    path: Text
    version: Short
    headers: list[Header]
    reply: Text
    error: Text | None


class SmtpMessage(SessionEvent, tag="spampot.smtp.message", kw_only=True):
    via: Literal["smtp", "http", "socks4", "socks4a", "socks5"]
    target_host: Text | None
    target_port: Port | None
    helo: Text | None
    mail_from: Text
    mail_params: Text | None = None
    rcpt_to: list[Text]
    size: Count
    sha256: Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]
    queue_id: Short
    file: Text
    bdat: bool = False  # sent in BDAT chunks (RFC 3030), stored byte-exact


class SmtpAuth(SessionEvent, tag="spampot.smtp.auth", kw_only=True):
    mechanism: Short
    username: Text | None
    password: Text | None
    # What the client was told: "failed" (the persona's answer to a wrong password).
    result: Short = "failed"


class SmtpTls(SessionEvent, tag="spampot.smtp.tls", kw_only=True):
    """A TLS handshake finished; ``tls`` (on this and every later event) says what it was."""

    role: Short  # the listener's role: "smtp", "submission" (STARTTLS) or "smtps"


class SmtpReject(SessionEvent, tag="spampot.smtp.reject", kw_only=True):
    stage: Short
    code: Annotated[int, msgspec.Meta(ge=100, le=599)]
    why: Short


class SmtpError(SessionEvent, tag="spampot.smtp.error", kw_only=True):
    error: Text
    reply: Text
    input: Text


class SensorStart(Event, tag="spampot.sensor.start", kw_only=True):
    version: Short
    listeners: list[Short]
    worker: Count = 0
    detail: Text | None = None


class SensorStop(Event, tag="spampot.sensor.stop", kw_only=True):
    version: Short
    worker: Count = 0


class SensorError(Event, tag="spampot.sensor.error", kw_only=True):
    detail: Text


class SensorLimit(Event, tag="spampot.sensor.limit", kw_only=True):
    refused: dict[Short, Count]
    top_sources: list[tuple[Short, Count]]


class SensorStorage(Event, tag="spampot.sensor.storage", kw_only=True):
    state: Literal["low", "ok"]
    why: Text | None
    free_bytes: Count | None
    free_inodes: Count | None
    used_bytes: Count | None


class SensorReload(Event, tag="spampot.sensor.reload", kw_only=True):
    changed: list[Short]
    restart_needed: list[Short]


EVENTS: Final[tuple[type[Event], ...]] = (
    SessionOpen,
    SessionClose,
    SessionError,
    ProxyRequest,
    WebRequest,
    SmtpMessage,
    SmtpAuth,
    SmtpTls,
    SmtpReject,
    SmtpError,
    SensorStart,
    SensorStop,
    SensorError,
    SensorLimit,
    SensorStorage,
    SensorReload,
)

AnyEvent = (
    SessionOpen
    | SessionClose
    | SessionError
    | ProxyRequest
    | WebRequest
    | SmtpMessage
    | SmtpAuth
    | SmtpTls
    | SmtpReject
    | SmtpError
    | SensorStart
    | SensorStop
    | SensorError
    | SensorLimit
    | SensorStorage
    | SensorReload
)

#: Decodes and validates one line (or, with ``decode_lines``, many) into its event class.
DECODER: Final = msgspec.json.Decoder(AnyEvent)
#: The sensor's encoder (of a record in the contract's field order, or of an event object:
#: the same bytes), which the ingest uses to recognise a line in the sensor's own spelling.
ENCODER: Final = msgspec.json.Encoder()

COMMON_FIELDS: Final = ("eventid", *Event.__struct_fields__)


def eventid(cls: type[Event]) -> str:
    tag = cls.__struct_config__.tag
    assert isinstance(tag, str)
    return tag


#: Event id without the ``spampot.`` prefix (as the sensor's call sites name it) -> class.
BY_NAME: Final[dict[str, type[Event]]] = {eventid(c).removeprefix(PREFIX): c for c in EVENTS}

#: Event id -> the fields a call site may pass beyond the common ones.
EXTRA_FIELDS: Final[dict[str, frozenset[str]]] = {
    name: frozenset(cls.__struct_fields__) - frozenset(Event.__struct_fields__)
    for name, cls in BY_NAME.items()
}


class _Required:
    """The default of a field that has none (see :data:`FIELD_ORDER`)."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Final = _Required()


def _layout(cls: type[Event]) -> tuple[tuple[str, object], ...]:
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    out = []
    for f in info.fields:
        if f.default_factory is not msgspec.inspect.NODEFAULT:
            raise TypeError(f"{cls.__name__}.{f.name}: a default factory has no fixed spelling")
        out.append((f.name, REQUIRED if f.required else f.default))
    return tuple(out)


#: Event id without the prefix -> every field after ``eventid``, in declaration order, with
#: its default (or :data:`REQUIRED`). The sensor writes each line in this order with every
#: field (a default where the call site gave none): one spelling per event, which is what the
#: ingest's fast check takes (``spampot.analysis.line_check``).
FIELD_ORDER: Final[dict[str, tuple[tuple[str, object], ...]]] = {
    name: _layout(cls) for name, cls in BY_NAME.items()
}


def extra_fields(name: str) -> tuple[str, ...]:
    """The fields of event ``name`` beyond the common ones, in declaration order."""
    common = set(Event.__struct_fields__)
    return tuple(f for f in BY_NAME[name].__struct_fields__ if f not in common)


# --- what the warehouse keeps ---------------------------------------------------------------

#: Fields the warehouse keeps, each a column of the ingest's input (``batch_events``); the
#: types of the columns follow the fields' types above (:func:`column_types`).
STORED: Final = frozenset(
    {
        "eventid",
        "timestamp",
        "sensor",
        "session",
        "src_ip",
        "src_port",
        "dst_ip",
        "dst_port",
        "proxied_by",
        # session.close
        "duration_s",
        "bytes_in",
        "bytes_out",
        "reason",
        # proxy.request
        "protocol",
        "version",
        "method",
        "target_host",
        "target_port",
        "auth",
        "outcome",
        "error",
        "module",
        # smtp.message
        "via",
        "helo",
        "mail_from",
        "rcpt_to",
        "size",
        "sha256",
        "queue_id",
        "file",
        # smtp.auth, smtp.reject
        "mechanism",
        "username",
        "password",
        "stage",
        "code",
        "why",
    }
)


#: Fields kept in the event files only (for people and log pipelines), never in Parquet.
FILES_ONLY: Final = frozenset(
    {
        "message",
        "reply",
        "headers",
        "input",
        "mail_params",
        "host",
        "path",
        "listeners",
        "worker",
        "detail",
        "refused",
        "top_sources",
        "state",
        "free_bytes",
        "free_inodes",
        "used_bytes",
        "changed",
        "restart_needed",
        "tls",
        "bdat",
        "result",
        "role",
    }
)


def _sql_type(info: msgspec.inspect.Type) -> str:
    """The SQL type (DuckDB's and Spark's spelling agree on these) of a field's type."""
    it = msgspec.inspect
    if isinstance(info, it.UnionType):
        kinds = [t for t in info.types if not isinstance(t, it.NoneType)]
        if len(kinds) != 1:
            raise TypeError(f"a stored field has one type besides null, not {info}")
        return _sql_type(kinds[0])
    if isinstance(info, it.StrType | it.LiteralType):
        return "VARCHAR"
    if isinstance(info, it.IntType):
        small = info.le is not None and info.le < 2**31 and (info.ge or 0) > -(2**31)
        return "INTEGER" if small else "BIGINT"
    if isinstance(info, it.FloatType):
        return "DOUBLE"
    if isinstance(info, it.DateTimeType):
        return "TIMESTAMP"
    if isinstance(info, it.ListType):
        return _sql_type(info.item_type) + "[]"
    if isinstance(info, it.StructType):
        inner = ", ".join(f"{f.name} {_sql_type(f.type)}" for f in info.fields)
        return f"STRUCT({inner})"
    raise TypeError(f"no column type for {info}")


def column_types() -> dict[str, str]:
    """Stored field -> SQL type, in a fixed order (common fields first, then by event)."""
    columns: dict[str, str] = {"eventid": "VARCHAR"}
    for cls in EVENTS:
        info = msgspec.inspect.type_info(cls)
        assert isinstance(info, msgspec.inspect.StructType)
        for f in info.fields:
            if f.name not in STORED:
                continue
            kind = _sql_type(f.type)
            if columns.setdefault(f.name, kind) != kind:
                raise TypeError(f"field {f.name} has two types: {columns[f.name]}, {kind}")
    return columns


#: The ingest's input columns: stored field -> SQL type.
COLUMNS: Final[dict[str, str]] = column_types()
