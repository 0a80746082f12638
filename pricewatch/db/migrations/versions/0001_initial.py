"""Products, their price history and the notifications ledger.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out rather than imported from pricewatch.db.schema: a migration must keep
# describing the schema as it was at this revision after schema.py moves on.
MONEY = sa.Numeric(18, 6)
TIMESTAMPTZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "products",
        sa.Column("product_id", sa.Text(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("currency", sa.CHAR(3), nullable=True),
        sa.Column("current_price", MONEY, nullable=True),
        sa.Column("availability", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), server_default=sa.text("'active'"), nullable=False),
        sa.Column("last_checked_at", TIMESTAMPTZ, nullable=True),
        sa.Column("last_ok_at", TIMESTAMPTZ, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", TIMESTAMPTZ, server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "status IN ('active', 'gone', 'error')", name=op.f("ck_products_status")
        ),
        sa.PrimaryKeyConstraint("product_id", name=op.f("pk_products")),
        sa.UniqueConstraint("url", name=op.f("uq_products_url")),
    )
    op.create_table(
        "prices",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),  # bigserial
        sa.Column("product_id", sa.Text(), nullable=False),
        sa.Column("price", MONEY, nullable=True),
        sa.Column("currency", sa.CHAR(3), nullable=True),
        sa.Column("availability", sa.Text(), nullable=True),
        sa.Column("observed_at", TIMESTAMPTZ, nullable=False),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["products.product_id"],
            name=op.f("fk_prices_product_id_products"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prices")),
        sa.UniqueConstraint(
            "product_id", "observed_at", name=op.f("uq_prices_product_id_observed_at")
        ),
    )
    op.create_table(
        "notifications",
        sa.Column("idempotency_key", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("subscription_id", sa.Text(), nullable=False),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("product_id", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", TIMESTAMPTZ, server_default=sa.text("now()"), nullable=False),
        sa.Column("sent_at", TIMESTAMPTZ, nullable=True),
        sa.CheckConstraint(
            "status IN ('sending', 'sent', 'failed', 'retrying')",
            name=op.f("ck_notifications_status"),
        ),
        sa.PrimaryKeyConstraint("idempotency_key", name=op.f("pk_notifications")),
    )


def downgrade() -> None:
    op.drop_table("notifications")
    op.drop_table("prices")
    op.drop_table("products")
