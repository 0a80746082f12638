"""Channels: where an address's alerts go besides email, and their exactly-once ledger.

``channels`` holds each channel sealed (URL and webhook secret: pricewatch.sealing),
``channel_choices`` the channels a subscription chose (none: all), and
``channel_deliveries`` one row per (message, channel), claimed before sending like
``notifications`` is for email.

Revision ID: 0006_channels
Revises: 0005_alert_options
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

revision: str = "0006_channels"
down_revision: str | Sequence[str] | None = "0005_alert_options"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NOW = sa.text("now()")
_STATUSES = "status IN ('sending', 'sent', 'failed', 'retrying')"


def upgrade() -> None:
    op.create_table(
        "channels",
        sa.Column("channel_id", sa.Text(), primary_key=True),
        sa.Column(
            "user_id",
            sa.BigInteger(),
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("label", sa.Text()),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("url_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("url_digest", sa.Text(), nullable=False),
        sa.Column("secret_sealed", sa.LargeBinary()),
        sa.Column("status", sa.Text(), nullable=False, server_default=sa.text("'pending'")),
        sa.Column("paused_reason", sa.Text()),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.Column("confirmed_at", sa.DateTime(timezone=True)),
        sa.Column("paused_at", sa.DateTime(timezone=True)),
        sa.Column("owner_told_at", sa.DateTime(timezone=True)),
        sa.Column("last_sent_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint(
            "kind IN ('webhook', 'ntfy', 'telegram', 'discord', 'slack', 'apprise')",
            name="kind",
        ),
        sa.CheckConstraint("status IN ('pending', 'active', 'paused')", name="status"),
        sa.UniqueConstraint("user_id", "url_digest"),
    )
    op.create_table(
        "channel_choices",
        sa.Column("subscription_id", sa.Text(), primary_key=True),
        sa.Column("channel_ids", ARRAY(sa.Text()), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
    )
    op.create_table(
        "channel_deliveries",
        sa.Column("idempotency_key", sa.Text(), primary_key=True),
        sa.Column("channel_id", sa.Text(), primary_key=True),
        sa.Column("channel_kind", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("subscription_id", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text()),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True)),
        sa.Column("payload", JSONB()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint(_STATUSES, name="status"),
        sa.CheckConstraint("message IN ('alert', 'confirmation')", name="message"),
    )
    op.create_index("ix_channel_deliveries_channel_id", "channel_deliveries", ["channel_id"])
    op.create_index("ix_channel_deliveries_created_at", "channel_deliveries", ["created_at"])
    op.create_index(
        "ix_channel_deliveries_due",
        "channel_deliveries",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'retrying'"),
    )


def downgrade() -> None:
    op.drop_table("channel_deliveries")
    op.drop_table("channel_choices")
    op.drop_table("channels")
