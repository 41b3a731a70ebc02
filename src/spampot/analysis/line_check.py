"""The event contract's checks as DuckDB SQL: event lines validated without Python objects.

The contract's msgspec decoder (:data:`spampot.contract.DECODER`) is the authority on what a
valid line is, but it builds a Python object per value, and turning those objects into Arrow
columns costs more again (together about 25 µs a line on a loaded machine). This module
writes, from the same contract classes (``msgspec.inspect``), one query that DuckDB runs over
a column of raw lines (its JSON functions, yyjson in C++), giving for each line a verdict and
the stored columns, and no Python object per line.

The query is *stricter* than the decoder, never more lenient. A line it accepts is one the
decoder accepts with the same values (tests/test_line_check.py holds it to that on arbitrary
lines); a line it does not accept goes to the decoder, which either accepts it after all (a
spelling the query does not take) or rejects it with its reason. So every line is judged as
the decoder judges it, and the decoder sees only the lines that need it.

How a line of event ``E`` is accepted:

1. It is in the sensor's own spelling (:func:`spampot.sensor.events.EventBuffer.encode`):
   compact, every field of ``E`` present, in the contract's order, ending in a newline. The
   check is a round trip: ``json_transform`` into ``E``'s types, ``to_json`` back, and the
   result must be the line, byte for byte. That one comparison rules out everything DuckDB's
   lenient parser and casts would let through and msgspec would not: a number where a string
   belongs or the reverse (DuckDB converts them), a float for an integer, a missing field, a
   key twice, a trailing comma, ``NaN``, other escapes or spacing.
2. Each value meets its constraints: lengths (a line of at most 64 KiB meets every
   ``max_length`` of that size or more at once), patterns (a full match: stricter than
   ``re.search`` with ``^…$``), bounds, literals, non-null where the type says so, and
   timestamps in the sensor's form (RFC 3339 in UTC with microseconds and ``Z``) that denote
   a real instant.

A field kind the query cannot check (a dict) makes its event the decoder's, whole.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Final

import msgspec

from spampot.contract import COLUMNS, EVENTS, Event, eventid

_inspect = msgspec.inspect

# A line no longer than this meets every max_length at least this large: a string in it
# has at most as many characters as the line has bytes.
LINE_BOUND: Final = 65536

# The sensor's timestamp (Clock.now): RFC 3339 §5.6 in UTC with microseconds; hours,
# minutes and seconds in range (DuckDB's cast would take 24:00:00, msgspec does not), the
# date checked by the cast, year 0 refused (msgspec's range starts at 1).
_TIMESTAMP: Final = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]\.[0-9]{6}Z"
)


class Unsupported(TypeError):
    """A field kind the query does not check: its event goes to the decoder."""


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _unwrap(info: _inspect.Type) -> tuple[_inspect.Type, bool]:
    """The type without ``None``, and whether ``None`` was allowed."""
    if isinstance(info, _inspect.UnionType):
        kinds = [t for t in info.types if not isinstance(t, _inspect.NoneType)]
        if len(kinds) != 1:
            raise Unsupported(f"a union of {info}")
        return kinds[0], len(kinds) < len(info.types)
    return info, False


def _structure(info: _inspect.Type) -> object:
    """``json_transform``'s structure for a (non-null) type."""
    if isinstance(info, _inspect.StrType | _inspect.LiteralType | _inspect.DateTimeType):
        return "VARCHAR"
    if isinstance(info, _inspect.BoolType):
        return "BOOLEAN"
    if isinstance(info, _inspect.IntType):
        return "BIGINT"
    if isinstance(info, _inspect.FloatType):
        return "DOUBLE"
    if isinstance(info, _inspect.ListType):
        return [_structure(_unwrap(info.item_type)[0])]
    if isinstance(info, _inspect.TupleType):
        kinds = {json.dumps(_structure(_unwrap(t)[0])) for t in info.item_types}
        if len(kinds) != 1:
            raise Unsupported(f"a tuple of mixed types {info}")
        return [json.loads(kinds.pop())]
    if isinstance(info, _inspect.StructType):
        return {f.name: _structure(_unwrap(f.type)[0]) for f in info.fields}
    raise Unsupported(f"{info}")


def _bounds(x: str, info: _inspect.IntType | _inspect.FloatType) -> list[str]:
    if info.multiple_of is not None:
        raise Unsupported("multiple_of")
    pairs = ((info.ge, ">="), (info.gt, ">"), (info.le, "<="), (info.lt, "<"))
    return [f"{x} {op} {bound}" for bound, op in pairs if bound is not None]


