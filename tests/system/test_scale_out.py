"""Scaling out on one broker: two stream-worker processes and two scraper processes share the
work and send the same emails, exactly once each, as one worker and one scraper would.

What `docker compose up --scale worker=2 --scale scraper=2` does, without containers: real
processes (`pricewatch worker`, `pricewatch scraper`, the sinks and the API of the Stack)
against one broker, subscriptions made over the API, prices changed on the demo shop's admin
API, emails received by a real SMTP server.

The demo shop answers on several loopback addresses (127.0.0.x, one port): scrape requests
are keyed by URL host, so one host would put every request on one partition and only one
scraper would ever fetch. The hosts are picked to cover every partition of
``scrape-requests`` and the products every partition of ``price-observations``.

"The same notifications as one of each": a single worker publishes what the pure functions
(``detect``, ``evaluate``) compute from the observations in partition order; the two
workers' notifications, deduplicated by idempotency key, must be exactly those (same keys,
same contents), and every key is emailed exactly once.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiohttp import web
from aiosmtpd.controller import Controller

from launcher.demo.shop import DEFAULT_PRODUCTS, create_shop_app
from launcher.processes import free_port
from launcher.stack import Stack
from pricewatch.contract.records import Notification, PriceObservation, Subscription
from pricewatch.contract.topics import (
    NOTIFICATIONS,
    PRICE_EVENTS,
    PRICE_OBSERVATIONS,
    SCRAPE_REQUESTS,
    SUBSCRIPTIONS,
)
from pricewatch.ids import partition_for, product_id_for
from pricewatch.settings import Settings
from sinks.email.render import IDEMPOTENCY_HEADER
from tests.conftest import Broker, fresh_database
from tests.helpers import http_json, verify_address, wait_for
from tests.workers import (
    OBSERVED,
    Scenario,
    ScraperProcess,
    WorkerProcess,
    check_events,
    check_notifications,
    group_members,
    keep_logs,
    read_topic,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(180)]

PARTITIONS = 4
SCRAPED = "pricewatch_scraper_observations_published_total"
# In-stock demo products: their drop below the target is a price alert.
PRODUCTS = [p for p in DEFAULT_PRODUCTS if p.availability.value == "in_stock"]


# --- The pieces ---------------------------------------------------------------------------


class ShopOnManyHosts:
    """The demo shop (one product catalogue) served on several loopback addresses, in a
    thread of the test process. Its admin API changes a product on every host at once."""

    def __init__(self, hosts: list[str], port: int) -> None:
        self.hosts = hosts
        self.port = port
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner = web.AppRunner(create_shop_app(), access_log=None)

    async def _start(self) -> None:
        await self.runner.setup()
        for host in self.hosts:
            await web.TCPSite(self.runner, host, self.port).start()

    def __enter__(self) -> ShopOnManyHosts:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def url(self, host: str, slug: str) -> str:
        return f"http://{host}:{self.port}/products/{slug}"

    def reset_prices(self) -> None:
        for product in PRODUCTS:
            self.set_price(product.slug, product.price)

    def set_price(self, slug: str, price: Decimal) -> None:
        admin = f"http://{self.hosts[0]}:{self.port}/admin/products/{slug}"
        status, body = http_json("POST", admin, {"price": str(price)})
        assert status == 200, body


@dataclass
class Inbox:
    """An aiosmtpd handler keeping every message it accepts."""

    messages: list[EmailMessage] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 Message accepted for delivery"

    def alerts(self) -> list[EmailMessage]:
        """The alert emails: each carries List-Unsubscribe (RFC 8058); the verification
        emails an unverified address gets first do not."""
        return [m for m in list(self.messages) if m["List-Unsubscribe"] is not None]

    def alert_keys(self) -> Counter[str]:
        return Counter(str(m[IDEMPOTENCY_HEADER]) for m in self.alerts())

    def recipients_of_other_emails(self) -> Counter[str]:
        return Counter(
            address.addr_spec
            for m in list(self.messages)
            if m["List-Unsubscribe"] is None
            for address in m["To"].addresses
        )


def hosts_covering_every_partition() -> list[str]:
    """One loopback address per partition of scrape-requests (keyed by URL host)."""
    chosen: dict[int, str] = {}
    for n in range(2, 255):
        host = f"127.0.0.{n}"
        chosen.setdefault(partition_for(host, PARTITIONS), host)
        if len(chosen) == PARTITIONS:
            return [chosen[p] for p in range(PARTITIONS)]
    raise AssertionError("no loopback addresses cover every partition")


def shop_port_covering_every_partition(hosts: list[str]) -> int:
    """A free port at which the product URLs fall on every price-observations partition
    (product ids hash the URL, port included), so both workers get products to detect."""
    for _ in range(50):
        port = free_port()
        ids = [
            product_id_for(f"http://{h}:{port}/products/{p.slug}") for h in hosts for p in PRODUCTS
        ]
        if {partition_for(i, PARTITIONS) for i in ids} == set(range(PARTITIONS)):
            return port
    raise AssertionError("no port spreads the products over every partition")


def scale_settings(
    broker: Broker,
    prefix: str,
    data_dir: Path,
    database_url: str,
    shop: ShopOnManyHosts,
    smtp_port: int,
) -> Settings:
    return Settings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        kafka_embedded=broker.embedded,
        database_url=database_url,
        data_dir=data_dir,
        app_id=f"{prefix}pw",
        topic_prefix=prefix,
        topic_partitions=PARTITIONS,
        api_port=free_port(),
        default_check_interval_seconds=1.0,
        scheduler_tick_seconds=0.2,
        allowed_private_hosts=",".join(f"{h}:{shop.port}" for h in shop.hosts),
        # Politeness (1 request/s per host) would let the 1 s checks of several products per
        # host queue up to the scraper's limit; a stopping scraper then drains that queue
        # for its whole 30 s grace and outlives terminate(). This test is about sharing the
        # work, not about pacing: the in-process shop takes the full rate.
        host_min_request_interval_seconds=0.0,
        email_backend="smtp",
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        log_level="INFO",
    )


def first_prices(database_url: str) -> dict[str, Decimal]:
    """url -> the first price the postgres sink recorded."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT DISTINCT ON (p.url) p.url, pr.price FROM prices pr"
            " JOIN products p USING (product_id) ORDER BY p.url, pr.observed_at"
        ).fetchall()
    return {url: price for url, price in rows}


