"""A price drop travels end to end: subscribe over HTTP, scrape the demo shop, detect,
match, email, and record the price in PostgreSQL — all as real processes."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import re
import urllib.request
import uuid
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from launcher.demo.run import demo_settings
from launcher.demo.shop import DEFAULT_PRODUCTS
from launcher.processes import free_port
from launcher.stack import Stack
from pricewatch.contract.records import DeadLetter, PriceEvent
from pricewatch.contract.topics import DEAD_LETTERS, PRICE_EVENTS, PRICE_OBSERVATIONS
from pricewatch.settings import Settings
from tests.conftest import Broker, fresh_database
from tests.helpers import http_json, wait_for

pytestmark = pytest.mark.timeout(240)


def _settings(tmp_path: Path, prefix: str, **services: object) -> Settings:
    return demo_settings(
        Settings(
            data_dir=tmp_path / "data",
            app_id=f"{prefix}pw",
            topic_prefix=prefix,
            topic_partitions=4,
            api_port=free_port(),
            demo_shop_port=free_port(),
            default_check_interval_seconds=1.0,
            scheduler_tick_seconds=0.2,
            log_level="INFO",
            **services,  # type: ignore[arg-type]
        )
    )


def _emails(outbox: Path) -> list[email.message.EmailMessage]:
    if not outbox.exists():
        return []
    return [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
        for p in sorted(outbox.glob("*.eml"))
    ]


def _price_rows(database_url: str, product_url: str) -> list[tuple[Decimal, str]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT pr.price, pr.currency FROM prices pr JOIN products p USING (product_id)"
            " WHERE p.url = %s ORDER BY pr.observed_at",
            (product_url,),
        ).fetchall()


def _alerts(outbox: Path) -> list[email.message.EmailMessage]:
    return [m for m in _emails(outbox) if m["List-Unsubscribe"]]


def _link(message: email.message.EmailMessage, path: str) -> str:
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    found = re.search(rf"(http://\S+{re.escape(path)}\?token=\S+)", body.get_content())
    assert found, body.get_content()
    return found.group(1)


def _set_price(shop: str, slug: str, price: Decimal) -> None:
    status, _ = http_json("POST", f"{shop}/admin/products/{slug}", {"price": str(price)})
    assert status == 200


def run_price_drop_journey(stack: Stack) -> email.message.EmailMessage:
    """Subscribe; nothing is fetched or sent before the address is verified; verify by the
    emailed link; the first check learns the price, the next drop alerts once, with a
    working one-click unsubscribe link."""
    settings = stack.settings
    product = DEFAULT_PRODUCTS[0]
    shop = f"http://{settings.api_host}:{settings.demo_shop_port}"
    product_url = f"{shop}/products/{product.slug}"
    subscriber = f"shopper-{uuid.uuid4().hex[:6]}@example.com"
    target = (product.price * Decimal("0.9")).quantize(Decimal("0.01"))
    lower = (product.price * Decimal("0.8")).quantize(Decimal("0.01"))
    interval = settings.default_check_interval_seconds

    status, body = http_json(
        "POST",
        f"{settings.api_base_url}/api/subscriptions",
        {"email": subscriber, "url": product_url, "target_price": str(target)},
    )
    assert status == 201, body
    assert body["verified"] is False

    [verification] = wait_for(
        lambda: _emails(settings.outbox_path), timeout=30, what="the verification email"
    )
    assert verification["To"] == subscriber
    assert verification["Subject"] == "Confirm your email address for Pricewatch"

    # Unverified: the page is not even fetched (an address nobody confirmed cannot make
    # Pricewatch crawl a URL), so nothing can alert either.
    asyncio.run(asyncio.sleep(4 * interval))
    assert _price_rows(settings.database(), product_url) == []
    assert _alerts(settings.outbox_path) == []

    # Follow the link from the email (the page a person would open): opening it only asks
    # (mail scanners open links too) and nothing starts ...
    link = _link(verification, "/verify")
    with urllib.request.urlopen(link, timeout=10) as response:
        assert response.status == 200
        assert b"Confirm my address" in response.read()
    asyncio.run(asyncio.sleep(2 * interval))
    assert _price_rows(settings.database(), product_url) == []
    # ... until the person presses the page's button, which posts to the same link.
    press = urllib.request.Request(link, method="POST")
    with urllib.request.urlopen(press, timeout=10) as response:
        assert response.status == 200
        assert b"Address confirmed" in response.read()

    # The first check only learns the price (a first observation never alerts) ...
    wait_for(
        lambda: _price_rows(settings.database(), product_url),
        timeout=60,
        what="the first price row",
    )
    asyncio.run(asyncio.sleep(2 * interval))
    assert _alerts(settings.outbox_path) == []
    # ... a drop below the target alerts, once.
    _set_price(shop, product.slug, lower)
    messages = wait_for(lambda: _alerts(settings.outbox_path), timeout=60, what="the alert email")
    wait_for(
        lambda: _price_rows(settings.database(), product_url)[-1][0] == lower,
        timeout=30,
        what="the new price row",
    )
    # More checks of the same lower price must not send the alert again.
    asyncio.run(asyncio.sleep(4 * interval))
    messages = _alerts(settings.outbox_path)
    assert len(messages) == 1, [m["Subject"] for m in messages]
    message = messages[0]
    assert message["To"] == subscriber
    body_text = message.get_body(preferencelist=("plain",))
    assert body_text is not None
    text = body_text.get_content()
    assert product_url in text
    assert str(lower) in text.replace(",", "")
    all_rows = _price_rows(settings.database(), product_url)
    assert [r[0] for r in all_rows] == [product.price, lower]
    return message


def _one_click_unsubscribe(message: email.message.EmailMessage) -> None:
    """RFC 8058 one-click unsubscribe, as a mail client does it."""
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    request = urllib.request.Request(
        str(message["List-Unsubscribe"]).strip("<>"),
        data=b"List-Unsubscribe=One-Click",
        method="POST",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.loads(response.read()) == {"unsubscribed": 1}


async def _dead_letter_probe(settings: Settings) -> None:
    """A malformed observation is dead-lettered with its reason; the worker goes on."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap())
    await producer.start()
    try:
        await producer.send_and_wait(
            settings.topic(PRICE_OBSERVATIONS), key=b"junk", value=b'{"schema_version": 1, "pr'
        )
        await producer.send_and_wait(
            settings.topic(PRICE_OBSERVATIONS), key=b"junk2", value=b'{"schema_version": 99}'
        )
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        settings.topic(DEAD_LETTERS),
        settings.topic(PRICE_EVENTS),
        bootstrap_servers=settings.bootstrap(),
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    dead: list[DeadLetter] = []
    events: list[PriceEvent] = []
    try:
        async with asyncio.timeout(60):
            # Both stages that read observations reject them: detector and postgres sink.
            while len({(d.stage, d.key) for d in dead}) < 4:
                batch = await consumer.getmany(timeout_ms=500)
                for tp, records in batch.items():
                    for r in records:
                        if tp.topic == settings.topic(DEAD_LETTERS):
                            dead.append(DeadLetter.model_validate_json(r.value))
                        else:
                            events.append(PriceEvent.model_validate_json(r.value))
    finally:
        await consumer.stop()
    assert {(d.stage, d.key) for d in dead} == {
        (stage, key) for stage in ("detector", "postgres-sink") for key in ("junk", "junk2")
    }
    assert all(d.reason == "invalid_record" for d in dead)
    assert all(d.source_topic == settings.topic(PRICE_OBSERVATIONS) for d in dead)
    assert any("schema_version" in d.error for d in dead)


