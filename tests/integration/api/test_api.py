"""The HTTP API on a real broker and a real PostgreSQL: what it accepts and refuses, what it
publishes (subscriptions on their product's partition, account emails), and the journey of
an address: subscribe, verify, manage, unsubscribe. Security: tokens cannot be forged,
reused for another purpose or used after expiry; one address never sees another's data."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaConsumer
from prometheus_client import generate_latest
from pydantic import SecretStr
from sqlalchemy import text

from api.app import MAX_BODY_BYTES, ApiRunner, create_api_app
from api.context import BACKGROUND_KEY
from pricewatch.contract.records import AccountEmail, AccountEmailKind, Subscription
from pricewatch.contract.topics import ACCOUNT_EMAILS, SUBSCRIPTIONS, TopicSpec
from pricewatch.db.engine import make_engine, upgrade
from pricewatch.ids import partition_for, product_id_for, subscription_id_for
from pricewatch.kafka import create_topics, make_producer
from pricewatch.settings import Settings
from pricewatch.tokens import TokenPurpose, issue_token
from tests.conftest import Broker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SHOP = "https://shop.example/products/kettle"
HAT = "https://shop.example/products/hat"
SECRET = "api-test-secret-0123456789abcdef"
ADMIN = "admin-test-token-0123456789"

Client = TestClient[Any, Any]


@dataclass
class Api:
    client: Client
    settings: Settings
    engine: sqlalchemy.Engine

    async def subscribe(self, email: str, url: str = SHOP, **wants: Any) -> dict[str, Any]:
        body = {"email": email, "url": url, **(wants or {"target_price": "50"})}
        response = await self.client.post("/api/subscriptions", json=body)
        assert response.status == 201, await response.text()
        result: dict[str, Any] = await response.json()
        return result

    def token(self, purpose: TokenPurpose, subject: str, **kwargs: Any) -> str:
        now = kwargs.get("now", datetime.now(UTC))
        ttl = kwargs.get("ttl", timedelta(hours=1))
        return issue_token(SECRET.encode(), purpose, subject, now=now, ttl=ttl)

    def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        with self.engine.connect() as connection:
            return [dict(r) for r in connection.execute(text(sql), params).mappings()]


def api_settings(
    broker: Broker, prefix: str, tmp_path: Path, database_url: str, **extra: Any
) -> Settings:
    return Settings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        kafka_embedded=broker.embedded,
        topic_prefix=prefix,
        data_dir=tmp_path,
        database_url=database_url,
        allowed_private_hosts="127.0.0.1:8081",
        public_base_url="http://pricewatch.test",
        secret_key=SecretStr(SECRET),
        admin_token=SecretStr(ADMIN),
        **extra,
    )


class SettledClient(TestClient[Any, Any]):
    """A client whose every answer comes once the API has also done what it does after
    answering (a subscribe's own part, a manage-link email): the test server runs on this
    event loop, so a test reads the database and the topics as they end up."""

    async def _request(self, *args: Any, **kwargs: Any) -> Any:
        response = await super()._request(*args, **kwargs)
        await asyncio.gather(*self.server.app[BACKGROUND_KEY])
        return response


class ApiTestServer(TestServer):
    """A test server on a real socket, run by the API's own runner (as ``run_api`` does)."""

    async def _make_runner(self, **kwargs: Any) -> ApiRunner:
        return ApiRunner(self.app, **kwargs)


@asynccontextmanager
async def running_api(settings: Settings, database_url: str) -> AsyncIterator[Api]:
    """The API app on the real broker and database, with a client, as `pricewatch api` runs."""
    await create_topics(settings)
    producer = make_producer(settings)
    await producer.start()
    engine = make_engine(database_url)
    client: Client = SettledClient(ApiTestServer(create_api_app(settings, producer, engine)))
    await client.start_server()
    try:
        yield Api(client, settings, engine)
    finally:
        await client.close()
        await producer.stop()
        engine.dispose()


@pytest.fixture
async def api(
    broker: Broker, unique_prefix: str, tmp_path: Path, postgres_url: str
) -> AsyncIterator[Api]:
    upgrade(postgres_url)
    settings = api_settings(broker, unique_prefix, tmp_path, postgres_url)
    async with running_api(settings, postgres_url) as api:
        yield api


async def read_topic(
    settings: Settings, spec: TopicSpec, count: int
) -> list[tuple[int, bytes, bytes]]:
    """(partition, key, value) of a topic's records, read until ``count`` arrived (+ one poll)."""
    consumer = AIOKafkaConsumer(
        settings.topic(spec),
        bootstrap_servers=settings.bootstrap(),
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    out: list[tuple[int, bytes, bytes]] = []
    try:
        for _ in range(40):
            batch = await consumer.getmany(timeout_ms=250)
            out.extend((tp.partition, r.key, r.value) for tp, rs in batch.items() for r in rs)
            if len(out) >= count:
                batch = await consumer.getmany(timeout_ms=300)  # anything more?
                out.extend((tp.partition, r.key, r.value) for tp, rs in batch.items() for r in rs)
                break
    finally:
        await consumer.stop()
    return out


async def published(settings: Settings, count: int) -> list[tuple[int, bytes, Subscription]]:
    return [
        (p, k, Subscription.model_validate_json(v))
        for p, k, v in await read_topic(settings, SUBSCRIPTIONS, count)
    ]


async def account_emails(settings: Settings, count: int) -> list[AccountEmail]:
    return [
        AccountEmail.model_validate_json(v)
        for _, _, v in await read_topic(settings, ACCOUNT_EMAILS, count)
    ]


def metrics_text() -> str:
    """The API's metrics as its metrics endpoint (a port of its own) serves them: the test
    server runs in this process, so its registry is this one."""
    return generate_latest().decode()


def token_of(link: str) -> str:
    return parse_qs(urlsplit(link).query)["token"][0]


async def verified_address(api: Api, email: str, url: str = SHOP) -> None:
    await api.subscribe(email, url)
    mails = [m for m in await account_emails(api.settings, 1) if m.email == email]
    response = await api.client.post("/api/verify", params={"token": token_of(mails[-1].link)})
    assert response.status == 200, await response.text()


# --- subscribing ---------------------------------------------------------------------------


async def test_subscribe_publishes_on_the_products_partition_and_stores_the_rows(api: Api) -> None:
    response = await api.client.post(
        "/api/subscriptions",
        json={
            "email": "Ann@Example.com",
            "url": "HTTPS://Shop.Example/products/kettle#reviews",
            "target_price": "79.90",
            "notify_back_in_stock": True,
        },
    )
    assert response.status == 201
    body = await response.json()
    product_id = product_id_for(SHOP)
    assert body["product_id"] == product_id
    assert body["url"] == SHOP  # canonical
    assert body["email"] == "Ann@example.com"  # the domain is normalised, not the local part
    assert body["target_price"] == "79.90"
    assert body["verified"] is False and "inbox" in body["next_step"]
    [(partition, key, record)] = await published(api.settings, 1)
    assert partition == partition_for(product_id, api.settings.topic_partitions)
    assert key.decode() == record.subscription_id == body["subscription_id"]
    assert record.target_price == Decimal("79.90") and record.notify_back_in_stock
    assert record.verified is False
    # Written synchronously, with the sink's upsert: no need to wait for the sink.
    [row] = api.rows("SELECT s.*, u.email FROM subscriptions s JOIN users u ON u.id = s.user_id")
    assert (row["subscription_id"], row["email"], row["active"]) == (
        body["subscription_id"],
        "ann@example.com",
        True,
    )
    # And the verification email, with a signed link to the verify page.
    [mail] = await account_emails(api.settings, 1)
    assert (mail.kind, mail.email) == (AccountEmailKind.VERIFY, "ann@example.com")
    assert mail.link.startswith("http://pricewatch.test/verify?token=")


async def test_resubscribing_is_idempotent_and_sends_one_verification_email(api: Api) -> None:
    ids = set()
    for target in ("50", "45"):
        ids.add((await api.subscribe("bob@example.com", target_price=target))["subscription_id"])
    assert ids == {subscription_id_for("bob@example.com", product_id_for(SHOP))}
    records = await published(api.settings, 2)
    assert {key for _, key, _ in records} == {next(iter(ids)).encode()}  # compaction keeps one
    assert records[-1][2].target_price == Decimal("45")
    mails = await account_emails(api.settings, 2)
    assert len({m.idempotency_key for m in mails}) == 1  # the sink sends it once
    assert api.rows("SELECT count(*) AS n FROM subscriptions")[0]["n"] == 1


async def only_the_sentinel_was_published(api: Api) -> bool:
    """Publish a valid subscription after the rejected requests; it must be the only one."""
    await api.subscribe("sentinel@example.com", SHOP, target_price="1")
    records = await published(api.settings, 1)
    stored = api.rows("SELECT count(*) AS n FROM subscriptions")[0]["n"]
    return [r.email for _, _, r in records] == ["sentinel@example.com"] and stored == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-email", "url": SHOP, "target_price": "10"}, "email"),
        ({"email": "a@example.com", "url": "ftp://shop.example/x", "target_price": "10"}, "url"),
        ({"email": "a@example.com", "url": "http://127.0.0.1:9/x", "target_price": "10"}, "url"),
        ({"email": "a@example.com", "url": "http://localhost:9/x", "target_price": "10"}, "url"),
        ({"email": "a@example.com", "url": "http://169.254.169.254/", "target_price": "1"}, "url"),
        ({"email": "a@example.com", "url": "http://10.0.0.8/x", "target_price": "1"}, "url"),
        ({"email": "a@example.com", "url": "http://192.168.1.1/x", "target_price": "1"}, "url"),
        ({"email": "a@example.com", "url": "http://[::1]/x", "target_price": "10"}, "url"),
        ({"email": "a@example.com", "url": "http://2130706433/", "target_price": "1"}, "url"),
        ({"email": "a@example.com", "url": "http://u:p@shop.example/", "target_price": "1"}, "url"),
        ({"email": "a@example.com", "url": SHOP, "target_price": "-1"}, "target_price"),
        ({"email": "a@example.com", "url": SHOP, "target_price": "0"}, "target_price"),
        ({"email": "a@example.com", "url": SHOP, "target_price": "abc"}, "target_price"),
        ({"email": "a@x.org", "url": SHOP, "drop_percent": "5", "currency": "XYZ"}, "currency"),
        ({"email": "a@x.org", "url": SHOP, "drop_percent": "5", "currency": "€"}, "currency"),
        ({"email": "a@x.org", "url": SHOP, "drop_percent": "5", "currency": "EURO"}, "currency"),
        ({"email": "a@example.com", "url": SHOP, "drop_percent": "100"}, "drop_percent"),
        ({"email": "a@example.com", "url": SHOP, "drop_percent": "0"}, "drop_percent"),
        ({"email": "a@example.com", "url": SHOP}, "body"),
        # A minimum change only applies to price alerts (the Subscription record's rule).
        (
            {"email": "a@x.org", "url": SHOP, "notify_sold_out": True, "min_change_amount": "1"},
            "body",
        ),
        (
            {"email": "a@x.org", "url": SHOP, "notify_any_drop": True, "min_change_amount": "0"},
            "min_change_amount",
        ),
        (
            {"email": "a@x.org", "url": SHOP, "notify_any_drop": True, "min_change_percent": "100"},
            "min_change_percent",
        ),
        (
            {"email": "a@x.org", "url": SHOP, "notify_price_increase": "maybe"},
            "notify_price_increase",
        ),
        ({"email": "a@example.com", "url": SHOP, "target_price": "1", "admin": True}, "admin"),
        ({"url": SHOP, "target_price": "1"}, "email"),
        ({"email": "a@example.com", "target_price": "1"}, "url"),
        ({"email": "a@example.com", "url": "x" * 3000, "target_price": "1"}, "url"),
        # Host names no DNS name can be (once a 500 from the IDNA codec), spaces, NUL.
        ({"email": "a@example.com", "url": "http://a..b/x", "target_price": "1"}, "url"),
        ({"email": "a@example.com", "url": "http://.com/", "target_price": "1"}, "url"),
        ({"email": "a@x.org", "url": f"http://{'a' * 64}.com/", "target_price": "1"}, "url"),
        ({"email": "a@example.com", "url": "http://a b.com/", "target_price": "1"}, "url"),
        ({"email": "a@example.com", "url": SHOP + "\x00", "target_price": "1"}, "url"),
        ({"email": "a@example.com\x00", "url": SHOP, "target_price": "1"}, "email"),
        # Under 2048 characters as sent, over once its non-ASCII is percent-encoded.
        ({"email": "a@example.com", "url": SHOP + "é" * 400, "target_price": "1"}, "url"),
    ],
)
async def test_invalid_subscriptions_get_422_and_store_nothing(
    api: Api, body: dict[str, Any], field: str
) -> None:
    response = await api.client.post("/api/subscriptions", json=body)
    assert response.status == 422
    problem = await response.json()
    assert field in {e["field"] for e in problem["errors"]}, problem
    assert all(e["message"] for e in problem["errors"])
    assert await only_the_sentinel_was_published(api)


