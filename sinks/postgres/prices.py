"""Price observations into PostgreSQL: each product's latest state and its price history.

Idempotent by construction, so at-least-once delivery and replays from offset zero change
nothing: a product row only moves forward in ``observed_at``, and a history row is keyed by
``(product_id, observed_at)`` and only written when the price, currency or availability
differs from the row before it.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import sqlalchemy
from sqlalchemy import text

from pricewatch.contract.records import Outcome, PriceObservation
from pricewatch.contract.topics import PRICE_OBSERVATIONS
from pricewatch.db.engine import migrated_engine
from pricewatch.db.schema import MAX_URL_CHARS
from pricewatch.settings import Settings
from sinks.contract import Batch, Feed, SinkKind

log = logging.getLogger(__name__)

ROLE = "postgres-sink"

# Scraped text is untrusted: PostgreSQL text cannot hold NUL, and a page can put megabytes
# in a title. Either would otherwise fail the batch on every retry.
MAX_TITLE_CHARS = 1000
MAX_ERROR_CHARS = 2000

_STATUS_BY_OUTCOME = {Outcome.OK: "active", Outcome.GONE: "gone", Outcome.ERROR: "error"}


def _recordset(columns: str) -> str:
    """A batch passed as one JSON array of objects, as rows named ``b``.

    JSON rather than one array per column: psycopg quotes text-array elements in Python,
    the json module encodes in C, and the column types are declared here once.
    """
    return f"json_to_recordset(CAST(:rows AS json)) AS b ({columns})"


PRODUCT_COLUMNS = (
    "product_id text, url text, title text, currency char(3), price numeric,"
    " availability text, status text, observed_at timestamptz, last_ok_at timestamptz,"
    " last_error text, host text"
)

# One statement per round of the batch (a round holds at most one observation per product,
# see _rounds), the rows as one JSON parameter: per row it does what one statement per
# observation in observed_at order would, at about twice the rows per second of an
# executemany of that statement (bench/postgres_sink.py).
# The WHERE on the update makes a replayed or out-of-order (older) observation a no-op.
# EXCLUDED.status is this observation's outcome as a status; an error leaves a known
# product's status alone. A URL already owned by another product_id (inconsistent producer)
# skips the row instead of failing the batch forever on the unique constraint.
# website_id: the website whose host is the URL's, if there is one.
# Both lookups of products are scalar subqueries on purpose: a subquery stays one index
# probe per row, where EXISTS becomes a join the planner may answer by hashing the table.
UPSERT_PRODUCTS = text(
    f"""
    INSERT INTO products AS p (
        product_id, url, title, currency, current_price, availability,
        status, last_checked_at, last_ok_at, last_error, website_id
    )
    SELECT
        b.product_id, b.url, b.title, b.currency, b.price, b.availability, b.status,
        b.observed_at, b.last_ok_at, b.last_error,
        (SELECT w.id FROM websites w WHERE w.host = b.host)
    FROM {_recordset(PRODUCT_COLUMNS)}
    WHERE COALESCE(
        (SELECT other.product_id FROM products other WHERE other.url = b.url), b.product_id
    ) = b.product_id
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
        last_error = COALESCE(EXCLUDED.last_error, p.last_error),
        website_id = COALESCE(EXCLUDED.website_id, p.website_id)
    WHERE p.last_checked_at IS NULL OR p.last_checked_at < EXCLUDED.last_checked_at
    """
)

PRICE_COLUMNS = (
    "product_id text, price numeric, currency char(3), availability text, observed_at timestamptz"
)

# Only a change against the newest history row at or before this observation is recorded;
# replaying an observation finds itself as that row and adds nothing. One statement per
# round, after every product upsert of the batch.
INSERT_PRICES = text(
    f"""
    INSERT INTO prices (product_id, price, currency, availability, observed_at)
    SELECT b.product_id, b.price, b.currency, b.availability, b.observed_at
    FROM {_recordset(PRICE_COLUMNS)}
    WHERE (SELECT true FROM products WHERE products.product_id = b.product_id)
      AND NOT EXISTS (
        SELECT 1 FROM (
            SELECT price, currency, availability FROM prices
            WHERE prices.product_id = b.product_id
              AND prices.observed_at <= b.observed_at
            ORDER BY prices.observed_at DESC
            LIMIT 1
        ) AS previous
        WHERE previous.price IS NOT DISTINCT FROM b.price
          AND previous.currency IS NOT DISTINCT FROM b.currency
          AND previous.availability IS NOT DISTINCT FROM b.availability
      )
    ON CONFLICT (product_id, observed_at) DO NOTHING
    """
)


def _clean(value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    return value.replace("\x00", "")[:limit]


@functools.lru_cache(maxsize=65_536)  # a product's URL comes back every few minutes
def _host(url: str) -> str | None:
    """The URL's host, lower-cased, as ``websites.host`` holds it; None if it has none."""
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def _row(observation: PriceObservation) -> dict[str, str | None]:
    """One observation as the statements' columns, every value text (or NULL)."""
    is_ok = observation.outcome is Outcome.OK
    url = _clean(observation.url, MAX_URL_CHARS) or ""
    observed_at = observation.observed_at.isoformat()
    return {
        "product_id": observation.product_id,
        "url": url,
        "host": _host(url),
        "title": _clean(observation.title, MAX_TITLE_CHARS),
        "currency": observation.currency,
        "price": None if observation.price is None else format(observation.price, "f"),
        "availability": observation.availability.value if observation.availability else None,
        "status": _STATUS_BY_OUTCOME[observation.outcome],
        "observed_at": observed_at,
        "last_ok_at": observed_at if is_ok else None,
        "last_error": (
            _clean(observation.error or "unknown error", MAX_ERROR_CHARS)
            if observation.outcome is Outcome.ERROR
            else None
        ),
    }


