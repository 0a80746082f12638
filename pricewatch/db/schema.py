"""The PostgreSQL schema, as SQLAlchemy Core tables.

Alembic migrations in ``migrations/versions`` create it; this module describes it for queries
and for comparing a migrated database against the code (``tests/integration``). Change both
together: a new column here needs a new revision there.
"""

from __future__ import annotations

from sqlalchemy import (
    CHAR,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

# The longest URL the url columns get: longer ones (untrusted input) are cut, not refused.
MAX_URL_CHARS = 8000

# Deterministic constraint names, so later migrations can refer to them by name.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# numeric(18, 6) holds every value the wire contract's Money type allows (18 digits, 6 decimal).
MONEY = Numeric(18, 6, asdecimal=True)
TIMESTAMPTZ = DateTime(timezone=True)

PRODUCT_STATUSES = ("active", "gone", "error")
NOTIFICATION_STATUSES = ("sending", "sent", "failed", "retrying")
CHANNEL_KINDS = ("webhook", "ntfy", "telegram", "discord", "slack", "apprise")
# pending: added, its test message sent, nothing else until its owner confirms it;
# active: confirmed, gets alerts; paused: by its owner, or after failing too often.
CHANNEL_STATUSES = ("pending", "active", "paused")
CHANNEL_MESSAGES = ("alert", "confirmation")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


# A shop Pricewatch knows how to read. Products link to theirs by URL host (lower-cased,
# exactly: "www.shop.example" and "shop.example" are two hosts).
websites = Table(
    "websites",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False),
    Column("host", Text, nullable=False, unique=True),
    Column("base_url", Text, nullable=False),
    Column("adapter_config", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("default_check_interval_seconds", Integer, nullable=False, server_default=text("300")),
    Column("paused", Boolean, nullable=False, server_default=text("false")),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    CheckConstraint("default_check_interval_seconds > 0", name="check_interval_positive"),
)

products = Table(
    "products",
    metadata,
    Column("product_id", Text, primary_key=True),  # pricewatch.ids.product_id_for(url)
    Column("url", Text, nullable=False, unique=True),
    Column("title", Text),
    Column("currency", CHAR(3)),
    Column("current_price", MONEY),
    Column("availability", Text),
    # 'error' only while a product has never been read successfully: a later error on a known
    # product says nothing about the product, so it keeps its status.
    Column("status", Text, nullable=False, server_default=text("'active'")),
    Column("last_checked_at", TIMESTAMPTZ),  # observed_at of the newest observation
    Column("last_ok_at", TIMESTAMPTZ),  # observed_at of the newest ok observation
    Column("last_error", Text),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    # Filled by the price sink from the URL's host when that website exists (revision 0002).
    Column("website_id", BigInteger, ForeignKey("websites.id", ondelete="SET NULL")),
    CheckConstraint(_one_of("status", PRODUCT_STATUSES), name="status"),
    Index("ix_products_website_id", "website_id"),
)

# One row per change of (price, currency, availability), not per observation.
# UNIQUE(product_id, observed_at) makes replays no-ops, and its index also serves
# "latest price of a product" (a backward scan), so no separate descending index is kept.
prices = Table(
    "prices",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column(
        "product_id",
        Text,
        ForeignKey("products.product_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("price", MONEY),
    Column("currency", CHAR(3)),
    Column("availability", Text),
    Column("observed_at", TIMESTAMPTZ, nullable=False),
    UniqueConstraint("product_id", "observed_at"),
)

# One row per email Pricewatch meant to send: the claim that makes sending idempotent.
notifications = Table(
    "notifications",
    metadata,
    Column("idempotency_key", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("subscription_id", Text, nullable=False),
    Column("email", Text, nullable=False),
    Column("product_id", Text, nullable=False),
    Column("event_id", Text, nullable=False),
    # sending: claimed, outcome unknown until marked (a crash leaves it so: never resent);
    # sent: delivered to the backend; failed: permanently refused;
    # retrying: a temporary error, nothing was sent, the next delivery sends it.
    Column("status", Text, nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("last_error", Text),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    Column("sent_at", TIMESTAMPTZ),
    CheckConstraint(_one_of("status", NOTIFICATION_STATUSES), name="status"),
    # Dashboards: emails sent per interval; alerts per day (revision 0003_dashboards);
    # a subscription's notifications.
    Index("ix_notifications_sent_at", "sent_at"),
    Index("ix_notifications_created_at", "created_at"),
    Index("ix_notifications_subscription_id", "subscription_id"),
)

# One row per email address. The subscriptions sink creates them (email lower-cased); the
# other columns belong to whatever verifies addresses and handles unsubscribes.
users = Table(
    "users",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("email", Text, nullable=False, unique=True),
    Column("display_name", Text),
    Column("verified_at", TIMESTAMPTZ),
    Column("unsubscribe_token_hash", Text),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    CheckConstraint("email = lower(email)", name="email_lower_case"),
)

# The current state of the compacted ``subscriptions`` topic. No foreign key to products:
# a subscription usually arrives before the product's first observation has been written
# (and a product row is written by another process). created_at is the oldest record's
# created_at seen for the subscription, updated_at the one whose values the row holds: a
# record older than updated_at changes nothing.
subscriptions = Table(
    "subscriptions",
    metadata,
    Column("subscription_id", Text, primary_key=True),
    Column("user_id", BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("product_id", Text, nullable=False),
    Column("url", Text, nullable=False),
    Column("target_price", MONEY),
    # The currency of target_price; NULL: the page's own. Price alerts need it to match.
    Column("currency", CHAR(3)),
    Column("drop_percent", Numeric(5, 2, asdecimal=True)),
    Column("reference_price", MONEY),
    Column("notify_any_drop", Boolean, nullable=False),
    # Revision 0005: the price-increase alert and the minimum change of the price alerts.
    Column("notify_price_increase", Boolean, nullable=False, server_default=text("false")),
    Column("min_change_amount", MONEY),
    Column("min_change_percent", Numeric(5, 2, asdecimal=True)),
    Column("notify_back_in_stock", Boolean, nullable=False),
    Column("notify_sold_out", Boolean, nullable=False),
    Column("notify_removed", Boolean, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("created_at", TIMESTAMPTZ, nullable=False),
    Column("updated_at", TIMESTAMPTZ, nullable=False),
    Index("ix_subscriptions_user_id", "user_id"),
    Index("ix_subscriptions_product_id", "product_id"),
)

# Every event the detector emitted (topic ``price-events``), keyed by its deterministic id.
# No foreign key to products, for the same reason as subscriptions.
price_events = Table(
    "price_events",
    metadata,
    Column("event_id", Text, primary_key=True),
    Column("event_type", Text, nullable=False),
    Column("product_id", Text, nullable=False),
    Column("observation_id", Text, nullable=False),
    Column("observed_at", TIMESTAMPTZ, nullable=False),
    Column("detected_at", TIMESTAMPTZ, nullable=False),
    Column("old_price", MONEY),
    Column("new_price", MONEY),
    Column("old_currency", CHAR(3)),
    Column("new_currency", CHAR(3)),
    Column("old_availability", Text),
    Column("new_availability", Text),
)
# A product's events, newest first; and every product's events over a time range.
Index(
    "ix_price_events_product_id_observed_at",
    price_events.c.product_id,
    price_events.c.observed_at.desc(),
)
Index("ix_price_events_observed_at", price_events.c.observed_at)


# Where an address's alerts go besides email (revision 0006). The URL (and a webhook's
# signing secret) are sealed with a key derived from the secret key (pricewatch.sealing):
# the database never holds them in the clear. url_digest (a keyed hash) finds the same URL
# added twice.
channels = Table(
    "channels",
    metadata,
    Column("channel_id", Text, primary_key=True),  # random: never guessable
    Column("user_id", BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("kind", Text, nullable=False),
    Column("label", Text),
    Column("target", Text, nullable=False),  # masked, for display: scheme://host/…abcd
    Column("url_sealed", LargeBinary, nullable=False),
    Column("url_digest", Text, nullable=False),
    Column("secret_sealed", LargeBinary),
    Column("status", Text, nullable=False, server_default=text("'pending'")),
    Column("paused_reason", Text),  # 'owner' or 'failures'
    Column("consecutive_failures", Integer, nullable=False, server_default=text("0")),
    Column("last_error", Text),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    Column("confirmed_at", TIMESTAMPTZ),
    Column("paused_at", TIMESTAMPTZ),
    Column("owner_told_at", TIMESTAMPTZ),  # the owner was emailed about this pause
    Column("last_sent_at", TIMESTAMPTZ),
    CheckConstraint(_one_of("kind", CHANNEL_KINDS), name="kind"),
    CheckConstraint(_one_of("status", CHANNEL_STATUSES), name="status"),
    UniqueConstraint("user_id", "url_digest"),
)

# The channels a subscription sends to, when its owner chose: no row, every active channel
# of the address (the default); a row, only these (none: email only).
channel_choices = Table(
    "channel_choices",
    metadata,
    Column("subscription_id", Text, primary_key=True),
    Column("channel_ids", ARRAY(Text), nullable=False),
    Column("updated_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
)

# One row per message meant for a channel: the claim that makes sending exactly once per
# (notification or confirmation, channel), like ``notifications`` for email. A temporary
# failure keeps the message (payload) for the retry at next_attempt_at; no foreign key to
# channels, so the history stays when a channel is removed.
channel_deliveries = Table(
    "channel_deliveries",
    metadata,
    Column("idempotency_key", Text, primary_key=True),
    Column("channel_id", Text, primary_key=True),
    Column("channel_kind", Text, nullable=False),
    Column("message", Text, nullable=False),
    Column("email", Text, nullable=False),
    Column("subscription_id", Text, nullable=False),  # '' for a confirmation
    # sending / sent / failed / retrying, as in notifications.
    Column("status", Text, nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("last_error", Text),
    Column("next_attempt_at", TIMESTAMPTZ),
    Column("payload", JSONB),  # the record to send again; NULL once sent or failed
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    Column("sent_at", TIMESTAMPTZ),
    CheckConstraint(_one_of("status", NOTIFICATION_STATUSES), name="status"),
    CheckConstraint(_one_of("message", CHANNEL_MESSAGES), name="message"),
    Index("ix_channel_deliveries_channel_id", "channel_id"),
    Index("ix_channel_deliveries_created_at", "created_at"),
    Index(
        "ix_channel_deliveries_due",
        "next_attempt_at",
        postgresql_where=text("status = 'retrying'"),
    ),
)
