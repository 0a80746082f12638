"""The channels sink against real PostgreSQL and real HTTP receivers on loopback: a signed
CloudEvents webhook, Apprise's json:// and form://, ntfy's HTTP protocol, a Slack-shaped
endpoint (Mattermost, whose host Apprise lets one choose), and Telegram up to the request
Apprise would send. Exactly one message per (notification, channel) whatever the
redelivery; 5xx retried with backoff, 4xx recorded; repeated failures pause the channel and
tell its owner (on a real broker); and the URL guard refuses private targets at every send,
redirects included."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import pytest
import requests
import sqlalchemy
from aiohttp import web
from aiokafka import AIOKafkaConsumer
from prometheus_client import REGISTRY
from sqlalchemy import text

from api import queries
from pricewatch.channels import (
    SECRET_SEAL,
    URL_SEAL,
    ChannelKind,
    new_webhook_secret,
    target_for,
    webhook_signature,
)
from pricewatch.contract.records import (
    AccountEmail,
    AccountEmailKind,
    ChannelConfirmation,
    EventType,
    Notification,
    NotificationKind,
)
from pricewatch.contract.topics import ACCOUNT_EMAILS
from pricewatch.db.engine import make_engine, upgrade
from pricewatch.ids import event_id_for, notification_key_for, subscription_id_for
from pricewatch.kafka import create_topics, make_producer
from pricewatch.sealing import Sealer
from pricewatch.settings import Settings
from pricewatch.urlguard import GuardedResolver
from sinks.channels.guard import watching
from sinks.channels.sink import ChannelSink
from sinks.contract import Batch
from tests.conftest import Broker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SECRET = "channel-sink-test-secret-0123456789"
PRODUCT_ID = "b" * 32
OWNER = "ann@example.com"


# --- receivers ---------------------------------------------------------------------------


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 that records every request and answers with the statuses
    queued in ``answers`` (then 200), or a redirect to ``redirect_to``."""

    answers: list[int] = field(default_factory=list)
    redirect_to: str | None = None
    reply: dict[str, Any] = field(default_factory=lambda: {"ok": True})
    received: list[Received] = field(default_factory=list)
    port: int = 0
    runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.received.append(
            Received(request.method, request.path_qs, dict(request.headers), await request.read())
        )
        if self.redirect_to is not None:
            raise web.HTTPTemporaryRedirect(self.redirect_to)
        status = self.answers.pop(0) if self.answers else 200
        return web.json_response(self.reply if status < 300 else {"error": "no"}, status=status)

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
async def receivers() -> AsyncIterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for receiver in made:
        await receiver.stop()


async def receiver(made: list[Receiver], **options: Any) -> Receiver:
    started = await Receiver(**options).start()
    made.append(started)
    return started


# --- the sink, its database and its channels ---------------------------------------------


@pytest.fixture
def engine(postgres_url: str) -> Iterator[sqlalchemy.Engine]:
    upgrade(postgres_url)
    engine = make_engine(postgres_url)
    yield engine
    engine.dispose()


def settings_for(allowed: list[Receiver], **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "public_base_url": "https://pricewatch.example.org",
        "secret_key": SECRET,
        "allowed_private_hosts": ",".join(f"127.0.0.1:{r.port}" for r in allowed),
        "channel_retry_backoff_seconds": 0.05,
        "channel_max_attempts": 3,
        "channel_pause_after_failures": 2,
        "channel_send_timeout_seconds": 5,
    }
    values.update(extra)
    return Settings(**values)


