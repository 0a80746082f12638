"""The Admin dashboard: is the pipeline healthy (Prometheus), and what is it doing for
people (PostgreSQL)."""

from __future__ import annotations

from grafana.model import Dashboard, Panel, PromQuery, Row, SqlQuery, stacked_bars

RATE = "$__rate_interval"


def _rate(metric: str, by: str) -> str:
    return f"sum by ({by}) (rate({metric}[{RATE}]))"


def _quantiles(histogram: str, by: str = "") -> tuple[PromQuery, ...]:
    group = f"le, {by}" if by else "le"
    suffix = f" {{{{{by}}}}}" if by else ""
    return tuple(
        PromQuery(
            f"histogram_quantile({q}, sum by ({group}) (rate({histogram}_bucket[{RATE}])))",
            f"p{round(q * 100)}{suffix}",
        )
        for q in (0.5, 0.95, 0.99)
    )


THROUGHPUT = Row(
    "Throughput per stage",
    (
        Panel(
            "Scheduler: scrape requests / s",
            "timeseries",
            (
                PromQuery(
                    f"sum(rate(pricewatch_scheduler_scrape_requests_total[{RATE}]))", "requests"
                ),
                PromQuery(
                    f"sum(rate(pricewatch_scheduler_check_result_timeouts_total[{RATE}]))",
                    "requests made again (no result in time)",
                ),
                PromQuery("sum(pricewatch_scheduler_tracked_products)", "tracked products"),
                # The scrapers' queue: a product is not asked for again while it waits.
                PromQuery("sum(pricewatch_scheduler_checks_awaiting_result)", "awaiting result"),
            ),
            width=8,
            unit="short",
            overrides=tuple(
                {
                    "matcher": {"id": "byName", "options": name},
                    "properties": [{"id": "custom.axisPlacement", "value": "right"}],
                }
                for name in ("tracked products", "awaiting result")
            ),
        ),
        Panel(
            "Scrapers: fetches / s by outcome",
            "timeseries",
            (PromQuery(_rate("pricewatch_scraper_fetches_total", "outcome"), "{{outcome}}"),),
            width=8,
            unit="reqps",
            custom=stacked_bars(),
        ),
        Panel(
            "Scrapers: fetches / s by website",
            "timeseries",
            (PromQuery(_rate("pricewatch_scraper_fetches_total", "website"), "{{website}}"),),
            width=8,
            unit="reqps",
        ),
        Panel(
            "Detector: observations / s by outcome",
            "timeseries",
            (PromQuery(_rate("pricewatch_stream_observations_total", "outcome"), "{{outcome}}"),),
            width=8,
            unit="short",
        ),
        Panel(
            "Detector: events / s by type",
            "timeseries",
            (PromQuery(_rate("pricewatch_stream_events_total", "event_type"), "{{event_type}}"),),
            width=8,
            unit="short",
        ),
        Panel(
            "Matcher: notifications / s by rule",
            "timeseries",
            (PromQuery(_rate("pricewatch_stream_notifications_total", "kind"), "{{kind}}"),),
            width=8,
            unit="short",
        ),
        Panel(
            "Sinks: records written / s",
            "timeseries",
            (PromQuery(_rate("pricewatch_sink_records_written_total", "sink"), "{{sink}}"),),
            width=8,
            unit="short",
        ),
        Panel(
            "Archive: S3 objects and bytes / s",
            "timeseries",
            (
                PromQuery(f"sum(rate(pricewatch_archive_objects_total[{RATE}]))", "objects"),
                PromQuery(f"sum(rate(pricewatch_archive_bytes_total[{RATE}]))", "bytes"),
            ),
            width=8,
            unit="short",
            overrides=(
                {
                    "matcher": {"id": "byName", "options": "bytes"},
                    "properties": [
                        {"id": "unit", "value": "Bps"},
                        {"id": "custom.axisPlacement", "value": "right"},
                    ],
                },
            ),
        ),
        Panel(
            "Emails sent and failed / s by backend",
            "timeseries",
            (
                PromQuery(_rate("pricewatch_emails_sent_total", "backend"), "sent {{backend}}"),
                PromQuery(
                    _rate("pricewatch_emails_failed_total", "backend, reason"),
                    "failed {{backend}}: {{reason}}",
                ),
            ),
            width=8,
            unit="short",
        ),
        Panel(
            "Channel deliveries / s by channel kind and outcome",
            "timeseries",
            (
                PromQuery(
                    _rate("pricewatch_channel_deliveries_total", "kind, outcome"),
                    "{{kind}} {{outcome}}",
                ),
            ),
            width=12,
            unit="short",
        ),
        Panel(
            "Channel failures / s by kind and reason; channels paused",
            "timeseries",
            (
                PromQuery(
                    _rate("pricewatch_channel_failures_total", "kind, reason"),
                    "{{kind}}: {{reason}}",
                ),
                PromQuery(
                    f"sum by (kind) (increase(pricewatch_channels_paused_total[{RATE}]))",
                    "paused {{kind}}",
                ),
            ),
            width=12,
            unit="short",
        ),
    ),
)

