"""Wire records, one per topic. JSON, UTF-8, money as decimal strings, times as UTC ISO-8601."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer

from pricewatch.ids import ID_PATTERN

SCHEMA_VERSION: Final = 1

# Decimals travel as strings so no consumer ever rounds a price through a float.
Money = Annotated[
    Decimal,
    Field(ge=0, max_digits=18, decimal_places=6),
    PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="json"),
]
CurrencyCode = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
Percent = Annotated[
    Decimal,
    Field(gt=0, lt=100, max_digits=5, decimal_places=2),
    PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="json"),
]
ProductId = Annotated[str, Field(pattern=ID_PATTERN)]


class Availability(StrEnum):
    IN_STOCK = "in_stock"
    OUT_OF_STOCK = "out_of_stock"
    PREORDER = "preorder"
    BACKORDER = "backorder"
    DISCONTINUED = "discontinued"
    UNKNOWN = "unknown"


class Outcome(StrEnum):
    OK = "ok"  # page read: price (and availability) known
    GONE = "gone"  # 404/410 or redirected away from the product
    ERROR = "error"  # fetch or extraction failed; says nothing about the product


class EventType(StrEnum):
    PRICE_DROP = "price_drop"
    PRICE_INCREASE = "price_increase"
    NEW_LOWEST_PRICE = "new_lowest_price"
    SOLD_OUT = "sold_out"
    BACK_IN_STOCK = "back_in_stock"
    REMOVED = "removed"
    RESTORED = "restored"
    CURRENCY_CHANGED = "currency_changed"
    # Availability has not changed for the stock flap window since it last changed, and
    # that change came within the window of the one before (the page flapped). Stock
    # alerts held back while it flapped are told from it (streams/domain/alerts.py).
    STOCK_SETTLED = "stock_settled"


class NotificationKind(StrEnum):
    TARGET_PRICE_REACHED = "target_price_reached"
    DROP_PERCENT_REACHED = "drop_percent_reached"
    PRICE_DROPPED = "price_dropped"
    BACK_IN_STOCK = "back_in_stock"
    SOLD_OUT = "sold_out"
    REMOVED = "removed"


class WireRecord(BaseModel):
    # Unknown fields are ignored so a producer may add optional fields without a new version.
    model_config = ConfigDict(extra="ignore", frozen=True)


class ScrapeRequest(WireRecord):
    """Topic ``scrape-requests``, key: the URL's host (politeness is kept per host)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    product_id: ProductId
    url: str
    requested_at: AwareDatetime


class PriceObservation(WireRecord):
    """Topic ``price-observations``, key: ``product_id``. One fetch of one product page."""

    schema_version: Literal[1] = SCHEMA_VERSION
    observation_id: str = Field(description="Deterministic: product_id and observed_at.")
    product_id: ProductId
    url: str
    observed_at: AwareDatetime = Field(description="When the page was fetched (UTC).")
    outcome: Outcome
    price: Money | None = None
    currency: CurrencyCode | None = None
    availability: Availability | None = None
    title: str | None = None
    http_status: int | None = None
    final_url: str | None = None
    extractor: str | None = None
    error: str | None = Field(default=None, description="Why outcome is error or gone.")


class PriceEvent(WireRecord):
    """Topic ``price-events``, key: ``product_id``. A change the detector saw."""

    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: str = Field(description="Deterministic: product, type and source observation.")
    event_type: EventType
    product_id: ProductId
    url: str
    title: str | None = None
    observation_id: str
    observed_at: AwareDatetime
    detected_at: AwareDatetime
    old_price: Money | None = None
    new_price: Money | None = None
    old_currency: CurrencyCode | None = None
    new_currency: CurrencyCode | None = None
    old_availability: Availability | None = None
    new_availability: Availability | None = None


