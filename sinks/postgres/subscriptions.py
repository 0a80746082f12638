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
from dataclasses import dataclass
from datetime import datetime

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
    without_nul,
)
from pricewatch.settings import Settings
from sinks.base import run_batch_consumer

log = logging.getLogger(__name__)

ROLE = "subscriptions-sink"


@dataclass(frozen=True)
class SubscriptionDeleted:
    """A tombstone on the subscriptions topic."""

    subscription_id: str


SubscriptionChange = Subscription | SubscriptionDeleted


def parse_subscription(value: bytes) -> SubscriptionChange:
    return Subscription.model_validate_json(value)


def parse_tombstone(key: bytes | None) -> SubscriptionChange:
    """The deletion a null value stands for. A ValueError dead-letters the record."""
    if not key:
        raise ValueError("a tombstone without a key (subscription_id)")
    return SubscriptionDeleted(without_nul(key.decode()))  # UnicodeDecodeError is a ValueError


@dataclass(frozen=True)
class _Pending:
    """What a batch does to one subscription, in log order."""

    delete_first: bool  # a tombstone came in the batch: delete, then apply what followed it
    newest: Subscription | None = None  # the record after it with the newest created_at
    oldest_created_at: datetime | None = None


def reduce_batch(batch: list[SubscriptionChange]) -> dict[str, _Pending]:
    """Per subscription_id, the batch's net effect.

    Applying it equals applying the records one by one: only the newest of several records
    can win, and a tombstone discards whatever came before it. The records of one
    subscription share a partition, so the batch holds them in log order.
    """
    pending: dict[str, _Pending] = {}
    for change in batch:
        if isinstance(change, SubscriptionDeleted):
            pending[change.subscription_id] = _Pending(delete_first=True)
            continue
        key = without_nul(change.subscription_id)
        before = pending.get(key, _Pending(delete_first=False))
        newest = before.newest
        if newest is None or change.created_at > newest.created_at:
            newest = change
        oldest = before.oldest_created_at
        if oldest is None or change.created_at < oldest:
            oldest = change.created_at
        pending[key] = _Pending(before.delete_first, newest, oldest)
    return pending


class SubscriptionSink:
    """Writes a batch of subscription records and tombstones in one transaction."""

    def __init__(self, engine: sqlalchemy.Engine) -> None:
        self.engine = engine

    async def write(self, batch: list[SubscriptionChange]) -> None:
        if batch:
            await asyncio.to_thread(self.write_blocking, batch)

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


async def run_subscriptions_sink(settings: Settings, stop: asyncio.Event) -> None:
    """Migrate the database, then consume the subscriptions topic into it until ``stop``."""
    async with migrated_engine(settings) as engine:
        await run_batch_consumer(
            settings,
            role=ROLE,
            topic_spec=SUBSCRIPTIONS,
            parse=parse_subscription,
            parse_tombstone=parse_tombstone,
            sink=SubscriptionSink(engine),
            stop=stop,
        )
