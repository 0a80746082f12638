"""The API's SQL: what it reads and writes in PostgreSQL. Synchronous (SQLAlchemy +
psycopg 3): the services call these through ``asyncio.to_thread``.

The API writes a subscription (and its user) here as well as to the ``subscriptions`` topic,
with the subscriptions sink's own idempotent upsert, so verifying, unsubscribing and the
manage page work even while that sink lags behind the topic.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from pricewatch.contract.records import Subscription
from pricewatch.db.subscriptions import write_subscriptions

Row = dict[str, Any]

MAX_PRICE_POINTS = 2000
_SUBSCRIPTION_COLUMNS = """
    s.subscription_id, s.product_id, s.url, s.target_price, s.currency AS target_currency,
    s.drop_percent,
    s.reference_price, s.notify_any_drop, s.notify_price_increase, s.min_change_amount,
    s.min_change_percent, s.notify_back_in_stock, s.notify_sold_out,
    s.notify_removed, s.active, s.created_at, s.updated_at,
    u.id AS user_id, u.email, u.verified_at
"""


def _rows(result: sqlalchemy.CursorResult[Any]) -> list[Row]:
    return [dict(r) for r in result.mappings()]


def ping(engine: sqlalchemy.Engine) -> None:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def save_subscriptions(engine: sqlalchemy.Engine, subscriptions: list[Subscription]) -> None:
    with engine.begin() as connection:
        write_subscriptions(connection, subscriptions)


def ensure_user(engine: sqlalchemy.Engine, email: str) -> Row:
    """The user of this address (created unverified when new): id, email, verified_at."""
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO users (email) VALUES (lower(:email)) ON CONFLICT (email) DO NOTHING"),
            {"email": email},
        )
        return dict(
            connection.execute(
                text("SELECT id, email, verified_at FROM users WHERE email = lower(:email)"),
                {"email": email},
            )
            .mappings()
            .one()
        )


def user_by_email(engine: sqlalchemy.Engine, email: str) -> Row | None:
    with engine.connect() as connection:
        row = (
            connection.execute(
                text("SELECT id, email, verified_at FROM users WHERE email = lower(:email)"),
                {"email": email},
            )
            .mappings()
            .first()
        )
    return None if row is None else dict(row)


def mark_verified(engine: sqlalchemy.Engine, email: str) -> Row | None:
    """Set verified_at once (the first verification's time is kept); None: no such user."""
    with engine.begin() as connection:
        row = (
            connection.execute(
                text(
                    "UPDATE users SET verified_at = COALESCE(verified_at, now()) "
                    "WHERE email = lower(:email) RETURNING id, email, verified_at"
                ),
                {"email": email},
            )
            .mappings()
            .first()
        )
    return None if row is None else dict(row)


def subscriptions_of(engine: sqlalchemy.Engine, email: str) -> list[Row]:
    """Every subscription of an address, with its product's latest known state."""
    with engine.connect() as connection:
        return _rows(
            connection.execute(
                text(
                    f"""
                    SELECT {_SUBSCRIPTION_COLUMNS},
                           p.title, p.current_price, p.currency, p.availability,
                           p.last_checked_at
                    FROM subscriptions s
                    JOIN users u ON u.id = s.user_id
                    LEFT JOIN products p ON p.product_id = s.product_id
                    WHERE u.email = lower(:email)
                    ORDER BY s.created_at, s.subscription_id
                    """
                ),
                {"email": email},
            )
        )


def subscription_by_id(engine: sqlalchemy.Engine, subscription_id: str) -> Row | None:
    with engine.connect() as connection:
        row = (
            connection.execute(
                text(
                    f"""
                    SELECT {_SUBSCRIPTION_COLUMNS}
                    FROM subscriptions s JOIN users u ON u.id = s.user_id
                    WHERE s.subscription_id = :subscription_id
                    """
                ),
                {"subscription_id": subscription_id},
            )
            .mappings()
            .first()
        )
    return None if row is None else dict(row)


def price_history(engine: sqlalchemy.Engine, product_id: str) -> tuple[Row | None, list[Row]]:
    """(product, its newest price rows in time order); (None, []) for an unknown product."""
    with engine.connect() as connection:
        product = (
            connection.execute(
                text("SELECT product_id, url, title FROM products WHERE product_id = :id"),
                {"id": product_id},
            )
            .mappings()
            .first()
        )
        if product is None:
            return None, []
        points = _rows(
            connection.execute(
                text(
                    """
                    SELECT observed_at, price, currency, availability FROM (
                        SELECT * FROM prices WHERE product_id = :id
                        ORDER BY observed_at DESC LIMIT :limit
                    ) newest ORDER BY observed_at
                    """
                ),
                {"id": product_id, "limit": MAX_PRICE_POINTS},
            )
        )
    return dict(product), points


def subscription_record(row: Row, *, now: datetime, **changes: Any) -> Subscription:
    """A new version of a stored subscription (``created_at`` = now: the newest wins)."""
    fields: dict[str, Any] = {
        "subscription_id": row["subscription_id"],
        "email": row["email"],
        "product_id": row["product_id"],
        "url": row["url"],
        "target_price": row["target_price"],
        "currency": row["target_currency"],
        "drop_percent": row["drop_percent"],
        "reference_price": row["reference_price"],
        "notify_any_drop": row["notify_any_drop"],
        "notify_price_increase": row["notify_price_increase"],
        "min_change_amount": row["min_change_amount"],
        "min_change_percent": row["min_change_percent"],
        "notify_back_in_stock": row["notify_back_in_stock"],
        "notify_sold_out": row["notify_sold_out"],
        "notify_removed": row["notify_removed"],
        "active": row["active"],
        "verified": row["verified_at"] is not None,
        # A clock step back must not make the new version lose to the stored one.
        "created_at": max(now, row["updated_at"]),
    }
    fields.update(changes)
    return Subscription(**fields)


# --- websites, products, users (the admin API and GET /api/websites) -------------------

_WEBSITE_COLUMNS = (
    "id, name, host, base_url, adapter_config, default_check_interval_seconds, paused, created_at"
)


def websites(engine: sqlalchemy.Engine) -> list[Row]:
    with engine.connect() as connection:
        return _rows(
            connection.execute(text(f"SELECT {_WEBSITE_COLUMNS} FROM websites ORDER BY host"))
        )


def website_for_host(engine: sqlalchemy.Engine, host: str) -> Row | None:
    with engine.connect() as connection:
        row = (
            connection.execute(
                text(f"SELECT {_WEBSITE_COLUMNS} FROM websites WHERE host = :host"),
                {"host": host},
            )
            .mappings()
            .first()
        )
    return None if row is None else dict(row)


def add_website(engine: sqlalchemy.Engine, values: Row) -> Row | None:
    """The new website; None when one with this host exists."""
    with engine.begin() as connection:
        row = (
            connection.execute(
                text(
                    f"""
                    INSERT INTO websites (name, host, base_url, adapter_config,
                                          default_check_interval_seconds, paused)
                    VALUES (:name, :host, :base_url, :adapter_config, :interval, :paused)
                    ON CONFLICT (host) DO NOTHING
                    RETURNING {_WEBSITE_COLUMNS}
                    """
                ).bindparams(sqlalchemy.bindparam("adapter_config", type_=JSONB)),
                values,
            )
            .mappings()
            .first()
        )
    return None if row is None else dict(row)


def edit_website(engine: sqlalchemy.Engine, website_id: int, changes: Row) -> Row | None:
    allowed = ("name", "adapter_config", "default_check_interval_seconds", "paused")
    sets = [f"{c} = :{c}" for c in allowed if c in changes]
    with engine.begin() as connection:
        statement = text(
            f"UPDATE websites SET {', '.join(sets) or 'id = id'} WHERE id = :id "
            f"RETURNING {_WEBSITE_COLUMNS}"
        )
        if "adapter_config" in changes:
            statement = statement.bindparams(sqlalchemy.bindparam("adapter_config", type_=JSONB))
        row = connection.execute(statement, {**changes, "id": website_id}).mappings().first()
    return None if row is None else dict(row)


def products(engine: sqlalchemy.Engine, limit: int, offset: int) -> list[Row]:
    with engine.connect() as connection:
        return _rows(
            connection.execute(
                text(
                    """
                    SELECT p.product_id, p.url, p.title, p.current_price, p.currency,
                           p.availability, p.status, p.last_checked_at, p.website_id,
                           (SELECT count(*) FROM subscriptions s
                            WHERE s.product_id = p.product_id) AS subscriptions
                    FROM products p ORDER BY p.created_at, p.product_id
                    LIMIT :limit OFFSET :offset
                    """
                ),
                {"limit": limit, "offset": offset},
            )
        )


def users(engine: sqlalchemy.Engine, limit: int, offset: int) -> list[Row]:
    with engine.connect() as connection:
        return _rows(
            connection.execute(
                text(
                    """
                    SELECT u.id, u.email, u.verified_at, u.created_at,
                           count(s.subscription_id) AS subscriptions,
                           count(s.subscription_id) FILTER (WHERE s.active)
                               AS active_subscriptions
                    FROM users u LEFT JOIN subscriptions s ON s.user_id = u.id
                    GROUP BY u.id ORDER BY u.id LIMIT :limit OFFSET :offset
                    """
                ),
                {"limit": limit, "offset": offset},
            )
        )


# --- channels (api.services.channels) --------------------------------------------------

_CHANNEL_COLUMNS = """
    c.channel_id, c.kind, c.label, c.target, c.status, c.paused_reason,
    c.consecutive_failures, c.last_error, c.created_at, c.confirmed_at, c.paused_at,
    c.last_sent_at, u.email
"""


def channels_of(engine: sqlalchemy.Engine, email: str) -> list[Row]:
    with engine.connect() as connection:
        return _rows(
            connection.execute(
                text(
                    f"""
                    SELECT {_CHANNEL_COLUMNS} FROM channels c JOIN users u ON u.id = c.user_id
                    WHERE u.email = lower(:email) ORDER BY c.created_at, c.channel_id
                    """
                ),
                {"email": email},
            )
        )


def channel_by_id(engine: sqlalchemy.Engine, channel_id: str) -> Row | None:
    with engine.connect() as connection:
        row = (
            connection.execute(
                text(
                    f"SELECT {_CHANNEL_COLUMNS} FROM channels c JOIN users u ON u.id = c.user_id "
                    "WHERE c.channel_id = :channel_id"
                ),
                {"channel_id": channel_id},
            )
            .mappings()
            .first()
        )
    return None if row is None else dict(row)


def add_channel(engine: sqlalchemy.Engine, values: Row, limit: int) -> tuple[str, Row | None]:
    """('added', row), ('exists', None) when the address has this URL already, or ('full',
    None) when it has ``limit`` channels. The address's user row is locked meanwhile, so two
    adds at once cannot pass the limit together."""
    with engine.begin() as connection:
        user = connection.execute(
            text("SELECT id FROM users WHERE email = lower(:email) FOR UPDATE"),
            {"email": values["email"]},
        ).first()
        if user is None:
            raise LookupError("no such address")
        count = connection.execute(
            text("SELECT count(*) FROM channels WHERE user_id = :user_id"), {"user_id": user[0]}
        ).scalar_one()
        if count >= limit:
            return "full", None
        inserted = connection.execute(
            text(
                """
                INSERT INTO channels (channel_id, user_id, kind, label, target, url_sealed,
                                      url_digest, secret_sealed)
                VALUES (:channel_id, :user_id, :kind, :label, :target, :url_sealed,
                        :url_digest, :secret_sealed)
                ON CONFLICT (user_id, url_digest) DO NOTHING
                RETURNING channel_id
                """
            ),
            {**values, "user_id": user[0]},
        ).first()
    if inserted is None:
        return "exists", None
    return "added", channel_by_id(engine, values["channel_id"])


def confirm_channel(engine: sqlalchemy.Engine, channel_id: str) -> Row | None:
    """Mark a channel confirmed (active, once: a paused one stays paused); None: no such."""
    with engine.begin() as connection:
        connection.execute(
            text(
                """
                UPDATE channels SET status = 'active', confirmed_at = now(), last_error = NULL
                WHERE channel_id = :channel_id AND status = 'pending'
                """
            ),
            {"channel_id": channel_id},
        )
    return channel_by_id(engine, channel_id)


def set_channel_paused(engine: sqlalchemy.Engine, channel_id: str, paused: bool) -> None:
    """Pause (by its owner) or resume a confirmed channel; resuming starts the failure count
    anew. A channel not confirmed yet is not changed."""
    statement = (
        """
        UPDATE channels SET status = 'paused', paused_reason = 'owner', paused_at = now(),
                            owner_told_at = now()
        WHERE channel_id = :channel_id AND status = 'active'
        """
        if paused
        else """
        UPDATE channels SET status = 'active', paused_reason = NULL, paused_at = NULL,
                            owner_told_at = NULL, consecutive_failures = 0
        WHERE channel_id = :channel_id AND status = 'paused'
        """
    )
    with engine.begin() as connection:
        connection.execute(text(statement), {"channel_id": channel_id})


def set_channel_label(engine: sqlalchemy.Engine, channel_id: str, label: str | None) -> None:
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE channels SET label = :label WHERE channel_id = :channel_id"),
            {"channel_id": channel_id, "label": label},
        )


