"""Prometheus metrics of the stream workers."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

observations_processed = Counter(
    "pricewatch_stream_observations_total",
    "Price observations processed by the detector, by outcome.",
    ["outcome"],
)
state_writes = Counter(
    "pricewatch_stream_state_writes_total",
    "Product state table writes (observations that changed a product's state).",
)
events_emitted = Counter(
    "pricewatch_stream_events_total", "Price events emitted, by type.", ["event_type"]
)
notifications_emitted = Counter(
    "pricewatch_stream_notifications_total", "Notifications emitted, by kind.", ["kind"]
)
detection_latency = Histogram(
    "pricewatch_stream_detection_latency_seconds",
    "From an observation's observed_at to the publication of its events.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
scrape_requests_published = Counter(
    "pricewatch_scheduler_scrape_requests_total", "Scrape requests published by the scheduler."
)
check_result_timeouts = Counter(
    "pricewatch_scheduler_check_result_timeouts_total",
    "Scrape requests made again because the last one's observation did not come back within "
    "the result timeout (scrapers far behind, a paused website, a lost request).",
)
checks_awaiting_result = Gauge(
    "pricewatch_scheduler_checks_awaiting_result",
    "Products requested whose observation has not come back yet (the scrapers' queue).",
)
tracked_products = Gauge(
    "pricewatch_scheduler_tracked_products",
    "Products with at least one active subscription on this worker's partitions.",
)
stale_changelog_records = Counter(
    "pricewatch_stream_stale_changelog_records_total",
    "Changelog records not applied during table recovery because the local store already "
    "held a newer value of their key.",
    ["table"],
)
batch_size = Histogram(
    "pricewatch_stream_batch_size",
    "Events per batch an agent processed.",
    ["agent"],
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000),
)
batch_seconds = Histogram(
    "pricewatch_stream_batch_seconds",
    "Time an agent spent on one batch, by phase: 'process' (parse, detect or match, hand "
    "records to the producer), 'deliver' (until the broker acknowledged them), 'store' "
    "(table writes).",
    ["agent", "phase"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
