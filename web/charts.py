"""Server-rendered bar charts: geometry computed here, drawn by the ``_chart.html``
partial as inline SVG with classes (no inline style: the CSP forbids it) and a table
beside it as the text alternative."""

from __future__ import annotations

from typing import Any

__all__ = ["bar_chart"]

WIDTH = 320
BAR = 22
GAP = 10
LABEL = 110
PAD = 4


def bar_chart(rows: list[tuple[str, int]], *, css: str = "") -> dict[str, Any]:
    """Bars for ``rows`` of (label, count): x, y, width of each bar, its share of the
    total in percent, and the viewBox size. Widths are relative to the largest count."""
    total = sum(max(0, count) for _, count in rows)
    peak = max((count for _, count in rows), default=0)
    span = WIDTH - LABEL - 48
    bars = []
    for i, (label, raw) in enumerate(rows):
        count = max(0, raw)
        width = round(span * count / peak) if peak else 0
        y = PAD + i * (BAR + GAP)
        bars.append(
            {
                "label": label,
                "count": count,
                "percent": round(100 * count / total) if total else 0,
                "x": LABEL,
                "y": y,
                "width": width,
                "height": BAR,
                "text_y": y + BAR * 0.7,
                "value_x": LABEL + width + 6,
                "css": f"bar-{css}{i}" if css else f"bar-{i}",
            }
        )
    height = PAD * 2 + len(rows) * (BAR + GAP) - (GAP if rows else 0)
    return {"bars": bars, "total": total, "width": WIDTH, "height": max(height, BAR)}
