"""Matching price events to subscriptions: ``evaluate(entry, event) -> (entry, notification)``.

Pure. A target-price alert fires once per crossing: it disarms when it fires and re-arms
only when the price is seen above the target again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from pricewatch.contract.records import (
    EventType,
    Notification,
    NotificationKind,
    PriceEvent,
    Subscription,
)
from pricewatch.ids import notification_key_for

PRICE_EVENTS = frozenset(
    {
        EventType.PRICE_DROP,
        EventType.PRICE_INCREASE,
        EventType.NEW_LOWEST_PRICE,
        EventType.CURRENCY_CHANGED,
        EventType.RESTORED,
    }
)


@dataclass(frozen=True, slots=True)
class SubscriptionEntry:
    subscription: Subscription
    target_armed: bool = True


def evaluate(
    entry: SubscriptionEntry, event: PriceEvent, now: datetime
) -> tuple[SubscriptionEntry, Notification | None]:
    sub = entry.subscription
    if sub.target_price is None or event.event_type not in PRICE_EVENTS:
        return entry, None
    price = event.new_price
    if price is None:
        return entry, None
    if price > sub.target_price:
        return (entry if entry.target_armed else replace(entry, target_armed=True)), None
    if not entry.target_armed or not sub.active:
        return entry, None
    if event.event_type is not EventType.PRICE_DROP:
        # Other price events (new lowest, restored, currency) come with or without a drop;
        # only a drop crossing the target alerts, so one crossing gives one notification.
        return entry, None
    notification = Notification(
        idempotency_key=notification_key_for(sub.subscription_id, event.event_id),
        kind=NotificationKind.TARGET_PRICE_REACHED,
        subscription_id=sub.subscription_id,
        email=sub.email,
        product_id=event.product_id,
        url=event.url,
        title=event.title,
        event_id=event.event_id,
        event_type=event.event_type,
        observed_at=event.observed_at,
        old_price=event.old_price,
        new_price=price,
        currency=event.new_currency,
        target_price=sub.target_price,
        created_at=now,
    )
    return replace(entry, target_armed=False), notification
