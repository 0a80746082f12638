"""How Pricewatch writes money and what a subscription asks for, for people: the emails and
the API's pages say it the same way."""

from __future__ import annotations

from decimal import Decimal

from pricewatch.contract.records import Subscription

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
    if subscription.notify_back_in_stock:
        lines.append("when it is back in stock")
    if subscription.notify_sold_out:
        lines.append("when it sells out")
    if subscription.notify_removed:
        lines.append("when the page disappears")
    return lines
