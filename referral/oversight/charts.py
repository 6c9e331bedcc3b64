"""Server-rendered SVG bar charts: accessible, no JavaScript, a few hundred bytes each."""
from __future__ import annotations

from markupsafe import Markup, escape

WIDTH, BAR, GAP, LABEL = 560, 18, 6, 180


def bar_chart(title: str, rows: list[tuple[str, float]], *, unit: str = "") -> Markup:
    if not rows:
        return Markup('<p class="empty">{}: no data yet.</p>').format(title)
    top = max(value for _, value in rows) or 1
    height = len(rows) * (BAR + GAP) + GAP
    parts = [f'<svg class="chart" role="img" aria-label="{escape(title)}" width="{WIDTH}" height="{height}" '
             f'viewBox="0 0 {WIDTH} {height}" xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>']
    for i, (label, value) in enumerate(rows):
        y = GAP + i * (BAR + GAP)
        length = int((WIDTH - LABEL - 70) * value / top)
        shown = f"{value:g}{unit}"
        parts.append(f'<text x="0" y="{y + BAR - 4}" font-size="12">{escape(label)}</text>'
                     f'<rect x="{LABEL}" y="{y}" width="{max(length, 1)}" height="{BAR}" fill="#23395d"/>'
                     f'<text x="{LABEL + length + 6}" y="{y + BAR - 4}" font-size="12">{escape(shown)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
