"""An address's channels: adding one (checked, sealed, and sent a test message that carries
its confirmation link), confirming it by that link, pausing, resuming, removing it, and
choosing which channels a subscription sends to.

A manage link proves the address (like every change to its subscriptions). A new channel
is ``pending``: the channels sink sends it the test message and nothing else until someone
who reads that channel follows the link (the same rule as an email address). Channel URLs
hold secrets: they are sealed before they reach the database (``pricewatch.sealing``) and
only ever shown masked; a webhook's signing secret is shown once, in the answer that adds it.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from typing import Any

from aiokafka.errors import KafkaError
from prometheus_client import Counter

from api import queries
from api.models import ChannelAdd, ChannelAdded, ChannelEdit, ChannelOut
from api.problems import ApiProblem, invalid, unavailable
from api.services.base import Backend
from pricewatch.channels import (
    SECRET_SEAL,
    URL_SEAL,
    ChannelKind,
    ChannelRefused,
    new_webhook_secret,
    target_for,
)
from pricewatch.contract.records import ChannelConfirmation
from pricewatch.contract.topics import CHANNEL_CONFIRMATIONS
from pricewatch.links import channel_confirm_link
from pricewatch.sealing import Sealer
from pricewatch.tokens import TokenPurpose
from pricewatch.urlguard import UrlRefused, check_resolved_host

log = logging.getLogger(__name__)

CHANNEL_CHANGES = Counter(
    "pricewatch_api_channel_changes_total",
    "Channels added, confirmed, paused, resumed and removed, by channel kind.",
    ["kind", "change"],
)

NO_SUCH_CHANNEL = ApiProblem(404, "No such channel for this link")
_CHANNEL_ID_CHARS = frozenset("0123456789abcdef")
_FIELDS = ("url", "topic", "server", "token", "bot_token", "chat_id", "webhook_url")


def channel_out(row: queries.Row) -> ChannelOut:
    return ChannelOut.model_validate({k: v for k, v in row.items() if k in ChannelOut.model_fields})


def _is_channel_id(text: str) -> bool:
    return len(text) == 32 and set(text) <= _CHANNEL_ID_CHARS


class Channels:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        secret = backend.settings.secret_key_bytes()
        self.urls = Sealer(secret, URL_SEAL)
        self.secrets = Sealer(secret, SECRET_SEAL)

    def _owner(self, token: str | None) -> str:
        return self.backend.claims(token, TokenPurpose.MANAGE).subject.lower()

    async def _own(self, email: str, channel_id: str) -> queries.Row:
        if not _is_channel_id(channel_id):
            raise NO_SUCH_CHANNEL
        row = await self.backend.db(queries.channel_by_id, channel_id)
        # Someone else's channel and a missing one look the same.
        if row is None or row["email"] != email:
            raise NO_SUCH_CHANNEL
        return row

    async def of_address(self, token: str | None) -> list[ChannelOut]:
        email = self._owner(token)
        return [channel_out(r) for r in await self.backend.db(queries.channels_of, email)]

    async def add(self, token: str | None, body: ChannelAdd) -> ChannelAdded:
        email = self._owner(token)
        self.backend.limit_owner(email)
        settings = self.backend.settings
        fields: dict[str, Any] = {name: getattr(body, name) for name in _FIELDS}
        try:
            target = target_for(body.kind, fields, settings.notify_scheme_set)
        except ChannelRefused as exc:
            raise invalid(exc.field, str(exc), "Invalid channel") from None
        if target.custom_host:
            # Refused now rather than at the first alert; the sink checks again at every
            # send, on the address it connects to.
            try:
                await check_resolved_host(
                    target.probe_url(), settings.allowed_private_host_set, self.backend.resolver
                )
            except UrlRefused as exc:
                field = "server" if body.kind is ChannelKind.NTFY else "url"
                raise invalid(field, str(exc), "Invalid channel") from None
        await self.backend.db(queries.ensure_user, email)
        channel_id = secrets.token_hex(16)
        secret = new_webhook_secret() if body.kind is ChannelKind.WEBHOOK else None
        values = {
            "channel_id": channel_id,
            "email": email,
            "kind": body.kind.value,
            "label": body.label or None,
            "target": target.masked,
            "url_sealed": self.urls.seal(target.url, channel_id),
            "url_digest": self.urls.digest(target.url),
            "secret_sealed": None if secret is None else self.secrets.seal(secret, channel_id),
        }
        outcome, row = await self.backend.db(
            queries.add_channel, values, settings.channels_per_address
        )
        if outcome == "full":
            raise ApiProblem(
                409,
                f"An address can have {settings.channels_per_address} channels; remove one first",
                reason="too_many_channels",
            )
        if outcome == "exists" or row is None:
            raise ApiProblem(409, "This channel is added already", reason="exists")
        CHANNEL_CHANGES.labels(body.kind.value, "added").inc()
        log.info("channel %s (%s) added", channel_id, body.kind.value)
        await self.send_test(row)
        return ChannelAdded(
            **channel_out(row).model_dump(),
            signing_secret=secret,
            next_step="A test message with a confirmation link is on its way to this channel: "
            "follow it to start alerts there.",
        )

    async def send_test(self, row: queries.Row) -> None:
        """Publish the test message of a pending channel (once per channel and hour, however
        often it is asked for: the sink sends once per idempotency key)."""
        now = self.backend.clock()
        bucket = f"{row['channel_id']}\x1f{now:%Y-%m-%dT%H}"
        key = "channel-confirm-" + hashlib.sha256(bucket.encode()).hexdigest()[:32]
        link = channel_confirm_link(self.backend.settings, row["channel_id"], issued_at=now)
        message = ChannelConfirmation(
            idempotency_key=key,
            channel_id=row["channel_id"],
            email=row["email"],
            link=link,
            created_at=now,
        )
        try:
            await self.backend.producer.send_and_wait(
                self.backend.settings.topic(CHANNEL_CONFIRMATIONS),
                key=message.channel_id.encode(),
                value=message.model_dump_json().encode(),
            )
        except KafkaError as exc:
            log.warning("could not publish a channel's test message: %r", exc)
            raise unavailable("Sending the test message") from exc

    async def resend_test(self, token: str | None, channel_id: str) -> ChannelOut:
        email = self._owner(token)
        self.backend.limit_owner(email)
        row = await self._own(email, channel_id)
        if row["status"] != "pending":
            raise ApiProblem(409, "This channel is confirmed already", reason="confirmed")
        await self.send_test(row)
        return channel_out(row)

    async def confirmation(self, token: str | None) -> queries.Row:
        """The channel a confirmation link names (for the page that asks to press the button)."""
        claims = self.backend.claims(token, TokenPurpose.CHANNEL_CONFIRM)
        row = await self.backend.db(queries.channel_by_id, claims.subject)
        if row is None:
            raise ApiProblem(404, "This channel was removed")
        return row

    async def confirm(self, token: str | None) -> ChannelOut:
        """Confirm the channel the link names; following it again changes nothing."""
        claims = self.backend.claims(token, TokenPurpose.CHANNEL_CONFIRM)
        before = await self.backend.db(queries.channel_by_id, claims.subject)
        if before is None:
            raise ApiProblem(404, "This channel was removed")
        row = await self.backend.db(queries.confirm_channel, claims.subject)
        if row is None:
            raise ApiProblem(404, "This channel was removed")
        if before["status"] == "pending":
            CHANNEL_CHANGES.labels(row["kind"], "confirmed").inc()
            log.info("channel %s confirmed", claims.subject)
        return channel_out(row)

    async def change(self, token: str | None, channel_id: str, edit: ChannelEdit) -> ChannelOut:
        email = self._owner(token)
        row = await self._own(email, channel_id)
        if "paused" in edit.model_fields_set:
            if edit.paused is None:
                raise invalid("paused", "must be true or false")
            if row["status"] == "pending":
                raise ApiProblem(
                    409,
                    "Confirm this channel first (the link of its test message)",
                    reason="pending",
                )
            await self.backend.db(queries.set_channel_paused, channel_id, edit.paused)
            CHANNEL_CHANGES.labels(row["kind"], "paused" if edit.paused else "resumed").inc()
        if "label" in edit.model_fields_set:
            await self.backend.db(queries.set_channel_label, channel_id, edit.label or None)
        changed = await self.backend.db(queries.channel_by_id, channel_id)
        if changed is None:
            raise NO_SUCH_CHANNEL
        return channel_out(changed)

    async def remove(self, token: str | None, channel_id: str) -> None:
        email = self._owner(token)
        row = await self._own(email, channel_id)
        await self.backend.db(queries.remove_channel, channel_id)
        CHANNEL_CHANGES.labels(row["kind"], "removed").inc()
        log.info("channel %s removed", channel_id)

    async def choose(self, email: str, subscription_id: str, channel_ids: list[str] | None) -> None:
        """The channels a subscription of ``email`` sends to (None: every active one)."""
        if channel_ids is not None:
            own = {r["channel_id"] for r in await self.backend.db(queries.channels_of, email)}
            strangers = [c for c in channel_ids if c not in own]
            if strangers:
                raise invalid("channels", "not channels of this address: " + ", ".join(strangers))
            channel_ids = sorted(set(channel_ids))
        await self.backend.db(queries.choose_channels, subscription_id, channel_ids)
