"""Request and response bodies of the HTTP API. The OpenAPI document is generated from these."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)

from pricewatch.channels import ChannelKind
from pricewatch.contract.currencies import ISO_4217
from pricewatch.contract.records import Subscription
from pricewatch.ids import canonical_url
from pricewatch.urlguard import UrlRefused, check_url

# Money and percentages travel as decimal strings, as on the topics.
MoneyOut = Annotated[
    Decimal, PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="json")
]
TargetPrice = Annotated[Decimal, Field(gt=0, max_digits=18, decimal_places=6)]
DropPercent = Annotated[Decimal, Field(gt=0, lt=100, decimal_places=2)]
MinChange = Annotated[Decimal, Field(gt=0, max_digits=18, decimal_places=6)]

_WANTS = (
    "target_price, drop_percent, notify_any_drop, notify_price_increase, "
    "notify_back_in_stock, notify_sold_out or notify_removed"
)


# What a URL may be, here and in a confirm token (which must stay under MAX_TOKEN_CHARS).
MAX_URL_CHARS = 2048


def fetchable_url(value: str) -> str:
    """The URL in canonical form (plain ASCII), if the scrapers may be pointed at it."""
    try:
        check_url(value)
    except UrlRefused as exc:
        raise ValueError(str(exc)) from None
    url = canonical_url(value)
    if len(url) > MAX_URL_CHARS:
        # Percent-encoding non-ASCII characters can make a URL three times longer.
        raise ValueError(f"URL is over {MAX_URL_CHARS} characters once percent-encoded")
    return url


def normalized_email(value: str) -> str:
    """The address as it is sent to: an internationalised domain in its ASCII (IDNA) form,
    ``carol@exämple.com`` -> ``carol@xn--exmple-cua.com``, which every mail server takes.
    Non-ASCII before the "@" would need SMTPUTF8 end to end (our SMTP and SES sending, and
    the receiving server), which Pricewatch does not do: refused here rather than accepted
    and never delivered."""
    try:
        # allow_smtputf8=False refuses a non-ASCII local part; ascii_email is then set.
        checked = validate_email(value, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        if not value.partition("@")[0].isascii():
            raise ValueError(
                "addresses with non-ASCII characters before the @ cannot be delivered "
                "(no SMTPUTF8); use an ASCII address"
            ) from None
        raise ValueError(str(exc)) from None
    return checked.ascii_email or checked.normalized


def asks_for_something(record: Subscription) -> bool:
    """A subscription says what to be told (an active one must)."""
    return record.wants_alerts()


# The fields of a subscription record that say what to be told.
WANTS_FIELDS = (
    "target_price",
    "drop_percent",
    "notify_any_drop",
    "notify_price_increase",
    "min_change_amount",
    "min_change_percent",
    "notify_back_in_stock",
    "notify_sold_out",
    "notify_removed",
)


def wants_error(values: dict[str, Any]) -> str | None:
    """What is wrong with these wants, as the ``Subscription`` record says (the one place
    their rules live: a minimum change needs a price alert), or None."""
    probe = {
        "subscription_id": "0" * 32,
        "email": "probe@example.com",
        "product_id": "0" * 32,
        "url": "https://probe.example/",
        "created_at": datetime(2000, 1, 1, tzinfo=UTC),
    }
    try:
        record = Subscription(**probe, **{k: v for k, v in values.items() if k in WANTS_FIELDS})
    except ValidationError as exc:
        return "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
    if not record.wants_alerts():
        return f"say what to be told: {_WANTS}"
    return None


class Wants(BaseModel):
    """What to be told about a product."""

    target_price: TargetPrice | None = Field(default=None, description="Alert at or below this.")
    drop_percent: DropPercent | None = Field(
        default=None, description="Alert when the price falls this many percent."
    )
    notify_any_drop: bool = False
    notify_price_increase: bool = Field(
        default=False, description="Alert when the price one can buy at goes up."
    )
    min_change_amount: MinChange | None = Field(
        default=None,
        description="Smallest price move worth an alert, in currency (else the page's): "
        "smaller moves add up instead. Needs a price alert.",
    )
    min_change_percent: DropPercent | None = Field(
        default=None,
        description="The same in percent of the price the move starts from (with "
        "min_change_amount too, a move must reach both). Needs a price alert.",
    )
    notify_back_in_stock: bool = False
    notify_sold_out: bool = False
    notify_removed: bool = False


class SubscribeRequest(Wants):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: str = Field(max_length=254, description="Where alerts go; verified by email first.")
    url: str = Field(max_length=MAX_URL_CHARS, description="The product page (http or https).")
    currency: str | None = Field(
        default=None,
        max_length=3,
        description="ISO 4217 code of target_price, e.g. EUR. Given: price alerts only come "
        "for prices in this currency. Left out: the page's currency.",
    )

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value.upper() not in ISO_4217:
            raise ValueError(f"{value!r} is not an ISO 4217 currency code (e.g. EUR, USD)")
        return value.upper()

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        return normalized_email(value)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return fetchable_url(value)

    @model_validator(mode="after")
    def _wants_something(self) -> SubscribeRequest:
        error = wants_error(self.model_dump(include=set(WANTS_FIELDS)))
        if error is not None:
            raise ValueError(error)
        return self


class SubscriptionEdit(BaseModel):
    """A change to one's own subscription; fields left out keep their value."""

    model_config = ConfigDict(extra="forbid")

    target_price: TargetPrice | None = None
    drop_percent: DropPercent | None = None
    notify_any_drop: bool | None = None
    notify_price_increase: bool | None = None
    min_change_amount: MinChange | None = None
    min_change_percent: DropPercent | None = None
    notify_back_in_stock: bool | None = None
    notify_sold_out: bool | None = None
    notify_removed: bool | None = None
    active: bool | None = Field(default=None, description="false stops it, true resumes it.")
    channels: list[Annotated[str, Field(max_length=64)]] | None = Field(
        default=None,
        max_length=50,
        description="The channels it sends to besides email; null: every active channel.",
    )


class ManageLinkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: str = Field(max_length=254)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        return normalized_email(value)


class SubscriptionOut(BaseModel):
    subscription_id: str
    email: str
    product_id: str
    url: str
    target_price: MoneyOut | None = None
    currency: str | None = Field(
        default=None, description="ISO 4217 code of target_price; null: the page's currency."
    )
    drop_percent: MoneyOut | None = None
    notify_any_drop: bool
    notify_price_increase: bool = False
    min_change_amount: MoneyOut | None = None
    min_change_percent: MoneyOut | None = None
    notify_back_in_stock: bool
    notify_sold_out: bool
    notify_removed: bool
    active: bool
    verified: bool
    created_at: datetime


class SubscribeResponse(SubscriptionOut):
    """The request as accepted. It takes effect when the address's owner follows the link
    emailed now, so ``verified`` is always false here, whatever the address: the answer
    says nothing about whether the address is known."""

    next_step: str = Field(description="What the user has to do now, for people.")


class ProductView(BaseModel):
    title: str | None = None
    current_price: MoneyOut | None = None
    currency: str | None = None
    availability: str | None = None
    last_checked_at: datetime | None = None


class ManagedSubscription(SubscriptionOut):
    product: ProductView
    channels: list[str] | None = Field(
        default=None,
        description="The channels this subscription sends to besides email; null: every "
        "active channel of the address.",
    )


