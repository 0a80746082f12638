"""The detector agent: observations in, product state in a table, price events out."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from pricewatch.contract.records import PriceObservation
from streams import metrics
from streams.codec import decode_product_state, encode_price_event, encode_product_state
from streams.deadletters import reject
from streams.domain.detector import DetectorConfig, detect
from streams.topology import Topology

log = logging.getLogger(__name__)
STAGE = "detector"


def register(topology: Topology) -> Any:
    config = DetectorConfig(removed_confirmations=topology.settings.removed_confirmations)
    table = topology.product_state_table
    events_topic = topology.price_events_topic

    @topology.app.agent(topology.price_observations_topic, name="detector")
    async def detector(stream: Any) -> None:
        async for event in stream.events():
            try:
                observation = PriceObservation.model_validate_json(event.value or b"")
            except ValidationError as exc:
                await reject(topology, event, stage=STAGE, reason="invalid_record", error=str(exc))
                continue
            try:
                key = observation.product_id.encode()
                raw_state = table.get(key)
                state = None if raw_state is None else decode_product_state(raw_state)
                new_state, price_events = detect(
                    state, observation, config, detected_at=datetime.now(UTC)
                )
                if new_state is not None and new_state is not state:
                    table[key] = encode_product_state(new_state)
                    metrics.state_writes.inc()
                # Queued, not awaited one by one: Faust flushes the producer before it
                # commits the offsets of the observations, so at-least-once holds.
                for price_event in price_events:
                    await events_topic.send(key=key, value=encode_price_event(price_event))
            except Exception as exc:  # a bug must not stop the stream: park the message
                log.exception("detector failed on %s", event.message.offset)
                await reject(
                    topology, event, stage=STAGE, reason="processing_error", error=repr(exc)
                )
                continue
            metrics.observations_processed.labels(outcome=observation.outcome.value).inc()
            for e in price_events:
                metrics.events_emitted.labels(event_type=e.event_type.value).inc()
            if price_events:
                latency = (datetime.now(UTC) - observation.observed_at).total_seconds()
                metrics.detection_latency.observe(latency)

    return detector
