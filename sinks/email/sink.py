"""Notifications into emails, one email per idempotency key however often one is delivered.

Each notification is claimed in the ``notifications`` table before it is sent
(``sinks.ledger``: claim, send, record): a redelivered notification finds its claim and is
skipped. The one case without a certain answer is a crash between sending and recording
'sent': the row stays 'sending' and the notification is skipped with a warning -- at most
once, and the row says so. A temporary failure raises, so the consumer retries the batch.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy
from prometheus_client import Counter

from pricewatch.contract.records import AccountEmail, Notification
from pricewatch.contract.topics import ACCOUNT_EMAILS, NOTIFICATIONS
from pricewatch.db.engine import migrated_engine
from pricewatch.settings import Settings
from sinks.base import describe_error
from sinks.contract import Batch, Feed, SinkKind
from sinks.email.backends import EmailBackend, PermanentSendError, backend_from_settings
from sinks.email.render import InvalidRecipientError, render, render_account_email
from sinks.ledger import CLAIMED, UNCONFIRMED, Ledger

log = logging.getLogger(__name__)

ROLE = "email-sink"
ACCOUNT_ROLE = "account-email-sink"  # its own group: a backlog of alerts never delays them

EMAILS_SENT = Counter("pricewatch_emails_sent_total", "Emails handed to the backend.", ["backend"])
EMAILS_FAILED = Counter(
    "pricewatch_emails_failed_total",
    "Sends that failed: permanently (reason from the backend) or temporarily ('temporary').",
    ["backend", "reason"],
)
EMAILS_SKIPPED_DUPLICATE = Counter(
    "pricewatch_emails_skipped_duplicate_total",
    "Notifications not sent because their idempotency key was already handled.",
)
EMAILS_SKIPPED_UNCONFIRMED = Counter(
    "pricewatch_emails_skipped_unconfirmed_total",
    "Notifications not sent because an earlier attempt crashed mid-send (may have gone out).",
)

Mail = Notification | AccountEmail


LEDGER_COLUMNS = ("kind", "subscription_id", "email", "product_id", "event_id")


def _ledger_row(mail: Mail) -> dict[str, Any]:
    """The claim's columns. Account emails are about no subscription, product or event:
    those columns hold '' for them (their kind says what they are)."""
    if isinstance(mail, Notification):
        row = {
            "kind": mail.kind.value,
            "subscription_id": mail.subscription_id,
            "product_id": mail.product_id,
            "event_id": mail.event_id,
        }
    else:
        row = {"kind": mail.kind.value, "subscription_id": "", "product_id": "", "event_id": ""}
    # PostgreSQL text cannot hold NUL; one in a field must not wedge the sink.
    row["email"] = mail.email.replace("\x00", "")
    row["idempotency_key"] = mail.idempotency_key
    return row


class EmailSink:
    """Sends each notification (or account email) of a batch at most once per idempotency key."""

    def __init__(
        self, engine: sqlalchemy.Engine, backend: EmailBackend, settings: Settings
    ) -> None:
        self.engine = engine
        self.backend = backend
        self.settings = settings
        self.ledger = Ledger(engine, "notifications", ("idempotency_key",), LEDGER_COLUMNS)

    async def write(self, batch: Batch[Mail]) -> None:
        seen: set[str] = set()
        for notification in batch.values:
            if notification.idempotency_key in seen:
                EMAILS_SKIPPED_DUPLICATE.inc()
                continue
            seen.add(notification.idempotency_key)
            await self.deliver(notification)

    async def deliver(self, notification: Mail) -> None:
        """Claim, send and record one email. Raises on a temporary failure."""
        key = notification.idempotency_key
        ledger_key = (key,)
        if await self.ledger.settle_unrecorded(ledger_key):
            return  # sent, or failed for good: now recorded
        status = (await self.ledger.claim(_ledger_row(notification))).status
        if status == UNCONFIRMED:
            EMAILS_SKIPPED_UNCONFIRMED.inc()
            log.warning(
                "notification %s was being sent when a process stopped; not sending it again "
                "(it may or may not have gone out)",
                key,
            )
            return
        if status != CLAIMED:
            EMAILS_SKIPPED_DUPLICATE.inc()
            log.info("notification %s already %s; skipped", key, status)
            return

        backend = self.backend.name
        try:
            if isinstance(notification, Notification):
                message = render(notification, self.settings)
            else:
                message = render_account_email(notification, self.settings)
            await self.backend.send(message, key)
        except (PermanentSendError, InvalidRecipientError) as exc:
            reason = exc.reason if isinstance(exc, PermanentSendError) else "invalid_recipient"
            EMAILS_FAILED.labels(backend, reason).inc()
            log.warning("notification %s not deliverable, marked failed (%s)", key, exc)
            await self.ledger.record(ledger_key, "failed", str(exc))
            return
        except Exception as exc:
            EMAILS_FAILED.labels(backend, "temporary").inc()
            # Nothing was sent: release the claim so the retried batch sends it.
            await self.ledger.record(ledger_key, "retrying", describe_error(exc))
            raise
        EMAILS_SENT.labels(backend).inc()
        await self.ledger.record(ledger_key, "sent", None)


@asynccontextmanager
async def open_sink(settings: Settings) -> AsyncIterator[EmailSink]:
    """Migrate the database, then lend the sink its engine and backend."""
    settings.secret_key_bytes()  # fail at start, not on the first email, when it is missing
    async with migrated_engine(settings) as engine:
        yield EmailSink(engine, backend_from_settings(settings), settings)


# Two consumers (two groups), one ledger, one backend. Each email is a round trip to a mail
# server: small batches commit progress often.
SINK = SinkKind(
    feeds=(
        Feed(ROLE, NOTIFICATIONS, Notification.model_validate_json, max_batch=50),
        # A person waits for these (verify, manage links), but not to the second.
        Feed(
            ACCOUNT_ROLE,
            ACCOUNT_EMAILS,
            AccountEmail.model_validate_json,
            max_batch=50,
            bulk=True,
        ),
    ),
    open=open_sink,
)
