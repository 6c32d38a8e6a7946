"""Charts as server-side SVG: no JavaScript, no CDN, works under a strict CSP.

Every text placed in the SVG is escaped here; colours are presentation attributes (a CSP
without 'unsafe-inline' blocks style attributes, not these). Each chart carries a <title> and
<desc> for screen readers; pages also show the numbers in a table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from itertools import count

# Distinguishable, and at least 3:1 against white (WCAG non-text contrast).
PALETTE = ("#0b6b3a", "#9c4a00", "#1f4e99", "#8b1a4a", "#4b5563", "#6b21a8")
SERIES_COLOURS = {"mpesa": "#0b6b3a", "momo": "#9c4a00"}
INK = "#1f2937"
GRID = "#d1d5db"
_ids = count(1)


def _nice_max(value: float) -> float:
    """The axis top: a round number whose quarters are whole (gridlines at 1/4 steps)."""
    if value <= 0:
        return 4.0
    for base in (4, 8, 12, 20, 40, 60, 80, 100):
        if value <= base:
            return float(base)
    magnitude = 10 ** (len(str(int(value))) - 2)
    for base in (100, 200, 400, 600, 800, 1000):
        if value <= base * magnitude:
            return float(base * magnitude)
    return float(1000 * magnitude)


def _fmt(value: float) -> str:
    return f"{value:.0f}" if value == int(value) else f"{value:.1f}"


def _open(title: str, desc: str, width: int, height: int) -> tuple[str, list[str]]:
    ident = f"chart{next(_ids)}"
    head = (
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{ident}t {ident}d" xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{ident}t">{escape(title)}</title><desc id="{ident}d">{escape(desc)}</desc>'
    )
    return ident, [head]


def line_chart(
    title: str,
    labels: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    y_max: float | None = None,
    unit: str = "",
    width: int = 560,
    height: int = 250,
) -> str:
    """One line per series over ``labels`` (None: no data at that point, the line breaks)."""
    left, right, top, bottom = 48, 12, 32, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for points in series.values() for v in points if v is not None]
    top_value = y_max if y_max is not None else _nice_max(max(values, default=0.0))
    summary = "; ".join(
        f"{name}: {sum(v for v in pts if v is not None):g} total" for name, pts in series.items()
    )
    _, out = _open(title, summary or "no data", width, height)
    n = max(len(labels), 1)

    def x(i: int) -> float:
        return left + (plot_w * (i + 0.5) / n)

    def y(v: float) -> float:
        return top + plot_h - (plot_h * min(v, top_value) / top_value)

    for step in range(5):  # grid and y labels
        value = top_value * step / 4
        gy = y(value)
        out.append(
            f'<line x1="{left}" x2="{width - right}" y1="{gy:.1f}" y2="{gy:.1f}" '
            f'stroke="{GRID}" stroke-width="1"/>'
            f'<text x="{left - 6}" y="{gy + 4:.1f}" text-anchor="end" font-size="13" '
            f'fill="{INK}">{escape(_fmt(value))}{escape(unit)}</text>'
        )
    every = max(1, len(labels) // 8)
    for i, label in enumerate(labels):
        if i % every == 0:
            out.append(
                f'<text x="{x(i):.1f}" y="{height - bottom + 16}" text-anchor="middle" '
                f'font-size="13" fill="{INK}">{escape(label)}</text>'
            )
    for index, (name, points) in enumerate(series.items()):
        colour = SERIES_COLOURS.get(name, PALETTE[index % len(PALETTE)])
        runs: list[list[tuple[float, float]]] = [[]]
        for i, v in enumerate(points):
            if v is None:
                runs.append([])
            else:
                runs[-1].append((x(i), y(v)))
        for run in runs:
            if len(run) > 1:
                path = " ".join(f"{px:.1f},{py:.1f}" for px, py in run)
                out.append(
                    f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2.5"/>'
                )
            for px, py in run:
                out.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{colour}"/>')
        lx = left + index * 130
        out.append(
            f'<rect x="{lx}" y="5" width="13" height="13" fill="{colour}"/>'
            f'<text x="{lx + 18}" y="17" font-size="14" fill="{INK}">{escape(name)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def hbar_chart(
    title: str,
    items: Sequence[tuple[str, float]],
    *,
    unit: str = "",
    width: int = 560,
    empty: str = "No data",
    colour: str = "#1f4e99",
) -> str:
    """Horizontal bars, one per (label, value), largest first as given."""
    row, left, right, top = 30, 200, 70, 8
    height = top * 2 + row * max(len(items), 1)
    top_value = _nice_max(max((v for _, v in items), default=0.0))
    desc = "; ".join(f"{label}: {_fmt(v)}{unit}" for label, v in items) or empty
    _, out = _open(title, desc, width, height)
    plot_w = width - left - right
    for i, (label, value) in enumerate(items):
        y = top + i * row
        bar = plot_w * value / top_value if top_value else 0
        out.append(
            f'<text x="{left - 8}" y="{y + 20}" text-anchor="end" font-size="14" '
            f'fill="{INK}">{escape(label[:28])}</text>'
            f'<rect x="{left}" y="{y + 4}" width="{max(bar, 1):.1f}" height="{row - 8}" '
            f'fill="{colour}"/>'
            f'<text x="{left + bar + 6:.1f}" y="{y + 20}" font-size="14" '
            f'fill="{INK}">{escape(_fmt(value))}{escape(unit)}</text>'
        )
    if not items:
        out.append(
            f'<text x="{width / 2:.0f}" y="{top + 20}" text-anchor="middle" font-size="14" '
            f'fill="{INK}">{escape(empty)}</text>'
        )
    out.append("</svg>")
    return "".join(out)
