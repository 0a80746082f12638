"""A real worker's scheduler: a product is not asked for again while its last check has
not come back, and a product near its subscriber's target is checked more often.

The test plays the scraper: it reads the scrape requests and answers them (or not) with
observations, so it decides when a check comes back. Assertions are about order and
counts, which a busy machine does not change: a slow scheduler only asks later.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from launcher.processes import free_port
from pricewatch.contract.records import PriceObservation, Subscription
from pricewatch.contract.topics import SCRAPE_REQUESTS
from pricewatch.ids import observation_id_for, product_id_for, subscription_id_for
from pricewatch.kafka import create_topics
from pricewatch.settings import Settings
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
PRICES = {product_id_for(NEAR): "103.00", product_id_for(FAR): "150.00"}
URLS = {product_id_for(NEAR): NEAR, product_id_for(FAR): FAR}
TIMEOUTS = "pricewatch_scheduler_check_result_timeouts_total"
DEADLINE = 120.0  # generous: progress, not speed, is what is waited for


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


def answer(product_id: str) -> PriceObservation:
    """What a scraper would publish for a check of ``product_id`` now."""
    observed = observation(0, url=URLS[product_id], price=PRICES[product_id])
    now = datetime.now(UTC)
    return observed.model_copy(
        update={"observed_at": now, "observation_id": observation_id_for(product_id, now)}
    )


def product_of(record: Any) -> str:
    return str(json.loads(record.value)["product_id"])


@asynccontextmanager
async def running_worker(settings: Settings, tmp_path: Path, name: str) -> AsyncIterator[Any]:
    await create_topics(settings)
    worker = WorkerProcess(settings, "w0", tmp_path / "logs" / "w0.log", metrics_port=free_port())
    try:
        worker.start()
        await asyncio.to_thread(worker.wait_ready, 60)
        # Prices first, so the detector knows them when the subscriptions arrive.
        async with ObservationProducer(settings) as producer:
            await producer.send([answer(p) for p in URLS])
        deadline = time.monotonic() + DEADLINE
        while worker.metric(OBSERVED) < 2:
            assert time.monotonic() < deadline, "the detector did not see the prices"
            await asyncio.sleep(0.2)
        await produce_subscriptions(settings, [subscription(NEAR, "100"), subscription(FAR, "100")])
        yield worker
    finally:
        if worker.running:
            worker.terminate()
        keep_logs(tmp_path / "logs", name)


async def read_until(
    reader: TopicReader, done: Callable[[list[Any]], bool], what: str
) -> list[Any]:
    deadline = time.monotonic() + DEADLINE
    while not done(reader.records):
        assert time.monotonic() < deadline, f"{what}: {Counter(map(product_of, reader.records))}"
        await reader.poll(100)
    return reader.records


def settings_for(broker: Broker, prefix: str, tmp_path: Path, **overrides: Any) -> Settings:
    return worker_settings(
        broker.bootstrap_servers,
        broker.embedded,
        prefix,
        tmp_path,
        check_jitter_fraction=0.0,
        scheduler_tick_seconds=0.1,
        near_target_fraction=0.05,
        **overrides,
    )


async def test_product_near_its_target_is_checked_more_often(
    broker: Broker, unique_prefix: str, tmp_path: Path
) -> None:
    settings = settings_for(
        broker,
        unique_prefix,
        tmp_path,
        default_check_interval_seconds=4.0,
        near_target_interval_factor=0.25,  # near: every 1 s
    )
    far_id = product_id_for(FAR)
    async with (
        running_worker(settings, tmp_path, "scheduler-near-target"),
        TopicReader(settings, settings.topic(SCRAPE_REQUESTS)) as reader,
        ObservationProducer(settings) as scraper,
    ):
        answered = 0
        deadline = time.monotonic() + DEADLINE
        # Answer every request at once until the far product has been checked 3 times
        # (two of its intervals).
        while Counter(map(product_of, reader.records))[far_id] < 3:
            assert time.monotonic() < deadline, "the far product was not checked 3 times"
            await reader.poll(100)
            fresh = reader.records[answered:]
            answered = len(reader.records)
            await scraper.send([answer(product_of(r)) for r in fresh], pause=0)
        checks = Counter(map(product_of, reader.records))

    # Two far intervals hold about eight near ones; the near product must at least have
    # been checked clearly more often.
    assert checks[product_id_for(NEAR)] >= 5, checks


async def test_a_product_is_not_requested_again_while_its_check_waits(
    broker: Broker, unique_prefix: str, tmp_path: Path
) -> None:
    interval, timeout = 0.5, 4.0
    settings = settings_for(
        broker,
        unique_prefix,
        tmp_path,
        default_check_interval_seconds=interval,
        near_target_interval_factor=1.0,
        check_result_timeout_seconds=timeout,
    )
    async with (
        running_worker(settings, tmp_path, "scheduler-waiting") as worker,
        TopicReader(settings, settings.topic(SCRAPE_REQUESTS)) as reader,
        ObservationProducer(settings) as scraper,
    ):
        await read_until(reader, lambda r: len(r) >= 2, "both products requested")
        first_requests_seen = time.monotonic()
        # The scrapers are behind: nothing comes back for several intervals. Counting
        # from the request, each product would be asked for every 0.5 s meanwhile.
        while time.monotonic() - first_requests_seen < timeout / 2:
            await reader.poll(100)
        assert sorted(map(product_of, reader.records)) == sorted(URLS), "asked again while waiting"
        assert worker.metric(TIMEOUTS) == 0

        # The near product's check comes back: it is asked for again (at once: its interval
        # has passed); the far one still waits.
        near_id = product_id_for(NEAR)
        await scraper.send([answer(near_id)], pause=0)
        await read_until(reader, lambda r: len(r) >= 3, "the answered product asked again")
        assert product_of(reader.records[2]) == near_id

        # The far product's result never comes: it is asked for again after the timeout,
        # and the metric says so.
        await read_until(
            reader,
            lambda r: Counter(map(product_of, r))[product_id_for(FAR)] >= 2,
            "the unanswered product asked again after the timeout",
        )
        deadline = time.monotonic() + DEADLINE
        while worker.metric(TIMEOUTS) < 1:
            assert time.monotonic() < deadline, "the timeout was not counted"
            await asyncio.sleep(0.2)