LAG_AND_STATE = Row(
    "Consumer lag and state",
    (
        Panel(
            "Consumer lag by group and partition",
            "timeseries",
            (
                PromQuery(
                    "sum by (group, topic, partition) (pricewatch_consumer_lag)",
                    "{{group}} {{topic}}[{{partition}}]",
                ),
            ),
            width=12,
            unit="short",
            description="High-water mark minus committed offset, reported by each worker "
            "and sink for the partitions it holds.",
        ),
        Panel(
            "Consumer lag by group",
            "stat",
            (PromQuery("sum by (group) (pricewatch_consumer_lag)", "{{group}}"),),
            width=6,
            unit="short",
            options={"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "background"},
            thresholds=(
                {"color": "green", "value": None},
                {"color": "orange", "value": 1000},
                {"color": "red", "value": 10000},
            ),
        ),
        Panel(
            "Table keys (all workers)",
            "timeseries",
            (PromQuery("sum by (table) (pricewatch_stream_table_keys)", "{{table}}"),),
            width=6,
            unit="short",
        ),
        Panel(
            "Scraper queue depth",
            "timeseries",
            (PromQuery("sum(pricewatch_scraper_queue_depth)", "queued"),),
            width=8,
            unit="short",
        ),
        Panel(
            "Product state writes / s",
            "timeseries",
            (PromQuery(f"sum(rate(pricewatch_stream_state_writes_total[{RATE}]))", "writes"),),
            width=8,
            unit="short",
        ),
        Panel(
            "Scrapers: observations published / s",
            "timeseries",
            (
                PromQuery(
                    f"sum(rate(pricewatch_scraper_observations_published_total[{RATE}]))",
                    "published",
                ),
            ),
            width=8,
            unit="short",
        ),
    ),
)

ERRORS = Row(
    "Errors and dead letters",
    (
        Panel(
            "Dead letters / s by stage and reason",
            "timeseries",
            (
                PromQuery(
                    _rate("pricewatch_dead_letters_total", "stage, reason"),
                    "{{stage}}: {{reason}}",
                ),
            ),
            width=12,
            unit="short",
            custom=stacked_bars(),
        ),
        Panel(
            "Sink write failures and outage time",
            "timeseries",
            (
                PromQuery(
                    _rate("pricewatch_sink_write_failures_total", "sink"), "failures {{sink}}"
                ),
                PromQuery(_rate("pricewatch_sink_outage_seconds_total", "sink"), "outage {{sink}}"),
            ),
            width=12,
            unit="short",
            description="Outage: seconds per second a sink spent backing off before retrying "
            "a batch (1 = down the whole time).",
        ),
        Panel(
            "Scrapers: retries, robots refusals, blocked, not modified / s",
            "timeseries",
            (
                PromQuery(_rate("pricewatch_scraper_retries_total", "reason"), "retry {{reason}}"),
                PromQuery(
                    f"sum(rate(pricewatch_scraper_robots_refusals_total[{RATE}]))",
                    "robots.txt refusals",
                ),
                PromQuery(f"sum(rate(pricewatch_scraper_blocked_total[{RATE}]))", "blocked"),
                PromQuery(
                    f"sum(rate(pricewatch_scraper_not_modified_total[{RATE}]))", "not modified"
                ),
            ),
            width=12,
            unit="short",
        ),
        Panel(
            "Scrapers: blocked / s by website and reason",
            "timeseries",
            (
                PromQuery(
                    _rate("pricewatch_scraper_blocked_total", "website, reason"),
                    "{{website}}: {{reason}}",
                ),
            ),
            width=12,
            unit="short",
            custom=stacked_bars(),
            description="Fetches a website refused: a bot check, captcha or consent wall "
            "(cloudflare, captcha, bot_check, consent: an error 'blocked', never a sold-out "
            "or removed product), or a plain 401/403/429 or an over-long Retry-After.",
        ),
        Panel(
            "Render tier: renders / s by outcome, in flight, browser requests refused",
            "timeseries",
            (
                PromQuery(_rate("pricewatch_scraper_renders_total", "outcome"), "{{outcome}}"),
                PromQuery("sum(pricewatch_scraper_renders_in_flight)", "in flight"),
                PromQuery(
                    _rate("pricewatch_scraper_render_requests_blocked_total", "reason"),
                    "refused: {{reason}}",
                ),
                *_quantiles("pricewatch_scraper_render_seconds")[1:2],
            ),
            width=12,
            unit="short",
            description="Pages rendered in the browser (site adapters with render: true, "
            "the no-price fallback); requests of the browser refused by the URL guard or "
            "skipped (images, fonts, styles); p95 render time in seconds.",
        ),
        Panel(
            "Scrapers: pages extracted / s by extractor",
            "timeseries",
            (
                PromQuery(
                    _rate("pricewatch_scraper_extractions_total", "extractor"), "{{extractor}}"
                ),
            ),
            width=6,
            unit="short",
        ),
        Panel(
            "API requests / s by status",
            "timeseries",
            (PromQuery(_rate("pricewatch_api_requests_total", "status"), "{{status}}"),),
            width=6,
            unit="reqps",
        ),
    ),
)

LATENCY = Row(
    "Latency",
    (
        Panel(
            "Detection latency (observed -> event published)",
            "timeseries",
            _quantiles("pricewatch_stream_detection_latency_seconds"),
            width=8,
            unit="s",
        ),
        Panel(
            "Sink flush time p95 by sink",
            "timeseries",
            (
                PromQuery(
                    "histogram_quantile(0.95, sum by (le, sink) "
                    f"(rate(pricewatch_sink_flush_seconds_bucket[{RATE}])))",
                    "{{sink}}",
                ),
                PromQuery(
                    f"sum by (sink) (rate(pricewatch_sink_flush_seconds_sum[{RATE}])) / "
                    f"sum by (sink) (rate(pricewatch_sink_flush_seconds_count[{RATE}]))",
                    "mean {{sink}}",
                ),
            ),
            width=8,
            unit="s",
        ),
        Panel(
            "Sink batch size (mean)",
            "timeseries",
            (
                PromQuery(
                    f"sum by (sink) (rate(pricewatch_sink_batch_size_sum[{RATE}])) / "
                    f"sum by (sink) (rate(pricewatch_sink_batch_size_count[{RATE}]))",
                    "{{sink}}",
                ),
            ),
            width=8,
            unit="short",
        ),
        Panel(
            "Scraper fetch time",
            "timeseries",
            _quantiles("pricewatch_scraper_fetch_seconds"),
            width=12,
            unit="s",
        ),
        Panel(
            "Channel send time by channel kind",
            "timeseries",
            _quantiles("pricewatch_channel_delivery_seconds", "kind"),
            width=12,
            unit="s",
        ),
        Panel(
            "Scrapers: response bytes / s",
            "timeseries",
            (PromQuery(f"sum(rate(pricewatch_scraper_response_bytes_total[{RATE}]))", "bytes"),),
            width=12,
            unit="Bps",
        ),
    ),
)

# --- Business view (PostgreSQL) -------------------------------------------------------

# Days are UTC days: date_bin against a UTC origin does not depend on the session time zone.
UTC_DAY = "date_bin('1 day', {column}, TIMESTAMPTZ '2000-01-01 00:00:00+00')"
TODAY_UTC = "date_bin('1 day', now(), TIMESTAMPTZ '2000-01-01 00:00:00+00')"

USERS_STAT = Panel(
    "Users",
    "stat",
    (
        SqlQuery(
            """
SELECT count(*) AS "users",
       count(*) FILTER (WHERE verified_at IS NOT NULL) AS "verified users"
FROM users
"""
        ),
    ),
    width=6,
    height=5,
)

SUBSCRIPTIONS_STAT = Panel(
    "Subscriptions",
    "stat",
    (
        SqlQuery(
            """
SELECT count(*) FILTER (WHERE active) AS "active subscriptions",
       count(DISTINCT product_id) FILTER (WHERE active) AS "products watched"
FROM subscriptions
"""
        ),
    ),
    width=6,
    height=5,
)

ALERTS_TODAY_STAT = Panel(
    "Alerts today (UTC)",
    "stat",
    (
        SqlQuery(
            f"""
SELECT count(*) FILTER (WHERE status = 'sent') AS "sent",
       count(*) FILTER (WHERE status = 'failed') AS "failed",
       count(*) FILTER (WHERE status IN ('sending', 'retrying')) AS "pending"
FROM notifications
WHERE created_at >= {TODAY_UTC}
"""
        ),
    ),
    width=6,
    height=5,
)

FAILING_STAT = Panel(
    "Products failing to scrape",
    "stat",
    (
        SqlQuery(
            """
SELECT count(*) AS "failing products"
FROM products
WHERE status = 'gone' OR last_checked_at > coalesce(last_ok_at, '-infinity')
"""
        ),
    ),
    width=6,
    height=5,
    thresholds=({"color": "green", "value": None}, {"color": "red", "value": 1}),
)

PRODUCTS_PER_WEBSITE = Panel(
    "Products per website",
    "barchart",
    (
        SqlQuery(
            """
SELECT coalesce(w.name, 'no website record') AS "website",
       count(*) FILTER (WHERE p.status = 'active') AS "active",
       count(*) FILTER (WHERE p.status = 'gone') AS "gone",
       count(*) FILTER (WHERE p.status = 'error') AS "never read"
FROM products p
LEFT JOIN websites w ON w.id = p.website_id
GROUP BY 1
ORDER BY count(*) DESC, 1
"""
        ),
    ),
    width=12,
    options={"orientation": "horizontal", "stacking": "normal", "xField": "website"},
)

ALERTS_PER_DAY = Panel(
    "Alerts per day by status",
    "timeseries",
    (
        SqlQuery(
            f"""
SELECT {UTC_DAY.format(column="created_at")} AS "time",
       status AS "metric",
       count(*) AS "value"
FROM notifications
WHERE $__timeFilter(created_at)
GROUP BY 1, 2
ORDER BY 1, 2
""",
            format="time_series",
        ),
    ),
    width=12,
    unit="short",
    custom=stacked_bars(),
)

CHANNEL_MESSAGES_PER_DAY = Panel(
    "Channel messages per day by channel kind and status",
    "timeseries",
    (
        SqlQuery(
            f"""
SELECT {UTC_DAY.format(column="created_at")} AS "time",
       channel_kind || ' ' || status AS "metric",
       count(*) AS "value"
FROM channel_deliveries
WHERE $__timeFilter(created_at)
GROUP BY 1, 2
ORDER BY 1, 2
""",
            format="time_series",
        ),
    ),
    width=12,
    unit="short",
    custom=stacked_bars(),
)

CHANNELS_BY_KIND = Panel(
    "Channels by kind and state",
    "table",
    (
        SqlQuery(
            """
SELECT kind AS "kind",
       count(*) FILTER (WHERE status = 'active') AS "active",
       count(*) FILTER (WHERE status = 'pending') AS "waiting for confirmation",
       count(*) FILTER (WHERE status = 'paused' AND paused_reason = 'failures')
           AS "paused after failures",
       count(*) FILTER (WHERE status = 'paused' AND paused_reason = 'owner')
           AS "paused by owner"
FROM channels
GROUP BY kind
ORDER BY kind
""",
            format="table",
        ),
    ),
    width=12,
)

EVENTS_PER_DAY = Panel(
    "Price events per day by type",
    "timeseries",
    (
        SqlQuery(
            f"""
SELECT {UTC_DAY.format(column="observed_at")} AS "time",
       event_type AS "metric",
       count(*) AS "value"
FROM price_events
WHERE $__timeFilter(observed_at)
GROUP BY 1, 2
ORDER BY 1, 2
""",
            format="time_series",
        ),
    ),
    width=12,
    unit="short",
    custom=stacked_bars(),
)

NEW_USERS_PER_DAY = Panel(
    "New users and subscriptions per day",
    "timeseries",
    (
        SqlQuery(
            f"""
SELECT {UTC_DAY.format(column="created_at")} AS "time", count(*) AS "new users"
FROM users
WHERE $__timeFilter(created_at)
GROUP BY 1
ORDER BY 1
""",
            format="time_series",
        ),
        SqlQuery(
            f"""
SELECT {UTC_DAY.format(column="created_at")} AS "time", count(*) AS "new subscriptions"
FROM subscriptions
WHERE $__timeFilter(created_at)
GROUP BY 1
ORDER BY 1
""",
            format="time_series",
        ),
    ),
    width=12,
    unit="short",
    custom=stacked_bars(),
)

BIGGEST_DROPS_TODAY = Panel(
    "Biggest drops today (UTC)",
    "table",
    (
        SqlQuery(
            f"""
SELECT coalesce(p.title, p.url) AS "product",
       coalesce(w.name, 'no website record') AS "website",
       e.new_currency AS "currency",
       e.old_price AS "was",
       e.new_price AS "now",
       round(100 * (e.old_price - e.new_price) / e.old_price, 1) AS "drop %",
       e.observed_at AS "seen at"
FROM price_events e
JOIN products p ON p.product_id = e.product_id
LEFT JOIN websites w ON w.id = p.website_id
WHERE e.event_type = 'price_drop'
  AND e.observed_at >= {TODAY_UTC}
  AND e.old_price > 0
ORDER BY "drop %" DESC, e.observed_at DESC
LIMIT 20
"""
        ),
    ),
    width=12,
    height=10,
)

FAILING_PRODUCTS = Panel(
    "Products failing to scrape, and why",
    "table",
    (
        SqlQuery(
            """
SELECT coalesce(w.name, 'no website record') AS "website",
       p.url AS "url",
       CASE WHEN p.status = 'gone' THEN 'gone (404/410 or redirected away)'
            ELSE coalesce(p.last_error, 'unknown error') END AS "reason",
       p.last_checked_at AS "last checked",
       p.last_ok_at AS "last ok"
FROM products p
LEFT JOIN websites w ON w.id = p.website_id
WHERE p.status = 'gone' OR p.last_checked_at > coalesce(p.last_ok_at, '-infinity')
ORDER BY p.last_checked_at DESC
LIMIT 100
"""
        ),
    ),
    width=12,
    height=10,
)

FAILURE_REASONS = Panel(
    "Scrape failures by reason",
    "table",
    (
        SqlQuery(
            """
SELECT CASE WHEN status = 'gone' THEN 'gone (404/410 or redirected away)'
            ELSE coalesce(last_error, 'unknown error') END AS "reason",
       count(*) AS "products"
FROM products
WHERE status = 'gone' OR last_checked_at > coalesce(last_ok_at, '-infinity')
GROUP BY 1
ORDER BY 2 DESC, 1
"""
        ),
    ),
    width=12,
    height=10,
)

BLOCKED_WEBSITES = Panel(
    "Websites blocking the scrapers (bot checks, captchas, consent walls)",
    "table",
    (
        SqlQuery(
            """
SELECT coalesce(w.name, substring(p.url from '^[A-Za-z]+://([^/:?#]+)')) AS "website",
       count(*) AS "blocked products",
       max(p.last_checked_at) AS "last blocked",
       max(p.last_ok_at) AS "last read"
FROM products p
LEFT JOIN websites w ON w.id = p.website_id
WHERE p.last_error = 'blocked'
  AND p.last_checked_at > coalesce(p.last_ok_at, '-infinity')
GROUP BY 1
ORDER BY 2 DESC, 1
"""
        ),
    ),
    width=12,
    height=8,
    description="Products whose latest fetch met a bot check, captcha or consent wall "
    "(error 'blocked'): their price and stock are as last read, not sold out.",
)

BUSINESS = Row(
    "Business (PostgreSQL)",
    (
        USERS_STAT,
        SUBSCRIPTIONS_STAT,
        ALERTS_TODAY_STAT,
        FAILING_STAT,
        PRODUCTS_PER_WEBSITE,
        ALERTS_PER_DAY,
        CHANNEL_MESSAGES_PER_DAY,
        CHANNELS_BY_KIND,
        EVENTS_PER_DAY,
        NEW_USERS_PER_DAY,
        BIGGEST_DROPS_TODAY,
        FAILURE_REASONS,
        FAILING_PRODUCTS,
        BLOCKED_WEBSITES,
    ),
)

ADMIN = Dashboard(
    uid="pricewatch-admin",
    title="Pricewatch / Admin",
    description="Pipeline health from Prometheus; users, subscriptions, products and alerts "
    "from PostgreSQL.",
    rows=(BUSINESS, THROUGHPUT, LAG_AND_STATE, ERRORS, LATENCY),
    time_from="now-7d",
)
