"""Subscribing, confirming, changing and stopping subscriptions.

A new or unconfirmed address gets a verification email whose link starts all its
subscriptions (``api.services.accounts``); a verified address gets, per request, a link
that starts or changes that one subscription, so nobody who merely knows an address can
change its alerts.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import Counter
from pydantic import ValidationError

from api import queries
from api.models import (
    SubscribeRequest,
    SubscriptionEdit,
    SubscriptionOut,
    Wants,
    asks_for_something,
)
from api.problems import ApiProblem, field_errors, invalid
from api.services.base import Backend, is_id, mailbox_key
from api.services.channels import Channels
from pricewatch.contract.records import AccountEmailKind, Subscription
from pricewatch.ids import product_id_for, subscription_id_for
from pricewatch.links import confirm_link, verify_link
from pricewatch.tokens import (
    UNSUBSCRIBE_ALL_PREFIX,
    UNSUBSCRIBE_ONE_PREFIX,
    TokenClaims,
    TokenPurpose,
)
from pricewatch.urlguard import UrlRefused, check_resolved_host

log = logging.getLogger(__name__)

CONFIRMATIONS_SUPPRESSED = Counter(
    "pricewatch_api_confirmations_suppressed_total",
    "Subscription confirmation emails not sent: the address had its day's share.",
)
CONFIRMATIONS = Counter(
    "pricewatch_api_subscription_confirmations_total",
    "Followed subscription confirmation links, by outcome.",
    ["outcome"],
)

NOT_YOURS = ApiProblem(404, "No such subscription for this link")
_EDIT_FLAGS = (
    "notify_any_drop",
    "notify_price_increase",
    "notify_back_in_stock",
    "notify_sold_out",
    "notify_removed",
    "active",
)


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


class Subscriptions:
    def __init__(self, backend: Backend, channels: Channels) -> None:
        self.backend = backend
        self.channels = channels

    async def tracked_websites(self) -> list[queries.Row]:
        """Websites with adapters, paused ones included (the caller lists the others)."""
        return await self.backend.db(queries.websites)

    async def check_trackable(self, url: str) -> None:
        """The URL's host resolves to a public address and its website is not paused."""
        try:
            await check_resolved_host(
                url, self.backend.settings.allowed_private_host_set, self.backend.resolver
            )
        except UrlRefused as exc:
            raise invalid("url", str(exc), "Invalid subscription") from exc
        host = (urlsplit(url).hostname or "").lower()
        website = await self.backend.db(queries.website_for_host, host)
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
            notify_price_increase=body.notify_price_increase,
            min_change_amount=body.min_change_amount,
            min_change_percent=body.min_change_percent,
            notify_back_in_stock=body.notify_back_in_stock,
            notify_sold_out=body.notify_sold_out,
            notify_removed=body.notify_removed,
            active=True,
            verified=verified,
            created_at=self.backend.clock(),
        )

    async def accept(self, body: SubscribeRequest) -> Subscription:
        """What a subscription request is answered on, the same for every address: the
        per-mailbox limit and the URL's checks (guard, DNS, paused website), none of which
        reads the address's own state. The record returned is the request
        (``verified: false``); ``carry_out`` does the rest, after the answer."""
        self.backend.limit_email(body.email)
        await self.check_trackable(body.url)
        return self.requested(body, verified=False)

    async def subscribe(self, body: SubscribeRequest) -> Subscription:
        """``accept`` and ``carry_out`` in one (the API runs the second after answering)."""
        record = await self.accept(body)
        await self.carry_out(body, record)
        return record

    async def carry_out(self, body: SubscribeRequest, record: Subscription) -> None:
        """Act on an accepted request; it starts only when the address's owner follows
        the link emailed now.

        The answer is the same for every address: whether it is new, unconfirmed or a
        verified user shows only in the mailbox. A new or unconfirmed address is stored with
        its request and gets the address's verification email (one a day), whose link starts
        all its subscriptions. A verified address's subscriptions are left as they are: the
        request travels in a signed link (one per request, ``confirm``), so nobody who
        merely knows the address can add, change or stop its alerts.
        """
        user = await self.backend.db(queries.ensure_user, body.email)
        email = user["email"]
        if user["verified_at"] is None:
            await self.backend.publish_and_store([record])
            log.info("subscription %s for product %s", record.subscription_id, record.product_id)
            again = await self.backend.db(queries.user_by_email, email)
            if again is None or again["verified_at"] is None:
                # Sent last: a verification by this email's link comes after the check
                # above, so its republish includes our record.
                link = verify_link(self.backend.settings, email, issued_at=self.backend.clock())
                await self.backend.send_account_email(AccountEmailKind.VERIFY, email, link)
                return
            # Verified between our read and our publish (by an earlier email's link): that
            # verification's republish may predate our record, which would then stay
            # unverified. Its own link starts it.
        await self.send_confirmation(email, body)

    async def send_confirmation(self, email: str, body: SubscribeRequest) -> None:
        confirmations = self.backend.limits.confirmations_per_email
        if confirmations.take(mailbox_key(email), time.monotonic()) > 0:
            CONFIRMATIONS_SUPPRESSED.inc()
            log.warning("confirmation email not sent: the address had its share today")
            return
        requested_at = self.backend.clock()
        link = confirm_link(
            self.backend.settings,
            confirm_subject(body, requested_at),
            issued_at=self.backend.clock(),
        )
        wanted = self.requested(body, verified=True)
        await self.backend.send_account_email(
            AccountEmailKind.CONFIRM_SUBSCRIPTION,
            email,
            link,
            # The same request twice a day is one email; a different request is another.
            about="\x1f" + json.dumps([str(v) for v in _wants(wanted)]),
            subscription=wanted,
        )

    async def confirmation(self, token: str | None) -> Subscription:
        """What a confirm link would start (for the page that asks to press the button)."""
        claims = self.backend.claims(token, TokenPurpose.CONFIRM)
        request, _ = read_confirm_subject(claims.subject)
        return self.requested(request, verified=True)

    async def confirm(self, token: str | None) -> SubscriptionOut:
        """Start the subscription a confirm link carries. Following it again changes
        nothing; a link older than a later change of that subscription is refused (409), so
        an old request cannot undo a newer one."""
        claims = self.backend.claims(token, TokenPurpose.CONFIRM)
        request, requested_at = read_confirm_subject(claims.subject)
        await self.check_trackable(request.url)
        # Following the link proves the address, as the verification link does.
        user = await self.backend.db(queries.mark_verified, request.email)
        if user is None:
            raise ApiProblem(404, "There is nothing to confirm for this address")
        wanted = self.requested(request, verified=True)
        row = await self.backend.db(queries.subscription_by_id, wanted.subscription_id)
        if row is not None:
            current = queries.subscription_record(row, now=self.backend.clock())
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
        await self.backend.publish_and_store([wanted])
        CONFIRMATIONS.labels("started").inc()
        log.info("subscription %s confirmed", wanted.subscription_id)
        return subscription_out(wanted)

    async def _own_subscription(self, claims: TokenClaims, subscription_id: str) -> queries.Row:
        if not is_id(subscription_id):
            raise NOT_YOURS  # no id we make; and never a query with whatever came in the path
        row = await self.backend.db(queries.subscription_by_id, subscription_id)
        # Someone else's subscription and a missing one look the same: no enumeration.
        if row is None or row["email"] != claims.subject.lower():
            raise NOT_YOURS
        return row

    async def edit(
        self, token: str | None, subscription_id: str, edit: SubscriptionEdit
    ) -> SubscriptionOut:
        claims = self.backend.claims(token, TokenPurpose.MANAGE)
        row = await self._own_subscription(claims, subscription_id)
        changes = {name: getattr(edit, name) for name in edit.model_fields_set}
        if "channels" in changes:
            # Where its alerts go, not what they are: PostgreSQL only (the channels sink
            # reads it), no new version of the subscription.
            chosen = changes.pop("channels")
            await self.channels.choose(claims.subject.lower(), subscription_id, chosen)
            if not changes:
                return subscription_out(queries.subscription_record(row, now=row["updated_at"]))
        for flag in _EDIT_FLAGS:
            if flag in changes and changes[flag] is None:
                raise invalid(flag, "must be true or false")
        try:
            # The record's own rules (a minimum change needs a price alert) judge the result.
            record = queries.subscription_record(row, now=self.backend.clock(), **changes)
        except ValidationError as exc:
            raise ApiProblem(422, "Invalid change", errors=field_errors(exc)) from None
        if record.active and not asks_for_something(record):
            raise invalid("body", "an active subscription must say what to be told")
        await self.backend.publish_and_store([record])
        return subscription_out(record)

    async def unsubscribe(self, token: str | None) -> int:
        """Stop one subscription or all of an address; how many were active (idempotent)."""
        claims = self.backend.claims(token, TokenPurpose.UNSUBSCRIBE)
        subject = claims.subject
        if subject.startswith(UNSUBSCRIBE_ONE_PREFIX):
            row = await self.backend.db(
                queries.subscription_by_id, subject[len(UNSUBSCRIBE_ONE_PREFIX) :]
            )
            rows = [] if row is None else [row]
        elif subject.startswith(UNSUBSCRIBE_ALL_PREFIX):
            rows = await self.backend.db(
                queries.subscriptions_of, subject[len(UNSUBSCRIBE_ALL_PREFIX) :]
            )
        else:
            raise ApiProblem(403, "This link is not valid", reason="invalid")
        now = self.backend.clock()
        stopped = [
            queries.subscription_record(row, now=now, active=False) for row in rows if row["active"]
        ]
        await self.backend.publish_and_store(stopped)
        return len(stopped)
