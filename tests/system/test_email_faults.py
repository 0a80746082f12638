"""Email delivery when the mail service fails: the whole email sink (broker, PostgreSQL
ledger, backend) against an SMTP server that answers 4xx then OK, or 5xx for good, and
against SES served by moto over HTTP (down for a while, an unverified sender).

What must hold: temporary failures are retried until the email goes out, permanent ones
are recorded as 'failed' and never retried, and each idempotency key gives at most one
email however often its notification is delivered or its batch retried.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from html import escape as html_escape
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from aiosmtpd.controller import Controller
from moto.server import ThreadedMotoServer
from prometheus_client import REGISTRY
from sqlalchemy import text

from launcher.processes import free_port
from pricewatch.contract.records import Notification
from pricewatch.contract.topics import NOTIFICATIONS
from pricewatch.db.engine import make_engine, upgrade
from pricewatch.kafka import create_topics, make_producer
from pricewatch.settings import Settings
from sinks.base import run_sink
from sinks.contract import Batch
from sinks.email.backends import OutboxBackend, SesBackend, SmtpBackend
from sinks.email.render import IDEMPOTENCY_HEADER
from sinks.email.sink import EmailSink
from tests.integration.sinks.test_email_sink import SETTINGS, ledger, notification

pytestmark = pytest.mark.timeout(180)

SENDER = "alerts@pricewatch.example.org"
REGION = "eu-west-1"


def sink_settings(
    kafka_bootstrap: str, postgres_url: str, prefix: str, **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": kafka_bootstrap,
        "database_url": postgres_url,
        "topic_prefix": prefix,
        "app_id": f"pw-{prefix}",
        "topic_partitions": 1,  # one partition: the batch order is the produced order
        "kafka_session_timeout_seconds": 6,
        "public_base_url": "https://pricewatch.example.org",
        "email_from": f"Pricewatch <{SENDER}>",
        "secret_key": "email-faults-test-secret-0123456789",  # signs the emails' links
    }
    values.update(overrides)
    return Settings(**values)


async def produce_notifications(settings: Settings, notifications: list[Notification]) -> None:
    """Create the topics and the ledger's tables, then produce ``notifications`` in order."""
    assert settings.database_url is not None
    await asyncio.to_thread(upgrade, settings.database_url)
    await create_topics(settings)
    producer = make_producer(settings)
    await producer.start()
    try:
        for n in notifications:
            await producer.send_and_wait(
                settings.topic(NOTIFICATIONS),
                n.model_dump_json().encode(),
                key=n.idempotency_key.encode(),
            )
    finally:
        await producer.stop()


def statuses(postgres_url: str) -> dict[str, tuple[str, int, str | None]]:
    """idempotency key -> (status, attempts, last_error) from the notifications ledger."""
    engine = make_engine(postgres_url)
    try:
        return {
            row["idempotency_key"]: (row["status"], row["attempts"], row["last_error"])
            for row in ledger(engine)
        }
    finally:
        engine.dispose()


