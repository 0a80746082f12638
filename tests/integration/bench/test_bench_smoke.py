"""The pipeline benchmarks still run: a tiny end-to-end latency run on the real broker,
PostgreSQL and role processes, and the polling baseline's job against a real shop page and
database. Figures are not checked (this machine is shared); completeness is."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from pydantic import SecretStr

from bench import e2e
from bench import shop as bench_shop
from bench.polling_baseline import PollingJob, create_schema
from bench.report import machine_info, write_json
from launcher.demo.shop import run_shop
from launcher.processes import free_port, wait_for_port
from pricewatch.settings import Settings
from tests.conftest import Broker


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_tiny_e2e_run_measures_every_notification_and_email(
    broker: Broker, postgres_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRICEWATCH_BENCH_DATABASE_URL", postgres_server)
    result = e2e.run(
        loads=(40.0,),
        duration=4.0,
        products=40,
        change_fraction=0.25,
        drain_timeout=90.0,
        bootstrap_servers=broker.bootstrap_servers,
        kafka_embedded=broker.embedded,
        results_dir=tmp_path,
        log=lambda _message: None,
    )
    (phase,) = result.extra["phases"]
    assert phase["complete"], phase
    expected = phase["expected_notifications"]
    assert expected > 0
    assert phase["notification_on_topic"]["count"] == expected
    assert phase["email_handed_to_backend"]["count"] == expected
    # Latencies are positive: from observed_at forward, never before it.
    assert phase["notification_on_topic"]["p50_ms"] > 0
    assert phase["email_handed_to_backend"]["p99_ms"] >= phase["notification_on_topic"]["p50_ms"]
    assert phase["worker"]["produced"] == phase["sent"] > 0
    path = write_json(result, machine_info(), tmp_path)
    assert json.loads(path.read_text())["extra"]["tables"][0]["rows"]


@pytest.fixture
def shop_port() -> Iterator[int]:
    """The bench shop (the demo shop's pages) with 3 products, served from a thread."""
    port = free_port()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    def serve() -> None:
        loop.run_until_complete(run_shop("127.0.0.1", port, stop, bench_shop.catalogue(3)))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    wait_for_port("127.0.0.1", port, 20)
    yield port
    loop.call_soon_threadsafe(stop.set)
    thread.join(10)


def test_the_polling_baseline_stores_every_price_and_emails_a_drop_once(
    postgres_url: str, shop_port: int, tmp_path: Path
) -> None:
    urls = [bench_shop.product_url(shop_port, n) for n in range(3)]
    create_schema(postgres_url, [(n, url, f"user-{n}@bench.example") for n, url in enumerate(urls)])
    settings = Settings(
        database_url=postgres_url,
        outbox_dir=tmp_path / "outbox",
        secret_key=SecretStr("bench-smoke-link-signing-key"),
    )
    never = threading.Event()
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        job = PollingJob(settings, connection)
        job.run_once(never)  # learns the prices: no email
        assert not list((tmp_path / "outbox").glob("*.eml"))
        bench_shop.set_price(shop_port, 1, bench_shop.product_price(1) - Decimal("0.01"))
        job.run_once(never)  # product 1 dropped: one email
        job.run_once(never)  # unchanged since: none
        prices = connection.execute(
            "SELECT product_id, count(*), min(price) FROM baseline_prices GROUP BY product_id "
            "ORDER BY product_id"
        ).fetchall()
    emails = list((tmp_path / "outbox").glob("*.eml"))
    assert len(emails) == 1
    assert "user-1@bench.example" in emails[0].read_text()
    assert [(p, c) for p, c, _ in prices] == [(0, 3), (1, 3), (2, 3)]
    assert prices[1][2] == bench_shop.product_price(1) - Decimal("0.01")