class ChannelAdd(BaseModel):
    """A channel to add: ``kind`` and that kind's fields (webhook: url; ntfy: topic, and
    server and token when not ntfy.sh; telegram: bot_token, chat_id; discord and slack:
    webhook_url; apprise: url, whose scheme the admin allows)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    kind: ChannelKind
    label: str | None = Field(default=None, max_length=100, description="A name to tell it by.")
    url: str | None = Field(default=None, max_length=2048)
    topic: str | None = Field(default=None, max_length=64)
    server: str | None = Field(default=None, max_length=2048)
    token: str | None = Field(default=None, max_length=100)
    bot_token: str | None = Field(default=None, max_length=200)
    chat_id: str | None = Field(default=None, max_length=100)
    webhook_url: str | None = Field(default=None, max_length=2048)


class ChannelEdit(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    paused: bool | None = Field(default=None, description="true pauses it, false resumes it.")
    label: str | None = Field(default=None, max_length=100)


class ChannelOut(BaseModel):
    channel_id: str
    kind: ChannelKind
    label: str | None = None
    target: str = Field(description="Where it sends, masked: scheme://host/…abcd.")
    status: str = Field(
        description="pending (waiting for the link of its test message), active or paused."
    )
    paused_reason: str | None = Field(default=None, description="owner or failures.")
    consecutive_failures: int
    last_error: str | None = None
    created_at: datetime
    confirmed_at: datetime | None = None
    last_sent_at: datetime | None = None


class ChannelAdded(ChannelOut):
    signing_secret: str | None = Field(
        default=None,
        description="webhook: the secret its signatures are made with. Shown only now.",
    )
    next_step: str


class ChannelList(BaseModel):
    channels: list[ChannelOut]


class ManageView(BaseModel):
    email: str
    verified: bool
    subscriptions: list[ManagedSubscription]
    channels: list[ChannelOut] = Field(default_factory=list)


class PricePoint(BaseModel):
    observed_at: datetime
    price: MoneyOut | None = None
    currency: str | None = None
    availability: str | None = None


class PriceHistory(BaseModel):
    product_id: str
    url: str
    title: str | None = None
    prices: list[PricePoint]


class VerifyResult(BaseModel):
    email: str
    verified: bool
    subscriptions: int = Field(description="Subscriptions of the address, now sending alerts.")


class UnsubscribeResult(BaseModel):
    unsubscribed: int = Field(description="Subscriptions stopped by this request.")


class Accepted(BaseModel):
    status: str = Field(description="Always the same answer, whatever the address.")


class Website(BaseModel):
    id: int
    name: str
    host: str
    base_url: str
    default_check_interval_seconds: int
    paused: bool


class WebsiteList(BaseModel):
    websites: list[Website]
    generic_extraction: bool = Field(
        description="Pages of other websites are read with generic extractors "
        "(JSON-LD, microdata, OpenGraph)."
    )


class AdminWebsite(Website):
    adapter_config: dict[str, Any]
    created_at: datetime


class WebsiteCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=200)
    base_url: str = Field(
        max_length=MAX_URL_CHARS, description="http(s)://host[:port]/; its host name is key."
    )
    adapter_config: dict[str, Any] = Field(default_factory=dict)
    default_check_interval_seconds: int = Field(default=300, gt=0, le=7 * 86400)
    paused: bool = False

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return fetchable_url(value)


class WebsiteEdit(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str | None = Field(default=None, min_length=1, max_length=200)
    adapter_config: dict[str, Any] | None = None
    default_check_interval_seconds: int | None = Field(default=None, gt=0, le=7 * 86400)
    paused: bool | None = None


class AdminProduct(BaseModel):
    product_id: str
    url: str
    title: str | None = None
    current_price: MoneyOut | None = None
    currency: str | None = None
    availability: str | None = None
    status: str
    last_checked_at: datetime | None = None
    website_id: int | None = None
    subscriptions: int


class AdminProductList(BaseModel):
    products: list[AdminProduct]


class AdminUser(BaseModel):
    id: int
    email: str
    verified_at: datetime | None = None
    created_at: datetime
    subscriptions: int
    active_subscriptions: int


class AdminUserList(BaseModel):
    users: list[AdminUser]


class FieldError(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    """Every error: a title, the status, and for invalid input one message per field."""

    title: str
    status: int
    errors: list[FieldError] | None = None
    reason: str | None = None


class Health(BaseModel):
    status: str
    checks: dict[str, str] | None = None
