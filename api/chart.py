"""A product's price history as an inline SVG step chart, rendered on the server (no script).

Pure: points in, SVG text out. Prices hold until the next change, so the line steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from html import escape

WIDTH, HEIGHT = 600, 200
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 64, 12, 12, 28


def price_chart_svg(
    points: Sequence[tuple[datetime, Decimal]], *, title: str, now: datetime, currency: str | None
) -> str:
    """An accessible SVG (role=img with a title) of ``points`` up to ``now``; a note if empty."""
    label = escape(title)
    if not points:
        return (
            f'<svg class="chart" viewBox="0 0 {WIDTH} 40" role="img" aria-label="{label}">'
            f"<title>{label}</title>"
            '<text x="8" y="24">No prices recorded yet.</text></svg>'
        )
    points = sorted(points)
    start = points[0][0]
    end = max(now, points[-1][0])
    span = max((end - start).total_seconds(), 1.0)
    low = min(p for _, p in points)
    high = max(p for _, p in points)
    if high == low:
        pad = abs(low) * Decimal("0.1") or Decimal(1)
        low, high = low - pad, high + pad
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM

    def x(at: datetime) -> float:
        return PAD_LEFT + plot_w * (at - start).total_seconds() / span

    def y(price: Decimal) -> float:
        return PAD_TOP + plot_h * float((high - price) / (high - low))

    coords: list[str] = []
    for i, (at, price) in enumerate(points):
        if i:
            coords.append(f"{x(at):.1f},{y(points[i - 1][1]):.1f}")  # hold, then step
        coords.append(f"{x(at):.1f},{y(price):.1f}")
    # The last price holds until now: to the right edge (which is ``end``).
    coords.append(f"{WIDTH - PAD_RIGHT:.1f},{y(points[-1][1]):.1f}")
    unit = f" {escape(currency)}" if currency else ""
    dots = "".join(
        f'<circle cx="{x(at):.1f}" cy="{y(price):.1f}" r="3"><title>{price:f}{unit}, '
        f"{at:%Y-%m-%d %H:%M} UTC</title></circle>"
        for at, price in points
    )
    return (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{label}" '
        'preserveAspectRatio="xMidYMid meet">'
        f"<title>{label}</title>"
        f'<line class="axis" x1="{PAD_LEFT}" y1="{HEIGHT - PAD_BOTTOM}" x2="{WIDTH - PAD_RIGHT}" '
        f'y2="{HEIGHT - PAD_BOTTOM}"/>'
        f'<text class="tick" x="{PAD_LEFT - 6}" y="{y(high) + 4:.1f}" text-anchor="end">'
        f"{high:.2f}</text>"
        f'<text class="tick" x="{PAD_LEFT - 6}" y="{y(low) + 4:.1f}" text-anchor="end">'
        f"{low:.2f}</text>"
        f'<text class="tick" x="{PAD_LEFT}" y="{HEIGHT - 8}">{start:%Y-%m-%d}</text>'
        f'<text class="tick" x="{WIDTH - PAD_RIGHT}" y="{HEIGHT - 8}" text-anchor="end">'
        f"{end:%Y-%m-%d}</text>"
        f'<polyline class="line" fill="none" points="{" ".join(coords)}"/>'
        f"{dots}</svg>"
    )
