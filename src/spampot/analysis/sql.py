"""The ``.sql`` files beside this module, by name."""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any


@functools.cache
def load_sql(name: str) -> str:
    """Text of ``sql/<name>.sql`` (comments kept: both DuckDB and Spark SQL accept them)."""
    return (resources.files("spampot.analysis") / "sql" / f"{name}.sql").read_text("utf-8")


def materialise(con: Any, name: str, sql: str) -> None:
    """``name`` as a table of ``sql``'s rows, on DuckDB or Spark (a connection whose
    ``dialect`` is "spark" has the session)."""
    if getattr(con, "dialect", "duckdb") == "spark":
        # A temp view is inlined whole wherever it is read: a propagation step reads the last
        # labels twice, so views (or CACHE TABLE, which makes one) would double the plan at
        # every step until the JVM's heap is gone. A local checkpoint makes the rows a leaf.
        con.session.sql(sql).localCheckpoint().createOrReplaceTempView(name)
    else:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql}")


def render_sql(name: str, **variables: object) -> str:
    """Substitute ``${name}`` variables, as Spark SQL's own variable substitution does."""
    text = load_sql(name)
    for key, value in variables.items():
        text = text.replace("${" + key + "}", str(value))
    return text


# Spark SQL's names for the two list functions the ingest's SQL uses, as DuckDB macros, so
# that one text runs on both engines (Spark: size(), explode(); DuckDB: len(), unnest()).
SPARK_NAMES = (
    "CREATE OR REPLACE TEMP MACRO size(x) AS len(x)",
    "CREATE OR REPLACE TEMP MACRO explode(x) AS unnest(x)",
)


def add_spark_names(con: Any) -> None:
    """Define :data:`SPARK_NAMES` on a DuckDB connection."""
    for statement in SPARK_NAMES:
        con.execute(statement)
