"""The scraper's Prometheus metrics, in one place (Grafana dashboards use these names).

``website`` is the URL's host name. Nothing is pre-created per website: the label sets
appear as the hosts are fetched.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from pricewatch.contract.records import Outcome
from pricewatch.deadletters import DEAD_LETTERS

FETCHES = Counter(
    "pricewatch_scraper_fetches_total",
    "Page fetches by website (URL host) and outcome (ok, gone, error).",
    ["website", "outcome"],
)
FETCH_SECONDS = Histogram(
    "pricewatch_scraper_fetch_seconds",
    "Time spent in HTTP requests for one page fetch: redirects and retries included, "
    "politeness waits (rate limit, backoff) excluded.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0),
)
RESPONSE_BYTES = Counter(
    "pricewatch_scraper_response_bytes_total", "Response body bytes read (decompressed)."
)
RETRIES = Counter(
    "pricewatch_scraper_retries_total",
    "Requests retried after a transient failure, by reason (timeout, connection_error, "
    "http_429, http_5xx status).",
    ["reason"],
)
ROBOTS_REFUSALS = Counter(
    "pricewatch_scraper_robots_refusals_total",
    "Fetches not made because the host's robots.txt disallows the URL for our User-Agent.",
)
BLOCKED = Counter(
    "pricewatch_scraper_blocked_total",
    "Fetches that ended because the site refused us, by website and reason: a bot check "
    "(cloudflare, captcha, bot_check, consent: error 'blocked'), or a plain 401, 403 or 429 "
    "after the last attempt (http_401, http_403, http_429), or a Retry-After beyond "
    "retry_after_max_seconds (rate_limited).",
    ["website", "reason"],
)
NOT_MODIFIED = Counter(
    "pricewatch_scraper_not_modified_total",
    "Conditional GETs answered 304 Not Modified (the remembered extraction was published).",
)
QUEUE_DEPTH = Gauge(
    "pricewatch_scraper_queue_depth",
    "Scrape requests received from Kafka and not yet finished (fetched and acknowledged).",
)
EXTRACTIONS = Counter(
    "pricewatch_scraper_extractions_total",
    "Pages run through the extraction chain, by the extractor that found the price "
    "('none': no price found).",
    ["extractor"],
)
OBSERVATIONS_PUBLISHED = Counter(
    "pricewatch_scraper_observations_published_total",
    "Price observations acknowledged by Kafka.",
)

# Label sets known up front show zeros instead of gaps (websites are not known up front).
DEAD_LETTERS.labels("scraper", "invalid_record")

BLOCKED_ERRORS = frozenset({"http_401", "http_403", "http_429", "rate_limited"})


def record_fetch(
    website: str,
    outcome: Outcome,
    error: str | None,
    http_seconds: float,
    response_bytes: int,
    blocked_by: str | None = None,
) -> None:
    FETCHES.labels(website=website, outcome=outcome.value).inc()
    if http_seconds > 0:  # a refused URL or robots.txt verdict made no request
        FETCH_SECONDS.observe(http_seconds)
    RESPONSE_BYTES.inc(response_bytes)
    if outcome is not Outcome.ERROR:
        return
    if blocked_by is not None:  # error "blocked": a bot check, captcha or consent wall
        BLOCKED.labels(website=website, reason=blocked_by).inc()
    elif error in BLOCKED_ERRORS:
        BLOCKED.labels(website=website, reason=error).inc()


PAUSED_SKIPS = Counter(
    "pricewatch_scraper_paused_skips_total",
    "Scrape requests not fetched because an admin paused their website.",
)
