"""The consumer lag gauge shared by workers and sinks: one series per held partition, none
left behind for partitions given away in a rebalance."""

from __future__ import annotations

from prometheus_client import REGISTRY

from pricewatch.metrics import report_lag


def lag(group: str, topic: str, partition: int) -> float | None:
    return REGISTRY.get_sample_value(
        "pricewatch_consumer_lag",
        {"group": group, "topic": topic, "partition": str(partition)},
    )


def test_lag_series_follow_the_partitions_held() -> None:
    report_lag("g-unit", {("obs", 0): 5, ("obs", 1): 0, ("obs", 2): -1})
    assert (lag("g-unit", "obs", 0), lag("g-unit", "obs", 1)) == (5.0, 0.0)
    assert lag("g-unit", "obs", 2) == 0.0  # a commit ahead of a stale high-water: not negative

    report_lag("g-unit", {("obs", 1): 7})  # partitions 0 and 2 went to another process
    assert lag("g-unit", "obs", 0) is None and lag("g-unit", "obs", 2) is None
    assert lag("g-unit", "obs", 1) == 7.0

    report_lag("g-other", {("obs", 0): 3})  # another group in the same process is separate
    assert lag("g-unit", "obs", 1) == 7.0 and lag("g-other", "obs", 0) == 3.0
    report_lag("g-unit", {})
    assert lag("g-unit", "obs", 1) is None and lag("g-other", "obs", 0) == 3.0
