from __future__ import annotations

import json
import random
from dataclasses import replace
from decimal import Decimal

from pricewatch.contract.records import Availability, EventType, NotificationKind
from streams.codec import (
    alert_states_version,
    decode_alert_states,
    decode_product_state,
    encode_alert_states,
    encode_product_state,
)
from streams.domain.alerts import HeldStockChange
from streams.domain.detector import ProductState, StreamPosition
from tests.factories import at
from tests.unit.streams.check_plans import TrackedSetPlan
from tests.unit.streams.test_alerts import entry


def test_product_state_round_trips_exactly() -> None:
    state = ProductState(
        url="https://x.example/p",
        title="Ünïcode title",
        price=Decimal("1226.00"),
        currency="EUR",
        availability=Availability.OUT_OF_STOCK,
        lowest_price=Decimal("999.990000"),
        removed=False,
        gone_count=1,
        error_count=3,
        applied_at=at(42),
        last_seen_at=at(40),
        last_ok_at=at(30),
        daily_lows=((739000, Decimal("1.5")), (739001, Decimal("1226.00"))),
        stock_changed_at=at(20),
        stock_settle_due=at(3620),
    )
    assert decode_product_state(encode_product_state(state)) == state


def test_product_state_stored_before_the_stock_times_still_decodes() -> None:
    # Written by the previous release (no stock_changed_at / stock_settle_due).
    raw = (
        b'{"v":1,"url":"https://x.example/p","title":null,"price":"10.00","currency":"EUR",'
        b'"availability":"in_stock","lowest_price":"10.00","removed":false,"gone_count":0,'
        b'"error_count":0,"applied_at":"2026-11-25T12:00:00+00:00",'
        b'"last_seen_at":"2026-11-25T12:00:00+00:00","last_ok_at":"2026-11-25T12:00:00+00:00",'
        b'"daily_lows":[[739580,"10.00"]]}'
    )
    state = decode_product_state(raw)
    assert state.price == Decimal("10.00") and state.availability is Availability.IN_STOCK
    assert state.stock_changed_at is None and state.stock_settle_due is None


def test_alert_states_round_trip() -> None:
    states = {
        "s1": replace(
            entry(notify_sold_out=True, notify_back_in_stock=True, notify_price_increase=True),
            reference_price=Decimal("99.5"),
            price_alert_at=at(3),
            price_alert_price=Decimal("80"),
            currency="EUR",
            buyable_price=Decimal("81.25"),
            drop_from=Decimal("90"),
            rise_from=Decimal("80"),
            sold_out_told_at=at(4),
            back_in_stock_told_at=at(5),
            held=HeldStockChange(NotificationKind.SOLD_OUT, at(6)),
            applied=StreamPosition.of(EventType.STOCK_SETTLED, at(7)),
        ),
        "s2": entry(target=None, notify_removed=True),
    }
    assert decode_alert_states(encode_alert_states(states, 3)) == states
    assert alert_states_version(encode_alert_states(states, 3)) == 3
    assert alert_states_version(None) == 0
    assert decode_alert_states(None) == {}


def test_alert_states_stored_by_the_previous_release_still_decode() -> None:
    # A v1 value, as the previous release wrote it (RocksDB and the changelog hold these).
    subscription = entry().subscription.model_dump(mode="json")
    raw = json.dumps(
        {
            "v": 1,
            "rev": 7,
            "subscriptions": {
                "s1": {
                    "subscription": {
                        k: v
                        for k, v in subscription.items()
                        if k
                        not in ("notify_price_increase", "min_change_amount", "min_change_percent")
                    },
                    "reference_price": "100.00",
                    "price_alert_at": at(3).isoformat(),
                    "price_alert_price": "80.00",
                    "stock_alert_at": at(4).isoformat(),
                }
            },
        }
    ).encode()
    (state,) = decode_alert_states(raw).values()
    assert alert_states_version(raw) == 7
    assert state.subscription == entry().subscription
    assert (state.reference_price, state.price_alert_at) == (Decimal("100.00"), at(3))
    assert state.price_alert_price == Decimal("80.00")
    # Which kind the one stock time was is unknown: neither kind is held back by it.
    assert state.sold_out_told_at is None and state.back_in_stock_told_at is None
    assert state.buyable_price is None and state.held is None  # learned from the next event


def test_alert_states_stored_before_the_newest_applied_event_was_kept_still_decode() -> None:
    state = replace(entry(), applied=StreamPosition.of(EventType.PRICE_DROP, at(7)))
    value = json.loads(encode_alert_states({"s1": state}, 4))
    assert value["subscriptions"]["s1"]["applied"] == [at(7).isoformat(), "price_drop"]
    del value["subscriptions"]["s1"]["applied"]  # as the release before it wrote v2
    (decoded,) = decode_alert_states(json.dumps(value).encode()).values()
    assert decoded == replace(state, applied=None)  # the next event is applied, whatever it is


def test_alert_states_keep_the_fields_a_previous_release_reads() -> None:
    # A worker rolled back to the previous release reads these keys of every value.
    state = replace(entry(), sold_out_told_at=at(4), back_in_stock_told_at=at(9))
    item = json.loads(encode_alert_states({"s1": state}, 1))["subscriptions"]["s1"]
    assert item["stock_alert_at"] == at(9).isoformat()
    for key in ("subscription", "reference_price", "price_alert_at", "price_alert_price"):
        assert key in item


def test_check_plan_checks_new_products_now_and_then_every_interval() -> None:
    plan = TrackedSetPlan(interval=10, jitter_fraction=0.1, rng=random.Random(1))
    assert plan.due({"a", "b"}, now=0) == ["a", "b"]
    assert plan.due({"a", "b"}, now=5) == []
    assert plan.due({"a", "b"}, now=11.5) == ["a", "b"]


def test_check_plan_spreads_with_jitter_and_forgets_untracked() -> None:
    plan = TrackedSetPlan(interval=10, jitter_fraction=0.5, rng=random.Random(7))
    plan.due({str(i) for i in range(100)}, now=0)
    delays = sorted(plan.next_due.values())
    assert 5 <= delays[0] < delays[-1] <= 15
    assert delays[-1] - delays[0] > 5  # spread, not all at once
    plan.due({"1"}, now=0)
    assert set(plan.next_due) == {"1"}
