"""Price events into PostgreSQL: one ``price_events`` row per event, for the dashboards.

An event's id is deterministic, so ``ON CONFLICT DO NOTHING`` makes redelivery and replays
no-ops. No foreign key to ``products``: the price sink, another consumer, may not have
written the product yet.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy
from sqlalchemy import text

from pricewatch.contract.records import PriceEvent
from pricewatch.contract.topics import PRICE_EVENTS
from pricewatch.db.engine import migrated_engine
from pricewatch.settings import Settings
from sinks.contract import Batch, Feed, SinkKind

log = logging.getLogger(__name__)

ROLE = "events-sink"

INSERT_EVENT = text(
    """
    INSERT INTO price_events (
        event_id, event_type, product_id, observation_id, observed_at, detected_at,
        old_price, new_price, old_currency, new_currency, old_availability, new_availability
    )
    VALUES (
        CAST(:event_id AS text), CAST(:event_type AS text), CAST(:product_id AS text),
        CAST(:observation_id AS text), CAST(:observed_at AS timestamptz),
        CAST(:detected_at AS timestamptz), CAST(:old_price AS numeric),
        CAST(:new_price AS numeric), CAST(:old_currency AS char(3)),
        CAST(:new_currency AS char(3)), CAST(:old_availability AS text),
        CAST(:new_availability AS text)
    )
    ON CONFLICT (event_id) DO NOTHING
    """
)


def _row(event: PriceEvent) -> dict[str, Any]:
    return {
        # PostgreSQL text cannot hold NUL; one must not fail the batch on every retry.
        "event_id": event.event_id.replace("\x00", ""),
        "event_type": event.event_type.value,
        "product_id": event.product_id,
        "observation_id": event.observation_id.replace("\x00", ""),
        "observed_at": event.observed_at,
        "detected_at": event.detected_at,
        "old_price": event.old_price,
        "new_price": event.new_price,
        "old_currency": event.old_currency,
        "new_currency": event.new_currency,
        "old_availability": event.old_availability.value if event.old_availability else None,
        "new_availability": event.new_availability.value if event.new_availability else None,
    }


class PriceEventSink:
    """Inserts a batch of price events in one transaction; known event ids are skipped."""

    def __init__(self, engine: sqlalchemy.Engine) -> None:
        self.engine = engine

    async def write(self, batch: Batch[PriceEvent]) -> None:
        if batch:
            await asyncio.to_thread(self.write_blocking, batch.values)

    def write_blocking(self, events: list[PriceEvent]) -> None:
        # Sorted: two sinks inserting the same ids (a rebalance) take their locks in one order.
        rows = sorted((_row(event) for event in events), key=lambda row: row["event_id"])
        with self.engine.begin() as connection:
            connection.execute(INSERT_EVENT, rows)


@asynccontextmanager
async def open_sink(settings: Settings) -> AsyncIterator[PriceEventSink]:
    """Migrate the database, then lend the sink its engine."""
    async with migrated_engine(settings) as engine:
        yield PriceEventSink(engine)


SINK = SinkKind(
    feeds=(Feed(ROLE, PRICE_EVENTS, PriceEvent.model_validate_json, bulk=True),), open=open_sink
)
