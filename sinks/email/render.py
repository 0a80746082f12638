"""Notification -> email message. Pure: no I/O beyond reading the packaged templates.

Rendering the same notification twice gives the same message (same Message-ID and Date), so
a redelivered notification could never look like a second, different email.
"""

from __future__ import annotations

import email.policy
from datetime import UTC
from decimal import Decimal
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from functools import cache
from typing import Any
from urllib.parse import quote, urlsplit

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from pricewatch.contract.records import Notification, NotificationKind
from pricewatch.settings import Settings

IDEMPOTENCY_HEADER = "X-Pricewatch-Idempotency-Key"

# Symbols written before the amount; other currencies read "CHF 79.00".
_CURRENCY_SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£", "JPY": "¥", "INR": "₹"}
# ISO 4217 minor units where they are not 2.
_MINOR_UNITS = {"JPY": 0, "KRW": 0, "ISK": 0, "CLP": 0, "VND": 0, "BHD": 3, "KWD": 3, "TND": 3}

_MAX_SUBJECT_TITLE_CHARS = 80

# The default 78-character folding turns a long unbreakable header value into RFC 2047
# encoded words, which breaks List-Unsubscribe (clients want a literal <url>). 998 is
# RFC 5322's hard line limit.
MESSAGE_POLICY = email.policy.default.clone(max_line_length=998)


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


class InvalidRecipientError(ValueError):
    """The notification's address cannot be put in a To header; sending it can never work."""


def recipient(email: str) -> Address:
    # Address() refuses line breaks (header injection) and anything but one bare address.
    try:
        return Address(addr_spec=email.strip())
    except (ValueError, IndexError, HeaderParseError) as exc:
        raise InvalidRecipientError(f"invalid recipient address {email!r}: {exc}") from exc


def unsubscribe_url(subscription_id: str, settings: Settings) -> str:
    # TODO(subscriptions API): a signed token instead of the bare id, once the API verifies it.
    return f"{settings.api_base_url}/api/unsubscribe?subscription={quote(subscription_id, safe='')}"


def _safe_link(url: str, fallback: str) -> str:
    # Only web links in an email; anything else (javascript:, data:) is not a product page.
    return url if urlsplit(url).scheme.lower() in ("http", "https") else fallback


def _message_domain(settings: Settings) -> str:
    _, address = parseaddr(settings.email_from)
    domain = address.rpartition("@")[2]
    return domain or "pricewatch.localhost"


@cache
def _templates() -> Environment:
    return Environment(
        loader=PackageLoader("sinks.email", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )


def _subject(title: str, money: dict[str, str | None]) -> str:
    short = title if len(title) <= _MAX_SUBJECT_TITLE_CHARS else title[:77].rstrip() + "..."
    if money["new_price"] is None:
        return f"Price alert: {short}"
    subject = f"Price drop: {short} is now {money['new_price']}"
    if money["target_price"] is not None:
        subject += f" (your target {money['target_price']})"
    return subject


def render(notification: Notification, settings: Settings) -> EmailMessage:
    """The email for one notification: plain text with an HTML alternative."""
    if notification.kind is not NotificationKind.TARGET_PRICE_REACHED:
        raise ValueError(f"no template for notification kind {notification.kind!r}")

    def money(amount: Decimal | None) -> str | None:
        return None if amount is None else format_money(amount, notification.currency)

    prices = {
        "old_price": money(notification.old_price),
        "new_price": money(notification.new_price),
        "target_price": money(notification.target_price),
    }
    # Titles are scraped text: no line breaks in a subject, and something to call it by.
    title = " ".join((notification.title or "").split()) or urlsplit(notification.url).netloc
    title = title or "Your product"
    subject = _subject(title, prices)
    unsubscribe = unsubscribe_url(notification.subscription_id, settings)
    context: dict[str, Any] = {
        **prices,
        "title": title,
        "subject": subject,
        "product_url": _safe_link(notification.url, settings.api_base_url),
        "unsubscribe_url": unsubscribe,
    }
    name = notification.kind.value
    text_body = _templates().get_template(f"{name}.txt").render(context)
    html_body = _templates().get_template(f"{name}.html").render(context)

    message = EmailMessage(policy=MESSAGE_POLICY)
    message["From"] = settings.email_from
    message["To"] = recipient(notification.email)
    message["Subject"] = subject
    message["Date"] = format_datetime(notification.created_at.astimezone(UTC))
    message["Message-ID"] = f"<{notification.idempotency_key}@{_message_domain(settings)}>"
    message[IDEMPOTENCY_HEADER] = notification.idempotency_key
    message["List-Unsubscribe"] = f"<{unsubscribe}>"
    message["Auto-Submitted"] = "auto-generated"
    # Quoted-printable keeps the .eml readable (the default picks base64 for non-ASCII).
    message.set_content(text_body, cte="quoted-printable")
    message.add_alternative(html_body, subtype="html", cte="quoted-printable")
    return message
