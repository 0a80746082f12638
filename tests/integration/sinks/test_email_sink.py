"""EmailSink against real PostgreSQL, a real outbox directory and a real SMTP server."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import sqlalchemy
from aiosmtpd.controller import Controller
from prometheus_client import REGISTRY
from sqlalchemy import text

from launcher.processes import free_port
from pricewatch.contract.records import EventType, Notification, NotificationKind
from pricewatch.contract.topics import NOTIFICATIONS
from pricewatch.db.engine import make_engine, upgrade
from pricewatch.ids import event_id_for, notification_key_for, subscription_id_for
from pricewatch.kafka import create_topics, make_producer
from pricewatch.settings import Settings
from pricewatch.tokens import TokenPurpose, read_token
from sinks.base import run_sink
from sinks.contract import Batch
from sinks.email.backends import OutboxBackend, SmtpBackend
from sinks.email.render import IDEMPOTENCY_HEADER
from sinks.email.sink import EmailSink

PRODUCT_ID = "a" * 32
SETTINGS = Settings(
    public_base_url="https://pricewatch.example.org",
    email_from="Pricewatch <alerts@pricewatch.example.org>",
    secret_key="email-sink-test-secret-0123456789",  # type: ignore[arg-type]
)


def notification(address: str = "ann@example.com", observation: str = "o1") -> Notification:
    subscription_id = subscription_id_for(address, PRODUCT_ID)
    event_id = event_id_for(PRODUCT_ID, EventType.PRICE_DROP.value, observation)
    return Notification(
        idempotency_key=notification_key_for(subscription_id, event_id),
        kind=NotificationKind.TARGET_PRICE_REACHED,
        subscription_id=subscription_id,
        email=address,
        product_id=PRODUCT_ID,
        url="https://shop.example/p/shoe",
        title="Trail Shoe",
        event_id=event_id,
        event_type=EventType.PRICE_DROP,
        observed_at=datetime(2025, 3, 1, 12, 0, tzinfo=UTC),
        old_price=Decimal("99.00"),
        new_price=Decimal("79.00"),
        currency="EUR",
        target_price=Decimal("80.00"),
        created_at=datetime(2025, 3, 1, 12, 0, 1, tzinfo=UTC),
    )


@pytest.fixture
def engine(postgres_url: str) -> Iterator[sqlalchemy.Engine]:
    upgrade(postgres_url)
    engine = make_engine(postgres_url)
    yield engine
    engine.dispose()


def ledger(engine: sqlalchemy.Engine) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        result = connection.execute(text("SELECT * FROM notifications ORDER BY idempotency_key"))
        return [dict(row._mapping) for row in result]


class Collector:
    """An aiosmtpd handler that keeps what it accepts and refuses chosen recipients."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.refused: set[str] = set()
        self.rcpt_attempts: list[str] = []

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        self.rcpt_attempts.append(address)
        if address in self.refused:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_port() -> int:
    return free_port()


