"""Every signed link Pricewatch emails, and the paths of the pages and endpoints they open.

The API builds the verify, confirm and manage links it publishes in account emails; the email
sink builds the unsubscribe and manage links of every alert. Both build them here, from the
same settings (``public_base_url``, ``secret_key``, the token lifetimes), so a link one role
makes is one the API serves. The tokens themselves are ``pricewatch.tokens``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final
from urllib.parse import quote

from pricewatch.settings import Settings
from pricewatch.tokens import (
    UNSUBSCRIBE_ALL_PREFIX,
    UNSUBSCRIBE_ONE_PREFIX,
    TokenPurpose,
    issue_token,
)

# Pages for people: a GET shows what following the link does and a button (POST) does it,
# because mail scanners open the links in emails.
VERIFY_PAGE: Final = "/verify"
CONFIRM_PAGE: Final = "/confirm"
MANAGE_PAGE: Final = "/manage"
UNSUBSCRIBE_PAGE: Final = "/unsubscribe"
CHANNEL_CONFIRM_PAGE: Final = "/channels/confirm"
# The List-Unsubscribe header's target: only the RFC 8058 one-click POST stops anything; a
# GET shows the page that asks.
UNSUBSCRIBE_API: Final = "/api/unsubscribe"


def signed_link(
    settings: Settings,
    path: str,
    purpose: TokenPurpose,
    subject: str,
    *,
    issued_at: datetime,
    ttl_seconds: float,
) -> str:
    """``<api base><path>?token=...``: a link only the holder of the secret key can make.

    ``issued_at`` is when the link's lifetime starts: a record's time makes the same record
    render the same link.
    """
    token = issue_token(
        settings.secret_key_bytes(),
        purpose,
        subject,
        now=issued_at,
        ttl=timedelta(seconds=ttl_seconds),
    )
    return f"{settings.api_base_url}{path}?token={quote(token, safe='')}"


def verify_link(settings: Settings, email: str, *, issued_at: datetime) -> str:
    """Confirms the address ``email`` (and starts its subscriptions)."""
    return signed_link(
        settings,
        VERIFY_PAGE,
        TokenPurpose.VERIFY,
        email,
        issued_at=issued_at,
        ttl_seconds=settings.verify_token_ttl_seconds,
    )


def confirm_link(settings: Settings, request: str, *, issued_at: datetime) -> str:
    """Starts the subscription request ``request`` (a confirm token's subject)."""
    return signed_link(
        settings,
        CONFIRM_PAGE,
        TokenPurpose.CONFIRM,
        request,
        issued_at=issued_at,
        ttl_seconds=settings.verify_token_ttl_seconds,
    )


def manage_link(settings: Settings, email: str, *, issued_at: datetime) -> str:
    """Shows and edits the subscriptions of ``email``."""
    return signed_link(
        settings,
        MANAGE_PAGE,
        TokenPurpose.MANAGE,
        email,
        issued_at=issued_at,
        ttl_seconds=settings.manage_token_ttl_seconds,
    )


def channel_confirm_link(settings: Settings, channel_id: str, *, issued_at: datetime) -> str:
    """Confirms that the test message reached channel ``channel_id``."""
    return signed_link(
        settings,
        CHANNEL_CONFIRM_PAGE,
        TokenPurpose.CHANNEL_CONFIRM,
        channel_id,
        issued_at=issued_at,
        ttl_seconds=settings.verify_token_ttl_seconds,
    )


def unsubscribe_link(
    settings: Settings,
    *,
    issued_at: datetime,
    subscription_id: str | None = None,
    email: str | None = None,
    path: str = UNSUBSCRIBE_API,
) -> str:
    """Stop one subscription (``subscription_id``) or every one of an address (``email``)."""
    if subscription_id is not None:
        subject = UNSUBSCRIBE_ONE_PREFIX + subscription_id
    elif email is not None:
        subject = UNSUBSCRIBE_ALL_PREFIX + email.strip().lower()
    else:
        raise ValueError("unsubscribe from a subscription or from an email address")
    return signed_link(
        settings,
        path,
        TokenPurpose.UNSUBSCRIBE,
        subject,
        issued_at=issued_at,
        ttl_seconds=settings.unsubscribe_token_ttl_seconds,
    )
