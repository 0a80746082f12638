"""A real worker's scheduler checks a product near its subscriber's target more often."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from launcher.processes import free_port
from pricewatch.contract.records import Subscription
from pricewatch.contract.topics import SCRAPE_REQUESTS
from pricewatch.ids import product_id_for, subscription_id_for
from pricewatch.kafka import create_topics
from tests.conftest import Broker
from tests.factories import observation
from tests.workers import (
    OBSERVED,
    ObservationProducer,
    TopicReader,
    WorkerProcess,
    keep_logs,
    produce_subscriptions,
    worker_settings,
)

NEAR = "https://shop.example/p/near"  # 103.00 against a 100.00 target: within 5 %
FAR = "https://shop.example/p/far"  # 150.00 against a 100.00 target
INTERVAL = 4.0
FACTOR = 0.25  # near: every 1 s
WINDOW = 6.0


def subscription(url: str, target: str) -> Subscription:
    product_id = product_id_for(url)
    return Subscription(
        subscription_id=subscription_id_for("near@example.com", product_id),
        email="near@example.com",
        product_id=product_id,
        url=url,
        target_price=Decimal(target),
        verified=True,
        created_at=datetime.now(UTC),
    )


async def test_product_near_its_target_is_checked_more_often(
    broker: Broker, unique_prefix: str, tmp_path: Path
) -> None:
    settings = worker_settings(
        broker.bootstrap_servers,
        broker.embedded,
        unique_prefix,
        tmp_path,
        default_check_interval_seconds=INTERVAL,
        check_jitter_fraction=0.0,
        scheduler_tick_seconds=0.1,
        near_target_fraction=0.05,
        near_target_interval_factor=FACTOR,
    )
    await create_topics(settings)
    worker = WorkerProcess(settings, "w0", tmp_path / "logs" / "w0.log", metrics_port=free_port())
    try:
        worker.start()
        await asyncio.to_thread(worker.wait_ready, 60)
        # Prices first, so the detector knows them when the subscriptions arrive.
        async with ObservationProducer(settings) as producer:
            await producer.send(
                [observation(0, url=NEAR, price="103.00"), observation(0, url=FAR, price="150.00")]
            )
        deadline = time.monotonic() + 30
        while worker.metric(OBSERVED) < 2:
            assert time.monotonic() < deadline, "the detector did not see the prices"
            await asyncio.sleep(0.2)
        await produce_subscriptions(settings, [subscription(NEAR, "100"), subscription(FAR, "100")])

        async with TopicReader(settings, settings.topic(SCRAPE_REQUESTS)) as reader:
            assert await reader.wait_until(lambda records: len(records) >= 2, 30)
            first = time.monotonic()
            while time.monotonic() - first < WINDOW:
                await reader.poll(100)
            checks = Counter(json.loads(r.value)["product_id"] for r in reader.records if r.value)
    finally:
        if worker.running:
            worker.terminate()
        keep_logs(tmp_path / "logs", "scheduler-near-target")

    near, far = checks[product_id_for(NEAR)], checks[product_id_for(FAR)]
    # In 6 s: the far product at 0 and 4 s, the near one about every second.
    assert far <= 2, checks
    assert near >= 5, checks
