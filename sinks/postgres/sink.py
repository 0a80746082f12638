"""Price observations into PostgreSQL: each product's latest state and its price history.

Idempotent by construction, so at-least-once delivery and replays from offset zero change
nothing: a product row only moves forward in ``observed_at``, and a history row is keyed by
``(product_id, observed_at)`` and only written when the price, currency or availability
differs from the row before it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import sqlalchemy
from sqlalchemy import text

from pricewatch.contract.records import Outcome, PriceObservation
from pricewatch.contract.topics import PRICE_OBSERVATIONS
from pricewatch.settings import Settings
from sinks.base import run_batch_consumer
from sinks.postgres.db import make_engine, upgrade

log = logging.getLogger(__name__)

ROLE = "postgres-sink"

# Scraped text is untrusted: PostgreSQL text cannot hold NUL, and a page can put megabytes
# in a title. Either would otherwise fail the batch on every retry.
MAX_TITLE_CHARS = 1000
MAX_ERROR_CHARS = 2000
MAX_URL_CHARS = 8000

_STATUS_BY_OUTCOME = {Outcome.OK: "active", Outcome.GONE: "gone", Outcome.ERROR: "error"}

# One statement per observation, in observed_at order (executemany; psycopg pipelines it).
# The WHERE on the update makes a replayed or out-of-order (older) observation a no-op.
# EXCLUDED.status is this observation's outcome as a status; an error leaves a known
# product's status alone. A URL already owned by another product_id (inconsistent producer)
# skips the row instead of failing the batch forever on the unique constraint.
UPSERT_PRODUCT = text(
    """
    INSERT INTO products AS p (
        product_id, url, title, currency, current_price, availability,
        status, last_checked_at, last_ok_at, last_error
    )
    SELECT
        CAST(:product_id AS text), CAST(:url AS text), CAST(:title AS text),
        CAST(:currency AS char(3)), CAST(:price AS numeric), CAST(:availability AS text),
        CAST(:status AS text), CAST(:observed_at AS timestamptz),
        CAST(:last_ok_at AS timestamptz), CAST(:last_error AS text)
    WHERE NOT EXISTS (
        SELECT 1 FROM products other
        WHERE other.url = CAST(:url AS text) AND other.product_id <> CAST(:product_id AS text)
    )
    ON CONFLICT (product_id) DO UPDATE SET
        title = CASE WHEN EXCLUDED.status = 'active'
                     THEN COALESCE(EXCLUDED.title, p.title) ELSE p.title END,
        currency = CASE WHEN EXCLUDED.status = 'active'
                        THEN EXCLUDED.currency ELSE p.currency END,
        current_price = CASE WHEN EXCLUDED.status = 'active'
                             THEN EXCLUDED.current_price ELSE p.current_price END,
        availability = CASE WHEN EXCLUDED.status = 'active'
                            THEN EXCLUDED.availability ELSE p.availability END,
        status = CASE WHEN EXCLUDED.status = 'error' THEN p.status ELSE EXCLUDED.status END,
        last_checked_at = EXCLUDED.last_checked_at,
        last_ok_at = COALESCE(EXCLUDED.last_ok_at, p.last_ok_at),
        last_error = COALESCE(EXCLUDED.last_error, p.last_error)
    WHERE p.last_checked_at IS NULL OR p.last_checked_at < EXCLUDED.last_checked_at
    """
)

# Only a change against the newest history row at or before this observation is recorded;
# replaying an observation finds itself as that row and adds nothing.
INSERT_PRICE = text(
    """
    INSERT INTO prices (product_id, price, currency, availability, observed_at)
    SELECT
        CAST(:product_id AS text), CAST(:price AS numeric), CAST(:currency AS char(3)),
        CAST(:availability AS text), CAST(:observed_at AS timestamptz)
    WHERE EXISTS (SELECT 1 FROM products WHERE product_id = CAST(:product_id AS text))
      AND NOT EXISTS (
        SELECT 1 FROM (
            SELECT price, currency, availability FROM prices
            WHERE product_id = CAST(:product_id AS text)
              AND observed_at <= CAST(:observed_at AS timestamptz)
            ORDER BY observed_at DESC
            LIMIT 1
        ) AS previous
        WHERE previous.price IS NOT DISTINCT FROM CAST(:price AS numeric)
          AND previous.currency IS NOT DISTINCT FROM CAST(:currency AS char(3))
          AND previous.availability IS NOT DISTINCT FROM CAST(:availability AS text)
      )
    ON CONFLICT (product_id, observed_at) DO NOTHING
    """
)


def _clean(value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    return value.replace("\x00", "")[:limit]


def _row(observation: PriceObservation) -> dict[str, Any]:
    is_ok = observation.outcome is Outcome.OK
    return {
        "product_id": observation.product_id,
        "url": _clean(observation.url, MAX_URL_CHARS),
        "title": _clean(observation.title, MAX_TITLE_CHARS),
        "currency": observation.currency,
        "price": observation.price,
        "availability": observation.availability.value if observation.availability else None,
        "status": _STATUS_BY_OUTCOME[observation.outcome],
        "observed_at": observation.observed_at,
        "last_ok_at": observation.observed_at if is_ok else None,
        "last_error": (
            _clean(observation.error or "unknown error", MAX_ERROR_CHARS)
            if observation.outcome is Outcome.ERROR
            else None
        ),
    }


class PriceHistorySink:
    """Writes a batch of observations to ``products`` and ``prices`` in one transaction."""

    def __init__(self, engine: sqlalchemy.Engine) -> None:
        self.engine = engine

    async def write(self, batch: list[PriceObservation]) -> None:
        if batch:
            await asyncio.to_thread(self.write_blocking, batch)

    def write_blocking(self, batch: list[PriceObservation]) -> None:
        # In observed_at order, so several observations of one product in a batch apply as
        # they happened (the batch spans partitions and arrives in no particular order).
        rows = [_row(o) for o in sorted(batch, key=lambda o: o.observed_at)]
        price_rows = [row for row in rows if row["last_ok_at"] is not None]
        with self.engine.begin() as connection:
            connection.execute(UPSERT_PRODUCT, rows)
            if price_rows:
                connection.execute(INSERT_PRICE, price_rows)


async def run_postgres_sink(settings: Settings, stop: asyncio.Event) -> None:
    """Migrate the database, then consume price observations into it until ``stop``."""
    url = settings.database()
    await asyncio.to_thread(upgrade, url)
    engine = make_engine(url)
    try:
        await run_batch_consumer(
            settings,
            role=ROLE,
            topic_spec=PRICE_OBSERVATIONS,
            parse=PriceObservation.model_validate_json,
            sink=PriceHistorySink(engine),
            stop=stop,
        )
    finally:
        engine.dispose()
