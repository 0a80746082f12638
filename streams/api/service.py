"""What the API does, shared by the JSON endpoints and the pages: subscribe, verify,
unsubscribe, the manage view and its edits, and the emails these send.

Every change to a subscription is a new record on the compacted ``subscriptions`` topic
(the source of truth the stream workers read) and the same upsert the subscriptions sink
makes in PostgreSQL, so the API can read back what it wrote without waiting for the sink.
Addresses are proved by signed links only (``pricewatch.tokens``): nothing here takes a
guessable id on its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import sqlalchemy
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import Counter
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from pricewatch.contract.records import AccountEmail, AccountEmailKind, Subscription
from pricewatch.contract.topics import ACCOUNT_EMAILS, SUBSCRIPTIONS
from pricewatch.ids import ID_PATTERN, partition_for, product_id_for, subscription_id_for
from pricewatch.links import confirm_link, manage_link, verify_link
from pricewatch.settings import Settings
from pricewatch.tokens import (
    UNSUBSCRIBE_ALL_PREFIX,
    UNSUBSCRIBE_ONE_PREFIX,
    InvalidToken,
    TokenClaims,
    TokenPurpose,
    read_token,
)
from pricewatch.urlguard import UrlRefused, check_resolved_host
from streams.api import store
from streams.api.models import (
    ManagedSubscription,
    ManageView,
    PriceHistory,
    PricePoint,
    ProductView,
    SubscribeRequest,
    SubscriptionEdit,
    SubscriptionOut,
    VerifyResult,
    Wants,
    asks_for_something,
)
from streams.api.ratelimit import TokenBuckets

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
ACCOUNT_EMAILS_REQUESTED = Counter(
    "pricewatch_api_account_emails_total", "Account emails published, by kind.", ["kind"]
)
CONFIRMATIONS_SUPPRESSED = Counter(
    "pricewatch_api_confirmations_suppressed_total",
    "Subscription confirmation emails not sent: the address had its day's share.",
)
CONFIRMATIONS = Counter(
    "pricewatch_api_subscription_confirmations_total",
    "Followed subscription confirmation links, by outcome.",
    ["outcome"],
)


class ApiProblem(Exception):
    """An answer other than success: the HTTP layer renders it (JSON or a page)."""

    def __init__(
        self,
        status: int,
        title: str,
        *,
        errors: list[dict[str, str]] | None = None,
        reason: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(title)
        self.status = status
        self.title = title
        self.errors = errors
        self.reason = reason
        self.headers = headers or {}


def unavailable(what: str) -> ApiProblem:
    return ApiProblem(503, f"{what} is unavailable right now; try again shortly")


def invalid(field: str, message: str, title: str = "Invalid request") -> ApiProblem:
    return ApiProblem(422, title, errors=[{"field": field, "message": message}])


NOT_YOURS = ApiProblem(404, "No such subscription for this link")
_ID = re.compile(ID_PATTERN)


def field_errors(exc: ValidationError) -> list[dict[str, str]]:
    """A pydantic error as the problem document's field-by-field list."""
    return [
        {"field": ".".join(str(p) for p in err["loc"]) or "body", "message": err["msg"]}
        for err in exc.errors()
    ]


@dataclass
class RateLimits:
    per_address: TokenBuckets
    per_email: TokenBuckets
    confirmations_per_email: TokenBuckets

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimits:
        return cls(
            per_address=TokenBuckets(settings.rate_limit_per_address_per_minute, 60.0),
            per_email=TokenBuckets(settings.rate_limit_per_email_per_hour, 3600.0),
            confirmations_per_email=TokenBuckets(
                settings.confirmation_emails_per_email_per_day, 86400.0
            ),
        )


def _check_limit(buckets: TokenBuckets, key: str, scope: str) -> None:
    wait = buckets.take(key, time.monotonic())
    if wait > 0:
        RATE_LIMITED.labels(scope).inc()
        raise ApiProblem(
            429,
            "Too many requests; try again later",
            reason=scope,
            headers={"Retry-After": str(max(1, int(wait + 0.999)))},
        )


def _account_email_key(kind: AccountEmailKind, email: str, bucket: str) -> str:
    digest = hashlib.sha256(f"{kind.value}\x1f{email}\x1f{bucket}".encode()).hexdigest()[:32]
    return f"{kind.value.replace('_', '-')}-{digest}"


# What a subscription asks for: a confirmation link applies these, and only these.
_WANTED_FIELDS = ("url", "currency", *Wants.model_fields)


