"""The matcher agent: keeps each product's subscriptions and turns price events into
notifications. It is the only writer of ``product_subscriptions_table``; subscriptions and
price events arrive on the same partition number for the same product."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from pricewatch.contract.records import PriceEvent, Subscription
from pricewatch.contract.topics import SUBSCRIPTIONS
from streams import metrics
from streams.codec import decode_subscriptions, encode_subscriptions
from streams.deadletters import reject
from streams.domain.alerts import evaluate
from streams.topology import Topology

log = logging.getLogger(__name__)
STAGE = "matcher"


def register(topology: Topology) -> Any:
    table = topology.product_subscriptions_table
    subscriptions_topic_name = topology.settings.topic(SUBSCRIPTIONS)
    notifications_topic = topology.notifications_topic

    def apply_subscription(subscription: Subscription) -> None:
        key = subscription.product_id.encode()
        subscriptions = decode_subscriptions(table.get(key))
        if subscriptions.get(subscription.subscription_id) == subscription:
            return  # a replay: no table write
        subscriptions[subscription.subscription_id] = subscription
        table[key] = encode_subscriptions(subscriptions)

    def delete_subscription(subscription_id: str) -> None:
        # A tombstone carries only the key: find the product that holds it.
        for product_key, raw in list(table.items()):
            subscriptions = decode_subscriptions(raw)
            if subscriptions.pop(subscription_id, None) is not None:
                if subscriptions:
                    table[product_key] = encode_subscriptions(subscriptions)
                else:
                    del table[product_key]
                return

    async def apply_event(price_event: PriceEvent) -> None:
        subscriptions = decode_subscriptions(table.get(price_event.product_id.encode()))
        now = datetime.now(UTC)
        deliveries = []
        for subscription in subscriptions.values():
            notification = evaluate(subscription, price_event, now)
            if notification is None:
                continue
            deliveries.append(
                await notifications_topic.send(
                    key=notification.idempotency_key.encode(),
                    value=notification.model_dump_json().encode(),
                )
            )
            metrics.notifications_emitted.labels(kind=notification.kind.value).inc()
        for delivery in deliveries:
            await delivery

    @topology.app.agent(topology.matcher_input_topic, name="matcher")
    async def matcher(stream: Any) -> None:
        async for event in stream.events():
            try:
                if event.message.topic != subscriptions_topic_name:
                    await apply_event(PriceEvent.model_validate_json(event.value or b""))
                elif event.value:
                    apply_subscription(Subscription.model_validate_json(event.value))
                else:
                    delete_subscription((event.key or b"").decode())
            except ValidationError as exc:
                await reject(topology, event, stage=STAGE, reason="invalid_record", error=str(exc))
            except Exception as exc:  # a bug must not stop the stream: park the message
                log.exception("matcher failed on %s", event.message.offset)
                await reject(
                    topology, event, stage=STAGE, reason="processing_error", error=repr(exc)
                )

    return matcher