def remove_channel(engine: sqlalchemy.Engine, channel_id: str) -> None:
    with engine.begin() as connection:
        connection.execute(
            text("DELETE FROM channels WHERE channel_id = :channel_id"), {"channel_id": channel_id}
        )


def channel_choices_of(engine: sqlalchemy.Engine, email: str) -> dict[str, list[str]]:
    """subscription id -> the channels it chose, for the address's subscriptions that chose."""
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                """
                SELECT cc.subscription_id, cc.channel_ids FROM channel_choices cc
                JOIN subscriptions s ON s.subscription_id = cc.subscription_id
                JOIN users u ON u.id = s.user_id WHERE u.email = lower(:email)
                """
            ),
            {"email": email},
        )
        return {r.subscription_id: list(r.channel_ids) for r in rows}


def choose_channels(
    engine: sqlalchemy.Engine, subscription_id: str, channel_ids: list[str] | None
) -> None:
    """The channels a subscription sends to: ``None``, every active one of its address."""
    with engine.begin() as connection:
        if channel_ids is None:
            connection.execute(
                text("DELETE FROM channel_choices WHERE subscription_id = :id"),
                {"id": subscription_id},
            )
            return
        connection.execute(
            text(
                """
                INSERT INTO channel_choices (subscription_id, channel_ids, updated_at)
                VALUES (:id, :channel_ids, now())
                ON CONFLICT (subscription_id) DO UPDATE
                SET channel_ids = EXCLUDED.channel_ids, updated_at = now()
                """
            ).bindparams(sqlalchemy.bindparam("channel_ids", type_=ARRAY(sqlalchemy.Text))),
            {"id": subscription_id, "channel_ids": channel_ids},
        )
