"""The matcher agent: keeps each product's subscriptions with their alert state and turns
price events into notifications. It is the only writer of ``product_subscriptions_table``.
Subscriptions and price events of a product arrive on the same partition number, and so
does the product's detector state, which this agent reads when a subscription starts
(its price, currency and availability are where the alert rules start from).

Batched like the detector (see ``streams.batching``): notifications are delivered before
the alert states that record them are written.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from pricewatch.contract.records import PriceEvent, Subscription
from pricewatch.contract.topics import SUBSCRIPTIONS
from streams import metrics
from streams.batching import BatchTimer, batches, processing
from streams.codec import (
    alert_states_version,
    decode_alert_states,
    decode_product_state,
    encode_alert_states,
)
from streams.domain.alerts import (
    AlertRules,
    AlertState,
    evaluate,
    new_alert_state,
    newest_applied,
    with_subscription,
)
from streams.topology import Topology

log = logging.getLogger(__name__)
STAGE = "matcher"

States = dict[str, AlertState]


class MatchBatch:
    """One batch of matcher input: alert states changed so far and notifications sent."""

    def __init__(self, topology: Topology, rules: AlertRules) -> None:
        self.topology = topology
        self.rules = rules
        self.table = topology.product_subscriptions_table
        # product key -> (the last event that changed it, its states; None = delete)
        self.changed: dict[bytes, tuple[Any, States | None]] = {}
        self.deliveries: list[Any] = []

    def states_of(self, key: bytes) -> States:
        pending = self.changed.get(key)
        if pending is not None:
            return dict(pending[1] or {})
        return decode_alert_states(self.table.get(key))

    def apply_subscription(self, event: Any, subscription: Subscription) -> None:
        key = subscription.product_id.encode()
        states = self.states_of(key)
        old = states.get(subscription.subscription_id)
        if old is None:
            raw = self.topology.product_state_table.get(key)
            known = None if raw is None else decode_product_state(raw)
            # It starts after the events already applied to the product's other
            # subscriptions: re-read after a crash, they are no news to it either.
            states[subscription.subscription_id] = new_alert_state(
                subscription, known, newest_applied(states.values())
            )
        elif old.subscription != subscription:
            states[subscription.subscription_id] = with_subscription(old, subscription)
        # Written even when unchanged (a replay): a crash may have lost the changelog
        # record of the local store's write. Subscription records are rare.
        self.changed[key] = (event, states)

    def delete_subscription(self, event: Any, subscription_id: str) -> None:
        # A tombstone carries only the key: find the product that holds it.
        stored = [k for k, _ in self.table.items() if k not in self.changed]
        for key in [*self.changed, *stored]:
            states = self.states_of(key)
            if states.pop(subscription_id, None) is not None:
                self.changed[key] = (event, states or None)
                return

    async def apply_event(self, event: Any) -> None:
        key: bytes = event.key or b""
        if key not in self.changed and self.table.get(key) is None:
            return  # nobody watches this product: skip even parsing it
        price_event = PriceEvent.model_validate_json(event.value or b"")
        key = price_event.product_id.encode()
        states = self.states_of(key)
        if not states:
            return
        now = datetime.now(UTC)
        for sub_id, state in states.items():
            new_state, notification = evaluate(state, price_event, self.rules, now)
            states[sub_id] = new_state
            if notification is None:
                continue
            self.deliveries.append(
                await self.topology.notifications_topic.send(
                    key=notification.idempotency_key.encode(),
                    value=notification.model_dump_json().encode(),
                )
            )
            metrics.notifications_emitted.labels(kind=notification.kind.value).inc()
        # Written even when unchanged: price events are rare next to observations, and a
        # replayed event then repairs a changelog record a crash may have lost.
        self.changed[key] = (event, states)

    async def finish(self, timed: BatchTimer) -> None:
        topology_changed = self.topology.subscriptions_changed
        timed.phase("process")
        if self.deliveries:
            await asyncio.gather(*self.deliveries)  # the broker has the notifications ...
        timed.phase("deliver")
        for key, (event, states) in self.changed.items():  # ... so the state may move on
            topology_changed.add(key)  # the scheduler re-reads this product
            with processing(event):
                if states:
                    # The counter lets changelog recovery keep the newest value
                    # (streams.rocksdb_table_store).
                    rev = alert_states_version(self.table.get(key)) + 1
                    self.table[key] = encode_alert_states(states, rev)
                elif key in self.table:
                    del self.table[key]
        timed.phase("store")


def register(topology: Topology) -> Any:
    settings = topology.settings
    rules = AlertRules(
        cooldown=timedelta(seconds=settings.alert_cooldown_seconds),
        stock_flap_window=timedelta(seconds=settings.stock_flap_window_seconds),
    )
    subscriptions_topic_name = settings.topic(SUBSCRIPTIONS)

    async def handle(batch: MatchBatch, event: Any) -> None:
        if event.message.topic != subscriptions_topic_name:
            await batch.apply_event(event)
        elif event.value:
            batch.apply_subscription(event, Subscription.model_validate_json(event.value))
        else:
            batch.delete_subscription(event, (event.key or b"").decode())

    timed = BatchTimer("matcher")

    async def process(events: Sequence[Any]) -> None:
        timed.begin(len(events))
        batch = MatchBatch(topology, rules)
        for event in events:
            try:
                with processing(event):  # table reads go to this event's partition
                    await handle(batch, event)
            except ValidationError as exc:
                await topology.dead_letter(
                    event, stage=STAGE, reason="invalid_record", error=str(exc)
                )
            except Exception as exc:  # a bug must not stop the stream: park the message
                log.exception("matcher failed on offset %s", event.message.offset)
                await topology.dead_letter(
                    event, stage=STAGE, reason="processing_error", error=repr(exc)
                )
        await batch.finish(timed)

    @topology.app.agent(topology.matcher_input_topic, name="matcher")
    async def matcher(stream: Any) -> None:
        async for events in batches(stream):
            await topology.app.in_flight.complete(process(events))

    return matcher
