"""Subscriptions keep their price-increase and minimum-change options (issue 18).

The ``subscriptions`` record carries ``notify_price_increase``, ``min_change_amount`` and
``min_change_percent``; without columns for them the API, which rebuilds a subscription
from its row when the address is verified, the owner edits it or unsubscribes, would
republish it without them (as it once lost the currency). Rows written before this asked
for neither: false and NULL.

Revision ID: 0005_alert_options
Revises: 0004_subscription_currency
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_alert_options"
down_revision: str | Sequence[str] | None = "0004_subscription_currency"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "subscriptions",
        sa.Column("notify_price_increase", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column("subscriptions", sa.Column("min_change_amount", sa.Numeric(18, 6)))
    op.add_column("subscriptions", sa.Column("min_change_percent", sa.Numeric(5, 2)))


def downgrade() -> None:
    op.drop_column("subscriptions", "min_change_percent")
    op.drop_column("subscriptions", "min_change_amount")
    op.drop_column("subscriptions", "notify_price_increase")
