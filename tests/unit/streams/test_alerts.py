from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

from pricewatch.contract.records import (
    Availability,
    NotificationKind,
    PriceObservation,
    Subscription,
)
from pricewatch.ids import subscription_id_for
from streams.domain.alerts import AlertRules, AlertState, evaluate, new_alert_state
from streams.domain.detector import DetectorConfig, ProductState, detect
from tests.factories import PRODUCT_ID, URL, at, gone, observation

RULES = AlertRules(cooldown=timedelta(hours=24), stock_flap_window=timedelta(hours=1))


def subscription(target: str | None = "85.00", **options: object) -> Subscription:
    options.setdefault("verified", True)  # the rules below are about verified subscribers
    return Subscription(
        subscription_id=subscription_id_for("a@example.com", PRODUCT_ID),
        email="a@example.com",
        product_id=PRODUCT_ID,
        url=URL,
        target_price=None if target is None else Decimal(target),
        created_at=at(0),
        **options,  # type: ignore[arg-type]
    )


def entry(target: str | None = "85.00", **options: object) -> AlertState:
    return new_alert_state(subscription(target, **options), known_price=None)


def alerts(
    observations: list[PriceObservation], state: AlertState, rules: AlertRules = RULES
) -> list[tuple[NotificationKind, str | None]]:
    """Feed observations through the detector and the rule; return (kind, new price)."""
    product: ProductState | None = None
    sent: list[tuple[NotificationKind, str | None]] = []
    for obs in observations:
        product, events = detect(product, obs, DetectorConfig(), obs.observed_at)
        for event in events:
            state, notification = evaluate(state, event, rules, obs.observed_at)
            if notification is not None:
                price = None if notification.new_price is None else str(notification.new_price)
                sent.append((notification.kind, price))
    return sent


def prices(*values: str, step: float = 60) -> list[PriceObservation]:
    return [observation(i * step, price=v) for i, v in enumerate(values)]


TARGET = NotificationKind.TARGET_PRICE_REACHED


def test_alert_when_price_drops_to_or_below_target() -> None:
    assert alerts(prices("100", "85.00"), entry()) == [(TARGET, "85.00")]


def test_no_alert_for_a_drop_above_target() -> None:
    assert alerts(prices("100", "90"), entry()) == []


def test_once_per_crossing_then_rearmed_above_target() -> None:
    assert alerts(prices("100", "80", "70", "60", "90", "80"), entry()) == [
        (TARGET, "80"),
        (TARGET, "80"),
    ]


def test_already_below_target_waits_for_a_crossing() -> None:
    assert alerts(prices("80", "70", "90", "85"), entry()) == [(TARGET, "85")]


def test_after_the_cooldown_a_lower_price_alerts_again() -> None:
    day = 24 * 3600
    observations = [
        observation(0, price="100"),
        observation(60, price="80"),  # crossing: alert
        observation(120, price="75"),  # a drop, but too soon after the alert
        observation(day + 60, price="74"),  # cooldown over and lower than 80: alert
        observation(day + 120, price="70"),  # too soon after the 74 alert
        observation(3 * day, price="80"),  # up, still below the target
        observation(3 * day + 60, price="79"),  # cooldown over but not lower than 74
    ]
    assert alerts(observations, entry()) == [(TARGET, "80"), (TARGET, "74")]


def test_a_target_in_one_currency_ignores_prices_in_another() -> None:
    # The page sells in EUR; 85 EUR is not the 85 USD this subscriber asked for.
    assert alerts(prices("100", "80"), entry(currency="USD")) == []
    assert alerts(prices("100", "80"), entry(currency="EUR")) == [(TARGET, "80")]
    assert alerts(prices("100", "80"), entry(currency="USD", notify_any_drop=True)) == []


def test_drop_percent_from_reference_price() -> None:
    state = new_alert_state(subscription(None, drop_percent=Decimal("10")), Decimal("100"))
    assert alerts(prices("100", "95", "90", "80"), state) == [
        (NotificationKind.DROP_PERCENT_REACHED, "90")
    ]


def test_drop_percent_learns_its_reference_from_the_first_event() -> None:
    state = entry(None, drop_percent=Decimal("20"))
    assert state.reference_price is None
    assert alerts(prices("100", "99", "79"), state) == [
        (NotificationKind.DROP_PERCENT_REACHED, "79")
    ]


