"""The compacted ``subscriptions`` topic into PostgreSQL: ``users`` and ``subscriptions``.

A record upserts its subscription (and its user, by lower-cased email); a tombstone (null
value, key = subscription_id) deletes it. Idempotent and order-safe: a row holds the values
of the record with the newest ``created_at`` seen (``updated_at``), and ``created_at`` is the
oldest seen, so a replay, a redelivered batch or an older record arriving late changes
nothing. A tombstone deletes whatever the row held; records after it in the log create the
subscription again, as they would for any consumer of the topic.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy
from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY

from pricewatch.contract.records import Subscription
from pricewatch.contract.topics import SUBSCRIPTIONS
from pricewatch.settings import Settings
from sinks.base import run_batch_consumer
from sinks.postgres.db import migrated_engine
from sinks.postgres.sink import MAX_URL_CHARS

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
    return SubscriptionDeleted(_clean(key.decode()))  # UnicodeDecodeError is a ValueError


def _clean(value: str) -> str:
    # PostgreSQL text cannot hold NUL; one must not fail the batch on every retry.
    return value.replace("\x00", "")


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
        key = _clean(change.subscription_id)
        before = pending.get(key, _Pending(delete_first=False))
        newest = before.newest
        if newest is None or change.created_at > newest.created_at:
            newest = change
        oldest = before.oldest_created_at
        if oldest is None or change.created_at < oldest:
            oldest = change.created_at
        pending[key] = _Pending(before.delete_first, newest, oldest)
    return pending


DELETE_SUBSCRIPTIONS = text(
    "DELETE FROM subscriptions WHERE subscription_id = ANY(:ids)"
).bindparams(bindparam("ids", type_=ARRAY(sqlalchemy.Text)))

# One statement, emails sorted: two sinks adding the same users lock them in the same order.
# NOT EXISTS first, so a known email does not use up a sequence value. Lower-cased here as
# well as in Python: users' CHECK is PostgreSQL's lower(), which can differ from Python's
# for a few characters, and a batch failing that CHECK would fail on every retry.
INSERT_USERS = text(
    """
    INSERT INTO users (email)
    SELECT DISTINCT lower(address) FROM unnest(:emails) AS new (address)
    WHERE NOT EXISTS (SELECT 1 FROM users WHERE users.email = lower(new.address))
    ORDER BY 1
    ON CONFLICT (email) DO NOTHING
    """
).bindparams(bindparam("emails", type_=ARRAY(sqlalchemy.Text)))

_VERSIONED = (
    "user_id",
    "product_id",
    "url",
    "target_price",
    "currency",
    "drop_percent",
    "reference_price",
    "notify_any_drop",
    "notify_back_in_stock",
    "notify_sold_out",
    "notify_removed",
    "active",
)

_TAKE_NEWER = ",\n        ".join(
    f"{c} = CASE WHEN s.updated_at < EXCLUDED.updated_at THEN EXCLUDED.{c} ELSE s.{c} END"
    for c in _VERSIONED
)

# The newest record's values win; created_at only moves back. The WHERE makes a replay (or
# an older record that adds nothing) a no-op, without a new row version.
UPSERT_SUBSCRIPTION = text(
    f"""
    INSERT INTO subscriptions AS s (
        subscription_id, {", ".join(_VERSIONED)}, created_at, updated_at
    )
    SELECT
        CAST(:subscription_id AS text), u.id, CAST(:product_id AS text), CAST(:url AS text),
        CAST(:target_price AS numeric), CAST(:currency AS char(3)),
        CAST(:drop_percent AS numeric),
        CAST(:reference_price AS numeric), CAST(:notify_any_drop AS boolean),
        CAST(:notify_back_in_stock AS boolean), CAST(:notify_sold_out AS boolean),
        CAST(:notify_removed AS boolean), CAST(:active AS boolean),
        CAST(:created_at AS timestamptz), CAST(:updated_at AS timestamptz)
    FROM users u
    WHERE u.email = lower(CAST(:email AS text))
    ON CONFLICT (subscription_id) DO UPDATE SET
        {_TAKE_NEWER},
        updated_at = GREATEST(s.updated_at, EXCLUDED.updated_at),
        created_at = LEAST(s.created_at, EXCLUDED.created_at)
    WHERE s.updated_at < EXCLUDED.updated_at OR s.created_at > EXCLUDED.created_at
    """
)


def _email(subscription: Subscription) -> str:
    return _clean(subscription.email).strip().lower()  # as pricewatch.ids.subscription_id_for


def _row(subscription_id: str, newest: Subscription, oldest: datetime) -> dict[str, Any]:
    return {
        "subscription_id": subscription_id,
        "email": _email(newest),
        "product_id": newest.product_id,
        "url": _clean(newest.url)[:MAX_URL_CHARS],
        "target_price": newest.target_price,
        "currency": newest.currency,
        "drop_percent": newest.drop_percent,
        "reference_price": newest.reference_price,
        "notify_any_drop": newest.notify_any_drop,
        "notify_back_in_stock": newest.notify_back_in_stock,
        "notify_sold_out": newest.notify_sold_out,
        "notify_removed": newest.notify_removed,
        "active": newest.active,
        "created_at": oldest,
        "updated_at": newest.created_at,
    }


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
            _row(key, p.newest, p.oldest_created_at)
            for key, p in sorted(pending.items())
            if p.newest is not None and p.oldest_created_at is not None
        ]
        # Every address in the batch, also one whose subscription a later tombstone deleted:
        # which users exist does not depend on how the records were batched.
        emails = sorted({_email(c) for c in batch if isinstance(c, Subscription)})
        with self.engine.begin() as connection:
            if deleted:
                connection.execute(DELETE_SUBSCRIPTIONS, {"ids": deleted})
            if emails:
                connection.execute(INSERT_USERS, {"emails": emails})
            if rows:
                connection.execute(UPSERT_SUBSCRIPTION, rows)


def write_subscriptions(
    connection: sqlalchemy.Connection, subscriptions: list[Subscription]
) -> None:
    """Upsert these records (and their users) exactly as the sink does: the API writes a
    subscription synchronously too, and the sink's later write of it changes nothing."""
    if not subscriptions:
        return
    connection.execute(INSERT_USERS, {"emails": sorted({_email(s) for s in subscriptions})})
    connection.execute(
        UPSERT_SUBSCRIPTION,
        [_row(_clean(s.subscription_id), s, s.created_at) for s in subscriptions],
    )


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