async def run_sink_until(
    settings: Settings, done: Callable[[], bool], seconds: float, what: str
) -> None:
    """Run the email sink (consumer, ledger, backend) until ``done()``; then stop it cleanly."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_sink("email", settings, stop))
    try:
        deadline = time.monotonic() + seconds
        while not await asyncio.to_thread(done):
            assert not task.done(), f"the email sink stopped: {task.exception()!r}"
            assert time.monotonic() < deadline, f"timed out after {seconds}s waiting for {what}"
            await asyncio.sleep(0.2)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


def failed_sends(backend: str, reason: str) -> float:
    labels = {"backend": backend, "reason": reason}
    return REGISTRY.get_sample_value("pricewatch_emails_failed_total", labels) or 0.0


# --- SMTP -----------------------------------------------------------------------------


class UnreliableMailServer:
    """An aiosmtpd handler with a scripted mood per recipient.

    ``busy_rcpt[addr]``: that many ``450`` answers to RCPT before accepting it;
    ``busy_data[addr]``: that many ``451`` answers to DATA before accepting the message;
    ``rejecting``: ``554`` to DATA, always. Counts every DATA attempt per idempotency key.
    """

    def __init__(self) -> None:
        self.busy_rcpt: Counter[str] = Counter()
        self.busy_data: Counter[str] = Counter()
        self.rejecting: set[str] = set()
        self.accepted: list[EmailMessage] = []
        self.data_attempts: Counter[str] = Counter()

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.busy_rcpt[address] > 0:
            self.busy_rcpt[address] -= 1
            return "450 4.2.1 Mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.data_attempts[str(message[IDEMPOTENCY_HEADER])] += 1
        (address,) = envelope.rcpt_tos
        if address in self.rejecting:
            return "554 5.6.0 Message content rejected"
        if self.busy_data[address] > 0:
            self.busy_data[address] -= 1
            return "451 4.3.0 Temporary local problem, try again later"
        self.accepted.append(message)
        return "250 Message accepted for delivery"

    def received(self) -> Counter[str]:
        return Counter(str(m[IDEMPOTENCY_HEADER]) for m in self.accepted)


@pytest.fixture
def mail_server() -> Iterator[tuple[UnreliableMailServer, int]]:
    handler = UnreliableMailServer()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


async def test_smtp_4xx_are_retried_5xx_recorded_and_each_key_sent_once(
    kafka_bootstrap: str,
    postgres_url: str,
    unique_prefix: str,
    mail_server: tuple[UnreliableMailServer, int],
) -> None:
    server, port = mail_server
    settings = sink_settings(
        kafka_bootstrap,
        postgres_url,
        unique_prefix,
        email_backend="smtp",
        smtp_host="127.0.0.1",
        smtp_port=port,
    )
    ann, bob, carl, eve = (
        notification(f"{name}@example.com") for name in ("ann", "bob", "carl", "eve")
    )
    server.busy_data["ann@example.com"] = 2  # 451 twice at DATA, then accepted
    server.busy_rcpt["bob@example.com"] = 1  # 450 once at RCPT, then accepted
    server.rejecting.add("eve@example.com")  # 554 at DATA: never deliverable
    # Every notification delivered three times (as a replay or a restart would do).
    await produce_notifications(settings, [ann, eve, bob, carl] * 3)
    temporary_before = failed_sends("smtp", "temporary")
    rejected_before = failed_sends("smtp", "message_rejected")

    keys = {n.idempotency_key for n in (ann, bob, carl, eve)}

    def all_final() -> bool:
        rows = statuses(postgres_url)
        return rows.keys() == keys and all(s in ("sent", "failed") for s, _, _ in rows.values())

    await run_sink_until(settings, all_final, 90, "every notification sent or failed")

    rows = statuses(postgres_url)
    assert server.received() == {
        ann.idempotency_key: 1,
        bob.idempotency_key: 1,
        carl.idempotency_key: 1,
    }
    # Attempts: one claim per try that reached the mail server.
    assert rows[ann.idempotency_key][:2] == ("sent", 3)
    assert rows[bob.idempotency_key][:2] == ("sent", 2)
    assert rows[carl.idempotency_key][:2] == ("sent", 1)
    status, attempts, error = rows[eve.idempotency_key]
    assert (status, attempts) == ("failed", 1)
    assert error is not None and "554" in error
    assert server.data_attempts[eve.idempotency_key] == 1  # not retried
    assert server.data_attempts[ann.idempotency_key] == 3
    assert failed_sends("smtp", "temporary") - temporary_before == 3
    assert failed_sends("smtp", "message_rejected") - rejected_before == 1


# --- SES on a moto server -------------------------------------------------------------


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    # boto3's default chain reads these; moto accepts any.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    # Fail fast on a refused connection: the sink's own backoff does the retrying.
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")


def verify_sender(endpoint: str, address: str) -> None:
    import boto3

    client = boto3.client("sesv2", endpoint_url=endpoint, region_name=REGION)
    client.create_email_identity(EmailIdentity=address)
    identity = client.get_email_identity(EmailIdentity=address)
    assert identity["IdentityType"] == "EMAIL_ADDRESS"
    listed = client.list_email_identities()["EmailIdentities"]
    assert any(i["IdentityName"] == address and i["SendingEnabled"] for i in listed)


def ses_sent(endpoint: str) -> list[dict[str, Any]]:
    """Raw messages moto's SES has accepted, from its /moto-api/data.json dump."""
    with urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=10) as response:
        data = json.loads(response.read())
    return list(data.get("ses", {}).get("RawMessage", []))


