"""What the compacted ``subscriptions`` topic says to a consumer that keeps a copy: a record
upserts its subscription, a tombstone (null value, key = subscription_id) deletes it; and
what a batch of them amounts to. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pricewatch.contract.records import Subscription
from pricewatch.db import without_nul


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
