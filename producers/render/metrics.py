"""The render tier's Prometheus metrics (served by the scraper process that renders)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RENDERS = Counter(
    "pricewatch_scraper_renders_total",
    "Pages rendered in the browser, by outcome: ok (the page's HTML after its scripts ran), "
    "timeout, failed (the browser or the page's document request failed), not_rendered "
    "(the document answered something other than a page, e.g. a 404: read as it came).",
    ["outcome"],
)
RENDER_SECONDS = Histogram(
    "pricewatch_scraper_render_seconds",
    "Time of one render, from getting a browser slot to having the page's HTML.",
    buckets=(0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0, 60.0),
)
RENDERS_IN_FLIGHT = Gauge(
    "pricewatch_scraper_renders_in_flight",
    "Renders holding a browser slot now (at most render_concurrency per scraper process).",
)
RENDER_REQUESTS_BLOCKED = Counter(
    "pricewatch_scraper_render_requests_blocked_total",
    "Requests of a rendering browser that were not made, by reason: url_guard (loopback, "
    "private or metadata address, a bad URL), resource_type (images, fonts, style sheets, "
    "media: never needed for a price), limit (over the per-render request budget), "
    "websocket.",
    ["reason"],
)

for _outcome in ("ok", "timeout", "failed", "not_rendered"):
    RENDERS.labels(_outcome)
for _reason in ("url_guard", "resource_type", "limit", "websocket"):
    RENDER_REQUESTS_BLOCKED.labels(_reason)