# --- The test -------------------------------------------------------------------------------


@dataclass
class Run:
    """What two workers and two scrapers did, read back from the topics and the inbox."""

    observed_by_worker: dict[str, float]
    scraped_by_scraper: dict[str, float]
    timings: dict[str, float]


def subscribe_everyone(settings: Settings, shop: ShopOnManyHosts) -> dict[str, Decimal]:
    """One subscriber per product URL with a target 10 % under the price, each address
    verified (alerts go only to verified addresses); url -> target."""
    targets: dict[str, Decimal] = {}
    for host in shop.hosts:
        for product in PRODUCTS:
            url = shop.url(host, product.slug)
            target = (product.price * Decimal("0.9")).quantize(Decimal("0.01"))
            address = f"{product.slug}@{host}.example"
            status, body = http_json(
                "POST",
                f"{settings.api_base_url}/api/subscriptions",
                {"email": address, "url": url, "target_price": str(target)},
            )
            assert status == 201, body
            verify_address(settings, address)
            targets[url] = target
    return targets


def drive(
    stack: Stack,
    shop: ShopOnManyHosts,
    inbox: Inbox,
    workers: list[WorkerProcess],
    scrapers: list[ScraperProcess],
) -> Run:
    settings = stack.settings
    t0 = time.monotonic()
    timings: dict[str, float] = {}
    for process in [*workers, *scrapers]:
        process.start()
    for worker in workers:
        worker.wait_ready(60)

    # Both members in a stable generation of each group: no partition moves while the
    # prices change (a move would be correct too, but then "each did some" is luck).
    def stable(group: str) -> bool:
        return asyncio.run(group_members(settings, group)) == ("Stable", len(workers))

    wait_for(lambda: stable(settings.app_id), timeout=45, what="a stable group of workers")
    wait_for(
        lambda: stable(settings.group("scrapers")), timeout=45, what="a stable group of scrapers"
    )
    timings["ready"] = time.monotonic() - t0

    targets = subscribe_everyone(settings, shop)
    # The first check of every product only learns its price (a first observation never
    # alerts); the drop comes after it.
    wait_for(
        lambda: set(first_prices(settings.database())) >= set(targets),
        timeout=45,
        what="a first price of every product",
    )
    timings["first_prices"] = time.monotonic() - t0
    for product in PRODUCTS:
        shop.set_price(product.slug, (product.price * Decimal("0.8")).quantize(Decimal("0.01")))
    wait_for(
        lambda: len(inbox.alert_keys()) >= len(targets), timeout=45, what="an alert per subscriber"
    )
    timings["emails"] = time.monotonic() - t0
    # More checks of the lower prices must not send anything again.
    time.sleep(4 * settings.default_check_interval_seconds)
    run = Run(
        observed_by_worker={w.worker_id: w.metric(OBSERVED) for w in workers},
        scraped_by_scraper={s.worker_id: s.metric(SCRAPED) for s in scrapers},
        timings=timings,
    )
    for process in [*scrapers, *workers]:
        assert process.terminate() == 0, process.log_tail()
    timings["stopped"] = time.monotonic() - t0
    return run


