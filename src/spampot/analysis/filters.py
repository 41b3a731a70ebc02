"""What a report covers: dates, sensors, inventory tags (light: imported by the CLI)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SensorInfo:
    tags: tuple[str, ...] = ()
    isp: str = ""


@dataclass(frozen=True, slots=True)
class ReportFilter:
    start: dt.date | None = None  # first day included
    end: dt.date | None = None  # last day included
    sensors: tuple[str, ...] = ()  # empty: all
    tags: tuple[str, ...] = ()  # empty: all; else sensors carrying any of these tags

    def sensor_set(self, inventory: Mapping[str, SensorInfo]) -> list[str] | None:
        """The sensors to keep (None: no restriction)."""
        chosen: set[str] | None = set(self.sensors) if self.sensors else None
        if self.tags:
            tagged = {name for name, info in inventory.items() if set(info.tags) & set(self.tags)}
            chosen = tagged if chosen is None else chosen & tagged
        return None if chosen is None else sorted(chosen)

    def condition(self, inventory: Mapping[str, SensorInfo], literal: Callable[[str], str]) -> str:
        """The WHERE condition of the report's views (the same on DuckDB and Spark SQL;
        ``literal`` quotes a string as the engine wants it)."""
        where = ["TRUE"]
        if self.start:
            where.append(f"day >= DATE '{self.start.isoformat()}'")
        if self.end:
            where.append(f"day <= DATE '{self.end.isoformat()}'")
        sensors = self.sensor_set(inventory)
        if sensors is not None:
            where.append(
                f"sensor IN ({', '.join(literal(s) for s in sensors)})" if sensors else "FALSE"
            )
        return " AND ".join(where)

    def describe(self) -> str:
        parts = []
        if self.start or self.end:
            parts.append(f"days {self.start or '…'} to {self.end or '…'}")
        if self.sensors:
            parts.append("sensors " + ", ".join(self.sensors))
        if self.tags:
            parts.append("tags " + ", ".join(self.tags))
        return "; ".join(parts) or "all data"