class Sinks:
    """A ChannelSink with its HTTP session, and what its owner emails were published as."""

    def __init__(self, engine: sqlalchemy.Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self.published: list[AccountEmail] = []
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ChannelSink:
        connector = aiohttp.TCPConnector(
            resolver=GuardedResolver(self.settings.allowed_private_host_set)
        )
        self.session = aiohttp.ClientSession(connector=connector)

        async def publish(mail: AccountEmail) -> None:
            self.published.append(mail)

        return ChannelSink(self.engine, self.settings, self.session, publish)

    async def __aexit__(self, *exc: object) -> None:
        assert self.session is not None
        await self.session.close()


def add_channel(
    engine: sqlalchemy.Engine,
    settings: Settings,
    kind: str,
    fields: dict[str, str],
    *,
    email: str = OWNER,
    status: str = "active",
) -> tuple[str, str | None]:
    """A channel as the API adds it (sealed, with the API's own query), then confirmed.
    (channel id, webhook secret)."""
    queries.ensure_user(engine, email)
    target = target_for(ChannelKind(kind), fields, settings.notify_scheme_set)
    channel_id = hashlib.sha256(f"{email}{target.url}".encode()).hexdigest()[:32]
    urls = Sealer(settings.secret_key_bytes(), URL_SEAL)
    secret = new_webhook_secret() if kind == "webhook" else None
    sealed_secret = (
        None
        if secret is None
        else Sealer(settings.secret_key_bytes(), SECRET_SEAL).seal(secret, channel_id)
    )
    outcome, _ = queries.add_channel(
        engine,
        {
            "channel_id": channel_id,
            "email": email,
            "kind": kind,
            "label": None,
            "target": target.masked,
            "url_sealed": urls.seal(target.url, channel_id),
            "url_digest": urls.digest(target.url),
            "secret_sealed": sealed_secret,
        },
        10,
    )
    assert outcome == "added"
    if status != "pending":
        queries.confirm_channel(engine, channel_id)
    return channel_id, secret


def notification(observation: str = "o1", email: str = OWNER) -> Notification:
    subscription_id = subscription_id_for(email, PRODUCT_ID)
    event_id = event_id_for(PRODUCT_ID, EventType.PRICE_DROP.value, observation)
    return Notification(
        idempotency_key=notification_key_for(subscription_id, event_id),
        kind=NotificationKind.TARGET_PRICE_REACHED,
        kinds=[NotificationKind.TARGET_PRICE_REACHED, NotificationKind.PRICE_DROPPED],
        subscription_id=subscription_id,
        email=email,
        product_id=PRODUCT_ID,
        url="https://shop.example/p/kettle",
        title="Kettle",
        event_id=event_id,
        event_type=EventType.PRICE_DROP,
        observed_at=datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
        old_price=Decimal("99.00"),
        new_price=Decimal("79.00"),
        currency="EUR",
        target_price=Decimal("80.00"),
        threshold_price=Decimal("80.00"),
        baseline_price=Decimal("99.00"),
        created_at=datetime(2026, 3, 1, 12, 0, 1, tzinfo=UTC),
    )


def deliveries(engine: sqlalchemy.Engine) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT * FROM channel_deliveries ORDER BY channel_kind, idempotency_key")
        )
        return [dict(r._mapping) for r in rows]


def channel(engine: sqlalchemy.Engine, channel_id: str) -> dict[str, Any]:
    with engine.connect() as connection:
        row = connection.execute(
            text("SELECT * FROM channels WHERE channel_id = :id"), {"id": channel_id}
        )
        return dict(row.mappings().one())


def set_due(engine: sqlalchemy.Engine, when: str) -> None:
    with engine.begin() as connection:
        connection.execute(
            text(
                f"UPDATE channel_deliveries SET next_attempt_at = {when} WHERE status = 'retrying'"
            )
        )


def counted(kind: str, outcome: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "pricewatch_channel_deliveries_total", {"kind": kind, "outcome": outcome}
        )
        or 0.0
    )


# --- exactly once, to every kind of receiver -------------------------------------------


