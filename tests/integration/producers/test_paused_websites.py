"""A website an admin paused is not fetched: a real scraper process skips its requests
(no request reaches the site, no observation is published) and fetches it again once the
pause is lifted; other websites are fetched meanwhile."""

from __future__ import annotations

import asyncio
from collections import Counter as Tally
from pathlib import Path

import psycopg

from pricewatch.contract.records import PriceObservation
from pricewatch.contract.topics import PRICE_OBSERVATIONS
from pricewatch.db.engine import upgrade
from pricewatch.ids import product_id_for
from pricewatch.kafka import create_topics
from tests.conftest import Broker
from tests.integration.producers.test_two_scrapers import (
    PARTITIONS,
    ScraperProcess,
    Shops,
    metric,
    produce_requests,
    shops,
    wait_for_group,
)
from tests.workers import TopicReader, keep_logs, worker_settings

__all__ = ["shops"]  # the fixture, imported for pytest


def set_paused(database_url: str, host: str, paused: bool) -> None:
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute(
            "INSERT INTO websites (name, host, base_url, paused) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (host) DO UPDATE SET paused = EXCLUDED.paused",
            (host, host, f"http://{host}/", paused),
        )


async def test_a_paused_website_is_not_fetched_until_resumed(
    broker: Broker, unique_prefix: str, tmp_path: Path, postgres_url: str, shops: Shops
) -> None:
    servers, seen = shops
    paused, active = servers[0], servers[1]
    upgrade(postgres_url)
    set_paused(postgres_url, paused.host, True)
    settings = worker_settings(
        broker.bootstrap_servers,
        broker.embedded,
        unique_prefix,
        tmp_path,
        topic_partitions=PARTITIONS,
        database_url=postgres_url,
        allowed_private_hosts=",".join(f"{s.host}:{s.port}" for s in servers),
        host_min_request_interval_seconds=0.0,
        paused_hosts_refresh_seconds=0.5,
    )
    await create_topics(settings)
    logs = tmp_path / "logs"
    scraper = ScraperProcess(settings, "scraper", logs / "scraper.log")
    try:
        await wait_for_group(settings, 1)
        paused_urls = [f"http://{paused.host}:{paused.port}/p/{n}" for n in range(3)]
        active_urls = [f"http://{active.host}:{active.port}/p/{n}" for n in range(3)]
        await produce_requests(settings, paused_urls + active_urls)

        async with TopicReader(settings, settings.topic(PRICE_OBSERVATIONS)) as reader:
            assert await reader.wait_until(lambda records: len(records) >= 3, 60)
            for _ in range(40):  # every request handled: skipped or published
                if metric(scraper.metrics_port, "pricewatch_scraper_paused_skips_total") >= 3:
                    break
                await asyncio.sleep(0.25)
            await reader.poll(500)
            seen_products = Tally(
                PriceObservation.model_validate_json(r.value).product_id for r in reader.records
            )
            assert set(seen_products) == {product_id_for(u) for u in active_urls}
            assert metric(scraper.metrics_port, "pricewatch_scraper_paused_skips_total") == 3
            assert not [path for path in seen if path.startswith(paused.host)]

            set_paused(postgres_url, paused.host, False)
            await asyncio.sleep(1.5)  # three refreshes
            await produce_requests(settings, paused_urls[:1])
            assert await reader.wait_until(lambda records: len(records) >= 4, 60)
            last = PriceObservation.model_validate_json(reader.records[-1].value)
            assert last.product_id == product_id_for(paused_urls[0])
    finally:
        code = scraper.stop()
        keep_logs(logs, "paused-websites")
    assert code == 0
