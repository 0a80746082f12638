from __future__ import annotations

import random
from decimal import Decimal

from pricewatch.contract.records import Availability
from streams.agents.scheduler import CheckPlan
from streams.codec import (
    decode_product_state,
    decode_subscriptions,
    encode_product_state,
    encode_subscriptions,
)
from streams.domain.detector import ProductState
from tests.factories import at
from tests.unit.test_alerts import entry


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
    )
    assert decode_product_state(encode_product_state(state)) == state


def test_subscriptions_round_trip() -> None:
    entries = {"s1": entry(), "s2": entry(target=None)}
    assert decode_subscriptions(encode_subscriptions(entries)) == entries
    assert decode_subscriptions(None) == {}


def test_check_plan_checks_new_products_now_and_then_every_interval() -> None:
    plan = CheckPlan(interval=10, jitter_fraction=0.1, rng=random.Random(1))
    assert plan.due({"a", "b"}, now=0) == ["a", "b"]
    assert plan.due({"a", "b"}, now=5) == []
    assert plan.due({"a", "b"}, now=11.5) == ["a", "b"]


def test_check_plan_spreads_with_jitter_and_forgets_untracked() -> None:
    plan = CheckPlan(interval=10, jitter_fraction=0.5, rng=random.Random(7))
    plan.due({str(i) for i in range(100)}, now=0)
    delays = sorted(plan.next_due.values())
    assert 5 <= delays[0] < delays[-1] <= 15
    assert delays[-1] - delays[0] > 5  # spread, not all at once
    plan.due({"1"}, now=0)
    assert set(plan.next_due) == {"1"}
