"""What every service of the API uses: the database (through ``api.queries``), the
producer, the clock, signed tokens, account emails and the rate limits.

Every change to a subscription is a new record on the compacted ``subscriptions`` topic
(the source of truth the stream workers read) and the same upsert the subscriptions sink
makes in PostgreSQL, so the API can read back what it wrote without waiting for the sink.
Addresses are proved by signed links only (``pricewatch.tokens``): nothing here takes a
guessable id on its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import Counter
from sqlalchemy.exc import SQLAlchemyError

from api import queries
from api.problems import ApiProblem, invalid, unavailable
from api.ratelimit import TokenBuckets
from pricewatch.contract.records import AccountEmail, AccountEmailKind, Subscription
from pricewatch.contract.topics import ACCOUNT_EMAILS, SUBSCRIPTIONS
from pricewatch.ids import ID_PATTERN, partition_for
from pricewatch.settings import Settings
from pricewatch.tokens import InvalidToken, TokenClaims, TokenPurpose, read_token
from pricewatch.urlguard import BoundedResolver

log = logging.getLogger(__name__)
T = TypeVar("T")

TOKENS_REFUSED = Counter(
    "pricewatch_api_tokens_refused_total",
    "Links refused: forged, of another purpose, expired or malformed.",
    ["purpose", "reason"],
)
RATE_LIMITED = Counter(
    "pricewatch_api_rate_limited_total",
    "Calls refused with 429, by what was over its limit.",
    ["scope"],
)
# Requests that may email an address, by what was asked: counted when asked, so the same
# for a new, an unverified and a verified address (an account-email counter by kind told
# them apart: verify vs confirm_subscription, manage_link only for known addresses).
ACCOUNT_REQUESTS = Counter(
    "pricewatch_api_account_requests_total",
    "Accepted requests that may email an address (subscribe, manage_link), by request.",
    ["request"],
)

_ID = re.compile(ID_PATTERN)


def is_id(text: str) -> bool:
    """An id Pricewatch makes (so one that may go into a query)."""
    return _ID.fullmatch(text) is not None


# Providers known to ignore dots in the local part (one mailbox, many spellings).
_DOTLESS_DOMAINS = {"gmail.com": "gmail.com", "googlemail.com": "gmail.com"}


def mailbox_key(email: str) -> str:
    """One key per mailbox, for limits: lower-case, without a ``+tag`` (``ann+1@`` and
    ``ann+2@`` reach ann's one mailbox), and for Gmail without dots in the local part."""
    local, _, domain = email.strip().lower().rpartition("@")
    local = local.split("+", 1)[0] or local
    if domain in _DOTLESS_DOMAINS:
        local, domain = local.replace(".", "") or local, _DOTLESS_DOMAINS[domain]
    return f"{local}@{domain}"


@dataclass
class RateLimits:
    per_address: TokenBuckets
    per_email: TokenBuckets  # keyed by mailbox_key
    # What an address's owner does with its manage link (channels): a bucket of its own,
    # so strangers' sign-up calls cannot use it up.
    per_owner: TokenBuckets
    confirmations_per_email: TokenBuckets  # keyed by mailbox_key
    admin_failures: TokenBuckets  # wrong admin tokens, per client address

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimits:
        return cls(
            per_address=TokenBuckets(settings.rate_limit_per_address_per_minute, 60.0),
            per_email=TokenBuckets(settings.rate_limit_per_email_per_hour, 3600.0),
            per_owner=TokenBuckets(settings.rate_limit_per_email_per_hour, 3600.0),
            confirmations_per_email=TokenBuckets(
                settings.confirmation_emails_per_email_per_day, 86400.0
            ),
            admin_failures=TokenBuckets(settings.rate_limit_admin_failures_per_hour, 3600.0),
        )


def too_many(scope: str, wait: float) -> ApiProblem:
    RATE_LIMITED.labels(scope).inc()
    return ApiProblem(
        429,
        "Too many requests; try again later",
        reason=scope,
        headers={"Retry-After": str(max(1, int(wait + 0.999)))},
    )


def _check_limit(buckets: TokenBuckets, key: str, scope: str) -> None:
    wait = buckets.take(key, time.monotonic())
    if wait > 0:
        raise too_many(scope, wait)


def _account_email_key(kind: AccountEmailKind, email: str, bucket: str) -> str:
    digest = hashlib.sha256(f"{kind.value}\x1f{email}\x1f{bucket}".encode()).hexdigest()[:32]
    return f"{kind.value.replace('_', '-')}-{digest}"


class Backend:
    """The database, the producer, the clock, the secret and the rate limits of one API
    process, with what every service does with them."""

    def __init__(
        self,
        settings: Settings,
        producer: AIOKafkaProducer,
        engine: sqlalchemy.Engine,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        self.producer = producer
        self.engine = engine
        self.limits = RateLimits.from_settings(settings)
        # Subscribe-time DNS checks on a bounded pool of their own, not asyncio's default
        # executor, which self.db shares: hanging lookups cannot stall database calls.
        self.resolver = BoundedResolver(
            settings.dns_lookup_concurrency, settings.dns_lookup_timeout_seconds
        )
        self.secret = settings.secret_key_bytes()
        self.clock = clock or (lambda: datetime.now(UTC))

    async def db(self, call: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.to_thread(call, self.engine, *args)
        except SQLAlchemyError as exc:
            log.warning("database call %s failed: %s", call.__name__, exc.__class__.__name__)
            raise unavailable("The database") from exc

    async def publish(self, subscription: Subscription) -> None:
        try:
            await self.producer.send_and_wait(
                self.settings.topic(SUBSCRIPTIONS),
                key=subscription.subscription_id.encode(),
                value=subscription.model_dump_json().encode(),
                # Co-partitioned with the product's observations and events.
                partition=partition_for(subscription.product_id, self.settings.topic_partitions),
            )
        except KafkaError as exc:
            log.warning("could not publish subscription: %r", exc)
            raise unavailable("Subscriptions are") from exc

    async def publish_and_store(self, subscriptions: list[Subscription]) -> None:
        """Topic first (the source of truth; the sink repairs PostgreSQL if the second
        write fails), then the same upsert the sink makes, so reads see it at once."""
        for subscription in subscriptions:
            await self.publish(subscription)
        if subscriptions:
            await self.db(queries.save_subscriptions, subscriptions)

    def claims(self, token: str | None, purpose: TokenPurpose) -> TokenClaims:
        if not token:
            raise invalid("token", "a token is required (the link from your email)")
        try:
            return read_token(self.secret, token, purpose, now=self.clock())
        except InvalidToken as exc:
            TOKENS_REFUSED.labels(purpose.value, exc.reason).inc()
            # Forged and wrong-purpose look the same to the caller; expiry is worth saying.
            reason = "expired" if exc.reason == "expired" else "invalid"
            raise ApiProblem(
                403,
                "This link has expired" if reason == "expired" else "This link is not valid",
                reason=reason,
            ) from exc

    async def send_account_email(
        self,
        kind: AccountEmailKind,
        email: str,
        link: str,
        *,
        about: str = "",
        subscription: Subscription | None = None,
    ) -> None:
        """Publish an account email, sent once per address, kind, ``about`` and time bucket
        (a day for verification and confirmation emails, an hour for manage links), however
        often it is asked for."""
        now = self.clock()
        daily = kind is not AccountEmailKind.MANAGE_LINK
        bucket = now.strftime("%Y-%m-%d" if daily else "%Y-%m-%dT%H") + about
        mail = AccountEmail(
            idempotency_key=_account_email_key(kind, email, bucket),
            kind=kind,
            email=email,
            link=link,
            created_at=now,
            subscription=subscription,
        )
        try:
            await self.producer.send_and_wait(
                self.settings.topic(ACCOUNT_EMAILS),
                key=email.encode(),
                value=mail.model_dump_json().encode(),
            )
        except KafkaError as exc:
            log.warning("could not publish account email: %r", exc)
            raise unavailable("Email") from exc

    def limit_address(self, client: str) -> None:
        _check_limit(self.limits.per_address, client, "address")

    def limit_email(self, email: str) -> None:
        """Calls anyone can make about an address (sign-up, subscribe)."""
        _check_limit(self.limits.per_email, mailbox_key(email), "email")

    def limit_owner(self, email: str) -> None:
        """Calls only the address's owner can make (a signed manage link)."""
        _check_limit(self.limits.per_owner, mailbox_key(email), "email")