async def test_a_url_is_stored_in_one_canonical_ascii_form(api: Api) -> None:
    first = await api.subscribe("a@example.com", "HTTPS://Bücher.Example./café?q=ü#top")
    canonical = "https://xn--bcher-kva.example/caf%C3%A9?q=%C3%BC"
    assert first["url"] == canonical
    # The same page written the way a browser sends it is the same subscription.
    again = await api.subscribe("a@example.com", canonical)
    assert again["subscription_id"] == first["subscription_id"]
    assert api.rows("SELECT url FROM subscriptions") == [{"url": canonical}]


async def test_allow_listed_loopback_shop_is_accepted(api: Api) -> None:
    await api.subscribe("a@example.com", "http://127.0.0.1:8081/p", target_price="5")


async def test_a_known_currency_is_accepted_and_travels_with_the_subscription(api: Api) -> None:
    response = await api.client.post(
        "/api/subscriptions",
        json={"email": "c@example.com", "url": SHOP, "target_price": "5", "currency": "chf"},
    )
    assert response.status == 201, await response.text()
    [(_, _, record)] = await published(api.settings, 1)
    assert (record.email, record.currency) == ("c@example.com", "CHF")
    assert api.rows("SELECT currency FROM subscriptions") == [{"currency": "CHF"}]
    # Verifying, editing and unsubscribing rebuild the record from its row: the currency
    # must survive them, or a price in another currency could alert.
    [mail] = await account_emails(api.settings, 1)
    assert (await api.client.post("/api/verify", params={"token": token_of(mail.link)})).ok
    token = api.token(TokenPurpose.MANAGE, "c@example.com")
    edited = await api.client.patch(
        f"/api/manage/subscriptions/{record.subscription_id}",
        params={"token": token},
        json={"notify_sold_out": True},
    )
    assert (await edited.json())["currency"] == "CHF"
    view = await (await api.client.get("/api/manage", params={"token": token})).json()
    assert view["subscriptions"][0]["currency"] == "CHF"
    page = await (await api.client.get("/manage", params={"token": token})).text()
    assert "<dt>Target in</dt><dd>CHF" in page
    records = [r for _, _, r in await published(api.settings, 3)]
    assert [(r.verified, r.notify_sold_out, r.currency) for r in records] == [
        (False, False, "CHF"),
        (True, False, "CHF"),
        (True, True, "CHF"),
    ]


