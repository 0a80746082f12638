"""Matching price events to subscriptions: ``evaluate(state, event, rules) -> (state, note)``.

Pure and deterministic: times come from the event (when the page was observed), never
from a clock, so reprocessing an event gives the same answer and the same idempotency key.

- Price thresholds (a target price, or a drop of N % below the reference price) alert
  once per crossing: when a drop takes the price from above the threshold to at or below
  it. Further drops below stay quiet, unless ``cooldown`` has passed since the last price
  alert and the price is lower than it was then.
- ``notify_any_drop``: every drop (when no threshold alert covers it).
- Stock alerts (sold out, back in stock) within ``stock_flap_window`` of the previous
  stock alert are suppressed, so flapping stock sends one email, not many.
- ``notify_removed``: once when the detector confirms a removal.
- Nothing at all for a subscription that is inactive or not verified.

At most one notification per (subscription, event); its key is derived from both.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol

from pricewatch.contract.records import (
    EventType,
    Notification,
    NotificationKind,
    Subscription,
)
from pricewatch.ids import notification_key_for

HUNDRED = Decimal(100)


class PriceChange(Protocol):
    """What the rule reads of an event: a wire ``PriceEvent`` or a ``DetectedEvent``."""

    @property
    def event_id(self) -> str: ...
    @property
    def event_type(self) -> EventType: ...
    @property
    def product_id(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def title(self) -> str | None: ...
    @property
    def observed_at(self) -> datetime: ...
    @property
    def old_price(self) -> Decimal | None: ...
    @property
    def new_price(self) -> Decimal | None: ...
    @property
    def new_currency(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class AlertRules:
    cooldown: timedelta = timedelta(days=1)
    stock_flap_window: timedelta = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class AlertState:
    """One subscription and what it has been told (kept by the matcher, per product)."""

    subscription: Subscription
    reference_price: Decimal | None = None
    price_alert_at: datetime | None = None
    price_alert_price: Decimal | None = None
    stock_alert_at: datetime | None = None


def new_alert_state(subscription: Subscription, known_price: Decimal | None) -> AlertState:
    return AlertState(subscription, reference_price=subscription.reference_price or known_price)


def thresholds(state: AlertState) -> list[tuple[NotificationKind, Decimal]]:
    """The subscription's price thresholds, most specific first."""
    sub = state.subscription
    found: list[tuple[NotificationKind, Decimal]] = []
    if sub.target_price is not None:
        found.append((NotificationKind.TARGET_PRICE_REACHED, sub.target_price))
    if sub.drop_percent is not None and state.reference_price is not None:
        threshold = state.reference_price * (HUNDRED - sub.drop_percent) / HUNDRED
        found.append((NotificationKind.DROP_PERCENT_REACHED, threshold))
    return found


def _price_alert(
    state: AlertState, event: PriceChange, rules: AlertRules
) -> NotificationKind | None:
    old, new = event.old_price, event.new_price
    if old is None or new is None:
        return None
    wanted_currency = state.subscription.currency
    if wanted_currency is not None and event.new_currency not in (None, wanted_currency):
        return None  # 90 in another currency is not the 90 the subscriber asked for
    for kind, threshold in thresholds(state):
        if old > threshold >= new:
            return kind  # a crossing
        if (
            new <= threshold
            and state.price_alert_at is not None
            and state.price_alert_price is not None
            and event.observed_at - state.price_alert_at >= rules.cooldown
            and new < state.price_alert_price
        ):
            return kind  # long after the last alert, and lower than it was then
    if state.subscription.notify_any_drop:
        return NotificationKind.PRICE_DROPPED
    return None


def evaluate(
    state: AlertState, event: PriceChange, rules: AlertRules, now: datetime
) -> tuple[AlertState, Notification | None]:
    """Apply one price event to one subscription. ``now`` only stamps created_at."""
    sub = state.subscription
    if state.reference_price is None and event.old_price is not None:
        state = replace(state, reference_price=event.old_price)
    if not (sub.active and sub.verified):
        # Unsubscribed or unverified: nothing but the verification email (sent by the API).
        # The reference price is still learned, so verifying later measures from it.
        return state, None

    kind: NotificationKind | None = None
    if event.event_type is EventType.PRICE_DROP:
        kind = _price_alert(state, event, rules)
        if kind is not None and kind is not NotificationKind.PRICE_DROPPED:
            state = replace(
                state, price_alert_at=event.observed_at, price_alert_price=event.new_price
            )
    elif event.event_type in (EventType.SOLD_OUT, EventType.BACK_IN_STOCK):
        wanted = (
            sub.notify_sold_out
            if event.event_type is EventType.SOLD_OUT
            else sub.notify_back_in_stock
        )
        recent = (
            state.stock_alert_at is not None
            and event.observed_at - state.stock_alert_at < rules.stock_flap_window
            and event.observed_at != state.stock_alert_at  # the same event, reprocessed
        )
        if wanted and not recent:
            kind = (
                NotificationKind.SOLD_OUT
                if event.event_type is EventType.SOLD_OUT
                else NotificationKind.BACK_IN_STOCK
            )
            state = replace(state, stock_alert_at=event.observed_at)
    elif event.event_type is EventType.REMOVED and sub.notify_removed:
        kind = NotificationKind.REMOVED

    if kind is None:
        return state, None
    return state, Notification(
        idempotency_key=notification_key_for(sub.subscription_id, event.event_id),
        kind=kind,
        subscription_id=sub.subscription_id,
        email=sub.email,
        product_id=event.product_id,
        url=event.url,
        title=event.title,
        event_id=event.event_id,
        event_type=event.event_type,
        observed_at=event.observed_at,
        old_price=event.old_price,
        new_price=event.new_price,
        currency=event.new_currency,
        target_price=sub.target_price,
        drop_percent=sub.drop_percent,
        reference_price=state.reference_price,
        created_at=now,
    )
