"""An inline SVG bar chart of per-window perplexity differences, drawn by hand.

No plotting library: the chart must come out byte-identical on every machine
(so the report does), must not pull matplotlib into an air-gapped install, and
only needs bars, a zero line and a few labels. Coordinates are rounded to two
decimals and numbers are formatted with fixed rules, so the SVG text depends on
the data alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

WIDTH = 640.0
HEIGHT = 210.0
LEFT = 64.0
RIGHT = 12.0
TOP = 14.0
BOTTOM = 34.0

WORSE = "#c0392b"  # customer loss higher than vendor's
BETTER = "#2471a3"  # customer loss lower than vendor's
AXIS = "#333333"
GRID = "#d5d8dc"


def _n(value: float) -> str:
    """A coordinate with at most two decimals and no '-0'."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def format_nats(value: float) -> str:
    """A small signed difference, readable: '0', '+1.2e-06', '-0.0031'."""
    if value == 0:
        return "0"
    if abs(value) >= 1e-3:
        return f"{value:+.4f}"
    return f"{value:+.1e}"


def _nice_limit(peak: float) -> float:
    """Round the largest |difference| up to 1, 2 or 5 times a power of ten."""
    if peak <= 0 or not math.isfinite(peak):
        return 1.0
    exponent = math.floor(math.log10(peak))
    for step in (1.0, 2.0, 5.0, 10.0):
        limit = step * 10.0**exponent
        if limit >= peak * (1 - 1e-12):
            return limit
    return 10.0 ** (exponent + 1)


def window_diff_svg(diffs: Sequence[float], *, font_family: str = "ReportSans") -> str:
    """SVG markup of one bar per window (customer minus vendor mean NLL, in nats).

    All-zero data (the bit-identical case) still draws the axis and says so, so
    that an auditor sees an explicit flat line rather than an empty box.
    """
    values = [v if math.isfinite(v) else 0.0 for v in diffs]
    count = len(values)
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    peak = max((abs(v) for v in values), default=0.0)
    limit = _nice_limit(peak)
    zero_y = TOP + plot_h / 2

    def y_of(value: float) -> float:
        return zero_y - (value / limit) * (plot_h / 2)

    parts: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{_n(WIDTH)}" height="{_n(HEIGHT)}" '
        f'viewBox="0 0 {_n(WIDTH)} {_n(HEIGHT)}" font-family="{escape(font_family)}" font-size="9">',
        f'<rect x="{_n(LEFT)}" y="{_n(TOP)}" width="{_n(plot_w)}" height="{_n(plot_h)}" fill="#fbfcfc" stroke="{GRID}" stroke-width="0.5"/>',
    ]
    for fraction in (-1.0, -0.5, 0.5, 1.0):
        y = y_of(fraction * limit)
        parts.append(f'<line x1="{_n(LEFT)}" y1="{_n(y)}" x2="{_n(WIDTH - RIGHT)}" y2="{_n(y)}" stroke="{GRID}" stroke-width="0.5"/>')
    for fraction in (-1.0, 0.0, 1.0):
        y = y_of(fraction * limit)
        label = format_nats(fraction * limit) if peak > 0 else "0" if fraction == 0 else ""
        if label:
            parts.append(f'<text x="{_n(LEFT - 5)}" y="{_n(y + 3)}" text-anchor="end" fill="{AXIS}">{escape(label)}</text>')

    if count:
        slot = plot_w / count
        bar_w = max(slot * 0.8, 0.4)
        for index, value in enumerate(values):
            if value == 0:
                continue
            top = min(y_of(value), zero_y)
            height = abs(y_of(value) - zero_y)
            x = LEFT + index * slot + (slot - bar_w) / 2
            colour = WORSE if value > 0 else BETTER
            parts.append(f'<rect x="{_n(x)}" y="{_n(top)}" width="{_n(bar_w)}" height="{_n(max(height, 0.3))}" fill="{colour}"/>')
        step = max(1, math.ceil(count / 10))
        ticks = list(range(0, count, step))
        if ticks[-1] != count - 1:
            ticks.append(count - 1)
        for index in ticks:
            x = LEFT + (index + 0.5) * slot
            parts.append(f'<text x="{_n(x)}" y="{_n(HEIGHT - BOTTOM + 12)}" text-anchor="middle" fill="{AXIS}">{index + 1}</text>')

    parts.append(f'<line x1="{_n(LEFT)}" y1="{_n(zero_y)}" x2="{_n(WIDTH - RIGHT)}" y2="{_n(zero_y)}" stroke="{AXIS}" stroke-width="1"/>')
    parts.append(
        f'<text x="{_n(LEFT + plot_w / 2)}" y="{_n(HEIGHT - 6)}" text-anchor="middle" fill="{AXIS}">'
        f"evaluation window (1 to {count})</text>"
    )
    parts.append(
        f'<text transform="translate(12 {_n(zero_y)}) rotate(-90)" text-anchor="middle" fill="{AXIS}">difference (nats)</text>'
    )
    if count and peak == 0:
        parts.append(
            f'<text x="{_n(LEFT + plot_w / 2)}" y="{_n(zero_y - 8)}" text-anchor="middle" fill="{AXIS}">'
            "every window identical: no difference in any window</text>"
        )
    if not count:
        parts.append(
            f'<text x="{_n(LEFT + plot_w / 2)}" y="{_n(zero_y - 8)}" text-anchor="middle" fill="{AXIS}">no per-window data</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)