async def test_price_increase_and_minimum_change_travel_with_the_subscription(api: Api) -> None:
    response = await api.client.post(
        "/api/subscriptions",
        json={
            "email": "d@example.com",
            "url": SHOP,
            "notify_price_increase": True,
            "min_change_amount": "2.50",
            "min_change_percent": "1.5",
        },
    )
    assert response.status == 201, await response.text()
    body = await response.json()
    assert (body["notify_price_increase"], body["min_change_amount"]) == (True, "2.50")
    assert body["min_change_percent"] == "1.5"
    [(_, _, record)] = await published(api.settings, 1)
    assert record.notify_price_increase and record.min_change_amount == Decimal("2.50")
    assert api.rows(
        "SELECT notify_price_increase, min_change_amount, min_change_percent FROM subscriptions"
    ) == [
        {
            "notify_price_increase": True,
            "min_change_amount": Decimal("2.500000"),
            "min_change_percent": Decimal("1.50"),
        }
    ]
    # Verifying and editing rebuild the record from its row: the options survive them.
    [mail] = await account_emails(api.settings, 1)
    assert (await api.client.post("/api/verify", params={"token": token_of(mail.link)})).ok
    token = api.token(TokenPurpose.MANAGE, "d@example.com")
    edited = await api.client.patch(
        f"/api/manage/subscriptions/{record.subscription_id}",
        params={"token": token},
        json={"notify_any_drop": True, "min_change_percent": None},
    )
    assert edited.status == 200, await edited.text()
    view = await (await api.client.get("/api/manage", params={"token": token})).json()
    [shown] = view["subscriptions"]
    assert (shown["notify_price_increase"], shown["notify_any_drop"]) == (True, True)
    assert (shown["min_change_amount"], shown["min_change_percent"]) == ("2.500000", None)
    records = [r for _, _, r in await published(api.settings, 3)]
    assert [
        (r.verified, r.notify_price_increase, r.min_change_amount, r.min_change_percent)
        for r in records
    ] == [
        (False, True, Decimal("2.50"), Decimal("1.5")),
        (True, True, Decimal("2.5"), Decimal("1.5")),
        (True, True, Decimal("2.5"), None),
    ]
    # The page shows them in its form, and says them in words.
    page = await (await api.client.get("/manage", params={"token": token})).text()
    assert 'name="min_change_amount" type="text"' in page and 'value="2.5"' in page
    assert re.search(
        r'id="[0-9a-f]+-notify_price_increase" name="notify_price_increase" '
        r'value="on" checked',
        page,
    )
    # Dropping the last price alert while a minimum change is set is refused, by field.
    refused = await api.client.patch(
        f"/api/manage/subscriptions/{record.subscription_id}",
        params={"token": token},
        json={"notify_any_drop": False, "notify_price_increase": False, "notify_sold_out": True},
    )
    assert refused.status == 422
    [error] = (await refused.json())["errors"]
    assert error["field"] == "body" and "only apply to price alerts" in error["message"]


