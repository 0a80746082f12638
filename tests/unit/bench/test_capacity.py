"""The capacity benchmark's pure parts: the shop's change schedule and pages, matching
alerts to changes, the held decision, the ladder (the benchmark itself runs on demand)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from bench.__main__ import BENCHMARKS, ON_DEMAND, build_parser
from bench.capacity import (
    Alert,
    held,
    largest_held,
    match_alerts,
    parse_ladder,
    subscriber_number,
    summarize,
)
from bench.capacity_peer import read_api_key, watch_body
from bench.capacity_shop import (
    PageTemplate,
    change_schedule,
    original_price,
    product_number,
    product_url,
)
from producers.extractors.chain import extract


def test_the_schedule_drops_distinct_products_once_each_inside_the_window() -> None:
    changes = change_schedule(1000, start=100.0, window=120.0, fraction=0.1, seed=3)
    assert len(changes) == 100
    assert len({c.n for c in changes}) == 100  # once per product: one alert each
    assert all(100.0 <= c.at < 220.0 for c in changes)
    assert [c.at for c in changes] == sorted(c.at for c in changes)
    for c in changes:
        assert c.old == original_price(c.n)
        assert c.new < c.old  # a drop: notify_any_drop and price-change watches both alert
        assert c.new >= (c.old * Decimal("0.80")).quantize(Decimal("0.01")) - Decimal("0.01")


def test_the_schedule_keeps_a_floor_of_changes_and_never_exceeds_the_products() -> None:
    assert len(change_schedule(300, 0.0, 10.0, fraction=0.1, seed=1, min_changes=100)) == 100
    assert len(change_schedule(20, 0.0, 10.0, fraction=0.1, seed=1, min_changes=100)) == 20
    assert len(change_schedule(10_000, 0.0, 10.0, fraction=0.1, seed=1)) == 1000
    assert change_schedule(0, 0.0, 10.0, fraction=0.1, seed=1) == []


def test_the_schedule_is_seeded() -> None:
    a = change_schedule(500, 0.0, 60.0, 0.2, seed=9)
    assert a == change_schedule(500, 0.0, 60.0, 0.2, seed=9)
    assert a != change_schedule(500, 0.0, 60.0, 0.2, seed=10)


def test_a_page_is_about_100_kb_and_extracts_as_its_product() -> None:
    template = PageTemplate.build(variant=2)
    body = template.render(41, Decimal("123.45"))
    assert 95_000 <= len(body) <= 110_000
    facts = extract(body.decode(), product_url(8000, 41))
    assert facts.price == Decimal("123.45")
    assert facts.currency == "EUR"
    assert facts.availability == "in_stock"
    assert b"Bench product 41" in body
    assert b"@@" not in body  # every placeholder filled
    assert template.render(41, Decimal("99.00")) != body


def test_a_price_only_page_keeps_availability_out_of_its_structured_data() -> None:
    body = PageTemplate.build(variant=0, markup="price-only").render(5, Decimal("10.00"))
    assert b"schema.org/InStock" not in body
    facts = extract(body.decode(), product_url(8000, 5))
    assert facts.price == Decimal("10.00")
    with pytest.raises(ValueError):
        PageTemplate.build(variant=0, markup="nonsense")


def test_product_and_subscriber_numbers_are_read_back() -> None:
    assert product_number(product_url(8000, 1234)) == 1234
    assert product_number("changed: http://127.0.0.1:1/products/item-7 now") == 7
    assert product_number("no product here") is None
    assert subscriber_number("<user-42@bench.example>") == 42
    assert subscriber_number("someone@example.com") is None


def test_match_alerts_counts_first_alerts_duplicates_and_spurious() -> None:
    changes = [(1, 100.0), (2, 200.0), (3, 300.0)]
    alerts = [
        Alert(1, 130.0),
        Alert(1, 190.0),  # duplicate of product 1's alert
        Alert(2, 150.0),  # before product 2 changed: spurious
        Alert(2, 260.0),
        Alert(9, 50.0),  # a product that did not change: spurious
    ]
    outcome = match_alerts(changes, alerts)
    assert outcome.changes == 3
    assert outcome.alerted == 2
    assert outcome.missed == 1  # product 3
    assert outcome.duplicates == 1
    assert outcome.spurious == 2
    assert sorted(outcome.seconds) == [30.0, 60.0]
    assert not outcome.exact
    summary = outcome.summary()
    assert summary["time_to_alert"]["count"] == 2
    assert summary["time_to_alert"]["expected"] == 3


def test_held_needs_every_change_alerted_within_interval_plus_slack() -> None:
    changes = [(n, 0.0) for n in range(20)]
    on_time = [Alert(n, 30.0 + n) for n in range(20)]  # 30..49 s
    assert held(match_alerts(changes, on_time), interval=60.0)
    assert not held(match_alerts(changes, on_time[:-1]), interval=60.0)  # one missed
    late = [Alert(n, 30.0 + 3 * n) for n in range(20)]  # p95 = 84 s > 70 s
    assert not held(match_alerts(changes, late), interval=60.0)
    assert held(match_alerts(changes, late), interval=80.0)
    assert not held(match_alerts([], []), interval=60.0)  # nothing measured: not held


def test_largest_held_stops_at_the_first_n_not_held() -> None:
    assert largest_held({100: True, 300: True, 1000: False}) == 300
    assert largest_held({100: True, 300: False, 1000: True}) == 100
    assert largest_held({100: False}) is None
    assert largest_held({}) is None


def test_the_ladder_parses_counts_with_k() -> None:
    assert parse_ladder("1000,100, 3k") == [100, 1000, 3000]
    assert parse_ladder("1.5k") == [1500]
    with pytest.raises(ValueError):
        parse_ladder("0")
    with pytest.raises(ValueError):
        parse_ladder(",")


def test_the_cli_takes_a_ladder_and_an_interval_and_runs_capacity_only_when_named() -> None:
    args = build_parser().parse_args(["capacity", "--products", "100,1k", "--interval", "20"])
    assert args.capacity_products == [100, 1000]
    assert args.capacity_interval == 20.0
    assert "capacity" in BENCHMARKS and "capacity" in ON_DEMAND


def test_summarize_reports_the_largest_n_each_held_and_the_ratio() -> None:
    def run(system: str, n: int, ok: bool, cpu: float) -> dict[str, object]:
        return {
            "system": system,
            "products": n,
            "held": ok,
            "outcome": match_alerts([(1, 0.0)], [Alert(1, 40.0)]).summary(),
            "checks_per_second": n / 60,
            "checks_per_second_needed": n / 60,
            "cpu_ms_per_check": cpu,
            "cpu_cores": 0.5,
            "peak_rss_mb": 100.0,
            "load_start": [1.0, 1.0, 1.0],
            "load_end": [1.0, 1.0, 1.0],
        }

    runs = [
        run("changedetection", 100, True, 200.0),
        run("pricewatch", 100, True, 20.0),
        run("changedetection", 1000, False, 200.0),
        run("pricewatch", 1000, True, 10.0),
    ]
    too_slow = {  # the first sweep did not end in time: no drops, only its rate
        "system": "changedetection",
        "products": 3000,
        "held": False,
        "reason": "first sweep too slow",
        "first_sweep_checks_per_second": 5.0,
        "load_start": [1.0, 1.0, 1.0],
        "load_end": [1.0, 1.0, 1.0],
    }
    summary = summarize([*runs, too_slow], ("changedetection", "pricewatch"), 60.0)
    assert summary["largest_held"] == {"changedetection": 100, "pricewatch": 1000}
    first = summary["rows"][0]
    assert first.ratio == pytest.approx(10.0)
    assert first.meets_aim  # 1000 >= 10 x 100
    assert summary["held_every_n_tried"] == {"changedetection": False, "pricewatch": True}
    assert "Pricewatch held every N tried" in first.notes
    both_held = summarize(runs[:2], ("changedetection", "pricewatch"), 60.0)
    assert both_held["rows"][0].aim is None  # the peer's limit is unknown: no 10x verdict
    table = summary["table"]["rows"]
    assert len(table) == 5
    assert table[-1][2] == "NO (first sweep too slow)"
    assert "first sweep 5.0 / 50.0" in table[-1]


def test_the_peer_watch_asks_for_price_changes_at_the_interval() -> None:
    body = watch_body("http://127.0.0.1:1/products/item-3", 60.0, "json://127.0.0.1:2/x")
    assert body["processor"] == "restock_diff"
    assert body["fetch_backend"] == "html_requests"
    assert body["time_between_check"] == {"seconds": 60}
    assert body["time_between_check_use_default"] is False
    assert body["processor_config_restock_diff"]["follow_price_changes"] is True
    assert body["notification_urls"] == ["json://127.0.0.1:2/x"]


def test_the_peer_api_key_is_read_from_either_datastore_file(tmp_path: Path) -> None:
    root = tmp_path
    (root / "url-watches.json").write_text(
        '{"settings": {"application": {"api_access_token": "abc123"}}}'
    )
    assert read_api_key(root, timeout=1) == "abc123"
    (root / "changedetection.json").write_text(
        '{"settings": {"application": {"api_access_token": "def456"}}}'
    )
    assert read_api_key(root, timeout=1) == "def456"
