"""A small SVG bar chart, written by hand (no plotting library in the product): one panel
per measure, one horizontal bar per row, negative values drawn leftwards from the zero line."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape

ROW = 26
LABEL_WIDTH = 170
PANEL_WIDTH = 260
GAP = 30
TOP = 56
COLOURS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759")


@dataclass(frozen=True)
class Panel:
    title: str
    values: Sequence[float]
    show: Callable[[float], str]


def bars(title: str, labels: Sequence[str], panels: Sequence[Panel],
         footer: str = "") -> str:
    """The SVG text of ``panels`` side by side, rows named by ``labels``."""
    for panel in panels:
        if len(panel.values) != len(labels):
            raise ValueError(f"panel {panel.title!r}: {len(panel.values)} values for "
                             f"{len(labels)} rows")
    width = LABEL_WIDTH + len(panels) * (PANEL_WIDTH + GAP) + GAP
    height = TOP + len(labels) * ROW + (40 if footer else 20)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{GAP / 2}" y="22" font-size="15" font-weight="bold">{escape(title)}</text>',
    ]
    for row, label in enumerate(labels):
        y = TOP + row * ROW + ROW / 2 + 4
        out.append(f'<text x="{LABEL_WIDTH - 8}" y="{y}" text-anchor="end">'
                   f'{escape(label)}</text>')
    for index, panel in enumerate(panels):
        out += _panel(panel, LABEL_WIDTH + index * (PANEL_WIDTH + GAP),
                      COLOURS[index % len(COLOURS)])
    if footer:
        out.append(f'<text x="{GAP / 2}" y="{height - 14}" font-size="10" fill="#555">'
                   f'{escape(footer)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _panel(panel: Panel, left: float, colour: str) -> list[str]:
    low = min(0.0, *panel.values) if panel.values else 0.0
    high = max(0.0, *panel.values) if panel.values else 0.0
    span = (high - low) or 1.0
    inner = PANEL_WIDTH - 70  # room for the value's text beside its bar
    zero = left + (-low / span) * inner
    out = [f'<text x="{left}" y="{TOP - 12}" font-weight="bold">{escape(panel.title)}</text>']
    for row, value in enumerate(panel.values):
        y = TOP + row * ROW + 4
        length = abs(value) / span * inner
        x = zero if value >= 0 else zero - length
        out.append(f'<rect x="{x:.1f}" y="{y}" width="{length:.1f}" height="{ROW - 8}" '
                   f'fill="{colour if value >= 0 else "#c0392b"}"/>')
        text_x = x + length + 4 if value >= 0 else x - 4
        anchor = "start" if value >= 0 else "end"
        out.append(f'<text x="{text_x:.1f}" y="{y + ROW / 2}" text-anchor="{anchor}">'
                   f'{escape(panel.show(value))}</text>')
    bottom = TOP + len(panel.values) * ROW
    out.append(f'<line x1="{zero:.1f}" y1="{TOP - 4}" x2="{zero:.1f}" y2="{bottom}" '
               'stroke="#333"/>')
    return out
