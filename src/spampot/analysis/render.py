"""Showing a report: on a terminal (rich), as CSV and JSON files, and as one HTML page."""

from __future__ import annotations

import csv
import datetime as dt
import json
from html import escape
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table as RichTable

from spampot.analysis.figures import figure_svg
from spampot.analysis.model import Column, Figure, Report, Table

MISSING = "—"


def format_value(value: Any, column: Column) -> str:
    if value is None:
        return MISSING
    kind = column.kind
    if kind == "auto":
        kind = "int" if isinstance(value, int) else "float" if isinstance(value, float) else "text"
    if kind == "int" and isinstance(value, int):
        return f"{value:,}"
    if kind == "pct" and isinstance(value, int | float):
        return f"{value:.2f}"
    if kind == "float" and isinstance(value, int | float):
        return f"{value:,.2f}"
    return str(value)


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return value


# --- terminal ------------------------------------------------------------------------------


def print_report(report: Report, console: Console) -> None:
    console.rule(f"[bold]{report.title}[/bold]")
    console.print(f"Scope: {report.scope}    generated {report.generated}")
    for table in report.tables:
        if not table.show:
            continue
        rich_table = RichTable(title=table.title, title_justify="left", title_style="bold")
        for column in table.columns:
            numeric = column.kind in ("int", "id", "float", "pct")
            rich_table.add_column(
                column.label, justify="right" if numeric else "left", overflow="fold"
            )
        for row in table.rows:
            rich_table.add_row(
                *(format_value(v, c) for v, c in zip(row, table.columns, strict=True))
            )
        if not table.rows:
            rich_table.add_row(*(["(none)"] + [""] * (len(table.columns) - 1)))
        console.print()
        console.print(rich_table)
        for note in table.notes:
            console.print(f"  [dim]{escape_markup(note)}[/dim]")
    for figure in report.figures:
        console.print()
        console.print(f"[bold]{figure.title}[/bold] (per {figure.period}; see the HTML report)")
        for line in figure_summary(figure):
            console.print("  " + escape_markup(line))
    for note in report.notes:
        console.print(f"[dim]{escape_markup(note)}[/dim]")


def escape_markup(text: str) -> str:
    return text.replace("[", r"\[")


def figure_summary(figure: Figure) -> list[str]:
    """A few lines a terminal can show in place of the drawing."""
    if not figure.periods:
        return ["no emails in this range"]
    lines = []
    for series in figure.series[:8]:
        values = series.values
        if figure.kind == "share":
            lines.append(
                f"{series.label:>12}: mean {sum(values) / len(values):6.2f}%"
                f"  min {min(values):6.2f}%  max {max(values):6.2f}%"
            )
        else:
            lines.append(
                f"{series.label:>12}: total {sum(values):,.0f}  max/day {max(values):,.0f}"
            )
    return lines


# --- files ---------------------------------------------------------------------------------


