"""The detector agent: observations in, product state in a table, price events out.

Batched (see ``streams.batching``): per batch, detect in memory, publish the events, wait
for their delivery, then write the changed states. Decoded states are kept in memory for
this worker's partitions and forgotten at every rebalance, so most observations cost no
table read either.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from pricewatch.contract.records import Outcome, PriceObservation
from streams import metrics
from streams.batching import BatchTimer, batches, processing
from streams.codec import decode_product_state, encode_price_event, encode_product_state
from streams.domain.detector import DetectorConfig, ProductState, detect
from streams.topology import Topology

log = logging.getLogger(__name__)
STAGE = "detector"
# An observation is a URL, a title (scrapers cut it at 500 characters) and a short error:
# a few kilobytes at most. A bigger one is not from a scraper, and its URL and title would
# be copied into every event, notification and email: rejected before it is even parsed.
MAX_OBSERVATION_BYTES = 256 * 1024


class StateCache:
    """Decoded product states of this worker's partitions, bounded in size."""

    def __init__(self, table: Any, max_entries: int) -> None:
        self.table = table
        self.max_entries = max_entries
        self.states: dict[bytes, ProductState | None] = {}

    def get(self, key: bytes) -> ProductState | None:
        try:
            return self.states[key]
        except KeyError:
            raw = self.table.get(key)
            state = None if raw is None else decode_product_state(raw)
            self.put(key, state)
            return state

    def put(self, key: bytes, state: ProductState | None) -> None:
        if len(self.states) >= self.max_entries and key not in self.states:
            del self.states[next(iter(self.states))]  # oldest first: cheap, good enough
        self.states[key] = state

    def clear(self, *args: Any, **kwargs: Any) -> None:
        # Partitions moved: another worker may have changed what we remembered.
        self.states.clear()


def register(topology: Topology) -> Any:
    settings = topology.settings
    config = DetectorConfig(
        removed_confirmations=settings.removed_confirmations,
        stock_flap_window=timedelta(seconds=settings.stock_flap_window_seconds),
    )
    table = topology.product_state_table
    events_topic = topology.price_events_topic
    cache = StateCache(table, settings.detector_cache_entries)
    topology.app.on_partitions_revoked.connect(cache.clear)
    topology.app.on_partitions_assigned.connect(cache.clear)
    processed = {
        outcome: metrics.observations_processed.labels(outcome=outcome.value) for outcome in Outcome
    }

    timed = BatchTimer("detector")

    async def process(events: Sequence[Any]) -> None:
        timed.begin(len(events))
        changed: dict[bytes, tuple[Any, ProductState]] = {}
        deliveries: list[Any] = []
        observed_at_of_events: list[datetime] = []
        checked: list[str] = []
        now = datetime.now(UTC)
        for event in events:
            size = len(event.value or b"")
            if size > MAX_OBSERVATION_BYTES:
                error = f"{size} bytes; an observation may have at most {MAX_OBSERVATION_BYTES}"
                await topology.dead_letter(event, stage=STAGE, reason="oversize", error=error)
                continue
            try:
                observation = PriceObservation.model_validate_json(event.value or b"")
            except ValidationError as exc:
                await topology.dead_letter(
                    event, stage=STAGE, reason="invalid_record", error=str(exc)
                )
                continue
            try:
                key = observation.product_id.encode()
                pending = changed.get(key)
                state: ProductState | None
                if pending is not None:
                    state = pending[1]
                else:
                    with processing(event):  # reads, too, go to the event's partition
                        state = cache.get(key)
                new_state, price_events = detect(state, observation, config, now)
                if new_state is not None and new_state is not state:
                    changed[key] = (event, new_state)
                elif state is not None and observation.observed_at == state.applied_at:
                    # A replay of the change that made this state. A crash may have
                    # kept the local store's write but lost its changelog record:
                    # write it again so the changelog (what another worker recovers
                    # from) catches up. Replays are rare; this costs nothing else.
                    changed[key] = (event, state)
                for price_event in price_events:
                    deliveries.append(
                        await events_topic.send(key=key, value=encode_price_event(price_event))
                    )
                    metrics.events_emitted.labels(event_type=price_event.event_type.value).inc()
            except Exception as exc:  # a bug must not stop the stream: park the message
                log.exception("detector failed on offset %s", event.message.offset)
                await topology.dead_letter(
                    event, stage=STAGE, reason="processing_error", error=repr(exc)
                )
                continue
            processed[observation.outcome].inc()
            checked.append(observation.product_id)
            if price_events:
                observed_at_of_events.append(observation.observed_at)
        timed.phase("process")
        if deliveries:
            await asyncio.gather(*deliveries)  # the broker has the events ...
            published_at = datetime.now(UTC)
            for observed_at in observed_at_of_events:
                metrics.detection_latency.observe((published_at - observed_at).total_seconds())
        timed.phase("deliver")
        for key, (event, new_state) in changed.items():  # ... so the state may move on
            with processing(event):
                table[key] = encode_product_state(new_state)
            cache.put(key, new_state)
        metrics.state_writes.inc(len(changed))
        if topology.checks_completed is not None:
            # After the store: the scheduler reads the new price to pick the next interval.
            topology.checks_completed.update(checked)
        timed.phase("store")

    @topology.app.agent(topology.price_observations_topic, name="detector")
    async def detector(stream: Any) -> None:
        async for events in batches(stream):
            await topology.app.in_flight.complete(process(events))

    return detector
