"""Subscriptions keep the currency of their target price.

The ``subscriptions`` record has carried ``currency`` since the API accepted it, but the
table had no column for it. The API rebuilds a subscription from its row when the address is
verified, the owner edits it or unsubscribes, so the currency was lost there, and a price
in another currency could then alert. Rows written before this get NULL (the page's own
currency): the table never held theirs.

Revision ID: 0004_subscription_currency
Revises: 0003_dashboards
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_subscription_currency"
down_revision: str | Sequence[str] | None = "0003_dashboards"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("subscriptions", sa.Column("currency", sa.CHAR(3), nullable=True))


def downgrade() -> None:
    op.drop_column("subscriptions", "currency")
