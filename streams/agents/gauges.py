"""A timer that reports what only a running worker knows: how many keys its tables hold for
the partitions it owns, and how far its consumer is behind each partition.

Faust's own Prometheus sensor (``faust.sensors.prometheus``) was considered and not used:
it replaces the app's monitor with one that updates several labelled metrics per message on
the hot path (the worker's ceiling is Faust's per-message cost, see README "Benchmarks"),
and it names its metrics after the app id, which differs per deployment and per test. The
default monitor already records each partition's high-water mark (from fetch responses)
and committed offset; this timer reads them every few seconds instead.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Gauge

from pricewatch.metrics import report_lag
from streams.topology import Topology

REPORT_INTERVAL_SECONDS = 10.0

table_keys = Gauge(
    "pricewatch_stream_table_keys",
    "Keys in a table for the partitions this worker owns (standbys not counted).",
    ["table"],
)


def partition_lags(app: Any) -> dict[tuple[str, int], int]:
    """(topic, partition) -> high-water mark minus committed offset, for the partitions this
    worker consumes and has committed on (changelogs it only recovers from have no commit)."""
    monitor = app.monitor
    consumer = app.consumer
    assigned = consumer.assignment()
    lags: dict[tuple[str, int], int] = {}
    for tp, committed in monitor.tp_committed_offsets.items():
        if tp not in assigned:
            continue
        seen = monitor.tp_end_offsets.get(tp)
        current = consumer.highwater(tp)
        highwaters = [h for h in (seen, current) if h is not None]
        if highwaters:
            lags[(tp.topic, tp.partition)] = max(highwaters) - committed
    return lags


def register(topology: Topology) -> Any:
    app = topology.app
    tables = {
        "product_state": topology.product_state_table,
        "product_subscriptions": topology.product_subscriptions_table,
    }
    for name in tables:
        table_keys.labels(table=name).set(0)

    @app.timer(interval=REPORT_INTERVAL_SECONDS, name="gauges")
    async def report_gauges() -> None:
        for name, table in tables.items():
            # Counting walks the local store's keys: exact, and cheap enough every few
            # seconds, unlike a count per write on the hot path.
            table_keys.labels(table=name).set(len(table))
        report_lag(app.conf.id, partition_lags(app))

    return report_gauges
