"""Issue 18 end to end, as real processes (a Stack): a price-increase alert with a minimum
change, asked for over HTTP, stored in PostgreSQL, republished verified from its row,
matched by the worker and told by email (subject and X-Pricewatch-Alert naming the rule) and
by a webhook channel added and confirmed through the API (a signed CloudEvent, once)."""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import psycopg
import pytest

from launcher.demo.shop import DEFAULT_PRODUCTS
from launcher.stack import Stack
from pricewatch.tokens import TokenPurpose, issue_token
from tests.conftest import Broker, fresh_database
from tests.helpers import http_json, verify_address, wait_for
from tests.system.conftest import WebhookReceiver
from tests.system.test_end_to_end import _keep_logs, _price_rows, _set_price, _settings

pytestmark = pytest.mark.timeout(300)


def _alerts(outbox: Path) -> list[EmailMessage]:
    found = []
    for path in sorted(outbox.glob("*.eml")) if outbox.exists() else []:
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if message["X-Pricewatch-Alert"]:
            found.append(message)  # type: ignore[arg-type]
    return found


def _events(received: list[tuple[dict[str, str], bytes]], kind: str) -> list[dict[str, Any]]:
    return [e for _, body in received if (e := json.loads(body))["type"].startswith(kind)]


@pytest.mark.integration
def test_a_price_increase_with_a_minimum_change_reaches_email_and_a_webhook(
    tmp_path: Path,
    broker: Broker,
    postgres_server: str,
    unique_prefix: str,
    hook: WebhookReceiver,
) -> None:
    port, received = hook.port, hook.received
    for database_url in fresh_database(postgres_server):
        settings = _settings(
            tmp_path,
            unique_prefix,
            kafka_bootstrap_servers=broker.bootstrap_servers,
            kafka_embedded=broker.embedded,
            database_url=database_url,
            allowed_private_hosts=f"127.0.0.1:{port}",
        )
        with Stack(settings) as stack:
            try:
                _journey(stack, port, received)
                assert stack.dead_children() == []
            finally:
                _keep_logs(stack, "channels")


def _journey(stack: Stack, port: int, received: list[tuple[dict[str, str], bytes]]) -> None:
    settings = stack.settings
    api = settings.api_base_url
    product = DEFAULT_PRODUCTS[0]
    shop = f"http://{settings.api_host}:{settings.demo_shop_port}"
    product_url = f"{shop}/products/{product.slug}"
    address = f"riser-{uuid.uuid4().hex[:6]}@example.com"

    # 1. Ask for price rises of at least 5 %, over HTTP; confirm the address.
    status, body = http_json(
        "POST",
        f"{api}/api/subscriptions",
        {
            "email": address,
            "url": product_url,
            "notify_price_increase": True,
            "min_change_percent": "5",
        },
    )
    assert status == 201, body
    verify_address(settings, address)  # republishes the subscription from its row
    with psycopg.connect(settings.database()) as conn:
        row = conn.execute(
            "SELECT notify_price_increase, min_change_percent, notify_any_drop FROM subscriptions"
        ).fetchone()
    assert row == (True, Decimal("5.00"), False)

    # 2. A webhook channel, added with the manage link's token, confirmed by the link of
    # the test message it receives.
    manage = issue_token(
        settings.secret_key_bytes(),
        TokenPurpose.MANAGE,
        address,
        now=datetime.now(UTC),
        ttl=timedelta(hours=1),
    )
    status, added = http_json(
        "POST",
        f"{api}/api/manage/channels?token={quote(manage)}",
        {"kind": "webhook", "url": f"http://127.0.0.1:{port}/pricewatch"},
    )
    assert status == 201, added
    secret = added["signing_secret"]
    [test] = wait_for(
        lambda: _events(received, "org.pricewatch.channel.confirmation"),
        timeout=60,
        what="the channel's test message",
    )
    token = parse_qs(urlsplit(test["data"]["confirm_url"]).query)["token"][0]
    status, confirmed = http_json("POST", f"{api}/api/channels/confirm?token={quote(token)}")
    assert (status, confirmed["status"]) == (200, "active"), confirmed

    # 3. The first check learns the price; a 2 % rise is under the minimum change and says
    # nothing; another 4.4 % (6.5 % in all) alerts once, measured from the first price.
    wait_for(lambda: _price_rows(settings.database(), product_url), timeout=60, what="a price")
    small = (product.price * Decimal("1.02")).quantize(Decimal("0.01"))
    big = (product.price * Decimal("1.065")).quantize(Decimal("0.01"))
    _set_price(shop, product.slug, small)
    wait_for(
        lambda: _price_rows(settings.database(), product_url)[-1][0] == small,
        timeout=60,
        what="the small rise to be read",
    )
    _set_price(shop, product.slug, big)
    [alert] = wait_for(lambda: _alerts(settings.outbox_path), timeout=60, what="the price-up email")
    [event] = wait_for(
        lambda: _events(received, "org.pricewatch.alert."), timeout=60, what="the webhook"
    )
    # Email: the subject names the rule and the price it rose from; the header too.
    assert alert["To"] == address
    assert str(alert["Subject"]).startswith(f"Price up: {product.title} is now")
    assert alert["X-Pricewatch-Alert"] == "price_increase"
    text = alert.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert f"{big:,}" in text and f"{product.price:,}" in text
    # Webhook: the same notification as a signed CloudEvent.
    assert event["type"] == "org.pricewatch.alert.price_increase"
    data = event["data"]
    assert (data["kind"], data["kinds"]) == ("price_increased", ["price_increased"])
    assert Decimal(data["new_price"]) == big and Decimal(data["baseline_price"]) == product.price
    assert data["idempotency_key"] == event["id"] == alert["X-Pricewatch-Idempotency-Key"]
    [(headers, body)] = [(h, b) for h, b in received if json.loads(b)["id"] == event["id"]]
    signed = f"{event['id']}.{headers['webhook-timestamp']}.".encode() + body
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert headers["webhook-signature"] == f"v1,{digest}"

    # Once: more checks at the same price send nothing more, anywhere.
    wait_for(
        lambda: _price_rows(settings.database(), product_url)[-1][0] == big,
        timeout=60,
        what="the big rise in the history",
    )
    rows_now = len(_price_rows(settings.database(), product_url))
    with psycopg.connect(settings.database()) as conn:
        checked = conn.execute(
            "SELECT last_checked_at FROM products WHERE url = %s", (product_url,)
        ).fetchone()
    assert checked is not None

    def checked_again() -> bool:
        with psycopg.connect(settings.database()) as conn:
            now = conn.execute(
                "SELECT last_checked_at FROM products WHERE url = %s", (product_url,)
            ).fetchone()
        return now is not None and now[0] > checked[0] + timedelta(seconds=3)

    wait_for(checked_again, timeout=60, what="more checks of the same price")
    assert len(_price_rows(settings.database(), product_url)) == rows_now
    assert len(_alerts(settings.outbox_path)) == 1
    assert len(_events(received, "org.pricewatch.alert.")) == 1
    with psycopg.connect(settings.database()) as conn:
        ledger = conn.execute(
            "SELECT channel_kind, message, status FROM channel_deliveries ORDER BY message"
        ).fetchall()
    assert ledger == [("webhook", "alert", "sent"), ("webhook", "confirmation", "sent")]
