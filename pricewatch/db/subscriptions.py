"""Writing subscriptions (and their users) to PostgreSQL, idempotently and in any order.

The subscriptions sink applies the compacted ``subscriptions`` topic with these statements,
and the API makes the same upsert when it publishes a change, so it can read back what it
wrote without waiting for the sink. A row holds the values of the record with the newest
``created_at`` seen (``updated_at``), and ``created_at`` is the oldest seen, so a replay, a
redelivered batch or an older record arriving late changes nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy
from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY

from pricewatch.contract.records import Subscription
from pricewatch.db import without_nul
from pricewatch.db.schema import MAX_URL_CHARS

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
    "notify_price_increase",
    "min_change_amount",
    "min_change_percent",
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
        CAST(:notify_price_increase AS boolean), CAST(:min_change_amount AS numeric),
        CAST(:min_change_percent AS numeric), CAST(:notify_back_in_stock AS boolean),
        CAST(:notify_sold_out AS boolean),
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


def normalized_email(subscription: Subscription) -> str:
    return without_nul(subscription.email).strip().lower()  # as pricewatch.ids.subscription_id_for


def subscription_row(
    subscription_id: str, newest: Subscription, oldest: datetime
) -> dict[str, Any]:
    return {
        "subscription_id": subscription_id,
        "email": normalized_email(newest),
        "product_id": newest.product_id,
        "url": without_nul(newest.url)[:MAX_URL_CHARS],
        "target_price": newest.target_price,
        "currency": newest.currency,
        "drop_percent": newest.drop_percent,
        "reference_price": newest.reference_price,
        "notify_any_drop": newest.notify_any_drop,
        "notify_price_increase": newest.notify_price_increase,
        "min_change_amount": newest.min_change_amount,
        "min_change_percent": newest.min_change_percent,
        "notify_back_in_stock": newest.notify_back_in_stock,
        "notify_sold_out": newest.notify_sold_out,
        "notify_removed": newest.notify_removed,
        "active": newest.active,
        "created_at": oldest,
        "updated_at": newest.created_at,
    }


def write_subscriptions(
    connection: sqlalchemy.Connection, subscriptions: list[Subscription]
) -> None:
    """Upsert these records (and their users) exactly as the sink does: the API writes a
    subscription synchronously too, and the sink's later write of it changes nothing."""
    if not subscriptions:
        return
    connection.execute(
        INSERT_USERS, {"emails": sorted({normalized_email(s) for s in subscriptions})}
    )
    connection.execute(
        UPSERT_SUBSCRIPTION,
        [subscription_row(without_nul(s.subscription_id), s, s.created_at) for s in subscriptions],
    )
