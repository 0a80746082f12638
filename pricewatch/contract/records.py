"""Wire records, one per topic. JSON, UTF-8, money as decimal strings, times as UTC ISO-8601."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Final, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    model_validator,
)

from pricewatch.ids import ID_PATTERN

SCHEMA_VERSION: Final = 1

# Decimals travel as strings so no consumer ever rounds a price through a float.
Money = Annotated[
    Decimal,
    Field(ge=0, max_digits=18, decimal_places=6),
    PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="json"),
]
# An amount that must be more than nothing (a minimum change of 0 would be no minimum).
PositiveMoney = Annotated[
    Decimal,
    Field(gt=0, max_digits=18, decimal_places=6),
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
    """The rule a notification answers: one value per subscription option."""

    TARGET_PRICE_REACHED = "target_price_reached"  # target_price
    DROP_PERCENT_REACHED = "drop_percent_reached"  # drop_percent
    PRICE_DROPPED = "price_dropped"  # notify_any_drop
    PRICE_INCREASED = "price_increased"  # notify_price_increase
    BACK_IN_STOCK = "back_in_stock"  # notify_back_in_stock
    SOLD_OUT = "sold_out"  # notify_sold_out
    REMOVED = "removed"  # notify_removed


# Each rule by a short, stable name: the values of the ``X-Pricewatch-Alert`` email header
# (one per entry in a notification's ``kinds``) and of the webhook event types. Part of the
# public contract like the topics: names are added, never changed.
ALERT_NAMES: Final[dict[NotificationKind, str]] = {
    NotificationKind.TARGET_PRICE_REACHED: "target_price",
    NotificationKind.DROP_PERCENT_REACHED: "drop_percent",
    NotificationKind.PRICE_DROPPED: "any_drop",
    NotificationKind.PRICE_INCREASED: "price_increase",
    NotificationKind.BACK_IN_STOCK: "back_in_stock",
    NotificationKind.SOLD_OUT: "sold_out",
    NotificationKind.REMOVED: "removed",
}


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
    blocked_by: str | None = Field(
        default=None,
        max_length=40,
        description="Set when error is 'blocked': what refused the scraper instead of "
        "showing the page (known values: 'cloudflare', 'captcha', 'bot_check', 'consent'; "
        "more may be added). A blocked fetch says nothing about the product.",
    )


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
    notify_price_increase: bool = Field(
        default=False, description="Alert when the price one can buy at goes up."
    )
    min_change_amount: PositiveMoney | None = Field(
        default=None,
        description="Smallest price move worth an alert (in currency, else the page's): "
        "notify_any_drop and notify_price_increase stay quiet for smaller moves (small "
        "moves add up), and so does a repeated target or drop_percent alert.",
    )
    min_change_percent: Percent | None = Field(
        default=None,
        description="The same, in percent of the price the move starts from. With "
        "min_change_amount too, a move must reach both.",
    )
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

    @model_validator(mode="after")
    def _min_change_needs_a_price_alert(self) -> Subscription:
        if (
            self.min_change_amount is not None or self.min_change_percent is not None
        ) and not self.wants_price_alerts():
            raise ValueError(
                "min_change_amount and min_change_percent only apply to price alerts: ask "
                "for target_price, drop_percent, notify_any_drop or notify_price_increase too"
            )
        return self

    def wants_price_alerts(self) -> bool:
        return (
            self.target_price is not None
            or self.drop_percent is not None
            or self.notify_any_drop
            or self.notify_price_increase
        )

    def wants_alerts(self) -> bool:
        """Asks to be told something (an active subscription must)."""
        return (
            self.wants_price_alerts()
            or self.notify_back_in_stock
            or self.notify_sold_out
            or self.notify_removed
        )


class Notification(WireRecord):
    """Topic ``notifications``, key: ``idempotency_key``. One email to send, exactly once."""

    schema_version: Literal[1] = SCHEMA_VERSION
    idempotency_key: str = Field(description="Deterministic: subscription and event.")
    kind: NotificationKind = Field(description="The main rule this notification answers.")
    kinds: list[NotificationKind] = Field(
        default_factory=list,
        description="Every rule it answers, kind first: one event can meet several (a "
        "drop to the target is a drop for notify_any_drop too; a restock at or below the "
        "target is back in stock too). Records written before this field: [kind].",
    )
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
    threshold_price: Money | None = Field(
        default=None,
        description="target_price_reached, drop_percent_reached: the price at or below which "
        "the rule fires (the target, or reference_price less drop_percent).",
    )
    baseline_price: Money | None = Field(
        default=None,
        description="price_dropped, price_increased: the price the move is measured from, "
        "the highest (lowest) price one could buy at since the last such alert.",
    )
    availability: Availability | None = Field(
        default=None, description="The product's availability now (null: the page does not say)."
    )
    stock_changed_at: AwareDatetime | None = Field(
        default=None,
        description="sold_out, back_in_stock: when the page was first seen in the state told. "
        "Before observed_at when the change was held back by the stock flap window and is "
        "told after it.",
    )
    created_at: AwareDatetime

    @model_validator(mode="before")
    @classmethod
    def _kinds_of_older_records(cls, data: object) -> object:
        if isinstance(data, dict) and not data.get("kinds") and "kind" in data:
            return {**data, "kinds": [data["kind"]]}
        return data


class AccountEmailKind(StrEnum):
    VERIFY = "verify"  # confirm the address: nothing else is sent until it is followed
    MANAGE_LINK = "manage_link"  # a link to see and edit one's subscriptions
    # Start (or change) one subscription of an address that is already verified: anyone can
    # ask for one, so only its owner's click makes it take effect.
    CONFIRM_SUBSCRIPTION = "confirm_subscription"
    # A channel of the address failed permanently too many times in a row and was paused.
    CHANNEL_PAUSED = "channel_paused"


class ChannelNotice(WireRecord):
    """What an account email says about one of the address's channels."""

    channel_id: str
    kind: str = Field(description="webhook, ntfy, telegram, discord, slack or apprise.")
    target: str = Field(description="The channel as shown to its owner, masked.")
    label: str | None = None
    failures: int = Field(description="Permanent failures in a row that paused it.")
    last_error: str | None = None


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
    channel: ChannelNotice | None = Field(
        default=None, description="kind channel_paused: the channel that was paused."
    )

    @model_validator(mode="after")
    def _paused_names_its_channel(self) -> AccountEmail:
        if self.kind is AccountEmailKind.CHANNEL_PAUSED and self.channel is None:
            raise ValueError("a channel_paused email names its channel")
        return self


class ChannelConfirmation(WireRecord):
    """Topic ``channel-confirmations``, key: ``channel_id``. The test message a new channel
    gets, with the link that confirms it: nothing else is sent to a channel before. Sent at
    most once per ``idempotency_key`` (the channels sink's ledger)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    idempotency_key: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$",
        description="Deterministic: the channel and a time bucket (asking again within it "
        "sends nothing more).",
    )
    channel_id: str
    email: str = Field(description="The address that owns the channel.")
    link: str = Field(description="The signed link that confirms the channel.")
    created_at: AwareDatetime


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
    ChannelConfirmation,
    DeadLetter,
)
