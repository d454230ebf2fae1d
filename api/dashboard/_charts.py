"""Bar charts as inline SVG, drawn on the server: no script, no library, readable at any width.

Each bar carries a ``<title>`` (its exact figure, shown on hover) and the chart a text
summary for screen readers; the SVG scales with its ``viewBox``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from markupsafe import Markup, escape

__all__ = ["Bar", "bar_chart"]

_W, _H = 720, 200
_LEFT, _BOTTOM, _TOP = 64, 24, 10


@dataclass(frozen=True)
class Bar:
    label: str      # under the axis, for the bars that get one
    value: Decimal
    title: str      # the hover text: the exact figure and its bucket


def _nice_max(top: Decimal) -> Decimal:
    """A round ceiling for the y axis: 1, 2 or 5 times a power of ten."""
    if top <= 0:
        return Decimal(1)
    exp = top.adjusted()
    for step in (1, 2, 5, 10):
        ceiling = Decimal(step).scaleb(exp)
        if ceiling >= top:
            return ceiling
    return Decimal(10).scaleb(exp)


def _short(value: Decimal) -> str:
    for limit, suffix in ((Decimal(10) ** 9, "G"), (Decimal(10) ** 6, "M"), (Decimal(10) ** 3, "k")):
        if abs(value) >= limit:
            text = f"{value / limit:.1f}".rstrip("0").rstrip(".")
            return text + suffix
    return f"{value.normalize():f}"


def bar_chart(bars: list[Bar], summary: str, label_every: int = 1, css_class: str = "chart") -> Markup:
    if not bars:
        return Markup("")
    top = _nice_max(max(b.value for b in bars))
    plot_w, plot_h = _W - _LEFT - 8, _H - _BOTTOM - _TOP
    slot = plot_w / len(bars)
    gap = min(2.0, slot * 0.2)
    parts = [f'<svg class="{css_class}" viewBox="0 0 {_W} {_H}" role="img" aria-label="{escape(summary)}" '
             f'preserveAspectRatio="xMidYMid meet">',
             f"<title>{escape(summary)}</title>"]
    for fraction in (Decimal(0), Decimal("0.5"), Decimal(1)):
        y = _TOP + plot_h - float(fraction) * plot_h
        parts.append(f'<line class="grid" x1="{_LEFT}" x2="{_W - 8}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="axis" x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
                     f"{escape(_short(top * fraction))}</text>")
    for i, bar in enumerate(bars):
        h = float(bar.value / top) * plot_h if bar.value > 0 else 0.0
        x = _LEFT + i * slot + gap / 2
        y = _TOP + plot_h - h
        parts.append(f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{max(slot - gap, 0.5):.1f}" '
                     f'height="{max(h, 0.0):.1f}"><title>{escape(bar.title)}</title></rect>')
        if bar.label and i % label_every == 0:
            parts.append(f'<text class="axis" x="{x + (slot - gap) / 2:.1f}" y="{_H - 6}" text-anchor="middle">'
                         f"{escape(bar.label)}</text>")
    parts.append("</svg>")
    return Markup("".join(parts))