def write_table_files(table: Table, out_dir: Path) -> None:
    with open(out_dir / f"{table.key}.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([c.key for c in table.columns])
        for row in table.rows:
            writer.writerow(["" if v is None else _json_value(v) for v in row])
    (out_dir / f"{table.key}.json").write_text(
        json.dumps(table_json(table), indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )


def table_json(table: Table) -> dict[str, Any]:
    return {
        "key": table.key,
        "title": table.title,
        "columns": [{"key": c.key, "label": c.label, "kind": c.kind} for c in table.columns],
        "rows": [{k: _json_value(v) for k, v in r.items()} for r in table.records()],
        "notes": table.notes,
    }


def figure_json(figure: Figure) -> dict[str, Any]:
    return {
        "key": figure.key,
        "title": figure.title,
        "kind": figure.kind,
        "period": figure.period,
        "periods": [p.isoformat() for p in figure.periods],
        "totals": figure.totals,
        "series": [{"label": s.label, "values": s.values} for s in figure.series],
        "notes": figure.notes,
    }


def report_json(report: Report) -> dict[str, Any]:
    return {
        "title": report.title,
        "scope": report.scope,
        "generated": report.generated,
        "tables": [table_json(t) for t in report.tables],
        "figures": [figure_json(f) for f in report.figures],
        "notes": report.notes,
    }


def write_report_files(report: Report, out_dir: Path) -> list[Path]:
    """CSV and JSON of every table and figure, report.json, and report.html."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for table in report.tables:
        write_table_files(table, out_dir)
    for figure in report.figures:
        with open(out_dir / f"{figure.key}.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["period", *(s.label for s in figure.series), "total"])
            for i, period in enumerate(figure.periods):
                writer.writerow(
                    [period.isoformat(), *(s.values[i] for s in figure.series), figure.totals[i]]
                )
        (out_dir / f"{figure.key}.json").write_text(
            json.dumps(figure_json(figure), indent=1) + "\n", encoding="utf-8"
        )
    (out_dir / "report.json").write_text(
        json.dumps(report_json(report), indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    html_path = out_dir / "report.html"
    html_path.write_text(report_html(report), encoding="utf-8")
    return sorted(out_dir.iterdir())


# --- HTML ----------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #222;
  padding: 0 1em; }
h1 { margin-bottom: 0.2em; } .scope { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: 0.5em 0 0.3em; font-size: 14px; }
th, td { padding: 3px 10px; border-bottom: 1px solid #e3e3e3; text-align: left; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.note { color: #666; font-size: 13px; margin: 0.2em 0; }
section { margin: 2em 0; } figure { margin: 1em 0; } svg.figure { max-width: 100%; height: auto; }
figcaption { font-weight: bold; margin-bottom: 0.4em; }
nav a { margin-right: 1em; }
"""


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{escape(c.label)}</th>" for c in table.columns)
    body = []
    for row in table.rows:
        cells = []
        for value, column in zip(row, table.columns, strict=True):
            numeric = column.kind in ("int", "id", "float", "pct") or (
                column.kind == "auto" and isinstance(value, int | float)
            )
            cls = ' class="num"' if numeric else ""
            cells.append(f"<td{cls}>{escape(format_value(value, column))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    if not table.rows:
        body.append(f'<tr><td colspan="{len(table.columns)}">(none)</td></tr>')
    notes = "".join(f'<p class="note">{escape(n)}</p>' for n in table.notes)
    return (
        f'<section id="{escape(table.key)}"><h2>{escape(table.title)}</h2>'
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        f"{notes}</section>"
    )


def _html_figure(figure: Figure) -> str:
    notes = "".join(f'<p class="note">{escape(n)}</p>' for n in figure.notes)
    # The legend is drawn once, inside the SVG (figures.py), beside the plot.
    return (
        f'<section id="{escape(figure.key)}"><figure><figcaption>{escape(figure.title)}'
        f" (per {escape(figure.period)})</figcaption>{figure_svg(figure)}</figure>"
        f"{notes}</section>"
    )


def _nav_link(key: str, title: str) -> str:
    return f"<a href='#{escape(key)}'>{escape(title.split(':')[0])}</a>"


def report_html(report: Report) -> str:
    """One self-contained page: inline CSS and SVG, no script, nothing fetched."""
    paper = [t for t in report.tables if t.key.startswith("table") and t.show]
    beyond = [t for t in report.tables if not t.key.startswith("table") and t.show]
    by_key = {f.key: f for f in report.figures}
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{escape(report.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(report.title)}</h1>",
        f"<p class='scope'>Scope: {escape(report.scope)} · generated {escape(report.generated)}"
        "</p><nav>",
        # Every table and figure on the page, in the page's order.
        *(_nav_link(t.key, t.title) for t in paper),
        *(_nav_link(f.key, f.title) for f in report.figures),
        *(_nav_link(t.key, t.title) for t in beyond),
        "</nav>",
    ]
    for table in paper:
        parts.append(_html_table(table))
        if table.key == "table3_countries" and "figure2_countries" in by_key:
            parts.append(_html_figure(by_key.pop("figure2_countries")))
        if table.key == "table5_ports" and "figure3_ports" in by_key:
            parts.append(_html_figure(by_key.pop("figure3_ports")))
    parts.append("<h2 style='margin-top:2em'>Beyond the paper</h2>")
    for table in beyond:
        parts.append(_html_table(table))
        if table.key == "sensors" and "figure_sensor_days" in by_key:
            parts.append(_html_figure(by_key.pop("figure_sensor_days")))
    for figure in by_key.values():
        parts.append(_html_figure(figure))
    parts.extend(f'<p class="note">{escape(n)}</p>' for n in report.notes)
    parts.append("</body></html>\n")
    return "".join(parts)