async def test_three_deliveries_send_one_message_to_each_channel(
    engine: sqlalchemy.Engine, receivers: list[Receiver]
) -> None:
    hook = await receiver(receivers)
    json_hook = await receiver(receivers)
    form_hook = await receiver(receivers)
    ntfy = await receiver(receivers, reply={"id": "x1", "event": "message"})
    slackish = await receiver(receivers)
    settings = settings_for([hook, json_hook, form_hook, ntfy, slackish])
    webhook_id, secret = add_channel(engine, settings, "webhook", {"url": f"{hook.base}/in"})
    add_channel(engine, settings, "apprise", {"url": f"json://127.0.0.1:{json_hook.port}/j"})
    add_channel(engine, settings, "apprise", {"url": f"form://127.0.0.1:{form_hook.port}/f"})
    add_channel(
        engine, settings, "ntfy", {"topic": "prices", "server": f"http://127.0.0.1:{ntfy.port}"}
    )
    add_channel(engine, settings, "apprise", {"url": f"mmost://127.0.0.1:{slackish.port}/tok3n"})
    alert = notification()
    sent_before = counted("webhook", "sent")

    async with Sinks(engine, settings) as sink:
        await sink.write(Batch.of([alert]))
        await sink.write(Batch.of([alert, alert]))  # redelivered, and twice in one batch
        await sink.write(Batch.of([alert]))

    for each in (hook, json_hook, form_hook, ntfy, slackish):
        assert len(each.received) == 1, each.received
    assert counted("webhook", "sent") - sent_before == 1
    assert {r["status"] for r in deliveries(engine)} == {"sent"}
    assert all(r["attempts"] == 1 and r["payload"] is None for r in deliveries(engine))

    # The webhook: CloudEvents structured mode, the notification record as data, signed.
    [post] = hook.received
    assert post.headers["Content-Type"].startswith("application/cloudevents+json")
    event = json.loads(post.body)
    assert event["specversion"] == "1.0" and event["id"] == alert.idempotency_key
    assert event["type"] == "org.pricewatch.alert.target_price"
    assert event["pricewatchalerts"] == "target_price any_drop"
    assert event["source"] == "https://pricewatch.example.org"
    assert Notification.model_validate(event["data"]) == alert
    assert event["data"] == json.loads(alert.model_dump_json())  # every field, as on the topic
    assert post.headers["webhook-id"] == alert.idempotency_key
    timestamp = int(post.headers["webhook-timestamp"])
    assert abs(time.time() - timestamp) < 300
    assert secret is not None
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{alert.idempotency_key}.{timestamp}.".encode() + post.body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert post.headers["webhook-signature"] == f"v1,{expected}"
    assert (
        webhook_signature(secret, alert.idempotency_key, timestamp, post.body) == f"v1,{expected}"
    )

    # Apprise's json:// and form://: the subject that names the rule, and the words.
    [as_json] = json_hook.received
    payload = json.loads(as_json.body)
    assert payload["title"] == "Target price reached: Kettle is now €79.00 (your target €80.00)"
    assert "Also: Kettle dropped from €99.00 to €79.00." in payload["message"]
    [as_form] = form_hook.received
    form = parse_qs(as_form.body.decode())
    assert form["title"] == [payload["title"]] and "shop.example/p/kettle" in form["message"][0]
    # ntfy's publish-as-JSON protocol, to the topic.
    [published] = ntfy.received
    sent = json.loads(published.body)
    assert (sent["topic"], sent["title"]) == ("prices", payload["title"])
    assert "€79.00" in sent["message"]
    # A Slack-shaped incoming webhook (Mattermost): {"text": ...} to /hooks/<token>.
    [slack] = slackish.received
    assert slack.path == "/hooks/tok3n" and "Target price reached" in json.loads(slack.body)["text"]

    # A webhook answers with the event id on every retry: receivers can drop duplicates.
    assert channel(engine, webhook_id)["last_sent_at"] is not None