class Subscription(WireRecord):
    """Topic ``subscriptions`` (compacted), key: ``subscription_id``.

    Produced to the partition Kafka's default partitioner gives ``product_id``, so a
    subscription lives on the same partition number as its product's observations and
    events. ``active: false`` ends it; a tombstone (null value) deletes it. Alerts go only
    to subscriptions that are ``active`` and ``verified``: a record without ``verified`` is
    unverified, so a producer other than the API must set it for addresses it verified.
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    subscription_id: str
    email: str
    product_id: ProductId
    url: str
    target_price: Money | None = Field(default=None, description="Alert at or below this.")
    currency: CurrencyCode | None = Field(
        default=None,
        description="The currency of target_price. Set: price alerts only for prices in it.",
    )
    drop_percent: Percent | None = Field(
        default=None, description="Alert when the price falls this many percent below reference."
    )
    reference_price: Money | None = Field(
        default=None,
        description="The price when subscribing, for drop_percent. Unset: the price the "
        "stream worker knows when the subscription arrives (or at the next change).",
    )
    notify_any_drop: bool = False
    notify_back_in_stock: bool = False
    notify_sold_out: bool = False
    notify_removed: bool = False
    active: bool = True
    verified: bool = Field(
        default=False,
        description="The owner of the email address confirmed it (followed the link of the "
        "verification email). Unverified subscriptions get no alerts.",
    )
    created_at: AwareDatetime = Field(
        description="When this version of the subscription was published; the newest wins."
    )


class Notification(WireRecord):
    """Topic ``notifications``, key: ``idempotency_key``. One email to send, exactly once."""

    schema_version: Literal[1] = SCHEMA_VERSION
    idempotency_key: str = Field(description="Deterministic: subscription and event.")
    kind: NotificationKind
    subscription_id: str
    email: str
    product_id: ProductId
    url: str
    title: str | None = None
    event_id: str
    event_type: EventType
    observed_at: AwareDatetime
    old_price: Money | None = None
    new_price: Money | None = None
    currency: CurrencyCode | None = None
    target_price: Money | None = None
    drop_percent: Percent | None = None
    reference_price: Money | None = None
    created_at: AwareDatetime


class AccountEmailKind(StrEnum):
    VERIFY = "verify"  # confirm the address: nothing else is sent until it is followed
    MANAGE_LINK = "manage_link"  # a link to see and edit one's subscriptions
    # Start (or change) one subscription of an address that is already verified: anyone can
    # ask for one, so only its owner's click makes it take effect.
    CONFIRM_SUBSCRIPTION = "confirm_subscription"


class AccountEmail(WireRecord):
    """Topic ``account-emails``, key: ``email``. An email about the account, sent exactly once
    per ``idempotency_key`` (the same ledger as notifications)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    idempotency_key: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$",
        description="Deterministic: kind, address and a time bucket (one email per bucket; "
        "confirm_subscription: per bucket and requested subscription).",
    )
    kind: AccountEmailKind
    email: str
    link: str = Field(description="The signed link the email carries.")
    created_at: AwareDatetime
    subscription: Subscription | None = Field(
        default=None,
        description="kind confirm_subscription: the subscription the link starts, as it will "
        "be published (so the email can say what is being confirmed).",
    )


class DeadLetter(WireRecord):
    """Topic ``dead-letters``, key: the source topic name. A message no stage could process."""

    schema_version: Literal[1] = SCHEMA_VERSION
    source_topic: str
    source_partition: int
    source_offset: int
    stage: str = Field(description="Which process rejected it, e.g. 'detector'.")
    reason: str = Field(description="Short machine-readable reason, e.g. 'invalid_record'.")
    error: str = Field(description="Human-readable detail.")
    key: str | None = Field(default=None, description="Original key, UTF-8 (lossy).")
    value: str | None = Field(default=None, description="Original value, UTF-8 (lossy), capped.")
    value_bytes: int = Field(description="Size of the original value in bytes.")
    dead_lettered_at: datetime


RECORD_TYPES: tuple[type[WireRecord], ...] = (
    ScrapeRequest,
    PriceObservation,
    PriceEvent,
    Subscription,
    Notification,
    AccountEmail,
    DeadLetter,
)