Row = dict[str, str | None]


def _rounds(rows: list[Row]) -> list[list[Row]]:
    """Rows in order, split so that round n holds each product's n-th row.

    One statement cannot update a row twice, and it does not see its own writes: within a
    round every product is there once, and the rounds run one after the other, so a
    product's rows still apply in order. Observations of a product rarely share a batch
    (the scheduler asks for a product every few minutes): one round is the usual case.
    """
    rounds: list[list[Row]] = []
    seen: dict[str | None, int] = {}
    for row in rows:
        product_id = row["product_id"]
        n = seen.get(product_id, 0)
        seen[product_id] = n + 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(row)
    return rounds


def _first_per_url(round_: list[Row]) -> list[Row]:
    """Drops a row whose URL an earlier row of the round gives another product_id.

    One by one, the earlier row would own the URL by then and the later one be skipped; in
    one statement both would pass the check and the unique constraint fail the batch.
    """
    owner: dict[str | None, str | None] = {}
    kept = []
    for row in round_:
        if owner.setdefault(row["url"], row["product_id"]) == row["product_id"]:
            kept.append(row)
    return kept


def _params(rows: list[Row]) -> dict[str, str]:
    """The rows as one JSON parameter, sorted by product_id (row locks in one order)."""
    return {"rows": json.dumps(sorted(rows, key=lambda row: row["product_id"] or ""))}


class PriceHistorySink:
    """Writes a batch of observations to ``products`` and ``prices`` in one transaction."""

    def __init__(self, engine: sqlalchemy.Engine) -> None:
        self.engine = engine

    async def write(self, batch: Batch[PriceObservation]) -> None:
        if batch:
            await asyncio.to_thread(self.write_blocking, batch.values)

    def write_blocking(self, observations: list[PriceObservation]) -> None:
        # In observed_at order, so several observations of one product in a batch apply as
        # they happened (the batch spans partitions and arrives in no particular order).
        rows = [_row(o) for o in sorted(observations, key=lambda o: o.observed_at)]
        price_rows = [row for row in rows if row["last_ok_at"] is not None]
        with self.engine.begin() as connection:
            for round_ in _rounds(rows):
                connection.execute(UPSERT_PRODUCTS, _params(_first_per_url(round_)))
            for round_ in _rounds(price_rows):
                connection.execute(INSERT_PRICES, _params(round_))


@asynccontextmanager
async def open_sink(settings: Settings) -> AsyncIterator[PriceHistorySink]:
    """Migrate the database, then lend the sink its engine."""
    async with migrated_engine(settings) as engine:
        yield PriceHistorySink(engine)


SINK = SinkKind(
    feeds=(Feed(ROLE, PRICE_OBSERVATIONS, PriceObservation.model_validate_json, bulk=True),),
    open=open_sink,
)
