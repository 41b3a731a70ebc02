"""What a report is made of: tables and figures, independent of how they are shown."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    label: str
    kind: str = "text"  # text, int, id (a number without separators), float, pct, date


@dataclass(slots=True)
class Table:
    key: str  # file name of its CSV and JSON
    title: str
    columns: list[Column]
    rows: list[tuple[Any, ...]]
    notes: list[str] = field(default_factory=list)
    show: bool = True  # False: CSV and JSON only (long data, e.g. one row per day and sensor)

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip((c.key for c in self.columns), row, strict=True)) for row in self.rows]


@dataclass(slots=True)
class Series:
    label: str
    values: list[float]


@dataclass(slots=True)
class Figure:
    key: str
    title: str
    kind: str  # "share": stacked columns of % per period; "lines": absolute values per period
    period: str  # day, week, month
    periods: list[dt.date]
    series: list[Series]
    totals: list[int]  # emails per period (share figures), for the caption and tooltips
    y_label: str
    notes: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Report:
    title: str
    scope: str  # the filters, in words
    generated: str  # UTC time
    tables: list[Table]
    figures: list[Figure]
    notes: list[str] = field(default_factory=list)

    def table(self, key: str) -> Table:
        for table in self.tables:
            if table.key == key:
                return table
        raise KeyError(key)

    def figure(self, key: str) -> Figure:
        for figure in self.figures:
            if figure.key == key:
                return figure
        raise KeyError(key)