async def test_malformed_and_oversize_bodies(api: Api) -> None:
    response = await api.client.post(
        "/api/subscriptions", data=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status == 400
    assert (await response.json())["title"] == "Body must be a JSON object"
    response = await api.client.post("/api/subscriptions", json=["a", "list"])
    assert response.status == 422
    huge = {"email": "a@example.com", "url": SHOP, "target_price": "1", "x": "y" * MAX_BODY_BYTES}
    response = await api.client.post("/api/subscriptions", json=huge)
    assert response.status == 413
    assert (await response.json())["status"] == 413
    assert await only_the_sentinel_was_published(api)


async def test_unknown_routes_and_methods_are_problem_documents(api: Api) -> None:
    response = await api.client.get("/api/nothing-here")
    assert response.status == 404 and (await response.json())["status"] == 404
    response = await api.client.delete("/api/subscriptions")
    assert response.status == 405 and "POST" in response.headers["Allow"]


# --- verification --------------------------------------------------------------------------


async def test_verifying_republishes_every_subscription_verified(api: Api) -> None:
    await api.subscribe("ann@example.com", SHOP)
    await api.subscribe("ann@example.com", HAT, notify_sold_out=True)
    [mail, *_] = await account_emails(api.settings, 2)
    response = await api.client.post("/api/verify", params={"token": token_of(mail.link)})
    assert response.status == 200
    assert await response.json() == {
        "email": "ann@example.com",
        "verified": True,
        "subscriptions": 2,
    }
    records = await published(api.settings, 4)
    newest = {r.subscription_id: r for _, _, r in records}  # log order: last wins
    assert len(newest) == 2 and all(r.verified and r.active for r in newest.values())
    assert newest[subscription_id_for("ann@example.com", product_id_for(HAT))].notify_sold_out
    [user] = api.rows("SELECT verified_at FROM users")
    assert user["verified_at"] is not None
    # Verifying again is harmless and keeps the first time.
    again = await api.client.post("/api/verify", params={"token": token_of(mail.link)})
    assert again.status == 200
    assert api.rows("SELECT verified_at FROM users")[0]["verified_at"] == user["verified_at"]


def newest_by_id(records: list[tuple[int, bytes, Subscription]]) -> dict[str, Subscription]:
    return {r.subscription_id: r for _, _, r in records}  # one id, one partition: log order


async def confirmations(api: Api, count: int) -> list[AccountEmail]:
    mails = await account_emails(api.settings, count)
    return [m for m in mails if m.kind is AccountEmailKind.CONFIRM_SUBSCRIPTION]


async def test_every_address_gets_the_same_answer(api: Api) -> None:
    await verified_address(api, "ann@example.com")
    await api.subscribe("bob@example.com", HAT)  # known, never confirmed

    def comparable(body: dict[str, Any]) -> dict[str, Any]:
        rest = {k: v for k, v in body.items() if k not in ("subscription_id", "created_at")}
        return {**rest, "email": None, "next_step": body["next_step"].replace(body["email"], "")}

    answers = []
    for email in ("ann@example.com", "bob@example.com", "new@example.com"):
        response = await api.client.post(
            "/api/subscriptions", json={"email": email, "url": HAT, "target_price": "50"}
        )
        answers.append((response.status, comparable(await response.json())))
    assert answers[0] == answers[1] == answers[2]
    assert answers[0][0] == 201 and answers[0][1]["verified"] is False
    assert "inbox" in answers[0][1]["next_step"]
    pages = []
    for email in ("ann@example.com", "bob@example.com", "new@example.com"):
        response = await api.client.post(
            "/subscribe", data={"email": email, "url": SHOP, "notify_sold_out": "on"}
        )
        pages.append((response.status, (await response.text()).replace(email, "")))
    assert pages[0] == pages[1] == pages[2] and pages[0][0] == 200


async def test_a_verified_address_confirms_each_new_subscription(api: Api) -> None:
    await verified_address(api, "ann@example.com")
    body = await api.subscribe("ann@example.com", HAT, target_price="20", currency="CHF")
    hat_id = subscription_id_for("ann@example.com", product_id_for(HAT))
    assert body["subscription_id"] == hat_id and body["verified"] is False
    # Nothing is stored or published for it until the owner follows the link.
    assert hat_id not in newest_by_id(await published(api.settings, 2))
    assert api.rows(
        "SELECT count(*) AS n FROM subscriptions WHERE subscription_id = :id", id=hat_id
    ) == [{"n": 0}]
    [mail] = await confirmations(api, 2)
    assert mail.email == "ann@example.com"
    assert mail.link.startswith("http://pricewatch.test/confirm?token=")
    assert mail.subscription is not None
    assert (mail.subscription.url, mail.subscription.target_price, mail.subscription.currency) == (
        HAT,
        Decimal("20"),
        "CHF",
    )
    # The link's page only asks; the button (or the API's POST) starts it.
    ask = await api.client.get("/confirm", params={"token": token_of(mail.link)})
    page = await ask.text()
    assert ask.status == 200 and HAT in page and "CHF 20.00 or less" in page
    assert '<form method="post" action="/confirm?token=' in page
    assert api.rows(
        "SELECT count(*) AS n FROM subscriptions WHERE subscription_id = :id", id=hat_id
    ) == [{"n": 0}]
    response = await api.client.post(
        "/api/subscriptions/confirm", params={"token": token_of(mail.link)}
    )
    assert response.status == 200, await response.text()
    started = await response.json()
    assert (started["subscription_id"], started["verified"], started["active"]) == (
        hat_id,
        True,
        True,
    )
    records = await published(api.settings, 3)
    hat = newest_by_id(records)[hat_id]
    assert hat.verified and hat.active and hat.currency == "CHF"
    assert hat.target_price == Decimal("20")
    # Following it again changes nothing and publishes nothing.
    again = await api.client.post("/confirm", params={"token": token_of(mail.link)})
    assert again.status == 200 and "Alert started" in await again.text()
    assert len(await published(api.settings, 3)) == 3
    [row] = api.rows(
        "SELECT target_price, currency FROM subscriptions WHERE subscription_id = :id", id=hat_id
    )
    assert row == {"target_price": Decimal("20"), "currency": "CHF"}


async def test_a_request_cannot_change_a_verified_subscription_until_confirmed(api: Api) -> None:
    await verified_address(api, "ann@example.com")  # SHOP, target 50, now live
    shop_id = subscription_id_for("ann@example.com", product_id_for(SHOP))
    before = newest_by_id(await published(api.settings, 2))[shop_id]
    assert before.verified and before.target_price == Decimal("50")
    # Somebody who knows the address asks for a useless target: the live one stays.
    await api.subscribe("ann@example.com", SHOP, target_price="0.01")
    assert newest_by_id(await published(api.settings, 2))[shop_id] == before
    assert api.rows("SELECT target_price FROM subscriptions") == [{"target_price": Decimal("50")}]
    [mail] = await confirmations(api, 2)
    # Only the owner's click applies it.
    response = await api.client.post(
        "/api/subscriptions/confirm", params={"token": token_of(mail.link)}
    )
    assert response.status == 200
    after = newest_by_id(await published(api.settings, 3))[shop_id]
    assert after.verified and after.target_price == Decimal("0.01")


async def test_an_older_confirmation_cannot_undo_a_newer_change(api: Api) -> None:
    await verified_address(api, "ann@example.com")
    await api.subscribe("ann@example.com", SHOP, target_price="40")
    await api.subscribe("ann@example.com", SHOP, target_price="30")
    older, newer = await confirmations(api, 3)
    assert older.idempotency_key != newer.idempotency_key  # two requests, two emails
    assert (
        await api.client.post("/api/subscriptions/confirm", params={"token": token_of(newer.link)})
    ).status == 200
    response = await api.client.post(
        "/api/subscriptions/confirm", params={"token": token_of(older.link)}
    )
    assert response.status == 409 and (await response.json())["reason"] == "superseded"
    assert api.rows("SELECT target_price FROM subscriptions") == [{"target_price": Decimal("30")}]
    metrics = metrics_text()
    assert 'pricewatch_api_subscription_confirmations_total{outcome="superseded"}' in metrics


async def test_the_same_request_twice_is_one_confirmation_email(api: Api) -> None:
    await verified_address(api, "ann@example.com")
    for _ in range(2):
        await api.subscribe("ann@example.com", HAT, notify_back_in_stock=True)
    mails = await confirmations(api, 3)
    assert len(mails) == 2 and len({m.idempotency_key for m in mails}) == 1  # sent once


async def test_confirmation_emails_per_address_and_day_are_capped(
    broker: Broker, unique_prefix: str, tmp_path: Path, postgres_url: str
) -> None:
    upgrade(postgres_url)
    settings = api_settings(
        broker, unique_prefix, tmp_path, postgres_url, confirmation_emails_per_email_per_day=2
    )
    async with running_api(settings, postgres_url) as api:
        await verified_address(api, "ann@example.com")
        for target in ("1", "2", "3"):
            body = await api.subscribe("ann@example.com", HAT, target_price=target)
            assert body["verified"] is False  # the same answer, sent or not
        mails = await confirmations(api, 3)
        assert [m.subscription.target_price for m in mails if m.subscription] == [
            Decimal("1"),
            Decimal("2"),
        ]
        metrics = metrics_text()
        assert "pricewatch_api_confirmations_suppressed_total" in metrics


async def test_confirm_refuses_bad_tokens(api: Api) -> None:
    await verified_address(api, "ann@example.com")
    await api.subscribe("ann@example.com", HAT)
    [mail] = await confirmations(api, 2)
    genuine = token_of(mail.link)
    subject = (
        '{"r":{"email":"ann@example.com","url":"'
        + HAT
        + '","target_price":"1"},"t":"2026-01-01T00:00:00+00:00"}'
    )
    cases = {
        "forged": genuine[:-2] + ("AA" if not genuine.endswith("AA") else "BB"),
        "verify purpose": api.token(TokenPurpose.VERIFY, "ann@example.com"),
        "verify purpose, a request as subject": api.token(TokenPurpose.VERIFY, subject),
        "manage purpose": api.token(TokenPurpose.MANAGE, subject),
        "other key": issue_token(
            b"another-secret-0123456789",
            TokenPurpose.CONFIRM,
            subject,
            now=datetime.now(UTC),
            ttl=timedelta(hours=1),
        ),
        "not a request": api.token(TokenPurpose.CONFIRM, "ann@example.com"),
    }
    for name, token in cases.items():
        response = await api.client.post("/api/subscriptions/confirm", params={"token": token})
        assert response.status == 403, name
        assert (await response.json())["reason"] == "invalid", name
    expired = api.token(TokenPurpose.CONFIRM, subject, now=datetime.now(UTC) - timedelta(days=8))
    response = await api.client.post("/api/subscriptions/confirm", params={"token": expired})
    assert response.status == 403 and (await response.json())["reason"] == "expired"
    # A confirm token is no verify token either.
    response = await api.client.post("/api/verify", params={"token": genuine})
    assert response.status == 403
    response = await api.client.post("/api/subscriptions/confirm")
    assert response.status == 422
    response = await api.client.get("/api/subscriptions/confirm", params={"token": genuine})
    assert response.status == 405  # it acts, so never on a GET
    hat_id = subscription_id_for("ann@example.com", product_id_for(HAT))
    assert api.rows(
        "SELECT count(*) AS n FROM subscriptions WHERE subscription_id = :id", id=hat_id
    ) == [{"n": 0}]


async def test_a_confirmation_for_a_url_refused_since_is_refused(api: Api) -> None:
    await verified_address(api, "ann@example.com")
    await api.subscribe("ann@example.com", HAT)
    [mail] = await confirmations(api, 2)
    response = await api.client.post(
        "/api/admin/websites",
        json={"name": "Shop", "base_url": "https://shop.example/", "paused": True},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert response.status == 201
    response = await api.client.post(
        "/api/subscriptions/confirm", params={"token": token_of(mail.link)}
    )
    assert response.status == 422 and "paused" in str(await response.json())


async def test_verify_refuses_bad_tokens(api: Api) -> None:
    await api.subscribe("ann@example.com")
    genuine = token_of((await account_emails(api.settings, 1))[0].link)
    cases = {
        "forged": genuine[:-2] + ("AA" if not genuine.endswith("AA") else "BB"),
        "manage purpose": api.token(TokenPurpose.MANAGE, "ann@example.com"),
        "unsubscribe purpose": api.token(TokenPurpose.UNSUBSCRIBE, "user:ann@example.com"),
        "other key": issue_token(
            b"another-secret-0123456789",
            TokenPurpose.VERIFY,
            "ann@example.com",
            now=datetime.now(UTC),
            ttl=timedelta(hours=1),
        ),
        "garbage": "not-a-token",
    }
    for name, token in cases.items():
        response = await api.client.post("/api/verify", params={"token": token})
        assert response.status == 403, name
        assert (await response.json())["reason"] == "invalid", name
    expired = api.token(
        TokenPurpose.VERIFY, "ann@example.com", now=datetime.now(UTC) - timedelta(days=8)
    )
    response = await api.client.post("/api/verify", params={"token": expired})
    assert response.status == 403 and (await response.json())["reason"] == "expired"
    response = await api.client.post("/api/verify")
    assert response.status == 422
    assert api.rows("SELECT verified_at FROM users")[0]["verified_at"] is None
    metrics = metrics_text()
    assert 'pricewatch_api_tokens_refused_total{purpose="verify",reason="expired"}' in metrics


async def test_the_test_helper_verifies_like_the_link(api: Api) -> None:
    # tests.helpers.verify_address (for tests that subscribe through the API of a Stack)
    # signs a verify token with the settings' key and calls the API: the same as the link.
    from tests.helpers import verify_address

    await api.subscribe("ann@example.com")
    served_at = str(api.client.make_url("/")).rstrip("/")  # the test server's real port
    settings = api.settings.model_copy(update={"public_base_url": served_at})
    await asyncio.to_thread(verify_address, settings, "Ann@Example.com")
    assert api.rows("SELECT verified_at IS NOT NULL AS v FROM users") == [{"v": True}]


async def test_verifying_an_unknown_address_is_404(api: Api) -> None:
    token = api.token(TokenPurpose.VERIFY, "nobody@example.com")
    response = await api.client.post("/api/verify", params={"token": token})
    assert response.status == 404


# --- unsubscribe ---------------------------------------------------------------------------


async def one_click(api: Api, token: str) -> Any:
    """What mail software does when a person presses Unsubscribe (RFC 8058)."""
    return await api.client.post(
        "/api/unsubscribe",
        params={"token": token},
        data="List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )


async def test_unsubscribe_one_by_one_click_post(api: Api) -> None:
    shop = await api.subscribe("ann@example.com", SHOP)
    hat = await api.subscribe("ann@example.com", HAT)
    token = api.token(TokenPurpose.UNSUBSCRIBE, f"subscription:{shop['subscription_id']}")
    response = await one_click(api, token)
    assert response.status == 200 and await response.json() == {"unsubscribed": 1}
    again = await one_click(api, token)
    assert again.status == 200 and await again.json() == {"unsubscribed": 0}
    records = await published(api.settings, 3)
    newest = {r.subscription_id: r for _, _, r in records}
    assert newest[shop["subscription_id"]].active is False
    assert newest[hat["subscription_id"]].active is True
    active = {r["subscription_id"]: r["active"] for r in api.rows("SELECT * FROM subscriptions")}
    assert active == {shop["subscription_id"]: False, hat["subscription_id"]: True}


async def test_unsubscribe_all_of_an_address_and_nobody_elses(api: Api) -> None:
    await api.subscribe("ann@example.com", SHOP)
    await api.subscribe("ann@example.com", HAT)
    await api.subscribe("bob@example.com", SHOP)
    token = api.token(TokenPurpose.UNSUBSCRIBE, "user:ann@example.com")
    response = await one_click(api, token)
    assert await response.json() == {"unsubscribed": 2}
    rows = api.rows(
        "SELECT u.email, s.active FROM subscriptions s JOIN users u ON u.id = s.user_id"
    )
    assert sorted((r["email"], r["active"]) for r in rows) == [
        ("ann@example.com", False),
        ("ann@example.com", False),
        ("bob@example.com", True),
    ]


async def test_unsubscribe_refuses_tokens_of_other_purposes(api: Api) -> None:
    body = await api.subscribe("ann@example.com")
    for purpose in (TokenPurpose.VERIFY, TokenPurpose.MANAGE):
        token = api.token(purpose, f"subscription:{body['subscription_id']}")
        response = await one_click(api, token)
        assert response.status == 403
    # A bare subscription id (the old, guessable link) is no longer enough.
    response = await api.client.post(
        "/api/unsubscribe",
        params={"subscription": body["subscription_id"]},
        data="List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status == 422
    assert api.rows("SELECT active FROM subscriptions")[0]["active"] is True


async def test_expired_manage_and_unsubscribe_links_do_nothing(api: Api) -> None:
    body = await api.subscribe("ann@example.com")
    settings = api.settings
    long_ago = datetime.now(UTC) - timedelta(seconds=settings.unsubscribe_token_ttl_seconds + 60)
    for subject in (f"subscription:{body['subscription_id']}", "user:ann@example.com"):
        expired = api.token(TokenPurpose.UNSUBSCRIBE, subject, now=long_ago)
        response = await one_click(api, expired)
        assert response.status == 403 and (await response.json())["reason"] == "expired"
        opened = await api.client.get("/api/unsubscribe", params={"token": expired})
        assert opened.status == 403 and "new link" in await opened.text()
        page = await api.client.post("/unsubscribe", params={"token": expired})
        assert page.status == 403 and "new link" in await page.text()
    assert api.rows("SELECT active FROM subscriptions")[0]["active"] is True
    long_ago = datetime.now(UTC) - timedelta(seconds=settings.manage_token_ttl_seconds + 60)
    expired = api.token(TokenPurpose.MANAGE, "ann@example.com", now=long_ago)
    product_id = product_id_for(SHOP)
    for method, path in (
        ("GET", "/api/manage"),
        ("PATCH", f"/api/manage/subscriptions/{body['subscription_id']}"),
        ("GET", f"/api/manage/products/{product_id}/prices"),
    ):
        response = await api.client.request(
            method, path, params={"token": expired}, json={"active": False}
        )
        assert response.status == 403, path
        assert (await response.json())["reason"] == "expired", path
    page = await api.client.get("/manage", params={"token": expired})
    assert page.status == 403 and "new link" in await page.text()
    assert api.rows("SELECT active FROM subscriptions")[0]["active"] is True


# --- a user's own view -------------------------------------------------------------------


def add_prices(api: Api, url: str, points: list[tuple[str, str]]) -> None:
    product_id = product_id_for(url)
    with api.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO products (product_id, url, title, currency, current_price) "
                "VALUES (:id, :url, 'Kettle', 'EUR', :price)"
            ),
            {"id": product_id, "url": url, "price": Decimal(points[-1][1])},
        )
        for at, price in points:
            connection.execute(
                text(
                    "INSERT INTO prices (product_id, price, currency, availability, observed_at)"
                    " VALUES (:id, :price, 'EUR', 'in_stock', :at)"
                ),
                {"id": product_id, "price": Decimal(price), "at": datetime.fromisoformat(at)},
            )


async def test_manage_view_edit_and_price_history_are_one_address_only(api: Api) -> None:
    ann = await api.subscribe("ann@example.com", SHOP)
    bob = await api.subscribe("bob@example.com", HAT)
    add_prices(
        api, SHOP, [("2026-11-01T00:00:00+00:00", "99.00"), ("2026-11-02T00:00:00+00:00", "89.00")]
    )
    add_prices(api, HAT, [("2026-11-01T00:00:00+00:00", "20.00")])
    ann_token = api.token(TokenPurpose.MANAGE, "ann@example.com")
    bob_token = api.token(TokenPurpose.MANAGE, "bob@example.com")

    view = await (await api.client.get("/api/manage", params={"token": ann_token})).json()
    assert view["email"] == "ann@example.com" and view["verified"] is False
    assert [s["subscription_id"] for s in view["subscriptions"]] == [ann["subscription_id"]]
    assert view["subscriptions"][0]["product"]["current_price"] == "89.000000"
    assert "bob" not in str(view)

    history = await api.client.get(
        f"/api/manage/products/{product_id_for(SHOP)}/prices", params={"token": ann_token}
    )
    assert [p["price"] for p in (await history.json())["prices"]] == ["99.000000", "89.000000"]
    # Bob's link shows nothing of Ann's: neither her product's history nor her subscription.
    for token, path in (
        (bob_token, f"/api/manage/products/{product_id_for(SHOP)}/prices"),
        (ann_token, f"/api/manage/products/{product_id_for(HAT)}/prices"),
    ):
        response = await api.client.get(path, params={"token": token})
        assert response.status == 404
    response = await api.client.patch(
        f"/api/manage/subscriptions/{ann['subscription_id']}",
        params={"token": bob_token},
        json={"target_price": "1"},
    )
    assert response.status == 404
    response = await api.client.patch(
        f"/api/manage/subscriptions/{bob['subscription_id']}",
        params={"token": api.token(TokenPurpose.VERIFY, "bob@example.com")},
        json={"target_price": "1"},
    )
    assert response.status == 403  # a verify token is no manage token

    # Ann edits her own: a new version on the topic and in PostgreSQL.
    response = await api.client.patch(
        f"/api/manage/subscriptions/{ann['subscription_id']}",
        params={"token": ann_token},
        json={"target_price": "70", "notify_removed": True},
    )
    assert response.status == 200
    edited = await response.json()
    assert (edited["target_price"], edited["notify_removed"]) == ("70", True)
    records = [r for _, _, r in await published(api.settings, 3)]
    newest = [r for r in records if r.subscription_id == ann["subscription_id"]][-1]
    assert newest.target_price == Decimal("70") and newest.notify_removed
    assert api.rows(
        "SELECT target_price FROM subscriptions WHERE subscription_id = :id",
        id=ann["subscription_id"],
    ) == [{"target_price": Decimal("70")}]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"target_price": "-5"}, "target_price"),
        ({"drop_percent": "150"}, "drop_percent"),
        ({"notify_any_drop": None}, "notify_any_drop"),
        ({"active": None}, "active"),
        ({"target_price": None}, "body"),  # then it wants nothing while active
        ({"email": "x@example.com"}, "email"),  # an address is not editable
    ],
)
async def test_invalid_edits_get_422(api: Api, change: dict[str, Any], field: str) -> None:
    ann = await api.subscribe("ann@example.com", SHOP)
    response = await api.client.patch(
        f"/api/manage/subscriptions/{ann['subscription_id']}",
        params={"token": api.token(TokenPurpose.MANAGE, "ann@example.com")},
        json=change,
    )
    assert response.status == 422
    assert field in {e["field"] for e in (await response.json())["errors"]}