async def test_only_confirmed_channels_get_alerts_and_a_subscription_may_choose(
    engine: sqlalchemy.Engine, receivers: list[Receiver]
) -> None:
    chosen, other, pending = [await receiver(receivers) for _ in range(3)]
    settings = settings_for([chosen, other, pending])
    chosen_id, _ = add_channel(engine, settings, "webhook", {"url": f"{chosen.base}/a"})
    add_channel(engine, settings, "webhook", {"url": f"{other.base}/b"})
    add_channel(engine, settings, "webhook", {"url": f"{pending.base}/c"}, status="pending")
    add_channel(engine, settings, "webhook", {"url": f"{other.base}/bob"}, email="bob@example.com")
    first, second = notification("o1"), notification("o2")

    async with Sinks(engine, settings) as sink:
        await sink.write(Batch.of([first]))
        queries.choose_channels(engine, first.subscription_id, [chosen_id])
        await sink.write(Batch.of([second]))

    assert [json.loads(r.body)["id"] for r in chosen.received] == [
        first.idempotency_key,
        second.idempotency_key,
    ]
    assert [json.loads(r.body)["id"] for r in other.received] == [first.idempotency_key]
    assert pending.received == []  # nothing before its owner confirms it


async def test_a_pending_channel_gets_its_test_message_once(
    engine: sqlalchemy.Engine, receivers: list[Receiver]
) -> None:
    hook, chat = await receiver(receivers), await receiver(receivers)
    settings = settings_for([hook, chat])
    hook_id, _ = add_channel(
        engine, settings, "webhook", {"url": f"{hook.base}/x"}, status="pending"
    )
    chat_id, _ = add_channel(
        engine, settings, "apprise", {"url": f"json://127.0.0.1:{chat.port}/"}, status="pending"
    )
    link = "https://pricewatch.example.org/channels/confirm?token=abc.def"
    tests = [
        ChannelConfirmation(
            idempotency_key=f"channel-confirm-{n}",
            channel_id=channel_id,
            email=OWNER,
            link=link,
            created_at=datetime(2026, 3, 1, tzinfo=UTC),
        )
        for n, channel_id in enumerate((hook_id, chat_id))
    ]
    stranger = tests[0].model_copy(update={"email": "mallory@example.com", "idempotency_key": "m"})
    async with Sinks(engine, settings) as sink:
        await sink.write(Batch.of([*tests, stranger]))
        await sink.write(Batch.of(tests))
    [event] = [json.loads(r.body) for r in hook.received]
    assert event["type"] == "org.pricewatch.channel.confirmation"
    assert event["data"]["confirm_url"] == link
    [message] = [json.loads(r.body) for r in chat.received]
    assert link in message["message"] and message["title"] == "Pricewatch: confirm this channel"
    # Once confirmed, a confirmation sent again goes nowhere.
    queries.confirm_channel(engine, hook_id)
    again = tests[0].model_copy(update={"idempotency_key": "channel-confirm-later"})
    async with Sinks(engine, settings) as sink:
        await sink.write(Batch.of([again]))
    assert len(hook.received) == 1


# --- failures: retried, recorded, paused -------------------------------------------------


async def test_5xx_then_200_is_retried_with_backoff_and_sent_once(
    engine: sqlalchemy.Engine, receivers: list[Receiver]
) -> None:
    hook = await receiver(receivers, answers=[503])
    chat = await receiver(receivers, answers=[500, 502])
    settings = settings_for([hook, chat])
    hook_id, _ = add_channel(engine, settings, "webhook", {"url": f"{hook.base}/x"})
    add_channel(engine, settings, "apprise", {"url": f"json://127.0.0.1:{chat.port}/"})
    alert = notification()
    async with Sinks(engine, settings) as sink:
        await sink.write(Batch.of([alert]))  # both fail: the batch is done all the same
        rows = deliveries(engine)
        assert [(r["status"], r["attempts"]) for r in rows] == [("retrying", 1), ("retrying", 1)]
        assert all(r["payload"] is not None and r["next_attempt_at"] for r in rows)
        # A redelivery before they are due sends nothing (not yet due whatever the load:
        # the retry is moved an hour away, then made due again).
        set_due(engine, "now() + interval '1 hour'")
        await sink.write(Batch.of([alert]))
        assert await sink.retry_due() == 0
        assert (len(hook.received), len(chat.received)) == (1, 1)
        set_due(engine, "now()")

        async def all_sent() -> bool:
            await sink.retry_due()
            return {r["status"] for r in deliveries(engine)} == {"sent"}

        deadline = time.monotonic() + 30
        while not await all_sent():
            assert time.monotonic() < deadline, deliveries(engine)
            await asyncio.sleep(0.05)
        await sink.write(Batch.of([alert]))  # and after
    assert (len(hook.received), len(chat.received)) == (2, 3)
    # Every attempt carries the same event id: a receiver keeps one.
    assert {r.headers["webhook-id"] for r in hook.received} == {alert.idempotency_key}
    assert {r["channel_kind"]: r["attempts"] for r in deliveries(engine)} == {
        "apprise": 3,
        "webhook": 2,
    }
    assert channel(engine, hook_id)["consecutive_failures"] == 0


