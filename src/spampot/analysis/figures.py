"""The report's figures as self-contained SVG: no script, no font or file fetched to view it."""

from __future__ import annotations

import datetime as dt
from html import escape

from spampot.analysis.model import Figure

# Tableau 10: distinguishable, and readable by most colour-blind readers; grey is "other".
PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#17becf",
    "#bcbd22",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#aec7e8",
    "#ffbb78",
)
OTHER_COLOUR = "#bab0ac"

WIDTH, HEIGHT = 900, 360
LEFT, RIGHT, TOP, BOTTOM = 64, 170, 16, 44


def colour(label: str, index: int) -> str:
    return OTHER_COLOUR if label == "other" else PALETTE[index % len(PALETTE)]


def _fmt_period(day: dt.date, period: str) -> str:
    if period == "month":
        return day.strftime("%Y-%m")
    return day.isoformat()


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10.0 * magnitude


def figure_svg(fig: Figure) -> str:
    """An SVG drawing of ``fig``: stacked columns of shares, or one line per series."""
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="figure" data-figure="{escape(fig.key)}"'
        f' viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img"'
        f' aria-label="{escape(fig.title)}" font-family="sans-serif" font-size="11">',
        f"<title>{escape(fig.title)}</title>",
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
    ]
    n = len(fig.periods)
    if n == 0:
        out.append(
            f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" fill="#555">'
            "No emails in this range</text></svg>"
        )
        return "".join(out)
    top_value = (
        100.0
        if fig.kind == "share"
        else _nice_max(max((max(s.values) for s in fig.series if s.values), default=0.0))
    )

    def y(value: float) -> float:
        return TOP + plot_h - plot_h * (value / top_value)

    # Grid and y axis.
    for i in range(5):
        value = top_value * i / 4
        yy = y(value)
        out.append(
            f'<line x1="{LEFT}" y1="{yy:.1f}" x2="{LEFT + plot_w}" y2="{yy:.1f}" stroke="#e0e0e0"/>'
        )
        text = f"{value:.0f}%" if fig.kind == "share" else f"{value:,.0f}"
        out.append(
            f'<text x="{LEFT - 6}" y="{yy + 4:.1f}" text-anchor="end" fill="#333">{text}</text>'
        )
    out.append(
        f'<text x="14" y="{TOP + plot_h / 2:.1f}" transform="rotate(-90 14 {TOP + plot_h / 2:.1f})"'
        f' text-anchor="middle" fill="#333">{escape(fig.y_label)}</text>'
    )
    slot = plot_w / n
    if fig.kind == "share":
        bar = max(slot * 0.85, 0.5)
        for i, day in enumerate(fig.periods):
            base = 0.0
            x = LEFT + i * slot + (slot - bar) / 2
            for k, series in enumerate(fig.series):
                value = series.values[i]
                if value <= 0:
                    continue
                y_top, y_bottom = y(base + value), y(base)
                out.append(
                    f'<rect class="mark" x="{x:.2f}" y="{y_top:.2f}" width="{bar:.2f}"'
                    f' height="{max(y_bottom - y_top, 0.0):.2f}"'
                    f' fill="{colour(series.label, k)}"><title>'
                    f"{escape(_fmt_period(day, fig.period))} {escape(series.label)}:"
                    f" {value:.2f}% of {fig.totals[i]:,}</title></rect>"
                )
                base += value
    else:
        for k, series in enumerate(fig.series):
            points = " ".join(
                f"{LEFT + (i + 0.5) * slot:.2f},{y(v):.2f}" for i, v in enumerate(series.values)
            )
            if n == 1:
                cx, cy = points.split(",")
                out.append(
                    f'<circle class="mark" cx="{cx}" cy="{cy}" r="4"'
                    f' fill="{colour(series.label, k)}"/>'
                )
            else:
                out.append(
                    f'<polyline class="mark" points="{points}" fill="none"'
                    f' stroke="{colour(series.label, k)}" stroke-width="1.8"/>'
                )
    # X axis: at most 8 labels, evenly spread.
    out.append(
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}"'
        ' stroke="#333"/>'
    )
    step = max(1, -(-n // 8))
    for i in range(0, n, step):
        x = LEFT + (i + 0.5) * slot
        out.append(
            f'<text x="{x:.1f}" y="{TOP + plot_h + 16}" text-anchor="middle" fill="#333">'
            f"{escape(_fmt_period(fig.periods[i], fig.period))}</text>"
        )
    out.append(
        f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 6}" text-anchor="middle" fill="#333">'
        f"{escape(fig.period)}</text>"
    )
    # Legend, top series first (in a stack the first series is at the bottom).
    for k, series in enumerate(fig.series):
        ly = TOP + 4 + k * 18
        if ly > HEIGHT - BOTTOM:
            break
        lx = LEFT + plot_w + 14
        out.append(
            f'<rect x="{lx}" y="{ly}" width="12" height="12" fill="{colour(series.label, k)}"/>'
            f'<text x="{lx + 18}" y="{ly + 10}" fill="#333">{escape(series.label[:22])}</text>'
        )
    out.append("</svg>")
    return "".join(out)
