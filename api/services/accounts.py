"""An address's own view: proving it (the verification link), seeing and changing its
subscriptions with their price history (the manage link), and asking for a manage link."""

from __future__ import annotations

import logging

from api import queries
from api.models import (
    ManagedSubscription,
    ManageView,
    PriceHistory,
    PricePoint,
    ProductView,
    VerifyResult,
)
from api.problems import ApiProblem
from api.services.base import Backend, is_id
from api.services.channels import channel_out
from pricewatch.contract.records import AccountEmailKind
from pricewatch.links import manage_link
from pricewatch.tokens import TokenPurpose

log = logging.getLogger(__name__)


def _managed(row: queries.Row, channels: list[str] | None = None) -> ManagedSubscription:
    return ManagedSubscription(
        subscription_id=row["subscription_id"],
        email=row["email"],
        product_id=row["product_id"],
        url=row["url"],
        target_price=row["target_price"],
        currency=row["target_currency"],
        drop_percent=row["drop_percent"],
        notify_any_drop=row["notify_any_drop"],
        notify_price_increase=row["notify_price_increase"],
        min_change_amount=row["min_change_amount"],
        min_change_percent=row["min_change_percent"],
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
        channels=channels,
    )


class Accounts:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    async def verification(self, token: str | None) -> tuple[str, list[queries.Row]]:
        """What a verification link would start: (address, its subscriptions)."""
        claims = self.backend.claims(token, TokenPurpose.VERIFY)
        user = await self.backend.db(queries.user_by_email, claims.subject)
        if user is None:
            raise ApiProblem(404, "There is nothing to confirm for this address")
        return user["email"], await self.backend.db(queries.subscriptions_of, user["email"])

    async def verify(self, token: str | None) -> VerifyResult:
        claims = self.backend.claims(token, TokenPurpose.VERIFY)
        user = await self.backend.db(queries.mark_verified, claims.subject)
        if user is None:
            raise ApiProblem(404, "There is nothing to confirm for this address")
        rows = await self.backend.db(queries.subscriptions_of, user["email"])
        now = self.backend.clock()
        await self.backend.publish_and_store(
            [queries.subscription_record(row, now=now, verified=True) for row in rows]
        )
        log.info("address verified; %d subscriptions republished", len(rows))
        return VerifyResult(email=user["email"], verified=True, subscriptions=len(rows))

    async def manage_view(self, token: str | None) -> ManageView:
        claims = self.backend.claims(token, TokenPurpose.MANAGE)
        user = await self.backend.db(queries.user_by_email, claims.subject)
        rows = (
            [] if user is None else await self.backend.db(queries.subscriptions_of, claims.subject)
        )
        channels = (
            [] if user is None else await self.backend.db(queries.channels_of, claims.subject)
        )
        chosen = (
            {}
            if not channels
            else await self.backend.db(queries.channel_choices_of, claims.subject)
        )
        return ManageView(
            email=claims.subject,
            verified=user is not None and user["verified_at"] is not None,
            subscriptions=[_managed(row, chosen.get(row["subscription_id"])) for row in rows],
            channels=[channel_out(row) for row in channels],
        )

    async def price_history(self, token: str | None, product_id: str) -> PriceHistory:
        claims = self.backend.claims(token, TokenPurpose.MANAGE)
        if not is_id(product_id):
            raise ApiProblem(404, "No such product for this link")
        rows = await self.backend.db(queries.subscriptions_of, claims.subject)
        # Only a product this address watches: the link is no window on other products.
        if not any(row["product_id"] == product_id for row in rows):
            raise ApiProblem(404, "No such product for this link")
        product, points = await self.backend.db(queries.price_history, product_id)
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
        user = await self.backend.db(queries.user_by_email, email)
        if user is None:
            log.info("manage link asked for an unknown address; nothing sent")
            return
        link = manage_link(self.backend.settings, user["email"], issued_at=self.backend.clock())
        await self.backend.send_account_email(AccountEmailKind.MANAGE_LINK, user["email"], link)
