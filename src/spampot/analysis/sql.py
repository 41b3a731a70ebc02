"""The ``.sql`` files beside this module, by name."""

from __future__ import annotations

import functools
from importlib import resources


@functools.cache
def load_sql(name: str) -> str:
    """Text of ``sql/<name>.sql`` (comments kept: both DuckDB and Spark SQL accept them)."""
    return (resources.files("spampot.analysis") / "sql" / f"{name}.sql").read_text("utf-8")


def render_sql(name: str, **variables: object) -> str:
    """Substitute ``${name}`` variables, as Spark SQL's own variable substitution does."""
    text = load_sql(name)
    for key, value in variables.items():
        text = text.replace("${" + key + "}", str(value))
    return text
