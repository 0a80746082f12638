"""Websites, users, subscriptions and price events; dashboard indexes.

Only adds: existing rows of products, prices and notifications are kept as they are
(``products.website_id`` starts out null; the price sink fills it from the URL's host).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out rather than imported from pricewatch.db.schema (see 0001).
MONEY = sa.Numeric(18, 6)
PERCENT = sa.Numeric(5, 2)
TIMESTAMPTZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "websites",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),  # bigserial
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("host", sa.Text(), nullable=False),
        sa.Column("base_url", sa.Text(), nullable=False),
        sa.Column(
            "adapter_config",
            postgresql.JSONB(),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "default_check_interval_seconds",
            sa.Integer(),
            server_default=sa.text("300"),
            nullable=False,
        ),
        sa.Column("paused", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("created_at", TIMESTAMPTZ, server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "default_check_interval_seconds > 0",
            name=op.f("ck_websites_check_interval_positive"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_websites")),
        sa.UniqueConstraint("host", name=op.f("uq_websites_host")),
    )
    op.add_column("products", sa.Column("website_id", sa.BigInteger(), nullable=True))
    op.create_foreign_key(
        op.f("fk_products_website_id_websites"),
        "products",
        "websites",
        ["website_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.create_index(op.f("ix_products_website_id"), "products", ["website_id"])

    op.create_index(op.f("ix_notifications_sent_at"), "notifications", ["sent_at"])
    op.create_index(op.f("ix_notifications_subscription_id"), "notifications", ["subscription_id"])

    op.create_table(
        "users",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),  # bigserial
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=True),
        sa.Column("verified_at", TIMESTAMPTZ, nullable=True),
        sa.Column("unsubscribe_token_hash", sa.Text(), nullable=True),
        sa.Column("created_at", TIMESTAMPTZ, server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("email = lower(email)", name=op.f("ck_users_email_lower_case")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
    )
    op.create_table(
        "subscriptions",
        sa.Column("subscription_id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("product_id", sa.Text(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("target_price", MONEY, nullable=True),
        sa.Column("drop_percent", PERCENT, nullable=True),
        sa.Column("reference_price", MONEY, nullable=True),
        sa.Column("notify_any_drop", sa.Boolean(), nullable=False),
        sa.Column("notify_back_in_stock", sa.Boolean(), nullable=False),
        sa.Column("notify_sold_out", sa.Boolean(), nullable=False),
        sa.Column("notify_removed", sa.Boolean(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", TIMESTAMPTZ, nullable=False),
        sa.Column("updated_at", TIMESTAMPTZ, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_subscriptions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("subscription_id", name=op.f("pk_subscriptions")),
    )
    op.create_index(op.f("ix_subscriptions_user_id"), "subscriptions", ["user_id"])
    op.create_index(op.f("ix_subscriptions_product_id"), "subscriptions", ["product_id"])

    op.create_table(
        "price_events",
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("product_id", sa.Text(), nullable=False),
        sa.Column("observation_id", sa.Text(), nullable=False),
        sa.Column("observed_at", TIMESTAMPTZ, nullable=False),
        sa.Column("detected_at", TIMESTAMPTZ, nullable=False),
        sa.Column("old_price", MONEY, nullable=True),
        sa.Column("new_price", MONEY, nullable=True),
        sa.Column("old_currency", sa.CHAR(3), nullable=True),
        sa.Column("new_currency", sa.CHAR(3), nullable=True),
        sa.Column("old_availability", sa.Text(), nullable=True),
        sa.Column("new_availability", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_price_events")),
    )
    op.create_index(
        op.f("ix_price_events_product_id_observed_at"),
        "price_events",
        ["product_id", sa.text("observed_at DESC")],
    )
    op.create_index(op.f("ix_price_events_observed_at"), "price_events", ["observed_at"])


def downgrade() -> None:
    op.drop_table("price_events")
    op.drop_table("subscriptions")
    op.drop_table("users")
    op.drop_index(op.f("ix_notifications_subscription_id"), table_name="notifications")
    op.drop_index(op.f("ix_notifications_sent_at"), table_name="notifications")
    op.drop_index(op.f("ix_products_website_id"), table_name="products")
    op.drop_constraint(op.f("fk_products_website_id_websites"), "products", type_="foreignkey")
    op.drop_column("products", "website_id")
    op.drop_table("websites")
