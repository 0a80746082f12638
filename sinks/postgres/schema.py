"""The PostgreSQL schema, as SQLAlchemy Core tables.

Alembic migrations in ``migrations/versions`` create it; this module describes it for queries
and for comparing a migrated database against the code (``tests/integration``). Change both
together: a new column here needs a new revision there.
"""

from __future__ import annotations

from sqlalchemy import (
    CHAR,
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    Numeric,
    Table,
    Text,
    UniqueConstraint,
    text,
)

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


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


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
    CheckConstraint(_one_of("status", PRODUCT_STATUSES), name="status"),
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
)
