"""The server-rendered price chart: a step line through every price, up to now."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from api.chart import PAD_LEFT, PAD_RIGHT, WIDTH, price_chart_svg

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def polyline(svg: str) -> list[tuple[float, float]]:
    found = re.search(r'<polyline[^>]* points="([^"]+)"', svg)
    assert found, svg
    return [(float(x), float(y)) for x, y in (p.split(",") for p in found.group(1).split())]


def test_steps_through_every_price_and_holds_the_last_until_now() -> None:
    points = [(T0, Decimal("100")), (T0 + timedelta(days=1), Decimal("80"))]
    svg = price_chart_svg(points, title="Kettle <b>", now=T0 + timedelta(days=2), currency="EUR")
    line = polyline(svg)
    assert line[0][0] == PAD_LEFT and line[-1][0] == WIDTH - PAD_RIGHT
    assert len(line) == 4  # start, hold until the change, the drop, hold until now
    assert line[1][1] == line[0][1] and line[2][0] == line[1][0]  # a step, not a slope
    assert line[2][1] > line[0][1]  # lower price, lower on the chart (larger y)
    assert svg.count("<circle") == 2 and "100 EUR" in svg
    assert "Kettle &lt;b&gt;" in svg and "<b>" not in svg  # the title is escaped
    assert 'role="img"' in svg


def test_one_price_moments_ago_still_spans_the_chart() -> None:
    svg = price_chart_svg([(T0, Decimal("0"))], title="x", now=T0, currency=None)
    line = polyline(svg)
    assert line[-1][0] == WIDTH - PAD_RIGHT
    assert all(0 <= y <= 200 for _, y in line)


def test_no_prices_says_so() -> None:
    svg = price_chart_svg([], title="x", now=T0, currency="EUR")
    assert "No prices recorded yet." in svg and "<polyline" not in svg