@pytest.fixture
def smtp_server(smtp_port: int) -> Iterator[Collector]:
    collector = Collector()
    controller = Controller(collector, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    yield collector
    controller.stop()


async def test_a_notification_delivered_three_times_writes_one_outbox_file(
    engine: sqlalchemy.Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    outbox = tmp_path / "outbox"
    sink = EmailSink(engine, OutboxBackend(outbox), SETTINGS)
    alert = notification()

    with caplog.at_level(logging.INFO, logger="sinks.email.backends"):
        await sink.write(Batch.of([alert]))
        await sink.write(Batch.of([alert, alert]))  # redelivered, and duplicated within one batch
        await sink.write(Batch.of([alert]))

    files = sorted(outbox.iterdir())
    assert [f.name for f in files] == [f"{alert.idempotency_key}.eml"]
    written = [r for r in caplog.records if r.name == "sinks.email.backends"]
    assert len(written) == 1
    assert str(files[0]) in written[0].getMessage()

    message = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert message[IDEMPOTENCY_HEADER] == alert.idempotency_key
    assert message["To"] == "ann@example.com"

    (row,) = ledger(engine)
    assert row["idempotency_key"] == alert.idempotency_key
    assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 1, None)
    assert row["sent_at"] is not None
    assert (row["email"], row["subscription_id"]) == (alert.email, alert.subscription_id)


async def test_smtp_receives_one_message_for_three_deliveries(
    engine: sqlalchemy.Engine, smtp_server: Collector, smtp_port: int
) -> None:
    sink = EmailSink(engine, SmtpBackend("127.0.0.1", smtp_port), SETTINGS)
    alert = notification()
    other = notification("bob@example.com")

    await sink.write(Batch.of([alert]))
    await sink.write(Batch.of([alert, other]))
    await sink.write(Batch.of([other, alert]))

    assert sorted(str(m["To"]) for m in smtp_server.messages) == [
        "ann@example.com",
        "bob@example.com",
    ]
    received = next(m for m in smtp_server.messages if m["To"] == "ann@example.com")
    token = unquote(received["List-Unsubscribe"].split("?token=")[1].rstrip(">"))
    assert received["List-Unsubscribe"].startswith(
        "<https://pricewatch.example.org/api/unsubscribe?token="
    )
    claims = read_token(
        SETTINGS.secret_key_bytes(), token, TokenPurpose.UNSUBSCRIBE, now=alert.created_at
    )
    assert claims.subject == f"subscription:{alert.subscription_id}"
    assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert received["Subject"] == (
        "Target price reached: Trail Shoe is now €79.00 (your target €80.00)"
    )
    assert received["Message-ID"] == f"<{alert.idempotency_key}@pricewatch.example.org>"
    assert [row["status"] for row in ledger(engine)] == ["sent", "sent"]


async def test_a_refused_recipient_is_recorded_as_failed_and_not_retried(
    engine: sqlalchemy.Engine, smtp_server: Collector, smtp_port: int
) -> None:
    smtp_server.refused.add("gone@example.com")
    sink = EmailSink(engine, SmtpBackend("127.0.0.1", smtp_port), SETTINGS)
    doomed = notification("gone@example.com")
    fine = notification("ann@example.com")

    await sink.write(Batch.of([doomed, fine]))  # does not raise: retrying would not help
    await sink.write(Batch.of([doomed]))

    assert smtp_server.rcpt_attempts.count("gone@example.com") == 1
    assert [str(m["To"]) for m in smtp_server.messages] == ["ann@example.com"]
    rows = {row["email"]: row for row in ledger(engine)}
    assert rows["gone@example.com"]["status"] == "failed"
    assert "550" in rows["gone@example.com"]["last_error"]
    assert rows["gone@example.com"]["sent_at"] is None
    assert rows["ann@example.com"]["status"] == "sent"


async def test_an_unreachable_server_fails_the_batch_and_the_retry_sends_it(
    engine: sqlalchemy.Engine, smtp_port: int
) -> None:
    sink = EmailSink(engine, SmtpBackend("127.0.0.1", smtp_port, timeout_seconds=5), SETTINGS)
    alert = notification()

    with pytest.raises(OSError):
        await sink.write(Batch.of([alert]))
    (row,) = ledger(engine)
    assert row["status"] == "retrying"
    assert row["last_error"].startswith("ConnectionRefusedError")

    collector = Collector()
    controller = Controller(collector, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    try:
        await sink.write(Batch.of([alert]))
        await sink.write(Batch.of([alert]))
    finally:
        controller.stop()

    assert len(collector.messages) == 1
    (row,) = ledger(engine)
    assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 2, None)


async def test_a_send_interrupted_by_a_crash_is_not_repeated(
    engine: sqlalchemy.Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    alert = notification()
    with engine.begin() as connection:
        # What a process that crashed between claiming and recording the send leaves behind.
        connection.execute(
            text(
                "INSERT INTO notifications (idempotency_key, kind, subscription_id, email, "
                "product_id, event_id, status, attempts) VALUES (:k, :kind, :s, :e, :p, :ev, "
                "'sending', 1)"
            ),
            {
                "k": alert.idempotency_key,
                "kind": alert.kind.value,
                "s": alert.subscription_id,
                "e": alert.email,
                "p": alert.product_id,
                "ev": alert.event_id,
            },
        )
    outbox = tmp_path / "outbox"
    sink = EmailSink(engine, OutboxBackend(outbox), SETTINGS)

    with caplog.at_level(logging.WARNING, logger="sinks.email.sink"):
        await sink.write(Batch.of([alert]))

    assert not outbox.exists() or not any(outbox.iterdir())
    assert any(alert.idempotency_key in r.getMessage() for r in caplog.records)
    assert [row["status"] for row in ledger(engine)] == ["sending"]


async def test_run_email_sink_sends_one_email_for_a_redelivered_notification(
    kafka_bootstrap: str, postgres_url: str, unique_prefix: str, tmp_path: Path
) -> None:
    settings = Settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        database_url=postgres_url,
        topic_prefix=unique_prefix,
        app_id=f"pw-{unique_prefix}",
        topic_partitions=2,
        kafka_session_timeout_seconds=6,
        email_backend="outbox",
        outbox_dir=tmp_path / "outbox",
        public_base_url="https://pricewatch.example.org",
        secret_key="email-sink-test-secret-0123456789",  # type: ignore[arg-type]
    )
    await create_topics(settings)
    alert = notification()
    producer = make_producer(settings)
    await producer.start()
    try:
        for _ in range(3):
            await producer.send_and_wait(
                settings.topic(NOTIFICATIONS),
                alert.model_dump_json().encode(),
                key=alert.idempotency_key.encode(),
            )
    finally:
        await producer.stop()

    handled_before = handled()
    stop = asyncio.Event()
    task = asyncio.create_task(run_sink("email", settings, stop))
    try:
        deadline = time.monotonic() + 60
        while handled() < handled_before + 3 and not task.done():
            assert time.monotonic() < deadline, "the email sink did not handle 3 deliveries"
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)

    assert [f.name for f in (tmp_path / "outbox").iterdir()] == [f"{alert.idempotency_key}.eml"]
    engine = make_engine(postgres_url)
    try:
        assert [(row["status"], row["attempts"]) for row in ledger(engine)] == [("sent", 1)]
    finally:
        engine.dispose()


