from __future__ import annotations

import random
from dataclasses import replace
from decimal import Decimal

from pricewatch.contract.records import Availability
from streams.codec import (
    alert_states_version,
    decode_alert_states,
    decode_product_state,
    encode_alert_states,
    encode_product_state,
)
from streams.domain.detector import ProductState
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
    )
    assert decode_product_state(encode_product_state(state)) == state


def test_alert_states_round_trip() -> None:
    states = {
        "s1": replace(
            entry(), reference_price=Decimal("99.5"), price_alert_at=at(3), stock_alert_at=at(4)
        ),
        "s2": entry(target=None, notify_removed=True),
    }
    assert decode_alert_states(encode_alert_states(states, 3)) == states
    assert alert_states_version(encode_alert_states(states, 3)) == 3
    assert alert_states_version(None) == 0
    assert decode_alert_states(None) == {}


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