def _checks(x: str, info: _inspect.Type, nullable: bool) -> str:
    """A condition on value ``x`` (already of ``info``'s JSON type, by the round trip)."""
    parts: list[str] = []
    if isinstance(info, _inspect.LiteralType):
        if not all(isinstance(v, str) for v in info.values):
            raise Unsupported(f"a literal of non-strings {info}")
        parts.append(f"{x} IN ({', '.join(_literal(str(v)) for v in info.values)})")
    elif isinstance(info, _inspect.StrType):
        # Bytes bound characters from above (strlen), so a byte count over the limit is
        # left to the decoder; a minimum counts characters.
        if info.max_length is not None and info.max_length < LINE_BOUND:
            parts.append(f"strlen({x}) <= {info.max_length}")
        if info.min_length is not None:
            parts.append(f"length({x}) >= {info.min_length}")
        if info.pattern is not None:
            pattern = info.pattern
            if not (pattern.startswith("^") and pattern.endswith("$")):
                raise Unsupported(f"an unanchored pattern {pattern}")
            parts.append(f"regexp_full_match({x}, {_literal(pattern[1:-1])})")
    elif isinstance(info, _inspect.IntType | _inspect.FloatType):
        parts += _bounds(x, info)
    elif isinstance(info, _inspect.BoolType):
        pass  # the round trip leaves true and false only
    elif isinstance(info, _inspect.DateTimeType):
        if info.tz is False:
            raise Unsupported("naive datetimes only")
        parts.append(f"regexp_full_match({x}, {_literal(_TIMESTAMP)})")
        parts.append(f"NOT starts_with({x}, '0000')")
        parts.append(f"{_timestamp(x)} IS NOT NULL")
    elif isinstance(info, _inspect.ListType | _inspect.TupleType):
        if isinstance(info, _inspect.TupleType):
            parts.append(f"len({x}) = {len(info.item_types)}")
            item, item_nullable = _unwrap(info.item_types[0])
        else:
            if info.max_length is not None:
                parts.append(f"len({x}) <= {info.max_length}")
            if info.min_length is not None:
                parts.append(f"len({x}) >= {info.min_length}")
            item, item_nullable = _unwrap(info.item_type)
        inner = _checks("e", item, item_nullable)
        if inner == "e IS NOT NULL":  # the common case, without a lambda per item
            parts.append(f"list_aggregate({x}, 'count') = len({x})")
        elif inner != "true":
            parts.append(f"list_bool_and(list_transform({x}, lambda e: {inner}))")
    elif isinstance(info, _inspect.StructType):
        for f in info.fields:
            kind, field_nullable = _unwrap(f.type)
            inner = _checks(f"{x}.{f.name}", kind, field_nullable)
            if inner != "true":
                parts.append(f"({inner})")
    else:
        raise Unsupported(f"{info}")
    condition = " AND ".join(parts) if parts else "true"
    if nullable:
        return "true" if condition == "true" else f"({x} IS NULL OR ({condition}))"
    return f"{x} IS NOT NULL" + ("" if condition == "true" else f" AND {condition}")


def _timestamp(x: str) -> str:
    """The sensor's timestamp (checked by ``_TIMESTAMP``) as a TIMESTAMP in UTC."""
    return f"TRY_CAST(left({x}, 26) AS TIMESTAMP)"


@dataclass(frozen=True, slots=True)
class EventCheck:
    """The query's branch for one event: its lines by prefix, the structure, the checks."""

    eventid: str
    prefix: str  # how every line of it in the sensor's spelling starts
    structure: str  # json_transform's structure
    condition: str  # over ``t`` (the transformed line) and ``line``
    columns: dict[str, str]  # stored column -> expression over ``t``
    optional: tuple[str, ...] = ()  # fields that may be absent (null, or their default)


def event_check(cls: type[Event]) -> EventCheck:
    """The branch for event ``cls``; raises :class:`Unsupported` for a kind it cannot check."""
    info = _inspect.type_info(cls)
    assert isinstance(info, _inspect.StructType)
    tag = eventid(cls)
    structure: dict[str, object] = {"eventid": "VARCHAR"}
    parts = [f"t.eventid = {_literal(tag)}"]
    columns: dict[str, str] = {"eventid": "t.eventid"}
    optional: list[str] = []
    for f in info.fields:
        kind, nullable = _unwrap(f.type)
        structure[f.name] = _structure(kind)
        x = f"t.{f.name}"
        check = _checks(x, kind, nullable)
        if not f.required and f.default is None:
            optional.append(f.name)  # absent is null, as written
        elif not f.required and not nullable and isinstance(f.default, bool | int | str):
            # Absent is the default: null only then, and the default stored.
            optional.append(f.name)
            absent = f"NOT contains(line, {_literal(json.dumps(f.name) + ':')})"
            check = f"({x} IS NULL AND {absent}) OR ({check})"
            x = f"coalesce({x}, {_sql_value(f.default)})"
        if check != "true":
            parts.append(f"({check})")
        if f.name in COLUMNS:
            value = (
                _timestamp(x)
                if isinstance(kind, _inspect.DateTimeType)
                else f"TRY_CAST({x} AS {COLUMNS[f.name]})"
            )
            columns["ts" if f.name == "timestamp" else f.name] = value
    text = json.dumps(structure, separators=(",", ":"))
    return EventCheck(
        tag,
        f'{{"eventid":{json.dumps(tag)},',
        text,
        " AND ".join(parts),
        columns,
        tuple(optional),
    )


