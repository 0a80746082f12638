"""Two real ``pricewatch scraper`` processes in one consumer group share the scrape requests.

Requests are keyed by URL host, so the work splits by host: the test serves product pages
from several loopback addresses (127.0.0.x, one host each), chosen so their keys cover
every partition of ``scrape-requests``. Both scrapers join before any request is produced
(no rebalance while fetching), so every request must be answered exactly once overall.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import urllib.request
from collections import Counter as Tally
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from launcher.processes import Process, free_port, pricewatch_command
from launcher.stack import Stack
from pricewatch.contract.records import Outcome, PriceObservation, ScrapeRequest
from pricewatch.contract.topics import PRICE_OBSERVATIONS, SCRAPE_REQUESTS
from pricewatch.ids import partition_for, product_id_for
from pricewatch.kafka import create_topics, make_producer
from pricewatch.settings import Settings
from tests.conftest import Broker
from tests.workers import (
    TopicReader,
    group_members,
    keep_logs,
    worker_settings,
)

PARTITIONS = 4
PAGES_PER_HOST = 6
PUBLISHED = "pricewatch_scraper_observations_published_total"
FETCHES = "pricewatch_scraper_fetches_total"

PAGE = """<html><head><script type="application/ld+json">{"@type": "Product", "name": "%s",
"offers": {"price": "%s", "priceCurrency": "EUR"}}</script></head><body></body></html>"""


def hosts_covering_partitions(partitions: int) -> list[str]:
    """Loopback addresses whose keys land on every partition (one host per partition)."""
    by_partition: dict[int, str] = {}
    for last in range(1, 255):
        host = f"127.0.0.{last}"
        by_partition.setdefault(partition_for(host, partitions), host)
        if len(by_partition) == partitions:
            return [by_partition[p] for p in range(partitions)]
    raise AssertionError("no loopback addresses cover every partition")


def samples(port: int, name: str) -> dict[str, float]:
    """A metric's samples on a scraper's /metrics: label text (e.g. '{outcome="ok"}') -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        line[len(name) :].rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " ")
    }


def metric(port: int, name: str) -> float:
    return sum(samples(port, name).values())


Shops = tuple[list[TestServer], Tally[str]]


async def _start_shops(delay: float) -> Shops:
    """One page server per host; ``seen`` counts requests per host/path."""
    seen: Tally[str] = Tally()

    async def product(request: web.Request) -> web.Response:
        seen[f"{request.host.split(':')[0]}{request.path}"] += 1
        if delay:
            await asyncio.sleep(delay)
        n = request.match_info["n"]
        return web.Response(text=PAGE % (f"Item {n}", f"{n}.50"), content_type="text/html")

    servers = []
    for host in hosts_covering_partitions(PARTITIONS):
        app = web.Application()
        app.router.add_get("/p/{n}", product)
        server = TestServer(app, host=host)
        await server.start_server()
        servers.append(server)
    return servers, seen


@pytest.fixture
async def shops() -> AsyncIterator[Shops]:
    servers, seen = await _start_shops(delay=0)
    yield servers, seen
    for server in servers:
        await server.close()


@pytest.fixture
async def slow_shops() -> AsyncIterator[Shops]:
    servers, seen = await _start_shops(delay=0.25)
    yield servers, seen
    for server in servers:
        await server.close()


async def produce_requests(settings: Settings, urls: list[str]) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        for url in urls:
            request = ScrapeRequest(
                product_id=product_id_for(url), url=url, requested_at=datetime.now(UTC)
            )
            await producer.send(
                settings.topic(SCRAPE_REQUESTS),
                key=(urlsplit(url).hostname or "").encode(),
                value=request.model_dump_json().encode(),
            )
        await producer.flush()
    finally:
        await producer.stop()


class ScraperProcess:
    """A ``pricewatch scraper`` started at once, as the Stack starts it, with its own
    /metrics port."""

    def __init__(self, settings: Settings, name: str, log_path: Path) -> None:
        self.metrics_port = free_port()
        self.name = name
        command = pricewatch_command("scraper", "--metrics-port", str(self.metrics_port))
        self.process = Process(name, command, log_path, env=Stack(settings).child_env()).start()

    def stop(self) -> int:
        code = self.process.stop(30)
        if self.process.killed:
            raise AssertionError(f"{self.name} ignored SIGTERM")
        assert code is not None
        return code