def _wants(record: Subscription) -> tuple[Any, ...]:
    return tuple(getattr(record, name) for name in _WANTED_FIELDS)


def confirm_subject(request: SubscribeRequest, requested_at: datetime) -> str:
    """The subject of a confirm token: the request itself (the token is signed, so the
    request needs no server-side storage an attacker could fill) and when it was made."""
    return json.dumps(
        {"r": request.model_dump(mode="json", exclude_none=True), "t": requested_at.isoformat()},
        separators=(",", ":"),
        sort_keys=True,
    )


def read_confirm_subject(subject: str) -> tuple[SubscribeRequest, datetime]:
    """The request and its time; the request is validated again (the rules may have grown)."""
    try:
        payload = json.loads(subject)
        requested_at = datetime.fromisoformat(payload["t"])
        request = SubscribeRequest.model_validate(payload["r"])
    except ValidationError as exc:
        raise ApiProblem(
            422, "This request is no longer valid; subscribe again", errors=field_errors(exc)
        ) from None
    except (ValueError, KeyError, TypeError):
        # Signed by us, so only a token of an older format gets here.
        raise ApiProblem(403, "This link is not valid", reason="invalid") from None
    if requested_at.tzinfo is None:
        raise ApiProblem(403, "This link is not valid", reason="invalid")
    return request, requested_at


def subscription_out(record: Subscription) -> SubscriptionOut:
    return SubscriptionOut.model_validate(record.model_dump(exclude={"schema_version"}))


def _managed(row: store.Row) -> ManagedSubscription:
    return ManagedSubscription(
        subscription_id=row["subscription_id"],
        email=row["email"],
        product_id=row["product_id"],
        url=row["url"],
        target_price=row["target_price"],
        currency=row["target_currency"],
        drop_percent=row["drop_percent"],
        notify_any_drop=row["notify_any_drop"],
        notify_back_in_stock=row["notify_back_in_stock"],
        notify_sold_out=row["notify_sold_out"],
        notify_removed=row["notify_removed"],
        active=row["active"],
        verified=row["verified_at"] is not None,
        created_at=row["created_at"],
        product=ProductView(
            title=row.get("title"),
            current_price=row.get("current_price"),
            currency=row.get("currency"),
            availability=row.get("availability"),
            last_checked_at=row.get("last_checked_at"),
        ),
    )


