"""A real stream worker alerts only verified, active subscriptions: an unverified one gets
nothing until its verified version arrives (as the API publishes it), an inactive one never."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from pricewatch.contract.records import (
    Availability,
    Notification,
    Outcome,
    PriceObservation,
    Subscription,
)
from pricewatch.contract.topics import NOTIFICATIONS
from pricewatch.ids import observation_id_for, product_id_for, subscription_id_for
from pricewatch.settings import Settings
from tests.conftest import Broker
from tests.workers import (
    ObservationProducer,
    TopicReader,
    WorkerProcess,
    keep_logs,
    prepare_topics,
    produce_subscriptions,
    worker_settings,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

URL = "https://shop.example/p/gated-kettle"
PRODUCT = product_id_for(URL)
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def subscription(
    email: str, *, verified: bool, active: bool = True, minute: int = 0
) -> Subscription:
    return Subscription(
        subscription_id=subscription_id_for(email, PRODUCT),
        email=email,
        product_id=PRODUCT,
        url=URL,
        target_price=Decimal("90"),
        active=active,
        verified=verified,
        created_at=T0 + timedelta(minutes=minute),
    )


def observation(seconds: int, price: str) -> PriceObservation:
    observed_at = T0 + timedelta(hours=1, seconds=seconds)
    return PriceObservation(
        observation_id=observation_id_for(PRODUCT, observed_at),
        product_id=PRODUCT,
        url=URL,
        observed_at=observed_at,
        outcome=Outcome.OK,
        price=Decimal(price),
        currency="EUR",
        availability=Availability.IN_STOCK,
        title="Kettle",
        http_status=200,
    )


async def notifications_until(settings: Settings, count: int, seconds: float) -> list[Notification]:
    async with TopicReader(settings, settings.topic(NOTIFICATIONS)) as reader:
        await reader.wait_until(lambda records: len(records) >= count, seconds)
        await reader.poll(1500)  # and nothing more arrives
        return [Notification.model_validate_json(r.value) for r in reader.records if r.value]


def test_only_verified_active_subscriptions_are_alerted(
    tmp_path: Path, broker: Broker, unique_prefix: str
) -> None:
    settings = worker_settings(
        broker.bootstrap_servers, broker.embedded, unique_prefix, tmp_path / "data"
    )
    prepare_topics(settings)
    verified = subscription("verified@example.com", verified=True)
    unverified = subscription("unverified@example.com", verified=False)
    stopped = subscription("stopped@example.com", verified=True, active=False)
    worker = WorkerProcess(settings, "w0", tmp_path / "logs" / "worker.log")
    try:
        with worker.start():
            worker.wait_ready(60)
            asyncio.run(produce_subscriptions(settings, [verified, unverified, stopped]))

            async def first_drop() -> list[Notification]:
                async with ObservationProducer(settings) as producer:
                    await producer.send([observation(0, "100"), observation(1, "80")])
                return await notifications_until(settings, 1, 45)

            first = asyncio.run(first_drop())
            assert [n.email for n in first] == ["verified@example.com"]

            # The address confirms: the API republishes the subscription verified. The
            # matcher reads it from another topic than the events, so give it a moment.
            asyncio.run(
                produce_subscriptions(
                    settings, [subscription("unverified@example.com", verified=True, minute=5)]
                )
            )
            asyncio.run(asyncio.sleep(3))

            async def second_drop() -> list[Notification]:
                async with ObservationProducer(settings) as producer:
                    await producer.send([observation(2, "100"), observation(3, "80")])
                return await notifications_until(settings, 3, 45)

            every = asyncio.run(second_drop())
            assert sorted((n.email, n.observed_at.second) for n in every) == [
                ("unverified@example.com", 3),
                ("verified@example.com", 1),
                ("verified@example.com", 3),
            ]
            assert worker.terminate() == 0
    finally:
        keep_logs(tmp_path / "logs", "matcher-gating")