async def test_stopping_by_edit_needs_nothing_else(api: Api) -> None:
    ann = await api.subscribe("ann@example.com", SHOP)
    response = await api.client.patch(
        f"/api/manage/subscriptions/{ann['subscription_id']}",
        params={"token": api.token(TokenPurpose.MANAGE, "ann@example.com")},
        json={"active": False, "target_price": None},
    )
    assert response.status == 200 and (await response.json())["active"] is False


async def test_manage_link_answers_the_same_for_any_address(api: Api) -> None:
    await api.subscribe("ann@example.com")
    answers = []
    for email in ("ann@example.com", "nobody@example.com"):
        response = await api.client.post("/api/manage-link", json={"email": email})
        answers.append((response.status, await response.json()))
    assert answers[0] == answers[1] and answers[0][0] == 202
    mails = await account_emails(api.settings, 2)
    manage = [m for m in mails if m.kind is AccountEmailKind.MANAGE_LINK]
    assert [m.email for m in manage] == ["ann@example.com"]
    assert manage[0].link.startswith("http://pricewatch.test/manage?token=")
    view = await api.client.get("/api/manage", params={"token": token_of(manage[0].link)})
    assert len((await view.json())["subscriptions"]) == 1
    response = await api.client.post("/api/manage-link", json={"email": "nope"})
    assert response.status == 422


