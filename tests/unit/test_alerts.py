from __future__ import annotations

from decimal import Decimal

from pricewatch.contract.records import Subscription
from pricewatch.ids import subscription_id_for
from streams.domain.alerts import evaluate
from streams.domain.detector import DetectorConfig, ProductState, detect
from tests.factories import PRODUCT_ID, URL, at, observation


def entry(target: str | None = "85.00", active: bool = True) -> Subscription:
    return Subscription(
        subscription_id=subscription_id_for("a@example.com", PRODUCT_ID),
        email="a@example.com",
        product_id=PRODUCT_ID,
        url=URL,
        target_price=None if target is None else Decimal(target),
        active=active,
        created_at=at(0),
    )


def alerts_for(prices: list[str], sub: Subscription) -> list[str]:
    """Feed a price sequence through the detector and the rule; return alerted prices."""
    state: ProductState | None = None
    sent: list[str] = []
    for i, price in enumerate(prices):
        state, events = detect(state, observation(i, price=price), DetectorConfig(), at(i))
        for event in events:
            notification = evaluate(sub, event, at(i))
            if notification is not None:
                assert notification.new_price is not None
                sent.append(str(notification.new_price))
    return sent


def test_alert_when_price_drops_to_or_below_target() -> None:
    assert alerts_for(["100", "85.00"], entry()) == ["85.00"]


def test_no_alert_for_a_drop_above_target() -> None:
    assert alerts_for(["100", "90"], entry()) == []


def test_once_per_crossing_then_rearmed_above_target() -> None:
    assert alerts_for(["100", "80", "70", "60", "90", "80"], entry()) == ["80", "80"]


def test_already_below_target_waits_for_a_crossing() -> None:
    assert alerts_for(["80", "70", "90", "85"], entry()) == ["85"]


def test_no_target_no_target_alert_and_inactive_gets_nothing() -> None:
    assert alerts_for(["100", "50"], entry(target=None)) == []
    assert alerts_for(["100", "50"], entry(active=False)) == []


def test_idempotency_key_is_stable_for_the_same_event() -> None:
    state, _ = detect(None, observation(0), DetectorConfig(), at(0))
    _, events = detect(state, observation(1, price="80"), DetectorConfig(), at(1))
    first = evaluate(entry(), events[0], at(2))
    second = evaluate(entry(), events[0], at(3))
    assert first is not None and second is not None
    assert first.idempotency_key == second.idempotency_key
