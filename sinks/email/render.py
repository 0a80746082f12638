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
from urllib.parse import urlsplit

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from pricewatch.contract.records import (
    ALERT_NAMES,
    AccountEmail,
    AccountEmailKind,
    Notification,
)
from pricewatch.links import UNSUBSCRIBE_PAGE, manage_link, unsubscribe_link
from pricewatch.settings import Settings
from pricewatch.wording import alert_text, describe_wants, format_money

IDEMPOTENCY_HEADER = "X-Pricewatch-Idempotency-Key"
ALERT_HEADER = "X-Pricewatch-Alert"

# The default 78-character folding turns a long unbreakable header value into RFC 2047
# encoded words, which breaks List-Unsubscribe (clients want a literal <url>). 998 is
# RFC 5322's hard line limit.
MESSAGE_POLICY = email.policy.default.clone(max_line_length=998)


class InvalidRecipientError(ValueError):
    """The notification's address cannot be put in a To header; sending it can never work."""


def recipient(email: str) -> Address:
    # Address() refuses line breaks (header injection) and anything but one bare address.
    local, at, domain = email.strip().rpartition("@")
    if not local.isascii():
        # It would need SMTPUTF8 end to end; the API refuses such addresses (issue 19).
        raise InvalidRecipientError(f"non-ASCII local part in {email!r} (no SMTPUTF8)")
    try:
        # An internationalised domain goes out in its ASCII (IDNA) form: as UTF-8 in a
        # header it would be an encoded word, which is no address at all.
        ascii_domain = domain.encode("idna").decode("ascii") if at and domain else domain
        return Address(addr_spec=f"{local}{at}{ascii_domain}")
    except (ValueError, IndexError, HeaderParseError, UnicodeError) as exc:
        raise InvalidRecipientError(f"invalid recipient address {email!r}: {exc}") from exc


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


def render(notification: Notification, settings: Settings) -> EmailMessage:
    """The email for one notification: plain text with an HTML alternative."""

    def money(amount: Decimal | None) -> str | None:
        return None if amount is None else format_money(amount, notification.currency)

    # "Before" is the price the rule compared with (the highest since the last drop alert,
    # say), not merely the previous reading.
    before = notification.baseline_price
    prices = {
        "old_price": money(before if before is not None else notification.old_price),
        "new_price": money(notification.new_price),
        "target_price": money(notification.target_price),
    }
    text = alert_text(notification)
    title, subject, headline = text.title, text.subject, text.headline
    issued_at = notification.created_at
    unsubscribe = unsubscribe_link(
        settings, issued_at=issued_at, subscription_id=notification.subscription_id
    )
    context: dict[str, Any] = {
        **prices,
        "title": title,
        "subject": subject,
        "headline": headline,  # autoescaped in HTML: the title is scraped text
        "also": text.also,
        "product_url": _safe_link(notification.url, settings.api_base_url),
        "unsubscribe_url": unsubscribe_link(
            settings,
            issued_at=issued_at,
            subscription_id=notification.subscription_id,
            path=UNSUBSCRIBE_PAGE,
        ),
        "unsubscribe_all_url": unsubscribe_link(
            settings, issued_at=issued_at, email=notification.email, path=UNSUBSCRIBE_PAGE
        ),
        "manage_url": manage_link(
            settings, notification.email.strip().lower(), issued_at=issued_at
        ),
    }
    text_body = _templates().get_template("alert.txt").render(context)
    html_body = _templates().get_template("alert.html").render(context)

    message = EmailMessage(policy=MESSAGE_POLICY)
    message["From"] = settings.email_from
    message["To"] = recipient(notification.email)
    message["Subject"] = subject
    message["Date"] = format_datetime(notification.created_at.astimezone(UTC))
    message["Message-ID"] = f"<{notification.idempotency_key}@{_message_domain(settings)}>"
    message[IDEMPOTENCY_HEADER] = notification.idempotency_key
    # Every rule the alert answers, for mail filters: "target_price, any_drop".
    message[ALERT_HEADER] = ", ".join(ALERT_NAMES[kind] for kind in notification.kinds)
    message["List-Unsubscribe"] = f"<{unsubscribe}>"
    # RFC 8058 one-click: the mail client POSTs "List-Unsubscribe=One-Click" to that URL.
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message["Auto-Submitted"] = "auto-generated"
    # Quoted-printable keeps the .eml readable (the default picks base64 for non-ASCII).
    message.set_content(text_body, cte="quoted-printable")
    message.add_alternative(html_body, subtype="html", cte="quoted-printable")
    return message


_ACCOUNT_SUBJECTS = {
    AccountEmailKind.VERIFY: "Confirm your email address for Pricewatch",
    AccountEmailKind.MANAGE_LINK: "Your Pricewatch subscriptions",
    AccountEmailKind.CONFIRM_SUBSCRIPTION: "Confirm your Pricewatch alert",
    AccountEmailKind.CHANNEL_PAUSED: "A Pricewatch alert channel was paused",
}


def render_account_email(account_email: AccountEmail, settings: Settings) -> EmailMessage:
    """A verification or manage-link email (deterministic like ``render``)."""
    subject = _ACCOUNT_SUBJECTS[account_email.kind]
    context: dict[str, Any] = {
        "subject": subject,
        "email": account_email.email,
        # The API made the link; only a web link to our own API is put in an email.
        "link": _safe_link(account_email.link, settings.api_base_url),
        "product_url": None,
        "wants": [],
        "channel": account_email.channel,
    }
    if account_email.subscription is not None:
        context["product_url"] = _safe_link(account_email.subscription.url, "")
        context["wants"] = describe_wants(account_email.subscription)
    name = f"account_{account_email.kind.value}"
    text_body = _templates().get_template(f"{name}.txt").render(context)
    html_body = _templates().get_template(f"{name}.html").render(context)

    message = EmailMessage(policy=MESSAGE_POLICY)
    message["From"] = settings.email_from
    message["To"] = recipient(account_email.email)
    message["Subject"] = subject
    message["Date"] = format_datetime(account_email.created_at.astimezone(UTC))
    message["Message-ID"] = f"<{account_email.idempotency_key}@{_message_domain(settings)}>"
    message[IDEMPOTENCY_HEADER] = account_email.idempotency_key
    message["Auto-Submitted"] = "auto-generated"
    # Plain 7bit when it can be: the link then stays whole and clickable in the raw .eml
    # (quoted-printable breaks lines at 76 characters and writes '=' as '=3D').
    message.set_content(text_body, cte=_plain_cte(text_body))
    message.add_alternative(html_body, subtype="html", cte="quoted-printable")
    return message


def _plain_cte(text: str) -> str:
    if text.isascii() and all(len(line) <= 900 for line in text.splitlines()):
        return "7bit"
    return "quoted-printable"