# --- websites, admin ----------------------------------------------------------------------


def admin(token: str = ADMIN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_admin_needs_the_token(api: Api) -> None:
    for method, path in (
        ("GET", "/api/admin/websites"),
        ("POST", "/api/admin/websites"),
        ("PATCH", "/api/admin/websites/1"),
        ("GET", "/api/admin/products"),
        ("GET", "/api/admin/users"),
    ):
        response = await api.client.request(method, path, json={})
        assert response.status == 401, path
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        response = await api.client.request(method, path, json={}, headers=admin("wrong"))
        assert response.status == 403, path


@pytest.mark.parametrize("configured", [None, SecretStr(""), SecretStr("  ")])
async def test_admin_api_is_off_without_a_token(
    broker: Broker,
    unique_prefix: str,
    tmp_path: Path,
    postgres_url: str,
    configured: SecretStr | None,
) -> None:
    # A blank token is no token: an empty guess ("Bearer " + a non-breaking space, which
    # strips to "") must not match it.
    upgrade(postgres_url)
    settings = api_settings(broker, unique_prefix, tmp_path, postgres_url).model_copy(
        update={"admin_token": configured}
    )
    async with running_api(settings, postgres_url) as api:
        for token in ("", "None", "null", "\u00a0", "  "):
            response = await api.client.get("/api/admin/users", headers=admin(token))
            assert response.status == 404


async def test_admin_websites_products_users(api: Api) -> None:
    site = {
        "name": "Shop",
        "base_url": "https://Shop.Example/",
        "adapter_config": {"price": {"css": ".price"}},
    }
    response = await api.client.post("/api/admin/websites", json=site, headers=admin())
    assert response.status == 201
    created = await response.json()
    assert (created["host"], created["paused"]) == ("shop.example", False)
    response = await api.client.post("/api/admin/websites", json=site, headers=admin())
    assert response.status == 409
    bad = {**site, "base_url": "http://169.254.169.254/"}
    response = await api.client.post("/api/admin/websites", json=bad, headers=admin())
    assert response.status == 422

    public = await (await api.client.get("/api/websites")).json()
    assert [w["host"] for w in public["websites"]] == ["shop.example"]
    assert "adapter_config" not in public["websites"][0] and public["generic_extraction"]

    await api.subscribe("ann@example.com", SHOP)
    response = await api.client.patch(
        f"/api/admin/websites/{created['id']}",
        json={"paused": True, "adapter_config": {"price": {"css": ".now"}}},
        headers=admin(),
    )
    assert response.status == 200
    assert (await response.json())["adapter_config"] == {"price": {"css": ".now"}}
    assert (await (await api.client.get("/api/websites")).json())["websites"] == []
    # A paused website takes no new subscriptions.
    response = await api.client.post(
        "/api/subscriptions", json={"email": "b@example.com", "url": SHOP, "target_price": "1"}
    )
    assert response.status == 422 and "paused" in str(await response.json())
    # On any port: a website is its host name (the scrapers pause it by host name too).
    for url in ("https://shop.example:8443/other", "http://SHOP.example./x"):
        response = await api.client.post(
            "/api/subscriptions",
            json={"email": "b@example.com", "url": url, "notify_removed": True},
        )
        assert response.status == 422 and "paused" in str(await response.json()), url
    response = await api.client.post(
        "/api/admin/websites",
        json={"name": "Same host", "base_url": "http://shop.example:8080/"},
        headers=admin(),
    )
    assert response.status == 409
    for path, status in (("/api/admin/websites/999", 404), ("/api/admin/websites/x", 404)):
        response = await api.client.patch(path, json={"paused": False}, headers=admin())
        assert response.status == status
    response = await api.client.patch(
        f"/api/admin/websites/{created['id']}", json={"paused": None}, headers=admin()
    )
    assert response.status == 422

    add_prices(api, SHOP, [("2026-11-01T00:00:00+00:00", "99.00")])
    products = await (await api.client.get("/api/admin/products", headers=admin())).json()
    assert [(p["url"], p["subscriptions"]) for p in products["products"]] == [(SHOP, 1)]
    users = await (await api.client.get("/api/admin/users", headers=admin())).json()
    assert [(u["email"], u["subscriptions"]) for u in users["users"]] == [("ann@example.com", 1)]
    response = await api.client.get("/api/admin/users", params={"limit": "0"}, headers=admin())
    assert response.status == 422


# --- limits, health -----------------------------------------------------------------------


async def test_rate_limits_bite_per_address_and_per_email(
    broker: Broker, unique_prefix: str, tmp_path: Path, postgres_url: str
) -> None:
    upgrade(postgres_url)
    settings = api_settings(
        broker,
        unique_prefix,
        tmp_path,
        postgres_url,
        rate_limit_per_address_per_minute=4,
        rate_limit_per_email_per_hour=2,
    )
    async with running_api(settings, postgres_url) as api:
        body = {"email": "ann@example.com", "url": SHOP, "target_price": "5"}
        statuses = [
            (await api.client.post("/api/subscriptions", json=body)).status for _ in range(3)
        ]
        assert statuses == [201, 201, 429]  # the email's bucket (2 per hour) is empty
        other = {**body, "email": "bob@example.com"}
        response = await api.client.post("/api/subscriptions", json=other)
        assert response.status == 201  # 4th call from this address
        response = await api.client.post(
            "/api/subscriptions", json={**body, "email": "c@example.com"}
        )
        assert response.status == 429  # the address's bucket (4 per minute) is empty
        assert int(response.headers["Retry-After"]) >= 1
        assert (await response.json())["reason"] == "address"
        metrics = metrics_text()
        assert re.search(r'pricewatch_api_rate_limited_total\{scope="email"\} [1-9]', metrics)
        assert re.search(r'pricewatch_api_rate_limited_total\{scope="address"\} [1-9]', metrics)


async def test_manage_link_requests_are_limited_per_client_and_send_one_email_an_hour(
    broker: Broker, unique_prefix: str, tmp_path: Path, postgres_url: str
) -> None:
    upgrade(postgres_url)
    settings = api_settings(
        broker, unique_prefix, tmp_path, postgres_url, rate_limit_per_address_per_minute=3
    )
    async with running_api(settings, postgres_url) as api:
        body = {"email": "Ann@example.com"}
        statuses = [(await api.client.post("/api/manage-link", json=body)).status for _ in range(4)]
        assert statuses == [202, 202, 202, 429]  # the client's bucket (3 a minute)
        # The form shares the client's bucket, and says so on a page.
        page = await api.client.post("/manage-link", data={"email": "bob@example.com"})
        assert page.status == 429 and "Retry-After" in page.headers
        assert "text/html" in page.headers["Content-Type"]


async def test_an_unexpected_error_is_a_counted_500_problem(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from api import queries as store

    def broken(*args: Any) -> Any:
        raise RuntimeError("a bug")

    # A programming error in a query (not an unreachable database, which is a 503).
    monkeypatch.setattr(store, "websites", broken)
    monkeypatch.setattr(store, "user_by_email", broken)
    response = await api.client.get("/api/websites")
    assert response.status == 500
    assert await response.json() == {"title": "Internal error", "status": 500}
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
    # A person's page gets an error page, not JSON, with the pages' security headers.
    token = api.token(TokenPurpose.MANAGE, "ann@example.com")
    page = await api.client.get("/manage", params={"token": token}, headers={"Accept": "text/html"})
    assert page.status == 500 and "Something went wrong" in await page.text()
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    metrics = metrics_text()
    assert 'pricewatch_api_requests_total{route="/api/websites",status="500"} 1.0' in metrics
    assert 'pricewatch_api_requests_total{route="/manage",status="500"} 1.0' in metrics
    assert (await api.client.get("/healthz")).status == 200  # and the app goes on


async def test_nul_characters_are_refused_before_the_database(api: Api) -> None:
    site = {"name": "Shop\x00", "base_url": "https://shop.example/"}
    response = await api.client.post("/api/admin/websites", json=site, headers=admin())
    assert response.status == 422
    assert [e["field"] for e in (await response.json())["errors"]] == ["name"]
    config = {"name": "Shop", "base_url": "https://shop.example/", "adapter_config": {"a\x00": 1}}
    response = await api.client.post("/api/admin/websites", json=config, headers=admin())
    assert response.status == 422
    nested = {**config, "adapter_config": {"price": {"css": [".p", "x\x00"]}}}
    response = await api.client.post("/api/admin/websites", json=nested, headers=admin())
    assert response.status == 422
    assert [e["field"] for e in (await response.json())["errors"]] == ["adapter_config.price.css.1"]
    token = api.token(TokenPurpose.MANAGE, "ann@example.com")
    for path in (
        "/api/manage/subscriptions/a%00b",
        "/api/manage/products/a%00b/prices",
        "/api/manage/subscriptions/" + "A" * 32,
    ):
        method = "PATCH" if "subscriptions" in path else "GET"
        response = await api.client.request(
            method, path, params={"token": token}, json={"active": False}
        )
        assert response.status == 404, path
    response = await api.client.post(
        "/manage/subscriptions/a%00b", params={"token": token}, data={"active": "on"}
    )
    assert response.status == 404
    assert api.rows("SELECT count(*) AS n FROM websites") == [{"n": 0}]


async def test_health_readiness_and_metrics(api: Api) -> None:
    assert (await api.client.get("/healthz")).status == 200
    ready = await api.client.get("/readyz")
    assert ready.status == 200
    assert (await ready.json())["checks"] == {"broker": "ok", "database": "ok"}
    await api.client.post("/api/subscriptions", json={"email": "x"})
    metrics = metrics_text()
    assert 'pricewatch_api_requests_total{route="/api/subscriptions",status="422"}' in metrics


async def test_not_ready_and_503_when_the_database_is_unreachable(
    broker: Broker, unique_prefix: str, tmp_path: Path
) -> None:
    from launcher.processes import free_port

    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/none?connect_timeout=1"
    settings = api_settings(broker, unique_prefix, tmp_path, dead)
    async with running_api(settings, dead) as api:
        ready = await api.client.get("/readyz")
        assert ready.status == 503
        checks = (await ready.json())["checks"]
        assert checks["broker"] == "ok" and checks["database"].startswith("unreachable")
        response = await api.client.post(
            "/api/subscriptions", json={"email": "a@example.com", "url": SHOP, "target_price": "1"}
        )
        assert response.status == 503


# --- pages for people ----------------------------------------------------------------------


async def test_pages_subscribe_check_inbox_verify_manage_unsubscribe(api: Api) -> None:
    home = await api.client.get("/")
    html = await home.text()
    assert home.status == 200 and home.content_type == "text/html"
    for field in ("email", "url", "target_price", "currency", "drop_percent", "notify_sold_out"):
        assert f'<label for="{field}">' in html or f'for="{field}"' in html, field
    assert "<script" not in html

    response = await api.client.post(
        "/subscribe",
        data={
            "email": "ann@example.com",
            "url": SHOP,
            "target_price": "50",
            "currency": "chf",
            "notify_sold_out": "on",
        },
    )
    assert response.status == 200 and "Check your inbox" in await response.text()
    [record] = [r for _, _, r in await published(api.settings, 1)]
    assert record.target_price == Decimal("50") and record.notify_sold_out
    assert record.currency == "CHF"
    assert not record.notify_any_drop

    [mail] = await account_emails(api.settings, 1)
    # Opening the link only asks (mail scanners open links): what starts, and a button.
    ask = await api.client.get(urlsplit(mail.link).path, params={"token": token_of(mail.link)})
    page = await ask.text()
    assert ask.status == 200 and '<form method="post" action="/verify?token=' in page
    assert SHOP in page and "ann@example.com" in page
    assert api.rows("SELECT verified_at FROM users") == [{"verified_at": None}]
    verified = await api.client.post(
        urlsplit(mail.link).path, params={"token": token_of(mail.link)}
    )
    page = await verified.text()
    assert verified.status == 200 and "Address confirmed" in page
    manage_link = re.search(
        r'href="(/manage\?token=[^"]+|http://pricewatch.test/manage\?token=[^"]+)"', page
    )
    assert manage_link, page

    add_prices(
        api, SHOP, [("2026-11-01T00:00:00+00:00", "99.00"), ("2026-11-02T00:00:00+00:00", "89.00")]
    )
    token = token_of(manage_link.group(1).replace("&amp;", "&"))
    manage = await api.client.get("/manage", params={"token": token})
    page = await manage.text()
    assert manage.status == 200
    assert "Kettle" in page and "€89.00" in page
    assert page.count("<svg") == 1 and "<polyline" in page and 'role="img"' in page
    assert manage.headers["Cache-Control"] == "no-store"
    assert "script-src" not in manage.headers["Content-Security-Policy"]  # none allowed
    assert manage.headers["Referrer-Policy"] == "no-referrer"  # the token stays here

    # Edit through the form: back to the manage page, saved.
    response = await api.client.post(
        f"/manage/subscriptions/{record.subscription_id}",
        params={"token": token},
        data={"target_price": "60", "active": "on"},
        allow_redirects=False,
    )
    assert response.status == 303 and response.headers["Location"].startswith("/manage?token=")
    stored = api.rows("SELECT target_price, notify_sold_out FROM subscriptions")
    assert stored == [{"target_price": Decimal("60"), "notify_sold_out": False}]

    # Unsubscribe: GET only asks (mail scanners open links), POST does it.
    unsubscribe = api.token(TokenPurpose.UNSUBSCRIBE, f"subscription:{record.subscription_id}")
    ask = await api.client.get("/unsubscribe", params={"token": unsubscribe})
    assert ask.status == 200 and '<form method="post"' in await ask.text()
    assert api.rows("SELECT active FROM subscriptions") == [{"active": True}]
    done = await api.client.post("/unsubscribe", params={"token": unsubscribe})
    assert done.status == 200 and "Unsubscribed" in await done.text()
    assert api.rows("SELECT active FROM subscriptions") == [{"active": False}]


async def test_pages_show_errors_without_storing_anything(api: Api) -> None:
    response = await api.client.post(
        "/subscribe", data={"email": "nope", "url": "ftp://shop.example/x", "target_price": "-1"}
    )
    page = await response.text()
    assert response.status == 422
    assert page.count('class="error"') == 3 and 'value="nope"' in page
    # Each message is tied to its field, for screen readers.
    for field in ("email", "url", "target_price"):
        tag = re.search(rf'<input id="{field}"[^>]*>', page)
        assert tag and 'aria-invalid="true"' in tag.group(0), field
        described = re.search(r'aria-describedby="([^"]*)"', tag.group(0))
        assert described and f'id="{field}_error"' in page, field
        assert f"{field}_error" in described.group(1).split(), field
    response = await api.client.post(
        "/subscribe",
        data={"email": "a@example.com", "url": SHOP, "drop_percent": "5", "currency": "XYZ"},
    )
    page = await response.text()
    assert response.status == 422 and 'id="currency_error"' in page and 'value="XYZ"' in page
    response = await api.client.post(
        "/subscribe",
        data={"email": "a@example.com", "url": "http://169.254.169.254/", "target_price": "1"},
    )
    page = await response.text()
    assert response.status == 422 and "cloud metadata" in page and page.count('class="error"') == 1
    for path in ("/verify", "/confirm", "/manage", "/unsubscribe"):
        response = await api.client.get(path, params={"token": "forged.token"})
        assert response.status == 403 and "not valid" in await response.text(), path
    for path in ("/verify", "/confirm", "/unsubscribe"):
        response = await api.client.post(path, params={"token": "forged.token"})
        assert response.status == 403 and "not valid" in await response.text(), path
    response = await api.client.post("/manage-link", data={"email": "x@example.com"})
    assert response.status == 200 and "Check your inbox" in await response.text()
    assert api.rows("SELECT count(*) AS n FROM subscriptions") == [{"n": 0}]