def _raise_price_and_see_event(stack: Stack) -> None:
    """After the bad messages the worker still detects changes."""
    settings = stack.settings
    product = DEFAULT_PRODUCTS[0]
    shop = f"http://{settings.api_host}:{settings.demo_shop_port}"
    status, _ = http_json(
        "POST", f"{shop}/admin/products/{product.slug}", {"price": str(product.price)}
    )
    assert status == 200
    product_url = f"{shop}/products/{product.slug}"
    wait_for(
        lambda: [r for r in _price_rows(settings.database(), product_url)][-1][0] == product.price,
        timeout=60,
        what="the raised price to be processed",
    )


@pytest.mark.integration
def test_price_drop_reaches_subscriber(
    tmp_path: Path, broker: Broker, postgres_server: str, unique_prefix: str
) -> None:
    for database_url in fresh_database(postgres_server):
        settings = _settings(
            tmp_path,
            unique_prefix,
            kafka_bootstrap_servers=broker.bootstrap_servers,
            kafka_embedded=broker.embedded,
            database_url=database_url,
        )
        with Stack(settings) as stack:
            try:
                alert = run_price_drop_journey(stack)
                asyncio.run(_dead_letter_probe(stack.settings))
                _raise_price_and_see_event(stack)
                _one_click_unsubscribe(alert)
                assert stack.dead_children() == []
            finally:
                _keep_logs(stack, "default")


@pytest.mark.integration
def test_price_drop_on_embedded_services_only(tmp_path: Path, unique_prefix: str) -> None:
    """The newcomer's laptop: no broker, no PostgreSQL configured. The stack starts the
    embedded tansu broker and an embedded PostgreSQL itself (port 5432 is never used).
    Laid out as ``pricewatch demo`` runs it: a worker, and one process for the rest
    (``pricewatch together``)."""
    settings = _settings(tmp_path, unique_prefix)
    assert settings.kafka_bootstrap_servers is None and settings.database_url is None
    with Stack(settings, together=True) as stack:
        try:
            assert stack.broker is not None and stack.postgres is not None
            assert "5432" not in stack.settings.database()
            assert [child.name for child in stack.children] == ["worker-0", "together"]
            run_price_drop_journey(stack)
            assert stack.dead_children() == []
        finally:
            _keep_logs(stack, "embedded")


def _keep_logs(stack: Stack, name: str) -> None:
    """Copy the processes' logs into test-artifacts/ for a failing CI run."""
    import shutil

    from tests.conftest import ARTIFACTS

    target = ARTIFACTS / f"e2e-{name}-logs"
    shutil.rmtree(target, ignore_errors=True)
    if stack.logs_dir.exists():
        shutil.copytree(stack.logs_dir, target)