async def test_4xx_is_failed_for_good_and_repeated_failures_pause_and_tell_the_owner(
    engine: sqlalchemy.Engine, receivers: list[Receiver], broker: Broker, unique_prefix: str
) -> None:
    hook = await receiver(receivers, answers=[404, 410])
    settings = settings_for(
        [hook],
        kafka_bootstrap_servers=broker.bootstrap_servers,
        kafka_embedded=broker.embedded,
        topic_prefix=unique_prefix,
    )
    await create_topics(settings)
    hook_id, _ = add_channel(engine, settings, "webhook", {"url": f"{hook.base}/gone"})
    producer = make_producer(settings)
    await producer.start()
    try:
        sinks = Sinks(engine, settings)
        async with sinks as sink:

            async def publish(mail: AccountEmail) -> None:
                await producer.send_and_wait(
                    settings.topic(ACCOUNT_EMAILS),
                    key=mail.email.encode(),
                    value=mail.model_dump_json().encode(),
                )

            sink.publish = publish
            await sink.write(Batch.of([notification("o1")]))
            assert [r["status"] for r in deliveries(engine)] == ["failed"]
            assert channel(engine, hook_id)["status"] == "active"  # one failure: not yet
            await sink.write(Batch.of([notification("o2")]))
            await sink.write(Batch.of([notification("o3")]))  # paused: not sent at all
            assert await sink.tell_untold_pauses() == 0  # told already, once
    finally:
        await producer.stop()
    assert len(hook.received) == 2
    paused = channel(engine, hook_id)
    assert (paused["status"], paused["paused_reason"], paused["consecutive_failures"]) == (
        "paused",
        "failures",
        2,
    )
    assert "HTTP 410" in paused["last_error"] and paused["owner_told_at"] is not None
    [failed_row, *_] = deliveries(engine)
    assert failed_row["payload"] is None and "HTTP 404" in failed_row["last_error"]
    # The owner's email, on the account-emails topic for the email sink.
    consumer = AIOKafkaConsumer(
        settings.topic(ACCOUNT_EMAILS),
        bootstrap_servers=settings.bootstrap(),
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    try:
        found: list[AccountEmail] = []
        for _ in range(40):
            batch = await consumer.getmany(timeout_ms=250)
            found += [
                AccountEmail.model_validate_json(r.value) for rs in batch.values() for r in rs
            ]
            if found:
                break
    finally:
        await consumer.stop()
    [mail] = found
    assert (mail.kind, mail.email) == (AccountEmailKind.CHANNEL_PAUSED, OWNER)
    assert mail.channel is not None and mail.channel.channel_id == hook_id
    assert mail.channel.failures == 2 and mail.link.startswith(
        "https://pricewatch.example.org/manage?token="
    )
    # Resumed by its owner: the count starts again and alerts flow.
    queries.set_channel_paused(engine, hook_id, False)
    async with Sinks(engine, settings) as sink:
        await sink.write(Batch.of([notification("o4")]))
    assert len(hook.received) == 3 and channel(engine, hook_id)["consecutive_failures"] == 0


# --- the URL guard at every send -------------------------------------------------------


async def test_a_redirect_to_a_private_address_is_refused_and_never_reached(
    engine: sqlalchemy.Engine, receivers: list[Receiver]
) -> None:
    inside = await receiver(receivers)  # loopback, not allow-listed: a private target
    hook = await receiver(receivers, redirect_to=f"{inside.base}/admin")
    chat = await receiver(receivers, redirect_to=f"{inside.base}/admin")
    settings = settings_for([hook, chat])
    add_channel(engine, settings, "webhook", {"url": f"{hook.base}/x"})
    add_channel(engine, settings, "apprise", {"url": f"json://127.0.0.1:{chat.port}/?redirect=yes"})
    async with Sinks(engine, settings) as sink:
        await sink.write(Batch.of([notification()]))
    assert (len(hook.received), len(chat.received)) == (1, 1)
    assert inside.received == []
    rows = deliveries(engine)
    assert [r["status"] for r in rows] == ["failed", "failed"]
    assert all("redirect" in r["last_error"] for r in rows), rows


async def test_the_guard_checks_every_hop_even_where_redirects_are_followed(
    receivers: list[Receiver],
) -> None:
    inside = await receiver(receivers)
    outside = await receiver(receivers, redirect_to=f"{inside.base}/secret")
    allowed = frozenset({f"127.0.0.1:{outside.port}"})

    def fetch(url: str) -> tuple[int | None, str | None]:
        with watching(allowed) as watch:
            try:
                return requests.get(url, timeout=5, allow_redirects=True).status_code, None
            except requests.ConnectionError:
                return None, watch.refused

    status, refused = await asyncio.to_thread(fetch, f"{outside.base}/start")
    assert status is None and refused and "loopback" in refused
    assert len(outside.received) == 1 and inside.received == []
    # Outside a watched send, nothing is checked (the sink's own connections).
    assert (
        await asyncio.to_thread(lambda: requests.get(f"{inside.base}/ok", timeout=5).status_code)
        == 200
    )


async def test_private_and_metadata_targets_are_refused_at_send(
    engine: sqlalchemy.Engine, receivers: list[Receiver]
) -> None:
    inside = await receiver(receivers)
    # Added while allow-listed, then the admin took it off the list: refused at the send.
    adding = settings_for([inside], notify_schemes="json,ntfy")
    add_channel(engine, adding, "webhook", {"url": f"{inside.base}/w"})
    add_channel(engine, adding, "apprise", {"url": f"json://127.0.0.1:{inside.port}/j"})
    add_channel(engine, adding, "apprise", {"url": "json://169.254.169.254/latest/meta-data"})
    settings = settings_for([])
    refused_before = counted("apprise", "refused")
    async with Sinks(engine, settings) as sink:
        await sink.write(Batch.of([notification()]))
    assert inside.received == []
    rows = deliveries(engine)
    assert [r["status"] for r in rows] == ["failed"] * 3
    errors = sorted(r["last_error"] for r in rows)
    assert any("cloud metadata" in e for e in errors), errors
    assert sum("loopback" in e for e in errors) == 2, errors
    assert counted("apprise", "refused") - refused_before == 2


async def test_telegram_up_to_the_request_apprise_would_send(
    engine: sqlalchemy.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No public host is reachable here: the request is captured where requests would put it
    on the wire (its transport adapter), answered as Telegram's Bot API answers."""
    captured: list[requests.PreparedRequest] = []

    def bot_api(
        adapter: Any, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        captured.append(request)
        response = requests.Response()
        response.status_code = 200
        response._content = json.dumps({"ok": True, "result": {"message_id": 1}}).encode()
        response.request = request
        response.url = request.url or ""
        return response

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", bot_api)
    settings = settings_for([])
    bot = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
    add_channel(engine, settings, "telegram", {"bot_token": bot, "chat_id": "-1001234567"})
    async with Sinks(engine, settings) as sink:
        await sink.write(Batch.of([notification()]))
        await sink.write(Batch.of([notification()]))
    [request] = captured
    assert request.method == "POST"
    assert request.url == f"https://api.telegram.org/bot{bot}/sendMessage"
    body = json.loads(request.body or b"{}")
    assert body["chat_id"] == -1001234567
    assert "Target price reached: Kettle is now €79.00" in body["text"]
    assert [r["status"] for r in deliveries(engine)] == ["sent"]
