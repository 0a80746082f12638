"""Notifications to every confirmed channel of their address, exactly once per (notification,
channel); and each new channel's test message, the only thing a channel gets before its
owner confirms it.

The matcher knows nothing of channels: a notification names its address and subscription,
and this sink looks up in PostgreSQL the address's active channels (those the subscription
chose, when its owner chose; else all). Channels change in PostgreSQL only (the API), so
the stream workers need no new state and a channel added now gets the next alert.

Per message and channel (``sinks.ledger``, table ``channel_deliveries``): claim, send, record.
A temporary failure keeps the message in its row and schedules it again with exponential
backoff (``PRICEWATCH_CHANNEL_RETRY_BACKOFF_SECONDS``); the batch is committed, so one slow or
broken channel never holds up the others. A retry loop sends what is due. After
``PRICEWATCH_CHANNEL_MAX_ATTEMPTS`` it counts as failed. A permanent failure (the URL guard
refused the address, a 4xx, a redirect) is recorded at once; a channel failing permanently
``PRICEWATCH_CHANNEL_PAUSE_AFTER_FAILURES`` times in a row is paused and its owner told by an
account email (``channel_paused``). A success resets the count.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import sqlalchemy
from aiokafka import AIOKafkaProducer
from prometheus_client import Counter, Histogram
from sqlalchemy import text

from pricewatch.channels import SECRET_SEAL, URL_SEAL, ChannelKind
from pricewatch.contract.records import (
    AccountEmail,
    AccountEmailKind,
    ChannelConfirmation,
    ChannelNotice,
    Notification,
)
from pricewatch.contract.topics import ACCOUNT_EMAILS, CHANNEL_CONFIRMATIONS, NOTIFICATIONS
from pricewatch.db.engine import migrated_engine
from pricewatch.kafka import make_producer
from pricewatch.links import manage_link
from pricewatch.sealing import Sealer, Unsealable
from pricewatch.settings import Settings
from pricewatch.urlguard import GuardedResolver
from sinks.base import describe_error
from sinks.channels.messages import (
    alert_event,
    chat_alert,
    chat_confirmation,
    confirmation_event,
    event_bytes,
)
from sinks.channels.send import Outcome, send_apprise, send_webhook
from sinks.contract import Batch, Feed, SinkKind
from sinks.ledger import CLAIMED, UNCONFIRMED, Ledger

log = logging.getLogger(__name__)

ROLE = "channel-sink"
CONFIRMATION_ROLE = "channel-confirmation-sink"  # its own group: a backlog never delays them
CONCURRENT_SENDS = 8
RETRY_POLL_SECONDS = 0.5
# With no retry due, the loop looks again after this long at most (or the retry backoff,
# if shorter), or when this process schedules a retry sooner: retries scheduled by another
# process are found within it. Polling every RETRY_POLL_SECONDS instead cost two
# PostgreSQL transactions a second for nothing at rest.
IDLE_RETRY_POLL_SECONDS = 5.0
RETRY_BATCH = 20

DELIVERIES = Counter(
    "pricewatch_channel_deliveries_total",
    "Messages to channels by channel kind and outcome: sent, retrying (a temporary failure, "
    "sent again later), failed (for good), refused (by the URL guard), duplicate (already "
    "handled), unconfirmed (a process stopped mid-send: not sent again).",
    ["kind", "outcome"],
)
FAILURES = Counter(
    "pricewatch_channel_failures_total",
    "Failed attempts to send to a channel, by channel kind and reason.",
    ["kind", "reason"],
)
DELIVERY_SECONDS = Histogram(
    "pricewatch_channel_delivery_seconds",
    "Time one attempt to send to a channel took.",
    ["kind"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
PAUSED = Counter(
    "pricewatch_channels_paused_total",
    "Channels paused after failing permanently too often, by kind.",
    ["kind"],
)

Message = Notification | ChannelConfirmation

LEDGER_COLUMNS = ("channel_kind", "message", "email", "subscription_id", "payload")

CHANNELS_FOR_ALERT = text(
    """
    SELECT c.channel_id, c.kind, c.label, c.target, c.url_sealed, c.secret_sealed
    FROM channels c
    JOIN users u ON u.id = c.user_id
    LEFT JOIN channel_choices cc ON cc.subscription_id = :subscription_id
    WHERE u.email = lower(:email) AND c.status = 'active'
      AND (cc.subscription_id IS NULL OR c.channel_id = ANY(cc.channel_ids))
    ORDER BY c.created_at, c.channel_id
    """
)
CHANNEL_BY_ID = text(
    """
    SELECT c.channel_id, c.kind, c.label, c.target, c.url_sealed, c.secret_sealed, c.status,
           u.email
    FROM channels c JOIN users u ON u.id = c.user_id
    WHERE c.channel_id = :channel_id
    """
)
MARK_CHANNEL_OK = text(
    """
    UPDATE channels SET consecutive_failures = 0, last_sent_at = now(), last_error = NULL
    WHERE channel_id = :channel_id
    """
)
NOTE_CHANNEL_ERROR = text(
    "UPDATE channels SET last_error = :last_error WHERE channel_id = :channel_id"
)
# One more permanent failure in a row; the one that reaches the limit pauses an active
# channel (and only that one answers paused_now).
COUNT_FAILURE = text(
    """
    UPDATE channels SET
        consecutive_failures = consecutive_failures + 1,
        last_error = :last_error,
        status = CASE WHEN status = 'active' AND consecutive_failures + 1 >= :limit
                      THEN 'paused' ELSE status END,
        paused_reason = CASE WHEN status = 'active' AND consecutive_failures + 1 >= :limit
                             THEN 'failures' ELSE paused_reason END,
        paused_at = CASE WHEN status = 'active' AND consecutive_failures + 1 >= :limit
                         THEN now() ELSE paused_at END
    WHERE channel_id = :channel_id
    RETURNING status = 'paused' AND paused_reason = 'failures'
              AND consecutive_failures = :limit AS paused_now
    """
)
# Channels paused for failures whose owner has not been told yet (the email is published
# after the pause is committed; if publishing failed, the retry loop tells them).
UNTOLD_PAUSES = text(
    """
    SELECT c.channel_id, c.kind, c.label, c.target, c.consecutive_failures, c.last_error,
           c.paused_at, u.email
    FROM channels c JOIN users u ON u.id = c.user_id
    WHERE c.status = 'paused' AND c.paused_reason = 'failures' AND c.owner_told_at IS NULL
    LIMIT 50
    """
)
MARK_TOLD = text(
    "UPDATE channels SET owner_told_at = now() WHERE channel_id = :channel_id "
    "AND paused_at = :paused_at"
)
# Due retries, taken by one sink process (SKIP LOCKED: replicas share them).
TAKE_DUE = text(
    """
    UPDATE channel_deliveries d SET status = 'sending', attempts = d.attempts + 1
    FROM (
        SELECT idempotency_key, channel_id FROM channel_deliveries
        WHERE status = 'retrying' AND next_attempt_at <= now()
        ORDER BY next_attempt_at LIMIT :limit FOR UPDATE SKIP LOCKED
    ) due
    WHERE d.idempotency_key = due.idempotency_key AND d.channel_id = due.channel_id
    RETURNING d.idempotency_key, d.channel_id, d.message, d.payload, d.attempts
    """
)

PublishAccountEmail = Callable[[AccountEmail], Awaitable[None]]


def _backoff(settings: Settings, attempts: int) -> timedelta:
    seconds = settings.channel_retry_backoff_seconds * 2 ** max(0, attempts - 1)
    return timedelta(seconds=min(seconds, settings.channel_retry_backoff_max_seconds))


def _parse(payload: Any, message: str) -> Message:
    raw = payload if isinstance(payload, str) else json.dumps(payload)
    if message == "confirmation":
        return ChannelConfirmation.model_validate_json(raw)
    return Notification.model_validate_json(raw)


class ChannelSink:
    def __init__(
        self,
        engine: sqlalchemy.Engine,
        settings: Settings,
        session: aiohttp.ClientSession,
        publish: PublishAccountEmail,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.session = session
        self.publish = publish
        secret = settings.secret_key_bytes()
        self.urls = Sealer(secret, URL_SEAL)
        self.secrets = Sealer(secret, SECRET_SEAL)
        self.allowed = settings.allowed_private_host_set
        # When the soonest retry this process scheduled is due (epoch seconds).
        self.next_retry_at = math.inf
        self.ledger = Ledger(
            engine,
            "channel_deliveries",
            ("idempotency_key", "channel_id"),
            LEDGER_COLUMNS,
            scheduled=True,
            casts={"payload": "jsonb"},
        )
        self.sends = asyncio.Semaphore(CONCURRENT_SENDS)

    # --- the feeds ----------------------------------------------------------------

    async def write(self, batch: Batch[Message]) -> None:
        work: list[Awaitable[None]] = []
        seen: set[str] = set()
        for message in batch.values:
            if message.idempotency_key in seen:
                continue
            seen.add(message.idempotency_key)
            for channel in await asyncio.to_thread(self._channels_for, message):
                work.append(self._deliver(message, channel, claimed=False))
        results = await asyncio.gather(*work, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]  # the batch comes again; what was recorded is skipped then

    def _channels_for(self, message: Message) -> list[dict[str, Any]]:
        with self.engine.connect() as connection:
            if isinstance(message, Notification):
                rows = connection.execute(
                    CHANNELS_FOR_ALERT,
                    {"email": message.email, "subscription_id": message.subscription_id},
                )
                return [dict(r) for r in rows.mappings()]
            row = connection.execute(CHANNEL_BY_ID, {"channel_id": message.channel_id})
            found = row.mappings().first()
        # A confirmation goes only to a channel still waiting for one, of the same address.
        if found is None or found["status"] != "pending" or found["email"] != message.email:
            return []
        return [dict(found)]

    # --- one message, one channel ---------------------------------------------------

    async def _deliver(
        self, message: Message, channel: dict[str, Any], *, claimed: bool, attempts: int = 1
    ) -> None:
        kind = str(channel["kind"])
        key = (message.idempotency_key, str(channel["channel_id"]))
        if not claimed:
            if await self.ledger.settle_unrecorded(key):
                return
            claim = await self.ledger.claim(self._ledger_row(message, channel))
            if claim.status == UNCONFIRMED:
                DELIVERIES.labels(kind, "unconfirmed").inc()
                log.warning(
                    "message %s to channel %s was being sent when a process stopped; "
                    "not sending it again",
                    *key,
                )
                return
            if claim.status != CLAIMED:
                DELIVERIES.labels(kind, "duplicate").inc()
                return
            attempts = claim.attempts
        async with self.sends:
            began = time.monotonic()
            outcome = await self._send(message, channel)
            DELIVERY_SECONDS.labels(kind).observe(time.monotonic() - began)
        await self._settle(message, channel, outcome, attempts)

    def _ledger_row(self, message: Message, channel: dict[str, Any]) -> dict[str, Any]:
        alert = isinstance(message, Notification)
        return {
            "idempotency_key": message.idempotency_key,
            "channel_id": channel["channel_id"],
            "channel_kind": channel["kind"],
            "message": "alert" if alert else "confirmation",
            "email": message.email.replace("\x00", ""),
            "subscription_id": message.subscription_id if isinstance(message, Notification) else "",
            "payload": message.model_dump_json(),
        }

    async def _send(self, message: Message, channel: dict[str, Any]) -> Outcome:
        channel_id = str(channel["channel_id"])
        try:
            url = self.urls.open(bytes(channel["url_sealed"]), channel_id)
            secret = (
                self.secrets.open(bytes(channel["secret_sealed"]), channel_id)
                if channel["secret_sealed"] is not None
                else None
            )
        except Unsealable as exc:
            return Outcome("failed", "unsealable", f"{exc} (was the secret key changed?)")
        timeout = self.settings.channel_send_timeout_seconds
        if channel["kind"] == ChannelKind.WEBHOOK:
            source = self.settings.api_base_url
            event = (
                alert_event(message, source)
                if isinstance(message, Notification)
                else confirmation_event(message, source)
            )
            return await send_webhook(
                self.session,
                url,
                secret or "",
                message.idempotency_key,
                event_bytes(event),
                allowed=self.allowed,
                timeout_seconds=timeout,
            )
        title, body = (
            chat_alert(message) if isinstance(message, Notification) else chat_confirmation(message)
        )
        return await asyncio.to_thread(
            send_apprise, url, title, body, allowed=self.allowed, timeout_seconds=timeout
        )

    async def _settle(
        self, message: Message, channel: dict[str, Any], outcome: Outcome, attempts: int
    ) -> None:
        kind, channel_id = str(channel["kind"]), str(channel["channel_id"])
        key = (message.idempotency_key, channel_id)
        if outcome.status == "sent":
            DELIVERIES.labels(kind, "sent").inc()
            await self.ledger.record(key, "sent", None)
            await asyncio.to_thread(self._execute, MARK_CHANNEL_OK, {"channel_id": channel_id})
            log.info(
                "message %s sent to channel %s (%s)", message.idempotency_key, channel_id, kind
            )
            return
        FAILURES.labels(kind, outcome.reason).inc()
        if outcome.status == "retry" and attempts < self.settings.channel_max_attempts:
            DELIVERIES.labels(kind, "retrying").inc()
            due = datetime.now(UTC) + _backoff(self.settings, attempts)
            self.next_retry_at = min(self.next_retry_at, due.timestamp())
            await self.ledger.record(key, "retrying", outcome.detail, due)
            log.info(
                "message %s to channel %s: %s (%s); attempt %d, again at %s",
                message.idempotency_key,
                channel_id,
                outcome.reason,
                outcome.detail,
                attempts,
                due.isoformat(timespec="seconds"),
            )
            return
        DELIVERIES.labels(kind, "refused" if outcome.refused else "failed").inc()
        detail = outcome.detail or outcome.reason
        if outcome.status == "retry":
            detail = f"gave up after {attempts} attempts: {detail}"
        await self.ledger.record(key, "failed", detail)
        log.warning(
            "message %s to channel %s failed for good (%s: %s)",
            message.idempotency_key,
            channel_id,
            outcome.reason,
            detail,
        )
        if isinstance(message, ChannelConfirmation):
            # Shown on the manage page; a channel not confirmed yet is not paused.
            params = {"channel_id": channel_id, "last_error": detail[:500]}
            await asyncio.to_thread(self._execute, NOTE_CHANNEL_ERROR, params)
            return
        paused = await asyncio.to_thread(self._count_failure, channel_id, detail)
        if paused:
            PAUSED.labels(kind).inc()
            log.warning("channel %s (%s) paused after repeated failures", channel_id, kind)
            with suppress(Exception):  # the retry loop tells the owner if this fails
                await self.tell_untold_pauses()

    def _execute(self, statement: Any, params: dict[str, Any]) -> None:
        with self.engine.begin() as connection:
            connection.execute(statement, params)

    def _count_failure(self, channel_id: str, error: str) -> bool:
        with self.engine.begin() as connection:
            row = connection.execute(
                COUNT_FAILURE,
                {
                    "channel_id": channel_id,
                    "last_error": error[:500],
                    "limit": self.settings.channel_pause_after_failures,
                },
            ).first()
        return bool(row and row[0])

    # --- owners of paused channels ----------------------------------------------------

    async def tell_untold_pauses(self) -> int:
        rows = await asyncio.to_thread(self._untold)
        for row in rows:
            paused_at: datetime = row["paused_at"]
            digest = hashlib.sha256(f"{row['channel_id']}\x1f{paused_at.isoformat()}".encode())
            notice = AccountEmail(
                idempotency_key=f"channel-paused-{digest.hexdigest()[:32]}",
                kind=AccountEmailKind.CHANNEL_PAUSED,
                email=row["email"],
                link=manage_link(self.settings, row["email"], issued_at=paused_at),
                created_at=paused_at,
                channel=ChannelNotice(
                    channel_id=row["channel_id"],
                    kind=row["kind"],
                    target=row["target"],
                    label=row["label"],
                    failures=row["consecutive_failures"],
                    last_error=row["last_error"],
                ),
            )
            await self.publish(notice)
            params = {"channel_id": row["channel_id"], "paused_at": paused_at}
            await asyncio.to_thread(self._execute, MARK_TOLD, params)
        return len(rows)

    def _untold(self) -> list[dict[str, Any]]:
        with self.engine.connect() as connection:
            return [dict(r) for r in connection.execute(UNTOLD_PAUSES).mappings()]

    # --- retries ----------------------------------------------------------------------

    async def retry_due(self) -> int:
        """Send the messages whose retry is due; how many were taken."""
        due = await asyncio.to_thread(self._take_due)
        work = []
        for row in due:
            message = _parse(row["payload"], row["message"])
            channel = await asyncio.to_thread(self._channel, row["channel_id"])
            wanted = "active" if row["message"] == "alert" else "pending"
            key = (row["idempotency_key"], row["channel_id"])
            if channel is None or channel["status"] != wanted:
                # Removed, paused or confirmed meanwhile: not this channel's failure.
                state = "removed" if channel is None else channel["status"]
                await self.ledger.record(key, "failed", f"not sent: the channel is {state}")
                continue
            work.append(self._deliver(message, channel, claimed=True, attempts=row["attempts"]))
        await asyncio.gather(*work)
        return len(due)

    def _take_due(self) -> list[dict[str, Any]]:
        with self.engine.begin() as connection:
            rows = connection.execute(TAKE_DUE, {"limit": RETRY_BATCH}).mappings()
            return [dict(r) for r in rows]

    def _channel(self, channel_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as connection:
            row = connection.execute(CHANNEL_BY_ID, {"channel_id": channel_id}).mappings()
            found = row.first()
        return None if found is None else dict(found)

    async def run_retries(self, stop: asyncio.Event) -> None:
        """Until ``stop``: send due retries and tell owners of paused channels."""
        while not stop.is_set():
            try:
                taken = await self.retry_due()
                await self.tell_untold_pauses()
            except Exception as exc:  # the database or broker away: try again shortly
                log.warning("channel retries: %s", describe_error(exc))
                taken = 0
            if not taken:
                with suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._idle_wait())

    def _idle_wait(self) -> float:
        """Seconds until the retry loop looks again, when it found nothing due."""
        now = time.time()
        if self.next_retry_at <= now:
            self.next_retry_at = math.inf  # taken now, or by another process
        longest = min(IDLE_RETRY_POLL_SECONDS, self.settings.channel_retry_backoff_seconds)
        return max(RETRY_POLL_SECONDS, min(longest, self.next_retry_at - now))


@asynccontextmanager
async def open_sink(settings: Settings) -> AsyncIterator[ChannelSink]:
    """Migrate the database, then lend the sink its engine, HTTP session and producer, with
    its retry loop running beside the feeds."""
    settings.secret_key_bytes()  # unsealing and the owners' manage links need it
    producer: AIOKafkaProducer = make_producer(settings)
    await producer.start()
    try:

        async def publish(mail: AccountEmail) -> None:
            await producer.send_and_wait(
                settings.topic(ACCOUNT_EMAILS),
                key=mail.email.encode(),
                value=mail.model_dump_json().encode(),
            )

        connector = aiohttp.TCPConnector(
            resolver=GuardedResolver(settings.allowed_private_host_set), ttl_dns_cache=60
        )
        async with (
            migrated_engine(settings) as engine,
            aiohttp.ClientSession(connector=connector) as session,
        ):
            sink = ChannelSink(engine, settings, session, publish)
            stop = asyncio.Event()
            retries = asyncio.create_task(sink.run_retries(stop))
            try:
                yield sink
            finally:
                stop.set()
                await retries
    finally:
        await producer.stop()


SINK = SinkKind(
    feeds=(
        Feed(ROLE, NOTIFICATIONS, Notification.model_validate_json, max_batch=50),
        Feed(
            CONFIRMATION_ROLE,
            CHANNEL_CONFIRMATIONS,
            ChannelConfirmation.model_validate_json,
            max_batch=50,
            bulk=True,  # a person waits for it, but not to the second
        ),
    ),
    open=open_sink,
)