class Service:
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
        self.secret = settings.secret_key_bytes()
        self.clock = clock or (lambda: datetime.now(UTC))

    # --- plumbing ------------------------------------------------------------------
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
            await self.db(store.save_subscriptions, subscriptions)

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
        ACCOUNT_EMAILS_REQUESTED.labels(kind.value).inc()

    def limit_address(self, client: str) -> None:
        _check_limit(self.limits.per_address, client, "address")

    def limit_email(self, email: str) -> None:
        _check_limit(self.limits.per_email, email.lower(), "email")

    # --- subscribe, confirm and verify ------------------------------------------------
    async def check_trackable(self, url: str) -> None:
        """The URL's host resolves to a public address and its website is not paused."""
        try:
            await check_resolved_host(url, self.settings.allowed_private_host_set)
        except UrlRefused as exc:
            raise invalid("url", str(exc), "Invalid subscription") from exc
        host = (urlsplit(url).hostname or "").lower()
        website = await self.db(store.website_for_host, host)
        if website is not None and website["paused"]:
            raise invalid("url", f"tracking {host} is paused", "Invalid subscription")

    def requested(self, body: SubscribeRequest, *, verified: bool) -> Subscription:
        product_id = product_id_for(body.url)
        return Subscription(
            subscription_id=subscription_id_for(body.email, product_id),
            email=body.email,
            product_id=product_id,
            url=body.url,
            target_price=body.target_price,
            currency=body.currency,
            drop_percent=body.drop_percent,
            notify_any_drop=body.notify_any_drop,
            notify_back_in_stock=body.notify_back_in_stock,
            notify_sold_out=body.notify_sold_out,
            notify_removed=body.notify_removed,
            active=True,
            verified=verified,
            created_at=self.clock(),
        )

    async def subscribe(self, body: SubscribeRequest) -> Subscription:
        """Accept a subscription request; it starts only when the address's owner follows
        the link emailed now. The record returned is the request (``verified: false``).

        The answer is the same for every address: whether it is new, unconfirmed or a
        verified user shows only in the mailbox. A new or unconfirmed address is stored with
        its request and gets the address's verification email (one a day), whose link starts
        all its subscriptions. A verified address's subscriptions are left as they are: the
        request travels in a signed link (one per request, ``confirm``), so nobody who
        merely knows the address can add, change or stop its alerts.
        """
        self.limit_email(body.email)
        await self.check_trackable(body.url)
        user = await self.db(store.ensure_user, body.email)
        email = user["email"]
        record = self.requested(body, verified=False)
        if user["verified_at"] is None:
            await self.publish_and_store([record])
            log.info("subscription %s for product %s", record.subscription_id, record.product_id)
            link = verify_link(self.settings, email, issued_at=self.clock())
            await self.send_account_email(AccountEmailKind.VERIFY, email, link)
            again = await self.db(store.user_by_email, email)
            if again is None or again["verified_at"] is None:
                return record
            # Verified between our read and our publish: that verification's republish may
            # predate our record, which would then stay unverified. Its own link starts it.
        await self.send_confirmation(email, body)
        return record

    async def send_confirmation(self, email: str, body: SubscribeRequest) -> None:
        if self.limits.confirmations_per_email.take(email, time.monotonic()) > 0:
            CONFIRMATIONS_SUPPRESSED.inc()
            log.warning("confirmation email not sent: the address had its share today")
            return
        requested_at = self.clock()
        link = confirm_link(
            self.settings, confirm_subject(body, requested_at), issued_at=self.clock()
        )
        wanted = self.requested(body, verified=True)
        await self.send_account_email(
            AccountEmailKind.CONFIRM_SUBSCRIPTION,
            email,
            link,
            # The same request twice a day is one email; a different request is another.
            about="\x1f" + json.dumps([str(v) for v in _wants(wanted)]),
            subscription=wanted,
        )

    async def confirmation(self, token: str | None) -> Subscription:
        """What a confirm link would start (for the page that asks to press the button)."""
        claims = self.claims(token, TokenPurpose.CONFIRM)
        request, _ = read_confirm_subject(claims.subject)
        return self.requested(request, verified=True)

    async def confirm(self, token: str | None) -> SubscriptionOut:
        """Start the subscription a confirm link carries. Following it again changes
        nothing; a link older than a later change of that subscription is refused (409), so
        an old request cannot undo a newer one."""
        claims = self.claims(token, TokenPurpose.CONFIRM)
        request, requested_at = read_confirm_subject(claims.subject)
        await self.check_trackable(request.url)
        # Following the link proves the address, as the verification link does.
        user = await self.db(store.mark_verified, request.email)
        if user is None:
            raise ApiProblem(404, "There is nothing to confirm for this address")
        wanted = self.requested(request, verified=True)
        row = await self.db(store.subscription_by_id, wanted.subscription_id)
        if row is not None:
            current = store.subscription_record(row, now=self.clock())
            if current.active and current.verified and _wants(current) == _wants(wanted):
                CONFIRMATIONS.labels("already").inc()
                return subscription_out(current)
            if row["updated_at"] > requested_at:
                CONFIRMATIONS.labels("superseded").inc()
                raise ApiProblem(
                    409,
                    "This subscription changed after this link was sent; nothing was changed",
                    reason="superseded",
                )
            # A clock step back must not make the new version lose to the stored one.
            wanted = wanted.model_copy(
                update={"created_at": max(wanted.created_at, row["updated_at"])}
            )
        await self.publish_and_store([wanted])
        CONFIRMATIONS.labels("started").inc()
        log.info("subscription %s confirmed", wanted.subscription_id)
        return subscription_out(wanted)

    async def verification(self, token: str | None) -> tuple[str, list[store.Row]]:
        """What a verification link would start: (address, its subscriptions)."""
        claims = self.claims(token, TokenPurpose.VERIFY)
        user = await self.db(store.user_by_email, claims.subject)
        if user is None:
            raise ApiProblem(404, "There is nothing to confirm for this address")
        return user["email"], await self.db(store.subscriptions_of, user["email"])

    async def verify(self, token: str | None) -> VerifyResult:
        claims = self.claims(token, TokenPurpose.VERIFY)
        user = await self.db(store.mark_verified, claims.subject)
        if user is None:
            raise ApiProblem(404, "There is nothing to confirm for this address")
        rows = await self.db(store.subscriptions_of, user["email"])
        now = self.clock()
        await self.publish_and_store(
            [store.subscription_record(row, now=now, verified=True) for row in rows]
        )
        log.info("address verified; %d subscriptions republished", len(rows))
        return VerifyResult(email=user["email"], verified=True, subscriptions=len(rows))

    # --- unsubscribe --------------------------------------------------------------
    async def unsubscribe(self, token: str | None) -> int:
        """Stop one subscription or all of an address; how many were active (idempotent)."""
        claims = self.claims(token, TokenPurpose.UNSUBSCRIBE)
        subject = claims.subject
        if subject.startswith(UNSUBSCRIBE_ONE_PREFIX):
            row = await self.db(store.subscription_by_id, subject[len(UNSUBSCRIBE_ONE_PREFIX) :])
            rows = [] if row is None else [row]
        elif subject.startswith(UNSUBSCRIBE_ALL_PREFIX):
            rows = await self.db(store.subscriptions_of, subject[len(UNSUBSCRIBE_ALL_PREFIX) :])
        else:
            raise ApiProblem(403, "This link is not valid", reason="invalid")
        now = self.clock()
        stopped = [
            store.subscription_record(row, now=now, active=False) for row in rows if row["active"]
        ]
        await self.publish_and_store(stopped)
        return len(stopped)

    # --- a user's own view ----------------------------------------------------------
    async def manage_view(self, token: str | None) -> ManageView:
        claims = self.claims(token, TokenPurpose.MANAGE)
        user = await self.db(store.user_by_email, claims.subject)
        rows = [] if user is None else await self.db(store.subscriptions_of, claims.subject)
        return ManageView(
            email=claims.subject,
            verified=user is not None and user["verified_at"] is not None,
            subscriptions=[_managed(row) for row in rows],
        )

    async def _own_subscription(self, claims: TokenClaims, subscription_id: str) -> store.Row:
        if not _ID.fullmatch(subscription_id):
            raise NOT_YOURS  # no id we make; and never a query with whatever came in the path
        row = await self.db(store.subscription_by_id, subscription_id)
        # Someone else's subscription and a missing one look the same: no enumeration.
        if row is None or row["email"] != claims.subject.lower():
            raise NOT_YOURS
        return row

    async def edit(
        self, token: str | None, subscription_id: str, edit: SubscriptionEdit
    ) -> SubscriptionOut:
        claims = self.claims(token, TokenPurpose.MANAGE)
        row = await self._own_subscription(claims, subscription_id)
        changes = {name: getattr(edit, name) for name in edit.model_fields_set}
        for flag in ("notify_any_drop", "notify_back_in_stock", "notify_sold_out"):
            if flag in changes and changes[flag] is None:
                raise invalid(flag, "must be true or false")
        if "notify_removed" in changes and changes["notify_removed"] is None:
            raise invalid("notify_removed", "must be true or false")
        if "active" in changes and changes["active"] is None:
            raise invalid("active", "must be true or false")
        record = store.subscription_record(row, now=self.clock(), **changes)
        if record.active and not asks_for_something(record):
            raise invalid("body", "an active subscription must say what to be told")
        await self.publish_and_store([record])
        return subscription_out(record)

    async def price_history(self, token: str | None, product_id: str) -> PriceHistory:
        claims = self.claims(token, TokenPurpose.MANAGE)
        if not _ID.fullmatch(product_id):
            raise ApiProblem(404, "No such product for this link")
        rows = await self.db(store.subscriptions_of, claims.subject)
        # Only a product this address watches: the link is no window on other products.
        if not any(row["product_id"] == product_id for row in rows):
            raise ApiProblem(404, "No such product for this link")
        product, points = await self.db(store.price_history, product_id)
        url = next(row["url"] for row in rows if row["product_id"] == product_id)
        return PriceHistory(
            product_id=product_id,
            url=product["url"] if product else url,
            title=product["title"] if product else None,
            prices=[PricePoint.model_validate(point) for point in points],
        )

    async def send_manage_link(self, email: str) -> None:
        """Email a manage link to a known address; unknown ones get nothing, and the caller
        the same answer either way. The caller took the per-email request limit; the
        number of emails is capped in send_account_email."""
        user = await self.db(store.user_by_email, email)
        if user is None:
            log.info("manage link asked for an unknown address; nothing sent")
            return
        link = manage_link(self.settings, user["email"], issued_at=self.clock())
        await self.send_account_email(AccountEmailKind.MANAGE_LINK, user["email"], link)
