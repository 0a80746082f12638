"""The matcher agent: keeps each product's subscriptions with their alert state and turns
price events into notifications. It is the only writer of ``product_subscriptions_table``.
Subscriptions and price events of a product arrive on the same partition number, and so
does the product's detector state, which this agent reads for the reference price."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from pricewatch.contract.records import PriceEvent, Subscription
from pricewatch.contract.topics import SUBSCRIPTIONS
from streams import metrics
from streams.codec import decode_alert_states, decode_product_state, encode_alert_states
from streams.deadletters import reject
from streams.domain.alerts import AlertRules, evaluate, new_alert_state
from streams.topology import Topology

log = logging.getLogger(__name__)
STAGE = "matcher"


def register(topology: Topology) -> Any:
    settings = topology.settings
    rules = AlertRules(
        cooldown=timedelta(seconds=settings.alert_cooldown_seconds),
        stock_flap_window=timedelta(seconds=settings.stock_flap_window_seconds),
    )
    table = topology.product_subscriptions_table
    product_state_table = topology.product_state_table
    subscriptions_topic_name = settings.topic(SUBSCRIPTIONS)
    notifications_topic = topology.notifications_topic

    def apply_subscription(subscription: Subscription) -> None:
        key = subscription.product_id.encode()
        states = decode_alert_states(table.get(key))
        old = states.get(subscription.subscription_id)
        if old is not None and old.subscription == subscription:
            return  # a replay: no table write
        if old is None:
            raw_product = product_state_table.get(key)
            known_price = None if raw_product is None else decode_product_state(raw_product).price
            states[subscription.subscription_id] = new_alert_state(subscription, known_price)
        else:
            states[subscription.subscription_id] = replace(old, subscription=subscription)
        table[key] = encode_alert_states(states)

    def delete_subscription(subscription_id: str) -> None:
        # A tombstone carries only the key: find the product that holds it.
        for product_key, raw in list(table.items()):
            states = decode_alert_states(raw)
            if states.pop(subscription_id, None) is not None:
                if states:
                    table[product_key] = encode_alert_states(states)
                else:
                    del table[product_key]
                return

    async def apply_event(price_event: PriceEvent) -> None:
        key = price_event.product_id.encode()
        states = decode_alert_states(table.get(key))
        if not states:
            return
        now = datetime.now(UTC)
        changed = False
        for sub_id, state in states.items():
            new_state, notification = evaluate(state, price_event, rules, now)
            if new_state != state:
                states[sub_id] = new_state
                changed = True
            if notification is None:
                continue
            # Not awaited: Faust flushes the producer before committing the event's offset.
            await notifications_topic.send(
                key=notification.idempotency_key.encode(),
                value=notification.model_dump_json().encode(),
            )
            metrics.notifications_emitted.labels(kind=notification.kind.value).inc()
        if changed:
            table[key] = encode_alert_states(states)

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
