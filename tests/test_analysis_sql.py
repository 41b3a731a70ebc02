"""The report's SQL is meant to run on Spark SQL unchanged: check it against Spark's grammar."""

from __future__ import annotations

from importlib import resources

import pytest
import sqlglot
from sqlglot import exp

from spampot.analysis.sql import render_sql

REPORT_SQL = sorted(
    p.name.removesuffix(".sql")
    for p in (resources.files("spampot.analysis") / "sql").iterdir()
    if p.name.startswith("report_")
)


def test_there_is_report_sql():
    assert len(REPORT_SQL) >= 9


@pytest.mark.parametrize("name", REPORT_SQL)
def test_parses_as_spark_sql_with_known_functions(name):
    tree = sqlglot.parse_one(render_sql(name, top=10), read="spark")
    unknown = sorted({node.name for node in tree.find_all(exp.Anonymous)})
    assert unknown == [], f"{name} calls functions Spark may not have: {unknown}"


@pytest.mark.parametrize("name", REPORT_SQL)
def test_spark_variable_is_the_only_placeholder(name):
    text = render_sql(name, top=10)
    assert "${" not in text


def test_the_check_catches_a_duckdb_only_function():
    tree = sqlglot.parse_one("SELECT list_value(1) FROM messages", read="spark")
    assert [node.name for node in tree.find_all(exp.Anonymous)] == ["list_value"]
