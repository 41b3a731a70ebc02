"""Dialects: what each emulated server says, as data (one TOML file per persona).

DESIGN.md "What a server says is data": a persona (Postfix, Exim, Sendmail, Exchange, a big
provider's MX; Squid; Dante) is a file beside this module. The machines in
:mod:`spampot.protocols` take a typed dialect object and never spell a reply themselves, so a
persona can be checked line by line against the real software, and a new one is a new file.

:func:`load` reads ``<name>.toml`` into any frozen dataclass, strictly: every field without a
default must be present, no unknown key is allowed, and every value must have the declared
type. A file may start from another with ``base = "<name>"`` (its tables are merged, the
file's own keys winning; an empty table clears the base's), so variants of one server (a
provider's MX built on Postfix or Exim) write only what differs. Files are read once per process.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from importlib import resources
from typing import Any, TypeVar

T = TypeVar("T")

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


class DialectError(ValueError):
    """A dialect file is missing, malformed, or does not match the type it is read into."""


def available() -> list[str]:
    """Names of every dialect file shipped."""
    return sorted(
        entry.name.removesuffix(".toml")
        for entry in resources.files(__name__).iterdir()
        if entry.name.endswith(".toml")
    )


@functools.lru_cache(maxsize=64)
def raw(name: str) -> Mapping[str, Any]:
    """The merged TOML table of dialect ``name`` (after following ``base``)."""
    return _raw(name, ())


def _raw(name: str, seen: tuple[str, ...]) -> dict[str, Any]:
    if not _NAME.fullmatch(name):
        raise DialectError(f"bad dialect name {name!r}")
    if name in seen:
        raise DialectError(f"dialect {name!r}: base loop through {' -> '.join(seen)}")
    try:
        text = resources.files(__name__).joinpath(f"{name}.toml").read_text("utf-8")
    except FileNotFoundError:
        raise DialectError(f"no dialect {name!r} (known: {', '.join(available())})") from None
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DialectError(f"dialect {name!r}: {exc}") from exc
    base = table.pop("base", None)
    if base is None:
        return table
    if not isinstance(base, str):
        raise DialectError(f"dialect {name!r}: base must be a name")
    return _merge(_raw(base, (*seen, name)), table)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and value and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)  # an empty table replaces the base's (clears it)
        else:
            out[key] = value
    return out


@functools.lru_cache(maxsize=64)
def load(name: str, cls: type[T]) -> T:
    """Dialect ``name`` read into the frozen dataclass ``cls`` (cached: dialects are constant)."""
    return _build(cls, dict(raw(name)), name)


def _build(cls: type[T], table: dict[str, Any], where: str) -> T:
    if not dataclasses.is_dataclass(cls):  # pragma: no cover - a programming error
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise DialectError(f"{where}: unknown key(s) {', '.join(unknown)}")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if name not in table:
            no_default = f.default is dataclasses.MISSING
            if no_default and f.default_factory is dataclasses.MISSING:
                raise DialectError(f"{where}: missing key {name!r}")
            continue
        kwargs[name] = _value(hints[name], table[name], f"{where}.{name}")
    return cls(**kwargs)


def _value(kind: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise DialectError(f"{where} must be a table")
        return _build(kind, value, where)  # type: ignore[arg-type]
    if origin is tuple:
        if not isinstance(value, list):
            raise DialectError(f"{where} must be a list")
        return tuple(_value(args[0], v, f"{where}[]") for v in value)
    if origin in (dict, Mapping) or kind is Mapping:
        if not isinstance(value, dict):
            raise DialectError(f"{where} must be a table")
        return types.MappingProxyType(
            {str(k): _value(args[1], v, f"{where}.{k}") for k, v in value.items()}
        )
    if kind is bool:
        if not isinstance(value, bool):
            raise DialectError(f"{where} must be true or false")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise DialectError(f"{where} must be an integer")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise DialectError(f"{where} must be a number")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise DialectError(f"{where} must be a string")
        return value
    raise DialectError(f"{where}: unsupported type {kind!r}")  # pragma: no cover
