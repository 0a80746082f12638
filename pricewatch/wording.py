"""How Pricewatch writes money, what a subscription asks for and what an alert says, for
people: the emails, the chat channels and the API's pages say it the same way."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from decimal import ROUND_FLOOR, Decimal
from urllib.parse import urlsplit

from pricewatch.contract.records import (
    EventType,
    Notification,
    NotificationKind,
    Subscription,
)

Kind = NotificationKind
_MAX_SUBJECT_TITLE_CHARS = 80

# Symbols written before the amount; other currencies read "CHF 79.00".
_CURRENCY_SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£", "JPY": "¥", "INR": "₹"}
# ISO 4217 minor units where they are not 2.
_MINOR_UNITS = {"JPY": 0, "KRW": 0, "ISK": 0, "CLP": 0, "VND": 0, "BHD": 3, "KWD": 3, "TND": 3}


def format_money(amount: Decimal, currency: str | None) -> str:
    """``€1,299.00``, ``CHF 79.50``, ``¥1,200``; never rounds away a significant digit."""
    minor = _MINOR_UNITS.get(currency or "", 2)
    exponent = amount.normalize().as_tuple().exponent
    places = max(minor, -exponent) if isinstance(exponent, int) else minor
    number = f"{amount:,.{places}f}"
    if not currency:
        return number
    symbol = _CURRENCY_SYMBOLS.get(currency)
    return f"{symbol}{number}" if symbol else f"{currency} {number}"


def describe_wants(subscription: Subscription) -> list[str]:
    """What a subscription asks to be told, a line each, for people (emails and pages)."""
    lines = []
    if subscription.target_price is not None:
        amount = format_money(subscription.target_price, subscription.currency)
        lines.append(f"when the price is {amount} or less")
    if subscription.drop_percent is not None:
        percent = format(subscription.drop_percent.normalize(), "f")
        lines.append(f"when the price falls by {percent}% or more")
    if subscription.notify_any_drop:
        lines.append("when the price drops at all")
    if subscription.notify_price_increase:
        lines.append("when the price goes up")
    minimum = _minimum_change(subscription)
    if minimum:
        lines.append(f"price moves of at least {minimum} only (smaller ones add up)")
    if subscription.notify_back_in_stock:
        lines.append("when it is back in stock")
    if subscription.notify_sold_out:
        lines.append("when it sells out")
    if subscription.notify_removed:
        lines.append("when the page disappears")
    return lines


def _minimum_change(subscription: Subscription) -> str:
    parts = []
    if subscription.min_change_amount is not None:
        parts.append(format_money(subscription.min_change_amount, subscription.currency))
    if subscription.min_change_percent is not None:
        parts.append(f"{format(subscription.min_change_percent.normalize(), 'f')}%")
    return " and ".join(parts)


@dataclass(frozen=True)
class AlertText:
    """What an alert says: a subject naming the rule that fired, a headline, and a line for
    each other rule the same event met. Plain text (escape it for HTML)."""

    subject: str
    headline: str
    also: tuple[str, ...]
    title: str  # the product's name, or its website when the page gave none

    @property
    def lines(self) -> list[str]:
        return [self.headline, *self.also]


def product_name(notification: Notification) -> str:
    # Titles are scraped text: no line breaks in a subject, and something to call it by.
    title = " ".join((notification.title or "").split()) or urlsplit(notification.url).netloc
    return title or "Your product"


def _short(title: str) -> str:
    if len(title) <= _MAX_SUBJECT_TITLE_CHARS:
        return title
    return title[: _MAX_SUBJECT_TITLE_CHARS - 3].rstrip() + "..."


def _percent_below(price: Decimal, reference: Decimal) -> Decimal:
    """How far ``price`` is below ``reference``, in whole percent (rounded down: never
    claims more than the drop)."""
    return ((reference - price) * 100 / reference).quantize(Decimal(1), ROUND_FLOOR)


def _since(notification: Notification) -> str:
    """ " since <time>" for a stock change told after its flap window held it back."""
    changed = notification.stock_changed_at
    if changed is None or changed >= notification.observed_at:
        return ""
    return f" since {changed.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def alert_text(notification: Notification) -> AlertText:
    """The words of one notification, from its main rule (``kind``) and the prices it
    compared (``threshold_price``, ``baseline_price``, ``reference_price``)."""
    currency = notification.currency

    def money(amount: Decimal | None) -> str | None:
        return None if amount is None else format_money(amount, currency)

    title = product_name(notification)
    short = _short(title)
    new = money(notification.new_price)
    was = money(notification.baseline_price) or money(notification.old_price)
    restock = notification.event_type is EventType.BACK_IN_STOCK
    now = f"is back in stock at {new}" if restock else f"is now {new}"

    def sentence(kind: NotificationKind) -> tuple[str, str]:
        """(subject, headline) of one rule."""
        if kind is Kind.TARGET_PRICE_REACHED:
            target = money(notification.threshold_price or notification.target_price)
            mine = f" (your target {target})" if target else ""
            return (
                f"Target price reached: {short} {now}{mine}",
                f"{title} {now}" + (f", at or below your target of {target}." if target else "."),
            )
        if kind is Kind.DROP_PERCENT_REACHED:
            reference = notification.reference_price
            asked = notification.drop_percent
            price = notification.new_price
            if reference and price is not None and reference > price:
                down = _percent_below(price, reference)
                shown = down if down >= 1 else asked
                wanted = f" (you asked for {asked.normalize():f}% or more)" if asked else ""
                return (
                    f"Price down {shown}%: {short} {now} (was {money(reference)})",
                    f"{title} {now}, {shown}% below {money(reference)}{wanted}.",
                )
            return f"Price down: {short} {now}", f"{title} {now}."
        if kind is Kind.PRICE_DROPPED:
            return (
                f"Price drop: {short} {now}" + (f" (was {was})" if was else ""),
                f"{title} dropped" + (f" from {was}" if was else "") + f" to {new}."
                if not restock
                else f"{title} {now}" + (f", down from {was}." if was else "."),
            )
        if kind is Kind.PRICE_INCREASED:
            return (
                f"Price up: {short} {now}" + (f" (was {was})" if was else ""),
                f"{title} went up" + (f" from {was}" if was else "") + f" to {new}."
                if not restock
                else f"{title} {now}" + (f", up from {was}." if was else "."),
            )
        if kind is Kind.BACK_IN_STOCK:
            at = f" at {new}" if new else ""
            since = _since(notification)
            return (
                f"Back in stock: {short}{at}",
                f"{title} has been back in stock{since}{at}."
                if since
                else f"{title} is back in stock{at}.",
            )
        if kind is Kind.SOLD_OUT:
            since = _since(notification)
            return (
                f"Sold out: {short}",
                f"{title} has been sold out{since}."
                if since
                else f"{title} is sold out at the moment.",
            )
        return (
            f"No longer listed: {short}",
            f"{title} is no longer listed by the shop: its page is gone.",
        )

    subject, headline = sentence(notification.kind)
    also = tuple(
        "Also: " + sentence(kind)[1] for kind in notification.kinds if kind is not notification.kind
    )
    return AlertText(subject=subject, headline=headline, also=also, title=title)