def handled() -> float:
    """Notifications the email sink's consumer has passed to EmailSink.write (and committed)."""
    return (
        REGISTRY.get_sample_value("pricewatch_sink_records_written_total", {"sink": "email-sink"})
        or 0.0
    )


async def test_run_email_sink_sends_account_emails_once_with_the_same_ledger(
    kafka_bootstrap: str, postgres_url: str, unique_prefix: str, tmp_path: Path
) -> None:
    from pricewatch.contract.records import AccountEmail, AccountEmailKind
    from pricewatch.contract.topics import ACCOUNT_EMAILS

    settings = Settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        database_url=postgres_url,
        topic_prefix=unique_prefix,
        app_id=f"pw-{unique_prefix}",
        topic_partitions=2,
        kafka_session_timeout_seconds=6,
        email_backend="outbox",
        outbox_dir=tmp_path / "outbox",
        public_base_url="https://pricewatch.example.org",
        secret_key="email-sink-test-secret-0123456789",  # type: ignore[arg-type]
    )
    await create_topics(settings)
    verify = AccountEmail(
        idempotency_key="verify-0123456789abcdef",
        kind=AccountEmailKind.VERIFY,
        email="ann@example.com",
        link="https://pricewatch.example.org/verify?token=abc.def",
        created_at=datetime(2025, 3, 1, 12, 0, tzinfo=UTC),
    )
    producer = make_producer(settings)
    await producer.start()
    try:
        for _ in range(3):
            await producer.send_and_wait(
                settings.topic(ACCOUNT_EMAILS),
                verify.model_dump_json().encode(),
                key=verify.email.encode(),
            )
    finally:
        await producer.stop()

    def account_handled() -> float:
        return (
            REGISTRY.get_sample_value(
                "pricewatch_sink_records_written_total", {"sink": "account-email-sink"}
            )
            or 0.0
        )

    before = account_handled()
    stop = asyncio.Event()
    task = asyncio.create_task(run_sink("email", settings, stop))
    try:
        deadline = time.monotonic() + 60
        while account_handled() < before + 3 and not task.done():
            assert time.monotonic() < deadline, "the email sink did not handle 3 deliveries"
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)

    [sent] = list((tmp_path / "outbox").iterdir())
    assert sent.name == f"{verify.idempotency_key}.eml"
    message = email.message_from_bytes(sent.read_bytes(), policy=email.policy.default)
    assert message["Subject"] == "Confirm your email address for Pricewatch"
    body = message.get_body(preferencelist=("plain",))
    assert body is not None and verify.link in body.get_content()
    engine = make_engine(postgres_url)
    try:
        assert [(r["kind"], r["status"], r["attempts"]) for r in ledger(engine)] == [
            ("verify", "sent", 1)
        ]
    finally:
        engine.dispose()
