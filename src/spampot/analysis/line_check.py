"""The ingest's fast path: lines the contract's decoder accepted, turned into columns by DuckDB.

The contract's msgspec decoder (:data:`spampot.contract.DECODER`) is the authority on what a
valid line is, and it is fast (a few µs a line in C) as long as nothing is done in Python
per field; turning its objects into Arrow columns is what costs (about twice the decode).
So every line is judged by the decoder alone (its verdict, its reason, its timestamp), and
the columns of the lines it accepted are read by DuckDB's JSON functions (yyjson, C++): one
``json_transform`` per line into the contract's stored fields, no Python object per value.

The two parsers agree on every value of a line the decoder accepted, except where JSON lets
a line say a thing twice: a key given twice (msgspec keeps the last, yyjson the first), or a
stored field of another event (msgspec ignores an unknown field, the transform would read
it). So a line is taken here only when it is exactly the contract's encoding of the event
the decoder made of it (the sensor's own lines: checked by the reader, beside the decoder,
in about a microsecond), or else when its stored keys (:data:`STORED_KEYS`, at any rank
read by the transform: the top level and ``auth``) are its event's, each once, in the
contract's order (a field with a default may be absent; this check parses the line again
in DuckDB, twice the cost of the transform). Any other
line the decoder accepted is turned into columns from the decoder's own objects
(``event_reader.to_table``), so every value is the decoder's either way. Timestamps are
always the decoder's (any RFC 3339 spelling, stored in UTC), passed in beside the lines.

tests/test_line_check.py holds this to the decoder on arbitrary and near-valid lines.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Final

import msgspec

from spampot.contract import COLUMNS, EVENTS, STORED, eventid

_inspect = msgspec.inspect

#: Every key the transform reads at the top level of a line (the contract's stored fields).
STORED_KEYS: Final = tuple(name for name in COLUMNS)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _structure(sql: str) -> object:
    """``json_transform``'s structure for a contract column type (``COLUMNS``' spelling)."""
    if sql.endswith("[]"):
        return [_structure(sql[:-2])]
    if sql.startswith("STRUCT("):
        inner = (p.split(" ", 1) for p in sql[len("STRUCT(") : -1].split(", "))
        return {name: _structure(kind) for name, kind in inner}
    # Every integer as BIGINT: the decoder has checked the bounds, the cast narrows.
    return "BIGINT" if sql == "INTEGER" else sql


def _list(items: tuple[str, ...]) -> str:
    return "[" + ", ".join(map(_literal, items)) + "]::VARCHAR[]"


@dataclass(frozen=True, slots=True)
class FastPath:
    """The query (over ``batch_lines``: ``line_file``, ``line_no``, ``line``, ``raw_sensor``,
    ``ts``, the decoder's timestamp, null where it rejected the line, and ``canonical``: the
    line is the contract's encoding of the event the decoder made of it)."""

    query: str
    #: Event id -> its stored keys in the contract's order (what a line may hold of them).
    layouts: dict[str, tuple[str, ...]]
    #: Stored fields that are objects read by the transform -> their keys.
    nested: dict[str, tuple[str, ...]]


@functools.cache
def fast_path(guarded: bool = True) -> FastPath:
    """Every line the decoder accepted gives one row: ``line_file``, ``line_no``, ``ok``
    (its columns below are the decoder's values) and the columns of ``batch_events``.

    ``guarded``: a line yyjson does not parse gets ``ok`` false (to the decoder's objects)
    instead of stopping the query; unguarded is a little cheaper, and the right first try.
    """
    layouts = {
        eventid(cls): tuple(
            "eventid" if i == 0 else name
            for i, name in enumerate(("eventid", *cls.__struct_fields__))
            if name in STORED or i == 0
        )
        for cls in EVENTS
    }
    nested = {
        name: tuple(k for k, _ in (p.split(" ", 1) for p in kind[len("STRUCT(") : -1].split(", ")))
        for name, kind in COLUMNS.items()
        if kind.startswith("STRUCT(")
    }
    read = {name: kind for name, kind in COLUMNS.items() if name != "timestamp"}
    structure = json.dumps({name: _structure(kind) for name, kind in read.items()})
    stored = ", ".join(map(_literal, STORED_KEYS))
    # The line's keys against its event's: first all of them, in the contract's order (the
    # sensor's spelling, which it has in full); failing that, its stored keys (``k``) against
    # the stored layout, or (a field with a default left out) that less the keys it lacks.
    spelt = "CASE eventid " + " ".join(
        f"WHEN {_literal(eventid(cls))} THEN {_list(('eventid', *cls.__struct_fields__))}"
        for cls in EVENTS
    )
    expected = "CASE eventid " + " ".join(
        f"WHEN {_literal(tag)} THEN {_list(keys)}" for tag, keys in layouts.items()
    )
    same = (
        f"CASE WHEN json_keys(line) = ({spelt} END) THEN true ELSE"
        f" list_transform([list_filter(json_keys(line), lambda k: k IN ({stored}))],"
        f" lambda k: k = ({expected} END) OR k = list_filter(({expected} END),"
        " lambda e: list_contains(k, e)))[1] END"
    )
    once = [
        f"({name} IS NULL OR len(json_keys(line, {_literal('$.' + name)})) = {len(keys)})"
        for name, keys in nested.items()
    ]
    columns = ", ".join(
        "ts" if name == "timestamp" else f"CAST({name} AS {kind}) AS {name}"
        for name, kind in COLUMNS.items()
    )
    transform = f"json_transform(line, {_literal(structure)})"
    if guarded:
        transform = f"CASE WHEN json_valid(line) THEN {transform} END"
    # A line in the sensor's spelling needs no key check (and its two or three more parses
    # of the line): CASE evaluates the ELSE only for the rows it reaches.
    query = f"""SELECT line_file, line_no, raw_sensor,
    CASE WHEN canonical THEN true
        ELSE coalesce({same} AND {" AND ".join(once) or "true"}, false) END AS ok,
    {columns}
FROM (
    SELECT line_file, line_no, raw_sensor, ts, canonical, line, unnest({transform})
    FROM batch_lines
    WHERE ts IS NOT NULL
)"""
    return FastPath(query, layouts, nested)