def _sql_value(value: bool | int | str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, int) else _literal(value)


def _without_nulls(optional: tuple[str, ...]) -> str:
    """The round trip for a line written before some optional fields existed (an older
    sensor's: no ``"tls":null``, no ``"bdat":false``; ``json_transform`` makes an absent
    field null): the line and ``to_json``'s result agree once every ``,"field":null`` of
    those fields is taken out of both, and the line has each of them at most once (a key
    twice, one of them null, would leave the other to be compared: the decoder takes the
    last). Such a pair cannot occur inside a string, where a quote is
    escaped; the first key is always ``eventid``, so each of them follows a comma."""
    pattern = _literal(',"(' + "|".join(optional) + ')":null')
    once = " AND ".join(
        f"strlen(line) - strlen(replace(line, {_literal(k)}, '')) <= {len(k)}"
        for k in (f'"{name}":' for name in optional)
    )
    return (
        f"(regexp_replace(to_json(t), {pattern}, '', 'g') || chr(10)"
        f" = regexp_replace(line, {pattern}, '', 'g') AND {once})"
    )


@dataclass(frozen=True, slots=True)
class LineCheck:
    """The query (over ``batch_lines``: ``line_file``, ``line_no``, ``line``, ``raw_sensor``)
    and the events it checks."""

    checks: tuple[EventCheck, ...]
    query: str

    @property
    def covered(self) -> frozenset[str]:
        """The event ids whose lines the query can accept."""
        return frozenset(c.eventid for c in self.checks)


@functools.cache
def line_check(guarded: bool = True) -> LineCheck:
    """The query: every line gives one row, ``line_file``, ``line_no``, ``ok`` (the decoder
    accepts it, as checked here) and, where ``ok``, the columns of ``batch_events`` (the
    contract's stored fields, ``timestamp`` as ``ts``, and ``raw_sensor``).

    One scan of the lines: each line's event is told by its prefix, and only that event's
    branch runs on it. A branch transforms the line once and reads the result through a
    lambda's parameter: written as a subquery's column instead, the transform would be
    inlined into every check that reads a field, and run that many times.

    ``guarded``: each line is parsed once more first (``json_valid``) so that one that is not
    JSON gets a verdict instead of stopping the query. Unguarded is a tenth cheaper, and the
    right first try for a sensor's files, which are JSON throughout (see load_batch).
    """
    checks: list[EventCheck] = []
    for cls in EVENTS:
        try:
            checks.append(event_check(cls))
        except Unsupported:
            continue  # its lines go to the decoder
    outputs = [("ts" if name == "timestamp" else name, kind) for name, kind in COLUMNS.items()]
    whens = []
    for check in checks:
        fields = ", ".join(
            f"{name}: {check.columns.get(name, f'CAST(NULL AS {kind})')}" for name, kind in outputs
        )
        same = "to_json(t) || chr(10) = line"
        if check.optional:
            same = f"CASE WHEN {same} THEN true ELSE {_without_nulls(check.optional)} END"
        ok = f"coalesce({same} AND {check.condition}, false)"
        transform = f"json_transform(line, {_literal(check.structure)})"
        if guarded:
            transform = f"CASE WHEN json_valid(line) THEN {transform} END"
        whens.append(
            f"WHEN starts_with(line, {_literal(check.prefix)}) THEN list_transform("
            f"[{transform}], lambda t: {{ok: {ok}, {fields}}})[1]"
        )
    nulls = ", ".join(f"{name}: CAST(NULL AS {kind})" for name, kind in outputs)
    query = f"""SELECT line_file, line_no, raw_sensor, unnest(r)
FROM (
    SELECT line_file, line_no, raw_sensor,
        CASE WHEN strlen(line) > {LINE_BOUND} THEN {{ok: false, {nulls}}}
        {chr(10).join("        " + w for w in whens).lstrip()}
        ELSE {{ok: false, {nulls}}} END AS r
    FROM batch_lines
)"""
    return LineCheck(tuple(checks), query)
