"""The subscription API on a real broker: what it accepts, what it refuses, and the record
it publishes (on the partition of its product)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaConsumer

from pricewatch.contract.records import Subscription
from pricewatch.contract.topics import SUBSCRIPTIONS
from pricewatch.ids import partition_for, product_id_for, subscription_id_for
from pricewatch.kafka import create_topics, make_producer
from pricewatch.settings import Settings
from streams.api.app import MAX_BODY_BYTES, create_api_app
from tests.conftest import Broker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SHOP = "https://shop.example/products/kettle"


@pytest.fixture
async def api(
    broker: Broker, unique_prefix: str, tmp_path: Path
) -> AsyncIterator[tuple[TestClient[Any, Any], Settings]]:
    settings = Settings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        kafka_embedded=broker.embedded,
        topic_prefix=unique_prefix,
        data_dir=tmp_path,
        allowed_private_hosts="127.0.0.1:8081",
    )
    await create_topics(settings)
    producer = make_producer(settings)
    await producer.start()
    client: TestClient[Any, Any] = TestClient(TestServer(create_api_app(settings, producer)))
    await client.start_server()
    try:
        yield client, settings
    finally:
        await client.close()
        await producer.stop()


async def published(settings: Settings, count: int) -> list[tuple[int, bytes, Subscription]]:
    """The records on the subscriptions topic, read until ``count`` arrived (+ one poll)."""
    consumer = AIOKafkaConsumer(
        settings.topic(SUBSCRIPTIONS),
        bootstrap_servers=settings.bootstrap(),
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    out: list[tuple[int, bytes, Subscription]] = []
    try:
        for _ in range(40):
            batch = await consumer.getmany(timeout_ms=250)
            for tp, records in batch.items():
                for r in records:
                    out.append((tp.partition, r.key, Subscription.model_validate_json(r.value)))
            if len(out) >= count:
                batch = await consumer.getmany(timeout_ms=300)  # anything more?
                out.extend(
                    (tp.partition, r.key, Subscription.model_validate_json(r.value))
                    for tp, records in batch.items()
                    for r in records
                )
                break
    finally:
        await consumer.stop()
    return out


async def test_subscribe_publishes_on_the_products_partition(
    api: tuple[TestClient[Any, Any], Settings],
) -> None:
    client, settings = api
    response = await client.post(
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
    [(partition, key, record)] = await published(settings, 1)
    assert partition == partition_for(product_id, settings.topic_partitions)
    assert key.decode() == record.subscription_id == body["subscription_id"]
    assert record.target_price == Decimal("79.90") and record.notify_back_in_stock


async def test_resubscribing_is_idempotent(api: tuple[TestClient[Any, Any], Settings]) -> None:
    client, settings = api
    ids = set()
    for target in ("50", "45"):
        response = await client.post(
            "/api/subscriptions",
            json={"email": "bob@example.com", "url": SHOP, "target_price": target},
        )
        assert response.status == 201
        ids.add((await response.json())["subscription_id"])
    assert ids == {subscription_id_for("bob@example.com", product_id_for(SHOP))}
    records = await published(settings, 2)
    assert {key for _, key, _ in records} == {next(iter(ids)).encode()}  # compaction keeps one


async def only_the_sentinel_was_published(client: TestClient[Any, Any], settings: Settings) -> bool:
    """Publish a valid subscription after the rejected requests; it must be the only one."""
    sentinel = {"email": "sentinel@example.com", "url": SHOP, "target_price": "1"}
    assert (await client.post("/api/subscriptions", json=sentinel)).status == 201
    records = await published(settings, 1)
    return [r.email for _, _, r in records] == ["sentinel@example.com"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-email", "url": SHOP, "target_price": "10"}, "email"),
        ({"email": "a@example.com", "url": "ftp://shop.example/x", "target_price": "10"}, "url"),
        ({"email": "a@example.com", "url": "http://127.0.0.1:9/x", "target_price": "10"}, "url"),
        ({"email": "a@example.com", "url": "http://localhost:9/x", "target_price": "10"}, "url"),
        ({"email": "a@example.com", "url": "http://169.254.169.254/", "target_price": "1"}, "url"),
        ({"email": "a@example.com", "url": "http://[::1]/x", "target_price": "10"}, "url"),
        ({"email": "a@example.com", "url": "http://u:p@shop.example/", "target_price": "1"}, "url"),
        ({"email": "a@example.com", "url": SHOP, "target_price": "-1"}, "target_price"),
        ({"email": "a@example.com", "url": SHOP, "target_price": "0"}, "target_price"),
        ({"email": "a@example.com", "url": SHOP, "target_price": "abc"}, "target_price"),
        ({"email": "a@example.com", "url": SHOP, "drop_percent": "100"}, "drop_percent"),
        ({"email": "a@example.com", "url": SHOP}, "body"),
        ({"email": "a@example.com", "url": SHOP, "target_price": "1", "admin": True}, "admin"),
        ({"url": SHOP, "target_price": "1"}, "email"),
    ],
)
async def test_invalid_subscriptions_get_422_and_store_nothing(
    api: tuple[TestClient[Any, Any], Settings], body: dict[str, Any], field: str
) -> None:
    client, settings = api
    response = await client.post("/api/subscriptions", json=body)
    assert response.status == 422
    problem = await response.json()
    assert field in {e["field"] for e in problem["errors"]}, problem
    assert all(e["message"] for e in problem["errors"])
    assert await only_the_sentinel_was_published(client, settings)


async def test_allow_listed_loopback_shop_is_accepted(
    api: tuple[TestClient[Any, Any], Settings],
) -> None:
    client, _ = api
    response = await client.post(
        "/api/subscriptions",
        json={"email": "a@example.com", "url": "http://127.0.0.1:8081/p", "target_price": "5"},
    )
    assert response.status == 201


async def test_malformed_and_oversize_bodies(api: tuple[TestClient[Any, Any], Settings]) -> None:
    client, settings = api
    response = await client.post(
        "/api/subscriptions", data=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status == 400
    response = await client.post("/api/subscriptions", json=["a", "list"])
    assert response.status == 422
    huge = {"email": "a@example.com", "url": SHOP, "target_price": "1", "x": "y" * MAX_BODY_BYTES}
    response = await client.post("/api/subscriptions", json=huge)
    assert response.status == 413
    assert await only_the_sentinel_was_published(client, settings)


async def test_health_and_metrics(api: tuple[TestClient[Any, Any], Settings]) -> None:
    client, _ = api
    assert (await client.get("/healthz")).status == 200
    await client.post("/api/subscriptions", json={"email": "x"})
    metrics = await (await client.get("/metrics")).text()
    assert 'pricewatch_api_requests_total{route="/api/subscriptions",status="422"}' in metrics
