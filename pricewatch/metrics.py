"""Prometheus exposition for every process: one HTTP endpoint per process on its own port,
and the metrics that more than one kind of process reports."""

from __future__ import annotations

import logging

from prometheus_client import Gauge, start_http_server

log = logging.getLogger(__name__)

# Stream workers and sinks report their own partitions' lag under one name, so one panel
# shows every consumer group. Computed from the high-water mark that fetch responses carry
# (right on the embedded broker too, whose ListOffsets answers are not) minus the offset
# the group committed (workers) or will commit after this batch (sinks).
CONSUMER_LAG = Gauge(
    "pricewatch_consumer_lag",
    "Messages in a partition not yet processed and committed by this process's group.",
    ["group", "topic", "partition"],
)


def report_lag(group: str, lags: dict[tuple[str, int], int]) -> None:
    """Set this process's lag gauges to ``lags`` ((topic, partition) -> messages) and drop
    the partitions it no longer holds, so a rebalance leaves no stale series behind."""
    held = {(group, topic, str(partition)) for topic, partition in lags}
    for labels in list(_reported.get(group, set()) - held):
        CONSUMER_LAG.remove(*labels)
    for (topic, partition), lag in lags.items():
        CONSUMER_LAG.labels(group, topic, str(partition)).set(max(0, lag))
    _reported[group] = held


_reported: dict[str, set[tuple[str, str, str]]] = {}


def serve_metrics(port: int | None, host: str = "127.0.0.1") -> None:
    """Expose /metrics on ``port`` (None or 0: no endpoint, e.g. in-process tests)."""
    if port:
        start_http_server(port, addr=host)
        log.info("metrics on http://%s:%d/metrics", host, port)