def run_configuration(
    processes: int,
    tmp_path: Path,
    broker: Broker,
    postgres_server: str,
    prefix: str,
    shop: ShopOnManyHosts,
) -> set[tuple[Any, ...]]:
    """``processes`` workers and as many scrapers on their own topics, database and SMTP
    inbox; checks them and returns what their emails said."""
    inbox = Inbox()
    smtp_port = free_port()
    smtp = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    where = tmp_path / f"{processes}-of-each"
    logs = where / "logs"
    try:
        for database_url in fresh_database(postgres_server):
            settings = scale_settings(broker, prefix, where / "data", database_url, shop, smtp_port)
            # The Stack runs the sinks and the API; the workers and scrapers are started
            # here, each with its own /metrics port to tell what it did.
            with Stack(settings, workers=0, scrapers=0, with_demo_shop=False) as stack:
                ids = range(1, processes + 1)
                workers = [
                    WorkerProcess(settings, f"w{i}", logs / f"worker-{i}.log", free_port())
                    for i in ids
                ]
                scrapers = [
                    ScraperProcess(settings, f"s{i}", logs / f"scraper-{i}.log", free_port())
                    for i in ids
                ]
                try:
                    run = drive(stack, shop, inbox, workers, scrapers)
                    assert stack.dead_children() == []  # sinks and API lived through it
                finally:
                    for process in [*scrapers, *workers]:
                        if process.running:
                            process.kill()
                    shop.reset_prices()
            return check(settings, run, inbox, expected=len(shop.hosts) * len(PRODUCTS))
        raise AssertionError("no database")
    finally:
        smtp.stop()
        keep_logs(logs, f"scale-out-{processes}")
        keep_logs(where / "data" / "logs", f"scale-out-{processes}-stack")


def test_two_workers_and_two_scrapers_send_what_one_of_each_sends(
    tmp_path: Path, broker: Broker, postgres_server: str, unique_prefix: str
) -> None:
    hosts = hosts_covering_every_partition()
    with ShopOnManyHosts(hosts, shop_port_covering_every_partition(hosts)) as shop:
        one = run_configuration(1, tmp_path, broker, postgres_server, f"{unique_prefix}1-", shop)
        two = run_configuration(2, tmp_path, broker, postgres_server, f"{unique_prefix}2-", shop)
    # Same subscribers (ids derive from email and URL), same alerts, same prices.
    assert two == one


def check(settings: Settings, run: Run, inbox: Inbox, expected: int) -> set[tuple[Any, ...]]:
    """Every process did some work; the notifications are what one worker publishes for
    these observations, each emailed once. Returns the emails' facts without the ids that
    depend on when a page was fetched."""
    print(f"scale-out, {len(run.observed_by_worker)} of each: {run}")
    assert all(n > 0 for n in run.observed_by_worker.values()), run.observed_by_worker
    assert all(n > 0 for n in run.scraped_by_scraper.values()), run.scraped_by_scraper
    scrape_requests = asyncio.run(read_topic(settings, settings.topic(SCRAPE_REQUESTS))).records
    assert {r.partition for r in scrape_requests} == set(range(PARTITIONS))

    observations = asyncio.run(read_topic(settings, settings.topic(PRICE_OBSERVATIONS)))
    in_order = [
        PriceObservation.model_validate_json(r.value or b"")
        for r in sorted(observations.records, key=lambda r: (r.partition, r.offset))
    ]
    # Counted once Kafka acknowledged them (the scrapers went on until they were stopped).
    assert 0 < sum(run.scraped_by_scraper.values()) <= len(in_order)
    subscriptions = [
        Subscription.model_validate_json(v)
        for v in asyncio.run(read_topic(settings, settings.topic(SUBSCRIPTIONS)))
        .latest_by_key()
        .values()
    ]
    assert len(subscriptions) == expected
    assert all(s.verified for s in subscriptions)
    # What one uninterrupted worker publishes for these observations: the pure functions.
    reference = Scenario(in_order, subscriptions, sentinels=[]).reference(settings)
    events = asyncio.run(read_topic(settings, settings.topic(PRICE_EVENTS))).records
    notifications = asyncio.run(read_topic(settings, settings.topic(NOTIFICATIONS))).records
    check_events(events, reference)
    check_notifications(notifications, reference)

    # One price alert per subscriber, each emailed exactly once.
    published = {
        n.idempotency_key: n
        for n in (Notification.model_validate_json(r.value or b"") for r in notifications)
    }
    assert len(published) == expected
    assert {n.subscription_id for n in published.values()} == {
        s.subscription_id for s in subscriptions
    }
    assert inbox.alert_keys() == Counter(dict.fromkeys(published, 1))
    # Besides the alerts, each subscriber got its verification email, once.
    assert inbox.recipients_of_other_emails() == Counter(
        dict.fromkeys((s.email for s in subscriptions), 1)
    ), inbox.recipients_of_other_emails()
    return {
        (n.subscription_id, n.kind, n.event_type, n.old_price, n.new_price, n.target_price)
        for n in published.values()
    }
