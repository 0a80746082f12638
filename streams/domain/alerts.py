"""Matching price events to subscriptions: ``evaluate(subscription, event) -> notification``.

Pure. A target-price alert fires once per crossing: when a drop takes the price from above
the target to at or below it. Further drops below the target stay quiet; the price must go
back above the target and cross again. A subscription made while the price is already below
its target therefore waits for a crossing too.
"""

from __future__ import annotations

from datetime import datetime

from pricewatch.contract.records import (
    EventType,
    Notification,
    NotificationKind,
    PriceEvent,
    Subscription,
)
from pricewatch.ids import notification_key_for


def crosses_target(subscription: Subscription, event: PriceEvent) -> bool:
    target = subscription.target_price
    return (
        target is not None
        and event.event_type is EventType.PRICE_DROP
        and event.old_price is not None
        and event.new_price is not None
        and event.old_price > target >= event.new_price
    )


def evaluate(subscription: Subscription, event: PriceEvent, now: datetime) -> Notification | None:
    if not subscription.active or not crosses_target(subscription, event):
        return None
    return Notification(
        idempotency_key=notification_key_for(subscription.subscription_id, event.event_id),
        kind=NotificationKind.TARGET_PRICE_REACHED,
        subscription_id=subscription.subscription_id,
        email=subscription.email,
        product_id=event.product_id,
        url=event.url,
        title=event.title,
        event_id=event.event_id,
        event_type=event.event_type,
        observed_at=event.observed_at,
        old_price=event.old_price,
        new_price=event.new_price,
        currency=event.new_currency,
        target_price=subscription.target_price,
        created_at=now,
    )
