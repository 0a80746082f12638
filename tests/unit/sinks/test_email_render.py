"""Rendering a notification into an email: subject, both parts, headers and links."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.message import EmailMessage
from typing import Any

import pytest

from pricewatch.contract.records import ALERT_NAMES, EventType, Notification, NotificationKind
from pricewatch.links import unsubscribe_link
from pricewatch.settings import Settings
from pricewatch.wording import format_money
from sinks.email.render import (
    ALERT_HEADER,
    IDEMPOTENCY_HEADER,
    InvalidRecipientError,
    render,
    render_account_email,
)

KEY = "0123456789abcdef0123456789abcdef"
SUBSCRIPTION = "fedcba9876543210fedcba9876543210"
SETTINGS = Settings(
    public_base_url="https://pricewatch.example.org/",
    email_from="Pricewatch <alerts@pricewatch.example.org>",
    secret_key="render-test-secret-0123456789",  # type: ignore[arg-type]
)


def notification(**changes: Any) -> Notification:
    fields: dict[str, Any] = {
        "idempotency_key": KEY,
        "kind": NotificationKind.TARGET_PRICE_REACHED,
        "subscription_id": SUBSCRIPTION,
        "email": "ann@example.com",
        "product_id": "a" * 32,
        "url": "https://shop.example/p/trail-shoe?colour=red&size=42",
        "title": "Trail Shoe",
        "event_id": "e" * 32,
        "event_type": EventType.PRICE_DROP,
        "observed_at": datetime(2025, 3, 1, 12, 0, tzinfo=UTC),
        "old_price": Decimal("99.5"),
        "new_price": Decimal("79"),
        "currency": "EUR",
        "target_price": Decimal("80.000000"),
        "created_at": datetime(2025, 3, 1, 12, 0, 5, tzinfo=UTC),
    }
    fields.update(changes)
    return Notification(**fields)


def parts(message: EmailMessage) -> tuple[str, str]:
    """(text, html) as a mail client decodes them, from the serialized bytes."""
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    text_part = parsed.get_body(preferencelist=("plain",))
    html_part = parsed.get_body(preferencelist=("html",))
    assert text_part is not None
    assert html_part is not None
    return str(text_part.get_content()), str(html_part.get_content())


CREATED_AT = datetime(2025, 3, 1, 12, 0, 5, tzinfo=UTC)
UNSUBSCRIBE = unsubscribe_link(SETTINGS, issued_at=CREATED_AT, subscription_id=SUBSCRIPTION)
UNSUBSCRIBE_PAGE = UNSUBSCRIBE.replace("/api/unsubscribe", "/unsubscribe")


def test_subject_names_the_product_the_new_price_and_the_target() -> None:
    message = render(notification(), SETTINGS)
    assert (
        message["Subject"] == "Target price reached: Trail Shoe is now €79.00 (your target €80.00)"
    )


def test_headers() -> None:
    message = render(notification(), SETTINGS)
    assert message["From"] == "Pricewatch <alerts@pricewatch.example.org>"
    assert message["To"] == "ann@example.com"
    assert message["Message-ID"] == f"<{KEY}@pricewatch.example.org>"
    assert message[IDEMPOTENCY_HEADER] == KEY
    assert message["List-Unsubscribe"] == f"<{UNSUBSCRIBE}>"
    assert message["Date"] == "Sat, 01 Mar 2025 12:00:05 +0000"
    assert message.get_content_type() == "multipart/alternative"


def test_headers_survive_serialization_unencoded() -> None:
    # A folded-and-encoded List-Unsubscribe (=?utf-8?q?...) is useless to mail clients.
    raw = render(notification(), SETTINGS).as_bytes()
    assert f"List-Unsubscribe: <{UNSUBSCRIBE}>".encode() in raw
    assert f"Message-ID: <{KEY}@pricewatch.example.org>".encode() in raw


def test_both_parts_carry_prices_and_links() -> None:
    text, html = parts(render(notification(), SETTINGS))
    for body in (text, html):
        assert "Trail Shoe" in body
        assert "€99.50" in body
        assert "€79.00" in body
        assert "€80.00" in body
    assert "https://shop.example/p/trail-shoe?colour=red&size=42" in text
    assert UNSUBSCRIBE_PAGE in text
    assert 'href="https://shop.example/p/trail-shoe?colour=red&amp;size=42"' in html
    assert f'href="{UNSUBSCRIBE_PAGE}"' in html


def test_html_escapes_scraped_titles() -> None:
    text, html = parts(render(notification(title='<script>alert("x")</script>'), SETTINGS))
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert '<script>alert("x")</script>' in text


def test_rendering_is_deterministic() -> None:
    first = render(notification(), SETTINGS)
    second = render(notification(), SETTINGS)
    assert first.items() == second.items()
    assert parts(first) == parts(second)


def test_missing_optional_fields() -> None:
    message = render(
        notification(title=None, old_price=None, target_price=None, currency="CHF"), SETTINGS
    )
    assert message["Subject"] == "Target price reached: shop.example is now CHF 79.00"
    text, html = parts(message)
    assert "Before" not in text
    assert "target" not in text.lower().split("stop these alerts")[0]
    assert "CHF 79.00" in html


def test_a_title_cannot_break_the_subject_line() -> None:
    message = render(notification(title="Shoe\r\nBcc: victim@example.com " + "x" * 200), SETTINGS)
    subject = message["Subject"]
    assert "\n" not in subject
    assert "\r" not in subject
    assert subject.startswith("Target price reached: Shoe Bcc: victim@example.com xxx")
    assert len(subject) < 140
    assert message["Bcc"] is None


@pytest.mark.parametrize(
    "address",
    ["ann@example.com\r\nBcc: x@y.z", "", "no-at-sign", "A <a@b.c>", "jösé@example.com"],
)
def test_an_unusable_recipient_is_refused(address: str) -> None:
    with pytest.raises(InvalidRecipientError):
        render(notification(email=address), SETTINGS)


def test_an_internationalised_domain_is_sent_to_in_its_ascii_form() -> None:
    """Issue 19: a UTF-8 domain in a header is an encoded word, which is no address."""
    message = render(notification(email="carol@exämple.com"), SETTINGS)
    assert message["To"] == "carol@xn--exmple-cua.com"
    raw = message.as_bytes(policy=email.policy.SMTP)
    assert b"\r\nTo: carol@xn--exmple-cua.com\r\n" in raw


def test_only_web_links_are_linked() -> None:
    text, html = parts(render(notification(url="javascript:alert(1)"), SETTINGS))
    assert "javascript:" not in html
    assert "javascript:" not in text
    assert 'href="https://pricewatch.example.org"' in html


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("79", "EUR", "€79.00"),
        ("79.5", "USD", "$79.50"),
        ("1299.99", "GBP", "£1,299.99"),
        ("1200", "JPY", "¥1,200"),
        ("0.015", "EUR", "€0.015"),  # a significant third decimal is shown, not rounded away
        ("80.000000", "EUR", "€80.00"),
        ("1E+2", "EUR", "€100.00"),
        ("79", "SEK", "SEK 79.00"),
        ("79", None, "79.00"),
        ("999999999999.999999", "EUR", "€999,999,999,999.999999"),
    ],
)
def test_format_money(amount: str, currency: str | None, expected: str) -> None:
    assert format_money(Decimal(amount), currency) == expected


@pytest.mark.parametrize("kind", list(NotificationKind))
def test_every_notification_kind_renders_with_its_own_subject(kind: NotificationKind) -> None:
    message = render(
        notification(kind=kind, drop_percent=Decimal("20"), reference_price=Decimal("99.5")),
        SETTINGS,
    )
    subjects = {
        NotificationKind.TARGET_PRICE_REACHED: "Target price reached: Trail Shoe is now €79.00",
        NotificationKind.DROP_PERCENT_REACHED: "Price down 20%: Trail Shoe is now €79.00",
        NotificationKind.PRICE_DROPPED: "Price drop: Trail Shoe is now €79.00 (was €99.50)",
        NotificationKind.PRICE_INCREASED: "Price up: Trail Shoe is now €79.00 (was €99.50)",
        NotificationKind.BACK_IN_STOCK: "Back in stock: Trail Shoe",
        NotificationKind.SOLD_OUT: "Sold out: Trail Shoe",
        NotificationKind.REMOVED: "No longer listed: Trail Shoe",
    }
    assert set(subjects) == set(NotificationKind)
    # One header value per rule, stable names a mail filter can match.
    assert message[ALERT_HEADER] == ALERT_NAMES[kind]
    assert message["Subject"].startswith(subjects[kind])
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    assert "unsubscribe" in text.get_content()
    assert "<script>" not in html.get_content()


def test_every_alert_carries_signed_one_click_unsubscribe_and_manage_links() -> None:
    from urllib.parse import parse_qs, urlsplit

    from pricewatch.tokens import TokenPurpose, read_token

    message = render(notification(), SETTINGS)
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text, html = parts(message)
    secret = SETTINGS.secret_key_bytes()
    links = [word for word in text.split() if word.startswith("https://pricewatch.example.org/")]
    found = {}
    for link in links:
        parts_ = urlsplit(link)
        token = parse_qs(parts_.query)["token"][0]
        purpose = TokenPurpose.MANAGE if parts_.path == "/manage" else TokenPurpose.UNSUBSCRIBE
        found[read_token(secret, token, purpose, now=CREATED_AT).subject] = parts_.path
    assert found == {
        f"subscription:{SUBSCRIPTION}": "/unsubscribe",
        "user:ann@example.com": "/unsubscribe",
        "ann@example.com": "/manage",
    }
    assert all(link.replace("&", "&amp;") in html for link in links)
    # The unsubscribe link of an old email still works long after it was sent.
    later = CREATED_AT + timedelta(days=365)
    token = UNSUBSCRIBE.split("token=")[1]
    assert read_token(secret, token, TokenPurpose.UNSUBSCRIBE, now=later)


def test_account_emails_carry_their_link_and_nothing_else_to_click() -> None:
    from pricewatch.contract.records import AccountEmail, AccountEmailKind

    link = "https://pricewatch.example.org/verify?token=abc.def"
    for kind, subject in (
        (AccountEmailKind.VERIFY, "Confirm your email address for Pricewatch"),
        (AccountEmailKind.MANAGE_LINK, "Your Pricewatch subscriptions"),
    ):
        mail = AccountEmail(
            idempotency_key=f"{kind.value}-1",
            kind=kind,
            email="ann@example.com",
            link=link,
            created_at=CREATED_AT,
        )
        message = render_account_email(mail, SETTINGS)
        assert message["Subject"] == subject and message["To"] == "ann@example.com"
        assert message["List-Unsubscribe"] is None  # transactional, not a list
        text, html = parts(message)
        assert link in text and f'href="{link}"' in html
        again = render_account_email(mail, SETTINGS)
        assert (again["Message-ID"], parts(again)) == (message["Message-ID"], (text, html))
        hostile = mail.model_copy(update={"link": "javascript:alert(1)"})
        assert "javascript:" not in parts(render_account_email(hostile, SETTINGS))[1]


def test_a_subscription_confirmation_says_what_starts_and_where() -> None:
    from pricewatch.contract.records import AccountEmail, AccountEmailKind, Subscription

    link = "https://pricewatch.example.org/confirm?token=abc.def"
    asked = Subscription(
        subscription_id="1" * 32,
        email="ann@example.com",
        product_id="2" * 32,
        url="https://shop.example/kettle?a=1&b=2",
        target_price=Decimal("20"),
        currency="CHF",
        notify_sold_out=True,
        created_at=CREATED_AT,
    )
    mail = AccountEmail(
        idempotency_key="confirm-subscription-1",
        kind=AccountEmailKind.CONFIRM_SUBSCRIPTION,
        email="ann@example.com",
        link=link,
        subscription=asked,
        created_at=CREATED_AT,
    )
    message = render_account_email(mail, SETTINGS)
    assert message["Subject"] == "Confirm your Pricewatch alert"
    text, html = parts(message)
    for body in (text, html.replace("&amp;", "&")):
        assert link in body and asked.url in body
        assert "CHF" in body and "20.00 or less" in body and "when it sells out" in body
    # The product URL is the user's: shown, never a link to click in our email.
    assert f'href="{asked.url.replace("&", "&amp;")}"' not in html
    hostile = mail.model_copy(
        update={"subscription": asked.model_copy(update={"url": "javascript:alert(1)"})}
    )
    assert "javascript:" not in "".join(parts(render_account_email(hostile, SETTINGS)))


def test_rendering_without_a_secret_key_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="PRICEWATCH_SECRET_KEY"):
        render(notification(), Settings(public_base_url="https://pricewatch.example.org"))


def test_an_account_emails_link_is_whole_in_the_raw_message() -> None:
    from pricewatch.contract.records import AccountEmail, AccountEmailKind

    link = "https://pricewatch.example.org/verify?token=" + "a" * 180 + "." + "b" * 43
    mail = AccountEmail(
        idempotency_key="verify-1",
        kind=AccountEmailKind.VERIFY,
        email="ann@example.com",
        link=link,
        created_at=CREATED_AT,
    )
    assert link.encode() in render_account_email(mail, SETTINGS).as_bytes()


def test_the_alert_header_names_every_rule_the_event_met_main_rule_first() -> None:
    message = render(
        notification(
            kinds=[NotificationKind.TARGET_PRICE_REACHED, NotificationKind.PRICE_DROPPED],
            threshold_price=Decimal("80"),
            baseline_price=Decimal("110"),
        ),
        SETTINGS,
    )
    assert message[ALERT_HEADER] == "target_price, any_drop"
    assert f"{ALERT_HEADER}: target_price, any_drop".encode() in message.as_bytes()
    text, html = parts(message)
    # The second rule is said too, measured from the price it compared with.
    assert "Also: Trail Shoe dropped from €110.00 to €79.00." in text
    assert "Before: €110.00" in text
    assert "Also: Trail Shoe dropped from €110.00 to €79.00." in html


def test_the_alert_names_are_stable_and_cover_every_kind() -> None:
    assert ALERT_NAMES == {
        NotificationKind.TARGET_PRICE_REACHED: "target_price",
        NotificationKind.DROP_PERCENT_REACHED: "drop_percent",
        NotificationKind.PRICE_DROPPED: "any_drop",
        NotificationKind.PRICE_INCREASED: "price_increase",
        NotificationKind.BACK_IN_STOCK: "back_in_stock",
        NotificationKind.SOLD_OUT: "sold_out",
        NotificationKind.REMOVED: "removed",
    }


def test_a_drop_percent_subject_says_how_far_below_the_reference_it_is() -> None:
    message = render(
        notification(
            kind=NotificationKind.DROP_PERCENT_REACHED,
            drop_percent=Decimal("10"),
            reference_price=Decimal("90"),
            new_price=Decimal("79"),
            threshold_price=Decimal("81"),
        ),
        SETTINGS,
    )
    # 12.2% below 90.00: rounded down, never more than the drop.
    assert message["Subject"] == "Price down 12%: Trail Shoe is now €79.00 (was €90.00)"
    assert "12% below €90.00 (you asked for 10% or more)." in parts(message)[0]


def test_a_price_increase_names_the_price_it_rose_from() -> None:
    message = render(
        notification(
            kind=NotificationKind.PRICE_INCREASED,
            kinds=[NotificationKind.PRICE_INCREASED],
            event_type=EventType.PRICE_INCREASE,
            old_price=Decimal("104"),
            new_price=Decimal("109.9"),
            baseline_price=Decimal("99"),
        ),
        SETTINGS,
    )
    assert message["Subject"] == "Price up: Trail Shoe is now €109.90 (was €99.00)"
    assert message[ALERT_HEADER] == "price_increase"
    text = parts(message)[0]
    assert "Trail Shoe went up from €99.00 to €109.90." in text
    assert "Before: €99.00" in text


def test_a_stock_change_told_after_its_flap_window_says_since_when() -> None:
    message = render(
        notification(
            kind=NotificationKind.SOLD_OUT,
            kinds=[NotificationKind.SOLD_OUT],
            event_type=EventType.STOCK_SETTLED,
            observed_at=datetime(2025, 3, 1, 14, 0, tzinfo=UTC),
            stock_changed_at=datetime(2025, 3, 1, 12, 30, tzinfo=UTC),
        ),
        SETTINGS,
    )
    assert message["Subject"] == "Sold out: Trail Shoe"
    assert "Trail Shoe has been sold out since 2025-03-01 12:30 UTC." in parts(message)[0]


def test_a_restock_below_the_target_says_both() -> None:
    message = render(
        notification(
            kind=NotificationKind.TARGET_PRICE_REACHED,
            kinds=[NotificationKind.TARGET_PRICE_REACHED, NotificationKind.BACK_IN_STOCK],
            event_type=EventType.BACK_IN_STOCK,
            threshold_price=Decimal("80"),
        ),
        SETTINGS,
    )
    assert message["Subject"] == (
        "Target price reached: Trail Shoe is back in stock at €79.00 (your target €80.00)"
    )
    assert message[ALERT_HEADER] == "target_price, back_in_stock"
    assert "Also: Trail Shoe is back in stock at €79.00." in parts(message)[0]


def test_a_paused_channel_email_says_which_and_why_and_links_to_manage() -> None:
    from pricewatch.contract.records import AccountEmail, AccountEmailKind, ChannelNotice

    link = "https://pricewatch.example.org/manage?token=abc.def"
    mail = AccountEmail(
        idempotency_key="channel-paused-1",
        kind=AccountEmailKind.CHANNEL_PAUSED,
        email="ann@example.com",
        link=link,
        created_at=CREATED_AT,
        channel=ChannelNotice(
            channel_id="c" * 32,
            kind="telegram",
            target="tgram://api.telegram.org/…4567",
            label="<b>phone</b>",
            failures=5,
            last_error="HTTP 403 Forbidden: bot was blocked by the user",
        ),
    )
    message = render_account_email(mail, SETTINGS)
    assert message["Subject"] == "A Pricewatch alert channel was paused"
    text, html = parts(message)
    for body in (text, html):
        assert "tgram://api.telegram.org/…4567" in body and "5 messages in a row" in body
        assert "bot was blocked by the user" in body and link in body
    assert "<b>phone</b>" not in html and "&lt;b&gt;phone&lt;/b&gt;" in html
    with pytest.raises(ValueError, match="names its channel"):
        AccountEmail.model_validate({**mail.model_dump(), "channel": None})
