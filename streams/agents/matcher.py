"""The matcher agent: keeps each product's subscriptions and turns price events into
notifications. It is the only writer of ``product_subscriptions_table``; subscriptions and
price events arrive on the same partition number for the same product."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from pricewatch.contract.records import PriceEvent, Subscription
from streams import metrics
from streams.codec import decode_subscriptions, encode_subscriptions
from streams.deadletters import reject
from streams.domain.alerts import SubscriptionEntry, evaluate
from streams.topology import Topology

log = logging.getLogger(__name__)
STAGE = "matcher"


def register(topology: Topology) -> Any:
    table = topology.product_subscriptions_table
    subscriptions_topic_name = topology.settings.topic_prefix + "subscriptions"
    notifications_topic = topology.notifications_topic

    def apply_subscription(subscription: Subscription) -> None:
        key = subscription.product_id.encode()
        entries = decode_subscriptions(table.get(key))
        old = entries.get(subscription.subscription_id)
        if old is not None and old.subscription == subscription:
            return
        entries[subscription.subscription_id] = (
            SubscriptionEntry(subscription)
            if old is None
            else replace(old, subscription=subscription)
        )
        table[key] = encode_subscriptions(entries)

    def delete_subscription(subscription_key: bytes, partition_entries: Any) -> None:
        # A tombstone carries only the key: find the product that holds it.
        sub_id = subscription_key.decode()
        for product_key, raw in list(partition_entries):
            entries = decode_subscriptions(raw)
            if entries.pop(sub_id, None) is not None:
                if entries:
                    table[product_key] = encode_subscriptions(entries)
                else:
                    del table[product_key]
                return

    async def apply_event(price_event: PriceEvent) -> None:
        key = price_event.product_id.encode()
        entries = decode_subscriptions(table.get(key))
        if not entries:
            return
        now = datetime.now(UTC)
        changed = False
        deliveries = []
        for sub_id, entry in entries.items():
            new_entry, notification = evaluate(entry, price_event, now)
            if new_entry is not entry:
                entries[sub_id] = new_entry
                changed = True
            if notification is not None:
                deliveries.append(
                    await notifications_topic.send(
                        key=notification.idempotency_key.encode(),
                        value=notification.model_dump_json().encode(),
                    )
                )
                metrics.notifications_emitted.labels(kind=notification.kind.value).inc()
        for delivery in deliveries:
            await delivery
        if changed:
            table[key] = encode_subscriptions(entries)

    @topology.app.agent(topology.matcher_input_topic, name="matcher")
    async def matcher(stream: Any) -> None:
        async for event in stream.events():
            is_subscription = event.message.topic == subscriptions_topic_name
            try:
                if is_subscription and not event.value:
                    delete_subscription(event.key or b"", table.items())
                    continue
                if is_subscription:
                    apply_subscription(Subscription.model_validate_json(event.value))
                else:
                    await apply_event(PriceEvent.model_validate_json(event.value or b""))
            except ValidationError as exc:
                await reject(topology, event, stage=STAGE, reason="invalid_record", error=str(exc))
            except Exception as exc:  # a bug must not stop the stream: park the message
                log.exception("matcher failed on %s", event.message.offset)
                await reject(
                    topology, event, stage=STAGE, reason="processing_error", error=repr(exc)
                )

    return matcher
