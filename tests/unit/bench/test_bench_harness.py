"""The pipeline benchmarks' pure parts, so the harness does not rot between runs of
``make bench`` (the benchmarks themselves run on demand, never in the test suite)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from bench import e2e, stages, time_to_alert
from bench.__main__ import BENCHMARKS, build_parser
from bench.pipeline import (
    bench_subscription,
    lag_verdict,
    latency_summary,
    outbox_times,
    percentile,
    rate_between,
    subscription_json,
)
from bench.report import BenchResult, Figure, Row, format_extra_table, format_table
from pricewatch.contract.records import Notification, PriceObservation, Subscription


def test_percentile_is_a_measured_value_by_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0  # unsorted input


def test_latency_summary_in_milliseconds_with_counts() -> None:
    summary = latency_summary([0.010, 0.020, 0.030, 1.0], expected=5)
    assert summary["count"] == 4
    assert summary["expected"] == 5
    assert summary["p50_ms"] == pytest.approx(20.0)
    assert summary["max_ms"] == pytest.approx(1000.0)
    assert latency_summary([])["p99_ms"] is None


def test_lag_verdict_holds_a_load_kept_up_with() -> None:
    # 1000/s offered; the consumer trails by ~200 messages throughout.
    samples = [(t / 2, 500.0 * t, max(0.0, 500.0 * t - 200)) for t in range(21)]
    verdict = lag_verdict(samples, 1000.0)
    assert verdict.held
    assert verdict.final_lag == 200
    assert abs(verdict.lag_slope_per_second) < 1


def test_lag_verdict_rejects_a_growing_lag_even_if_small_at_the_end() -> None:
    # The consumer does 900/s of 1000/s offered: the lag grows 100/s.
    samples = [(float(t), 1000.0 * t, 900.0 * t) for t in range(11)]
    verdict = lag_verdict(samples, 1000.0)
    assert verdict.final_lag == 1000
    assert verdict.lag_slope_per_second == pytest.approx(100.0)
    assert not verdict.held  # 100/s > 5 % of 1000/s


def test_lag_verdict_rejects_a_large_final_lag() -> None:
    samples = [(0.0, 0.0, 0.0), (10.0, 10_000.0, 5_000.0)]
    assert not lag_verdict(samples, 1000.0).held
    assert not lag_verdict([], 1000.0).held


def test_rate_between_excludes_start_up_and_interpolates_the_end() -> None:
    # Idle until t=2, then 100/s; reaches 300 between t=4 and t=5.
    samples = [(0.0, 0.0), (1.0, 0.0), (2.0, 50.0), (3.0, 150.0), (4.0, 250.0), (5.0, 350.0)]
    rate, seconds = rate_between(samples, 300)
    assert seconds == pytest.approx(2.5)  # from t=2 (count 50) to t=4.5
    assert rate == pytest.approx(100.0)
    assert rate_between([(0.0, 0.0), (1.0, 0.0)], 10) == (0.0, 0.0)


def test_load_plan_alternates_drops_and_increases_per_product() -> None:
    products = e2e.make_products(10, partitions=4)
    plan = e2e.LoadPlan(products, change_fraction=1.0)  # every observation changes
    first = [plan.next() for _ in range(10)]
    second = [plan.next() for _ in range(10)]
    assert all(drop for _, _, drop in first)
    assert not any(drop for _, _, drop in second)
    for (product, low, _), (_, back, _) in zip(first, second, strict=True):
        assert low == product.base - Decimal("0.01")
        assert back == product.base


def test_load_plan_is_seeded_and_warm_up_changes_nothing() -> None:
    def drops(seed: int) -> list[bool]:
        plan = e2e.LoadPlan(e2e.make_products(100, 4), change_fraction=0.1, seed=seed)
        return [plan.next()[2] for _ in range(5000)]

    assert drops(3) == drops(3)
    assert 100 < sum(drops(3)) < 400  # ~5 % of 5000 (half the changes are drops)
    plan = e2e.LoadPlan(e2e.make_products(5, 4), change_fraction=1.0)
    assert not any(plan.next(warm_up=True)[2] for _ in range(20))


def test_generated_observations_are_valid_wire_records() -> None:
    product = e2e.make_products(3, 4)[2]
    at = datetime(2026, 11, 25, 12, 0, 0, 123456, tzinfo=UTC).timestamp()
    observation = PriceObservation.model_validate_json(
        e2e.observation_json(product, Decimal("99.99"), at)
    )
    assert observation.product_id == product.product_id
    assert observation.price == Decimal("99.99")
    assert observation.observed_at.timestamp() == pytest.approx(at)


def test_bench_subscriptions_are_sent_verified_and_still_parse() -> None:
    subscription = bench_subscription("https://shop.bench.example/p/1", 1)
    raw = subscription_json(subscription)
    assert json.loads(raw)["verified"] is True
    parsed = Subscription.model_validate_json(raw)
    assert parsed.subscription_id == subscription.subscription_id
    assert parsed.notify_any_drop and parsed.active


def test_stage_inputs_are_valid_wire_records() -> None:
    notifications = stages._notification_records(3)
    keys = {Notification.model_validate_json(v).idempotency_key for _, v, _ in notifications}
    assert len(keys) == 3
    records = stages._observation_records(20, 40, partitions=4)
    assert len(records) == 40
    assert all(partition is not None and 0 <= partition < 4 for _, _, partition in records)


def test_time_to_alert_reads_the_subscriber_from_the_email(tmp_path: Path) -> None:
    (tmp_path / "a.eml").write_bytes(b"To: user-17@bench.example\r\nSubject: x\r\n\r\nbody\r\n")
    (tmp_path / "b.eml").write_bytes(b"To: someone@else.example\r\n\r\nbody\r\n")
    assert time_to_alert.subscriber_of(tmp_path / "a.eml") == 17
    assert time_to_alert.subscriber_of(tmp_path / "b.eml") is None
    assert time_to_alert.first_email_after(tmp_path, {17: 0.0}) == {
        17: (tmp_path / "a.eml").stat().st_mtime
    }
    assert time_to_alert.first_email_after(tmp_path, {17: 4e9}) == {}  # email before change
    assert set(outbox_times(tmp_path)) == {"a", "b"}


def test_changed_products_are_spread_over_the_catalogue() -> None:
    chosen = time_to_alert.changed_products(1000, 10)
    assert len(chosen) == 10
    assert chosen == sorted(set(chosen))
    assert chosen[0] >= 0 and chosen[-1] < 1000 and chosen[-1] - chosen[0] >= 800


def test_a_smaller_is_better_row_reports_how_many_times_better() -> None:
    row = Row(
        case="time to alert",
        candidate=Figure([2.0], unit="s", higher_is_better=False),
        baseline=Figure([10.0], unit="s", higher_is_better=False),
        aim=5.0,
    )
    assert row.ratio == pytest.approx(5.0)
    assert row.meets_aim is True
    assert "<= 5 ok" in format_table([_result(row)])


def test_extra_tables_are_aligned() -> None:
    text = format_extra_table({"title": "T", "columns": ["a", "bbb"], "rows": [["xx", "y"]]})
    assert text.splitlines() == ["T", "a   bbb", "--  ---", "xx  y"]


def test_the_command_line_knows_every_benchmark_and_its_loads() -> None:
    assert {"e2e", "stages", "time_to_alert", "scale"} <= set(BENCHMARKS)
    args = build_parser().parse_args(["e2e", "--quick", "--loads", "100", "2000"])
    assert args.loads == [100.0, 2000.0]
    assert args.quick
    assert build_parser().parse_args(["e2e", "--loads", "1000,2000"]).loads == [1000.0, 2000.0]


def _result(row: Row) -> BenchResult:
    return BenchResult("x", "", "c", "b", {}, rows=[row])
