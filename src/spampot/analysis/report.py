"""Building the report: the paper's Tables 2–6 and Figures 2–3, and what its §5 asked for.

Each table comes from one ``sql/report_*.sql`` file over the filtered views (see
warehouse.py); what is left to Python is arithmetic on small aggregates (sums over days,
shares per period, totals) and labels.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from spampot.analysis.filters import SensorInfo
from spampot.analysis.model import Column, Figure, Report, Series, Table
from spampot.analysis.ports import usual_service
from spampot.analysis.sql import load_sql, materialise, render_sql

UNKNOWN = "unknown"
OTHER = "other"

# Table 6's rows, in the paper's order and wording.
OUTCOME_LABELS = {
    "smtp": "connection to 25/TCP",
    "other": "connection to other",
    "get": "get",
    "error": "errors",
}

Step = Callable[[str], None]  # told the name of each step as it starts (progress display)


@dataclass(frozen=True, slots=True)
class ReportOptions:
    top: int = 10
    series: int = 8  # categories drawn in the share figures; the rest is "other"
    period: str = "auto"  # day, week, month or auto (by the span of the data)
    campaign_sample: int = 2000  # emails read for content grouping; 0 = none
    campaign_threshold: float = 0.7  # Jaccard similarity that makes two emails one campaign
    raw_dir: Path | None = None  # where the message files are (raw/)
    content: bool = True  # the content tables and whole-corpus campaigns (content_report.py)
    seed: int = 1
    title: str = "spampot report"


def _rows(con: duckdb.DuckDBPyConnection, name: str, **variables: object) -> list[tuple]:
    return con.execute(render_sql(name, **variables)).fetchall()


def group_rows(con: duckdb.DuckDBPyConnection, step: Step | None = None) -> None:
    """The tables ``message_groups`` and ``proxy_groups``: every aggregate of the emails and
    of the proxy requests that the tables' queries (``report_*.sql``) read, each table read
    once (grouping sets), where a query per table read each again."""
    for table, sql, name in (
        ("message_groups", "report_groups_messages", "emails"),
        ("proxy_groups", "report_groups_proxy", "proxy requests"),
    ):
        if step is not None:
            step(f"one scan of the {name}")
        materialise(con, table, load_sql(sql))


def build_report(
    con: duckdb.DuckDBPyConnection,
    options: ReportOptions,
    inventory: Mapping[str, SensorInfo],
    scope: str = "all data",
    step: Step | None = None,
) -> Report:
    def begin(name: str) -> None:
        if step is not None:
            step(name)

    top = max(1, int(options.top))
    group_rows(con, step)
    begin("general statistics")
    general = _rows(con, "report_general")[0]
    begin("countries by day")
    country_day = _rows(con, "report_country_by_day")
    begin("ports by day")
    port_day = _rows(con, "report_port_by_day")
    begin("ASes")
    ases = _rows(con, "report_ases", top=top)
    begin("proxy requests")
    outcomes = _rows(con, "report_proxy_outcomes")
    begin("sensors by day")
    sensor_day = _rows(con, "report_sensor_days")
    proxy_sensors = _rows(con, "report_proxy_sensors")
    begin("recipient domains")
    domains = _rows(con, "report_recipient_domains", top=top)
    begin("destination servers")
    destinations = _rows(con, "report_destinations", top=top)

    notes: list[str] = []
    tables = [
        general_table(
            general,
            sum(r[3] for r in outcomes if r[0] in ("HTTP", "SOCKS")),
            sum(r[3] for r in outcomes if r[1] not in ("HTTP", "SOCKS")),
        ),
        countries_table(country_day, top),
        ases_table(ases, general),
        ports_table(port_day),
        outcomes_table(outcomes),
        domains_table(domains),
        destinations_table(destinations),
        tags_table(sensor_day, proxy_sensors, inventory),
        isps_table(sensor_day, proxy_sensors, inventory),
        sensor_summary_table(sensor_day, inventory),
        sensor_days_table(sensor_day),
    ]
    days = sorted({r[0] for r in country_day})
    period = choose_period(days, options.period)
    figures = [
        share_figure(
            "figure2_countries",
            "Figure 2: share of emails by source country",
            [(d, c if c is not None else UNKNOWN, n) for d, c, n in country_day],
            period,
            options.series,
        ),
        share_figure(
            "figure3_ports",
            "Figure 3: share of emails by TCP port",
            [(d, str(p), n) for d, p, _proto, n in port_day],
            period,
            options.series,
        ),
        lines_figure(
            "figure_sensor_days",
            "Emails per day per sensor",
            [(d, s, n) for d, s, n, _r in sensor_day],
            options.series,
        ),
    ]
    if options.content:
        from spampot.analysis.content_report import campaigns_table as content_campaigns
        from spampot.analysis.content_report import content_tables

        begin("content")
        tables += content_tables(con, top)
        begin("campaigns (whole corpus)")
        tables.append(content_campaigns(con, top))
    if options.campaign_sample > 0:
        begin("campaigns")
        from spampot.analysis.campaigns import campaigns_table

        tables.append(
            campaigns_table(
                con,
                raw_dir=options.raw_dir,
                sample=options.campaign_sample,
                threshold=options.campaign_threshold,
                seed=options.seed,
                top=top,
                total_emails=int(general[3] or 0),
            )
        )
    sources = [
        r[0]
        for r in con.execute(
            "SELECT geo_source FROM message_groups"
            " WHERE grouping_set = 'geo' AND geo_source IS NOT NULL ORDER BY 1"
        ).fetchall()
    ]
    if sources:
        notes.append("Address data from: " + " | ".join(sources))
    notes += quarantine_notes(con)
    return Report(
        title=options.title,
        scope=scope,
        generated=time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
        tables=tables,
        figures=figures,
        notes=notes,
    )


def quarantine_notes(con: duckdb.DuckDBPyConnection) -> list[str]:
    """What the ingest set aside (whole warehouse, whatever the filters): never silent."""
    row = con.execute("SELECT quarantined, damaged_files FROM ingest_summary").fetchone()
    lines, damaged = (int(row[0] or 0), int(row[1] or 0)) if row else (0, 0)
    if not lines:
        return []
    text = (
        f"{lines:,} event lines were set aside at ingest (they break the event contract) and"
        " are counted nowhere in these tables; they are listed with their reasons in the"
        " warehouse's _quarantine/ directory."
    )
    if damaged:
        text += f" {damaged:,} of them are the unreadable ends of damaged files."
    return [text]


# --- the tables ----------------------------------------------------------------------------


def general_table(row: tuple, proxy_requests: int, junk: int = 0) -> Table:
    first, last, days_with_data, emails, recipients, ips, ases, countries = row[:8]
    emails = int(emails or 0)
    recipients = int(recipients or 0)
    span = (last - first).days + 1 if first and last else 0
    stats: list[tuple[str, Any]] = [
        ("Data collection start", first),
        ("Data collection end", last),
        ("Days of collected data", span),
        ("Days with emails", int(days_with_data or 0)),
        ("Total emails collected", emails),
        ("Total recipients", recipients),
        ("Average recipients per spam", round(recipients / emails, 2) if emails else None),
        ("Average emails per day", round(emails / span) if span else None),
        ("Unique IPs sending spam", int(ips or 0)),
        ("Unique ASes sending spam", int(ases or 0)),
        ("Unique Country Codes", int(countries or 0)),
        ("Proxy requests (HTTP and SOCKS modules)", int(proxy_requests)),
        ("of which in neither protocol (junk)", int(junk)),
    ]
    return Table(
        "table2_general",
        "Table 2: general statistics of the captured emails",
        [Column("statistic", "Statistic"), Column("value", "Value", "auto")],
        stats,
        notes=[
            "Days of collected data counts every day from the first to the last email, as the"
            " paper does (2006-06-10 to 2007-09-18 = 466 days); averages per day divide by it."
        ],
    )


def countries_table(country_day: list[tuple], top: int) -> Table:
    totals: dict[str | None, int] = defaultdict(int)
    for _day, country, emails in country_day:
        totals[country] += emails
    total = sum(totals.values())
    ranked = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0] is None, kv[0] or ""))
    rows = [
        (i + 1, cc if cc is not None else UNKNOWN, n, _pct(n, total))
        for i, (cc, n) in enumerate(ranked[:top])
    ]
    notes = []
    if total:
        shown = sum(r[2] for r in rows)
        notes.append(f"The top {len(rows)} account for {_pct(shown, total):.2f} % of all emails.")
    return Table(
        "table3_countries",
        "Table 3: top country codes originating spam",
        [
            Column("rank", "#", "int"),
            Column("country", "CC"),
            Column("emails", "Emails", "int"),
            Column("pct", "%", "pct"),
        ],
        rows,
        notes,
    )


def ases_table(rows: list[tuple], general: tuple) -> Table:
    emails_with_asn, emails_with_name = int(general[8] or 0), int(general[9] or 0)
    table_notes = []
    if emails_with_asn == 0 and emails_with_name > 0:
        table_notes.append(
            "No AS numbers: the address database used (geoip2fast) gives AS names but not"
            " numbers. Ingest with --asn-mmdb (GeoLite2-ASN) or --ip2asn for numbers."
        )
    out = []
    any_as_country = any(r[2] for r in rows)
    if rows and not any_as_country:
        table_notes.append(
            "AS countries are those most of each AS's emails came from (the database gives no"
            " registration country; --ip2asn does)."
        )
    for i, (asn, name, as_country, top_country, emails, pct) in enumerate(rows):
        label = name if name is not None else UNKNOWN
        # Addresses no database placed in an AS have no AS country either.
        country = None if asn is None and name is None else as_country or top_country
        out.append((i + 1, asn, label, country, int(emails), round(float(pct), 2)))
    return Table(
        "table4_ases",
        "Table 4: top ASes originating spam",
        [
            Column("rank", "#", "int"),
            Column("asn", "ASN", "id"),
            Column("as_name", "AS Name"),
            Column("as_country", "AS CC"),
            Column("emails", "Emails", "int"),
            Column("pct", "%", "pct"),
        ],
        out,
        table_notes,
    )


def _proto_sort(protocol: str) -> int:
    return {"SMTP": 0, "HTTP": 1, "SOCKS": 2}.get(protocol, 3)


def ports_table(port_day: list[tuple]) -> Table:
    totals: dict[tuple[int, str], int] = defaultdict(int)
    for _day, port, protocol, emails in port_day:
        totals[(port, protocol)] += emails
    total = sum(totals.values())
    ranked = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0][0], _proto_sort(kv[0][1])))
    rows = [
        (i + 1, port, protocol, usual_service(port), n, _pct(n, total))
        for i, ((port, protocol), n) in enumerate(ranked)
    ]
    return Table(
        "table5_ports",
        "Table 5: TCP ports abused",
        [
            Column("rank", "#", "int"),
            Column("port", "Port", "id"),
            Column("protocol", "Protocol"),
            Column("service", "Usual Service"),
            Column("emails", "Emails", "int"),
            Column("pct", "%", "pct"),
        ],
        rows,
        [
            "Protocol is what the client spoke on that port (every proxy port serves HTTP and"
            " SOCKS); a port used with two protocols has a row for each."
        ],
    )


SPOKEN = ("HTTP", "SOCKS", "unknown")


def outcomes_table(rows: list[tuple]) -> Table:
    """Table 6 from (module of the port, protocol spoken, outcome, requests)."""
    by_module: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
    for module, spoken, outcome, n in rows:
        cell = by_module[module][outcome or "error"]
        cell[spoken] = cell.get(spoken, 0) + int(n)
    out: list[tuple] = []
    order = [m for m in ("HTTP", "SOCKS", "unknown") if m in by_module]
    for module in order:
        counts = by_module[module]
        total = sum(sum(c.values()) for c in counts.values())
        kinds = [k for k in OUTCOME_LABELS if k in counts or k != "get" or module == "HTTP"]
        kinds += sorted(k for k in counts if k not in OUTCOME_LABELS)
        for kind in kinds:
            spoken = counts.get(kind, {})
            n = sum(spoken.values())
            out.append(
                (
                    module,
                    OUTCOME_LABELS.get(kind, kind),
                    n,
                    _pct(n, total),
                    *(spoken.get(s, 0) for s in SPOKEN),
                )
            )
        spoken_total = [sum(c.get(s, 0) for c in counts.values()) for s in SPOKEN]
        out.append((module, "total", total, 100.0 if total else 0.0, *spoken_total))
    return Table(
        "table6_proxy_requests",
        "Table 6: requests made to the HTTP and SOCKS modules",
        [
            Column("module", "Module"),
            Column("type", "Type"),
            Column("requests", "Requests", "int"),
            Column("pct", "%", "pct"),
            Column("spoken_http", "Spoke HTTP", "int"),
            Column("spoken_socks", "Spoke SOCKS", "int"),
            Column("spoken_unknown", "Spoke neither", "int"),
        ],
        out,
        [
            "One row per request (an HTTP keep-alive connection may make several). A request"
            " counts in the module of the port it came to, as the paper counts: the emulator"
            " that answered, HTTP (the Squid persona) or SOCKS (Dante), or, for events written"
            " before ports had roles, the port's module in the paper's Table 1 lists. The last"
            " columns say what the client spoke (SOCKS 4, 4a and 5 together; neither: a first"
            " byte of no proxy protocol)."
        ],
    )


def domains_table(rows: list[tuple]) -> Table:
    return Table(
        "top_recipient_domains",
        "Top recipient domains targeted",
        [
            Column("rank", "#", "int"),
            Column("domain", "Domain"),
            Column("recipients", "Recipients", "int"),
            Column("pct", "% of recipients", "pct"),
        ],
        [(i + 1, d, int(n), round(float(p), 2)) for i, (d, n, p) in enumerate(rows)],
    )


def destinations_table(rows: list[tuple]) -> Table:
    return Table(
        "top_destinations",
        "Top destination servers requested through the proxies",
        [
            Column("rank", "#", "int"),
            Column("host", "Host"),
            Column("port", "Port", "id"),
            Column("requests", "Requests", "int"),
            Column("smtp_tunnels", "Tunnels to SMTP", "int"),
            Column("sources", "Source IPs", "int"),
            Column("pct", "%", "pct"),
        ],
        [
            (i + 1, h, p, int(n), int(s), int(src), round(float(pct), 2))
            for i, (h, p, n, s, src, pct) in enumerate(rows)
        ],
    )


def group_table(
    key: str,
    title: str,
    label: str,
    groups_of: Callable[[SensorInfo | None], tuple[str, ...]],
    sensor_day: list[tuple],
    proxy_sensors: list[tuple],
    inventory: Mapping[str, SensorInfo],
) -> Table:
    """Sensors compared by group (an inventory tag, an ISP): emails, their share, emails
    per sensor-day and proxy requests. ``groups_of`` names a sensor's groups (last sorted:
    a name in parentheses, for sensors the inventory says nothing about)."""
    emails: dict[str, int] = defaultdict(int)
    days: dict[str, int] = defaultdict(int)
    for _day, sensor, n, _r in sensor_day:
        emails[sensor] += n
        days[sensor] += 1
    requests = {s: int(n) for s, n in proxy_sensors}
    seen = set(emails) | set(requests)
    groups: dict[str, set[str]] = defaultdict(set)
    for sensor in seen:
        for group in groups_of(inventory.get(sensor)):
            groups[group].add(sensor)
    total = sum(emails.values())
    rows = []
    for group in sorted(groups, key=lambda g: (g.startswith("("), g)):
        members = groups[group]
        n = sum(emails.get(s, 0) for s in members)
        sensor_days = sum(days.get(s, 0) for s in members)
        rows.append(
            (
                group,
                len(members),
                n,
                _pct(n, total),
                round(n / sensor_days, 1) if sensor_days else None,
                sum(requests.get(s, 0) for s in members),
            )
        )
    return Table(
        key,
        title,
        [
            Column("group", label),
            Column("sensors", "Sensors", "int"),
            Column("emails", "Emails", "int"),
            Column("pct", "% of emails", "pct"),
            Column("per_sensor_day", "Emails per sensor-day", "float"),
            Column("proxy_requests", "Proxy requests", "int"),
        ],
        rows,
        [
            "Per sensor-day divides by the days each sensor captured email, so lines that were"
            " up longer do not look busier."
        ],
    )


def tags_table(
    sensor_day: list[tuple], proxy_sensors: list[tuple], inventory: Mapping[str, SensorInfo]
) -> Table:
    table = group_table(
        "sensor_tags",
        "Residential vs business sensors (inventory tags)",
        "Tag",
        lambda info: info.tags if info and info.tags else ("(untagged)",),
        sensor_day,
        proxy_sensors,
        inventory,
    )
    table.notes.insert(0, "A sensor with several tags counts in each.")
    return table


def isps_table(
    sensor_day: list[tuple], proxy_sensors: list[tuple], inventory: Mapping[str, SensorInfo]
) -> Table:
    return group_table(
        "sensor_isps",
        "Sensors by ISP (inventory isp)",
        "ISP",
        lambda info: (info.isp,) if info and info.isp else ("(no ISP given)",),
        sensor_day,
        proxy_sensors,
        inventory,
    )


def sensor_summary_table(sensor_day: list[tuple], inventory: Mapping[str, SensorInfo]) -> Table:
    per: dict[str, list[tuple[dt.date, int]]] = defaultdict(list)
    for day, sensor, n, _r in sensor_day:
        per[sensor].append((day, int(n)))
    rows = []
    for sensor in sorted(per):
        values = sorted(per[sensor])
        counts = [n for _, n in values]
        info = inventory.get(sensor, SensorInfo())
        rows.append(
            (
                sensor,
                ", ".join(info.tags),
                info.isp,
                values[0][0],
                values[-1][0],
                len(values),
                sum(counts),
                round(sum(counts) / len(values), 1),
                max(counts),
            )
        )
    return Table(
        "sensors",
        "Emails per sensor",
        [
            Column("sensor", "Sensor"),
            Column("tags", "Tags"),
            Column("isp", "ISP"),
            Column("first_day", "First day", "date"),
            Column("last_day", "Last day", "date"),
            Column("days", "Days with email", "int"),
            Column("emails", "Emails", "int"),
            Column("per_day", "Mean per day", "float"),
            Column("max_day", "Busiest day", "int"),
        ],
        rows,
    )


def sensor_days_table(sensor_day: list[tuple]) -> Table:
    rows = sorted((d, s, int(n), int(r or 0)) for d, s, n, r in sensor_day)
    return Table(
        "messages_per_day_per_sensor",
        "Emails per day per sensor",
        [
            Column("day", "Day", "date"),
            Column("sensor", "Sensor"),
            Column("emails", "Emails", "int"),
            Column("recipients", "Recipients", "int"),
        ],
        rows,
        show=False,
    )


# --- the figures ---------------------------------------------------------------------------


def choose_period(days: list[dt.date], wanted: str) -> str:
    if wanted != "auto":
        return wanted
    if not days:
        return "day"
    span = (days[-1] - days[0]).days + 1
    if span <= 92:
        return "day"
    if span <= 731:
        return "week"
    return "month"


def period_start(day: dt.date, period: str) -> dt.date:
    if period == "week":
        return day - dt.timedelta(days=day.weekday())  # ISO weeks start on Monday
    if period == "month":
        return day.replace(day=1)
    return day


def share_figure(
    key: str, title: str, data: list[tuple[dt.date, str, int]], period: str, max_series: int
) -> Figure:
    per: dict[dt.date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    overall: dict[str, int] = defaultdict(int)
    for day, label, n in data:
        per[period_start(day, period)][label] += n
        overall[label] += n
    ranked = sorted(overall, key=lambda k: (-overall[k], k))
    shown = ranked[:max_series]
    rest = ranked[max_series:]
    periods = sorted(per)
    totals = [sum(per[p].values()) for p in periods]
    series = [
        Series(label, [_pct(per[p].get(label, 0), t) for p, t in zip(periods, totals, strict=True)])
        for label in shown
    ]
    if rest:
        series.append(
            Series(
                OTHER,
                [
                    _pct(sum(per[p].get(r, 0) for r in rest), t)
                    for p, t in zip(periods, totals, strict=True)
                ],
            )
        )
    return Figure(key, title, "share", period, periods, series, totals, "% of emails")


def lines_figure(
    key: str, title: str, data: list[tuple[dt.date, str, int]], max_series: int
) -> Figure:
    per: dict[str, dict[dt.date, int]] = defaultdict(dict)
    overall: dict[str, int] = defaultdict(int)
    for day, label, n in data:
        per[label][day] = per[label].get(day, 0) + n
        overall[label] += n
    days = sorted({d for d, _, _ in data})
    if days:  # every day of the span, so that a sensor's silent days show as zero
        span = (days[-1] - days[0]).days + 1
        days = [days[0] + dt.timedelta(days=i) for i in range(span)]
    shown = sorted(overall, key=lambda k: (-overall[k], k))[: max(max_series, 1) * 2]
    series = [Series(label, [float(per[label].get(d, 0)) for d in days]) for label in shown]
    totals = [sum(int(per[s].get(d, 0)) for s in per) for d in days]
    notes = []
    if len(overall) > len(shown):
        notes.append(f"The {len(shown)} busiest of {len(overall)} sensors are drawn.")
    return Figure(key, title, "lines", "day", days, series, totals, "emails per day", notes)


def _pct(part: float, whole: float) -> float:
    return round(100.0 * part / whole, 2) if whole else 0.0