def ses_messages_for(endpoint: str, keys: set[str]) -> list[EmailMessage]:
    """Our messages among them (moto's state is process-wide: other tests' are there too)."""
    messages = []
    for raw in ses_sent(endpoint):
        message = email.message_from_string(raw["raw_data"], policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        if message[IDEMPOTENCY_HEADER] in keys:
            messages.append(message)
    return messages


async def test_ses_down_then_up_sends_each_key_once_with_headers_and_links(
    kafka_bootstrap: str, postgres_url: str, unique_prefix: str, aws_credentials: None
) -> None:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    settings = sink_settings(
        kafka_bootstrap,
        postgres_url,
        unique_prefix,
        email_backend="ses",
        ses_endpoint_url=endpoint,
        ses_region=REGION,
    )
    tag = unique_prefix.rstrip("-")
    alerts = [notification(f"{tag}-{i}@example.com") for i in range(3)]
    keys = {n.idempotency_key for n in alerts}
    await produce_notifications(settings, alerts * 3)
    temporary_before = failed_sends("ses", "temporary")

    # SES unreachable: the first send fails, the claim is released and the batch retried.
    # The sender is verified beforehand on another moto server of this process (moto's
    # state is process-wide), so SES answers as a configured account once it is up.
    setup_port = free_port()
    setup = ThreadedMotoServer(ip_address="127.0.0.1", port=setup_port, verbose=False)
    setup.start()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    stop = asyncio.Event()
    task = asyncio.create_task(run_sink("email", settings, stop))
    try:
        await asyncio.to_thread(verify_sender, f"http://127.0.0.1:{setup_port}", SENDER)
        deadline = time.monotonic() + 60
        while not any(
            s == "retrying"
            for s, _, _ in (await asyncio.to_thread(statuses, postgres_url)).values()
        ):
            assert not task.done(), f"the email sink stopped: {task.exception()!r}"
            assert time.monotonic() < deadline, "the sink never tried SES"
            await asyncio.sleep(0.1)
        rows = await asyncio.to_thread(statuses, postgres_url)
        assert all(s != "sent" for s, _, _ in rows.values())

        moto.start()
        deadline = time.monotonic() + 90
        while not (
            (rows := await asyncio.to_thread(statuses, postgres_url)).keys() == keys
            and all(s == "sent" for s, _, _ in rows.values())
        ):
            assert not task.done(), f"the email sink stopped: {task.exception()!r}"
            assert time.monotonic() < deadline, f"not all sent via SES: {rows}"
            await asyncio.sleep(0.2)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
        setup.stop()

    try:
        messages = ses_messages_for(endpoint, keys)
    finally:
        moto.stop()
    assert Counter(str(m[IDEMPOTENCY_HEADER]) for m in messages) == dict.fromkeys(keys, 1)
    by_key = {str(m[IDEMPOTENCY_HEADER]): m for m in messages}
    for alert in alerts:
        message = by_key[alert.idempotency_key]
        assert message["To"] == alert.email
        assert SENDER in str(message["From"])
        unsubscribe = str(message["List-Unsubscribe"])
        assert unsubscribe.startswith("<https://pricewatch.example.org/")
        assert unsubscribe.endswith(">")
        plain = message.get_body(preferencelist=("plain",))
        html = message.get_body(preferencelist=("html",))
        assert plain is not None and html is not None
        # List-Unsubscribe acts on the one-click POST only (/api/unsubscribe); the body
        # links to the page that asks first (mail scanners open links), same signed token.
        link = unsubscribe[1:-1].replace("/api/unsubscribe?", "/unsubscribe?")
        assert "/api/unsubscribe?token=" in unsubscribe
        assert alert.url in plain.get_content()  # the product link
        assert link in plain.get_content()  # the unsubscribe link
        assert html_escape(alert.url) in html.get_content()
        assert html_escape(link) in html.get_content()
    # The first key: one claim per failed try and one that sent; the others: one claim.
    failures = failed_sends("ses", "temporary") - temporary_before
    attempts = sorted(a for _, a, _ in rows.values())
    assert failures >= 1 and attempts == [1, 1, failures + 1], (failures, attempts)


async def test_ses_unverified_sender_is_permanent_and_recorded(
    postgres_url: str, aws_credentials: None
) -> None:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    try:
        await asyncio.to_thread(verify_sender, endpoint, SENDER)
        upgrade(postgres_url)
        engine: sqlalchemy.Engine = make_engine(postgres_url)
        unverified = SETTINGS.model_copy(
            update={"email_from": "Pricewatch <nobody@unverified.example>"}
        )
        sink = EmailSink(engine, SesBackend(endpoint_url=endpoint, region_name=REGION), unverified)
        alert = notification("ann@example.com", observation="unverified-sender")
        rejected_before = failed_sends("ses", "message_rejected")
        try:
            await sink.write(Batch.of([alert]))  # no raise: retrying cannot help
            await sink.write(Batch.of([alert]))  # redelivered: not tried again
            (row,) = ledger(engine)
        finally:
            engine.dispose()
        assert ses_messages_for(endpoint, {alert.idempotency_key}) == []
    finally:
        moto.stop()
    assert (row["status"], row["attempts"], row["sent_at"]) == ("failed", 1, None)
    assert "MessageRejected" in row["last_error"]
    assert "nobody@unverified.example" in row["last_error"]
    assert failed_sends("ses", "message_rejected") - rejected_before == 1


# --- The ledger's database lost between sending and recording ---------------------------


class LedgerLostDuringSend:
    """A real backend; while it sends, the ledger's table is renamed away with a separate
    connection, so the sink's next statement fails as if the database had gone down."""

    name = "outbox"

    def __init__(self, engine: sqlalchemy.Engine, inner: Any) -> None:
        self.engine = engine
        self.inner = inner
        self.sends: Counter[str] = Counter()

    async def send(self, message: EmailMessage, idempotency_key: str) -> None:
        self.sends[idempotency_key] += 1
        with self.engine.begin() as connection:
            connection.execute(text("ALTER TABLE notifications RENAME TO notifications_away"))
        await self.inner.send(message, idempotency_key)

    def restore(self) -> None:
        with self.engine.begin() as connection:
            connection.execute(text("ALTER TABLE notifications_away RENAME TO notifications"))


@pytest.fixture
def engine(postgres_url: str) -> Iterator[sqlalchemy.Engine]:
    upgrade(postgres_url)
    engine = make_engine(postgres_url)
    yield engine
    engine.dispose()


async def test_a_sent_email_whose_recording_failed_is_recorded_on_retry_not_resent(
    engine: sqlalchemy.Engine, tmp_path: Path
) -> None:
    backend = LedgerLostDuringSend(engine, OutboxBackend(tmp_path / "outbox"))
    sink = EmailSink(engine, backend, SETTINGS)
    alert = notification(observation="ledger-lost-after-send")

    with pytest.raises(sqlalchemy.exc.ProgrammingError):
        await sink.write(Batch.of([alert]))  # sent, then recording it fails: the batch is retried
    backend.restore()
    await sink.write(Batch.of([alert]))  # the retried batch
    await sink.write(Batch.of([alert]))  # and a redelivery

    assert backend.sends == {alert.idempotency_key: 1}
    (row,) = ledger(engine)
    assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 1, None)
    assert row["sent_at"] is not None


async def test_a_temporary_failure_whose_recording_failed_is_still_sent_on_retry(
    engine: sqlalchemy.Engine, tmp_path: Path
) -> None:
    # Nothing listens on this port: the send fails temporarily, and releasing the claim
    # fails too. The email must not be lost as 'sending (unconfirmed)'.
    unreachable = SmtpBackend("127.0.0.1", free_port(), timeout_seconds=5)
    backend = LedgerLostDuringSend(engine, unreachable)
    sink = EmailSink(engine, backend, SETTINGS)
    alert = notification(observation="ledger-lost-after-temporary-failure")

    with pytest.raises(sqlalchemy.exc.ProgrammingError):
        await sink.write(Batch.of([alert]))
    backend.restore()
    outbox = tmp_path / "outbox"
    backend.inner = OutboxBackend(outbox)  # the mail service is back too
    sink.backend = OutboxBackend(outbox)
    await sink.write(Batch.of([alert]))
    await sink.write(Batch.of([alert]))

    assert [f.name for f in outbox.iterdir()] == [f"{alert.idempotency_key}.eml"]
    (row,) = ledger(engine)
    assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 2, None)