def test_any_drop_and_target_give_one_notification_per_event() -> None:
    state = entry("85", notify_any_drop=True)
    assert alerts(prices("100", "95", "85", "84"), state) == [
        (NotificationKind.PRICE_DROPPED, "95"),
        (TARGET, "85"),
        (NotificationKind.PRICE_DROPPED, "84"),
    ]


def test_stock_alerts_only_when_asked_and_flapping_sends_one() -> None:
    def stock(t: float, availability: Availability) -> PriceObservation:
        return observation(t, availability=availability)

    out, back = Availability.OUT_OF_STOCK, Availability.IN_STOCK
    flapping = [stock(0, back), stock(60, out), stock(120, back), stock(180, out), stock(240, back)]
    both = entry(None, notify_back_in_stock=True, notify_sold_out=True)
    assert alerts(flapping, both) == [(NotificationKind.SOLD_OUT, "100.00")]
    back_only = entry(None, notify_back_in_stock=True)
    assert alerts(flapping, back_only) == [(NotificationKind.BACK_IN_STOCK, "100.00")]
    hours_apart = [stock(h * 7200, a) for h, a in enumerate([back, out, back, out])]
    assert [k for k, _ in alerts(hours_apart, both)] == [
        NotificationKind.SOLD_OUT,
        NotificationKind.BACK_IN_STOCK,
        NotificationKind.SOLD_OUT,
    ]
    assert alerts(flapping, entry(None)) == []


def test_removed_only_when_asked_and_once() -> None:
    observations = [observation(0), gone(1), gone(2), gone(3)]
    # The last known price travels with the removal (the email says what it cost).
    assert alerts(observations, entry(None, notify_removed=True)) == [
        (NotificationKind.REMOVED, "100.00")
    ]
    assert alerts(observations, entry(None)) == []


def test_inactive_subscription_gets_nothing() -> None:
    state = entry("85", notify_any_drop=True, active=False)
    assert alerts(prices("100", "50"), state) == []


def test_unverified_subscription_gets_nothing_until_verified() -> None:
    stock = [
        observation(0),
        observation(60, availability=Availability.OUT_OF_STOCK),
        observation(120),
    ]
    everything = {
        "notify_any_drop": True,
        "notify_sold_out": True,
        "notify_back_in_stock": True,
        "notify_removed": True,
    }
    unverified = entry("85", verified=False, **everything)
    assert alerts(prices("100", "50", "120", "40"), unverified) == []
    assert alerts(stock, unverified) == []
    assert alerts([observation(0), gone(60, 410)], unverified) == []
    # The same subscription, verified later (the API republishes it): alerts from then on,
    # measured against the reference price learned while it was unverified.
    product, _ = detect(None, observation(0), DetectorConfig(), at(0))
    _, events = detect(product, observation(60, price="80"), DetectorConfig(), at(60))
    state, note = evaluate(entry("85", verified=False), events[0], RULES, at(60))
    assert note is None and state.reference_price == Decimal("100.00")
    verified = replace(state, subscription=subscription("85", verified=True))
    above, _ = detect(None, observation(120, price="110"), DetectorConfig(), at(120))
    _, events = detect(above, observation(180, price="75"), DetectorConfig(), at(180))
    _, note = evaluate(verified, events[0], RULES, at(180))
    assert note is not None and note.kind is TARGET


def test_reprocessing_an_event_gives_the_same_notification_key() -> None:
    product, _ = detect(None, observation(0), DetectorConfig(), at(0))
    _, events = detect(product, observation(1, price="80"), DetectorConfig(), at(1))
    state = entry()
    after, first = evaluate(state, events[0], RULES, at(2))
    _, again = evaluate(after, events[0], RULES, at(3))  # redelivered after the state write
    assert first is not None and again is not None
    assert first.idempotency_key == again.idempotency_key


def test_subscription_change_keeps_what_was_already_said() -> None:
    state = replace(entry(), price_alert_at=at(5), price_alert_price=Decimal("80"))
    changed = replace(state, subscription=subscription("70"))
    assert changed.price_alert_at == at(5)
