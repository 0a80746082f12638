"""The compacted ``subscriptions`` topic into PostgreSQL: ``users`` and ``subscriptions``.

A record upserts its subscription (and its user, by lower-cased email); a tombstone (null
value, key = subscription_id) deletes it. Idempotent and order-safe through the shared
upsert (``pricewatch.db.subscriptions``): a replay, a redelivered batch or an older record
arriving late changes nothing. A tombstone deletes whatever the row held; records after it
in the log create the subscription again, as they would for any consumer of the topic.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import sqlalchemy

from pricewatch.contract.records import Subscription
from pricewatch.contract.topics import SUBSCRIPTIONS
from pricewatch.db.engine import migrated_engine
from pricewatch.db.subscriptions import (
    DELETE_SUBSCRIPTIONS,
    INSERT_USERS,
    UPSERT_SUBSCRIPTION,
    normalized_email,
    subscription_row,
)
from pricewatch.settings import Settings
from sinks.contract import Batch, Feed, SinkKind
from sinks.postgres.subscription_changes import (
    SubscriptionChange,
    parse_subscription,
    parse_tombstone,
    reduce_batch,
)

log = logging.getLogger(__name__)

ROLE = "subscriptions-sink"


class SubscriptionSink:
    """Writes a batch of subscription records and tombstones in one transaction."""

    def __init__(self, engine: sqlalchemy.Engine) -> None:
        self.engine = engine

    async def write(self, batch: Batch[SubscriptionChange]) -> None:
        if batch:
            await asyncio.to_thread(self.write_blocking, batch.values)

    def write_blocking(self, batch: list[SubscriptionChange]) -> None:
        pending = reduce_batch(batch)
        deleted = sorted(key for key, p in pending.items() if p.delete_first)
        rows = [
            subscription_row(key, p.newest, p.oldest_created_at)
            for key, p in sorted(pending.items())
            if p.newest is not None and p.oldest_created_at is not None
        ]
        # Every address in the batch, also one whose subscription a later tombstone deleted:
        # which users exist does not depend on how the records were batched.
        emails = sorted({normalized_email(c) for c in batch if isinstance(c, Subscription)})
        with self.engine.begin() as connection:
            if deleted:
                connection.execute(DELETE_SUBSCRIPTIONS, {"ids": deleted})
            if emails:
                connection.execute(INSERT_USERS, {"emails": emails})
            if rows:
                connection.execute(UPSERT_SUBSCRIPTION, rows)


@asynccontextmanager
async def open_sink(settings: Settings) -> AsyncIterator[SubscriptionSink]:
    """Migrate the database, then lend the sink its engine."""
    async with migrated_engine(settings) as engine:
        yield SubscriptionSink(engine)


SINK = SinkKind(
    feeds=(
        Feed(ROLE, SUBSCRIPTIONS, parse_subscription, parse_tombstone=parse_tombstone, bulk=True),
    ),
    open=open_sink,
)