async def wait_for_group(settings: Settings, members: int, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while (state := await group_members(settings, settings.group("scrapers"))) != (
        "Stable",
        members,
    ):
        assert time.monotonic() < deadline, f"scrapers group is {state}"
        await asyncio.sleep(0.3)


async def test_two_scrapers_share_the_hosts_and_answer_each_request_once(
    broker: Broker,
    unique_prefix: str,
    tmp_path: Path,
    shops: Shops,
) -> None:
    servers, seen = shops
    settings = worker_settings(
        broker.bootstrap_servers,
        broker.embedded,
        unique_prefix,
        tmp_path,
        topic_partitions=PARTITIONS,
        allowed_private_hosts=",".join(f"{s.host}:{s.port}" for s in servers),
        host_min_request_interval_seconds=0.05,
        respect_robots_txt=True,  # every host answers 404: allowed
    )
    await create_topics(settings)
    logs = tmp_path / "logs"
    scrapers = [ScraperProcess(settings, f"scraper-{i}", logs / f"scraper-{i}.log") for i in (0, 1)]
    try:
        await wait_for_group(settings, 2)
        urls = [f"http://{s.host}:{s.port}/p/{n}" for s in servers for n in range(PAGES_PER_HOST)]
        await produce_requests(settings, urls)

        async with TopicReader(settings, settings.topic(PRICE_OBSERVATIONS)) as reader:
            assert await reader.wait_until(lambda records: len(records) >= len(urls), 90), (
                f"{len(reader.records)} of {len(urls)} observations"
            )
            await asyncio.sleep(1.0)  # a duplicate would arrive now
            await reader.poll(500)
            observations = [PriceObservation.model_validate_json(r.value) for r in reader.records]

        per_product = Tally(o.product_id for o in observations)
        assert set(per_product) == {product_id_for(u) for u in urls}
        assert set(per_product.values()) == {1}, "a request was answered twice"
        assert all(o.outcome is Outcome.OK for o in observations), [o.error for o in observations]
        assert all(count == 1 for path, count in seen.items() if "/p/" in path)
        published = [metric(s.metrics_port, PUBLISHED) for s in scrapers]
        assert sum(published) == len(urls)
        assert all(count > 0 for count in published), f"one scraper did nothing: {published}"
        # Fetches are counted per website (URL host); each host was fetched by one scraper.
        websites = [
            {
                label.split('website="')[1].split('"')[0]
                for label in samples(s.metrics_port, FETCHES)
            }
            for s in scrapers
        ]
        assert websites[0] | websites[1] == {s.host for s in servers}
        assert not websites[0] & websites[1]
        assert sum(metric(s.metrics_port, FETCHES) for s in scrapers) == len(urls)
        assert [metric(s.metrics_port, "pricewatch_scraper_queue_depth") for s in scrapers] == [
            0,
            0,
        ]
    finally:
        codes = [s.stop() for s in scrapers]
        keep_logs(logs, "two-scrapers")
    assert codes == [0, 0]


async def test_a_killed_scraper_loses_nothing_and_repeats_only_what_was_in_flight(
    broker: Broker, unique_prefix: str, tmp_path: Path, slow_shops: Shops
) -> None:
    servers, _ = slow_shops
    queue_limit = 8
    settings = worker_settings(
        broker.bootstrap_servers,
        broker.embedded,
        unique_prefix,
        tmp_path,
        topic_partitions=PARTITIONS,
        allowed_private_hosts=",".join(f"{s.host}:{s.port}" for s in servers),
        host_min_request_interval_seconds=0.0,
        scraper_queue_limit=queue_limit,
    )
    await create_topics(settings)
    urls = [f"http://{s.host}:{s.port}/p/{n}" for s in servers for n in range(20)]
    await produce_requests(settings, urls)
    logs = tmp_path / "logs"
    first = ScraperProcess(settings, "scraper-0", logs / "scraper-0.log")
    second: ScraperProcess | None = None
    try:
        async with TopicReader(settings, settings.topic(PRICE_OBSERVATIONS)) as reader:
            assert await reader.wait_until(lambda records: len(records) >= len(urls) // 3, 60)
            os.kill(first.process.pid, signal.SIGKILL)  # no drain, no last commit
            first.process.wait(10)
            killed_at = len(reader.records)
            second = ScraperProcess(settings, "scraper-1", logs / "scraper-1.log")
            wanted = {product_id_for(u) for u in urls}

            def all_answered(records: list[Any]) -> bool:
                return {
                    PriceObservation.model_validate_json(r.value).product_id for r in records
                } >= wanted

            assert await reader.wait_until(all_answered, 90), "requests were lost"
            await asyncio.sleep(1.0)
            await reader.poll(500)
            observations = [PriceObservation.model_validate_json(r.value) for r in reader.records]
    finally:
        if second is not None:
            assert second.stop() == 0
        keep_logs(logs, "killed-scraper")

    repeats = len(observations) - len(wanted)
    assert killed_at < len(urls), "the first scraper finished before it was killed"
    # Offsets were committed while it ran: only what it held (at most the queue limit,
    # plus what it published between its last commit and the kill) is fetched again.
    assert repeats <= queue_limit * 2, f"{repeats} requests answered twice"
    assert all(o.outcome is Outcome.OK for o in observations)
