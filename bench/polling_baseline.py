"""The original system's design, as a process: the baseline of ``time_to_alert``.

``python -m bench.polling_baseline --interval N --metrics-port P`` (database and outbox from
the ``PRICEWATCH_*`` settings). Every N seconds a job (cron-like: when a run overruns N the
next starts at once) does, for every product, one at a time:

1. reads every product from PostgreSQL (``baseline_products``);
2. fetches the page (blocking ``urllib``, the same local shop) and extracts the price with
   Pricewatch's own extractor (``producers.extractors.chain.extract``);
3. reads the last stored price of that product (``baseline_prices``, indexed);
4. inserts the new price (autocommit: a commit per row);
5. on a lower price, renders the alert (Pricewatch's own template) and hands it to the same
   outbox backend, waiting for it (synchronous email).

The tables are created by ``create_schema`` (the harness fills them). Counters on /metrics:
``pricewatch_baseline_fetches_total``, ``pricewatch_baseline_emails_total``,
``pricewatch_baseline_cycles_total`` and ``pricewatch_baseline_last_cycle_seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
from prometheus_client import Counter, Gauge, start_http_server

from pricewatch.contract.records import EventType, Notification, NotificationKind
from pricewatch.ids import (
    event_id_for,
    notification_key_for,
    observation_id_for,
    product_id_for,
    subscription_id_for,
)
from pricewatch.settings import Settings
from producers.extractors.chain import extract
from sinks.email.backends import OutboxBackend
from sinks.email.render import render

FETCHES = Counter("pricewatch_baseline_fetches_total", "Pages fetched by the polling job.")
EMAILS = Counter("pricewatch_baseline_emails_total", "Alert emails sent by the polling job.")
CYCLES = Counter("pricewatch_baseline_cycles_total", "Completed runs of the polling job.")
LAST_CYCLE = Gauge("pricewatch_baseline_last_cycle_seconds", "Duration of the last job run.")

SCHEMA = """
CREATE TABLE IF NOT EXISTS baseline_products (
    id integer PRIMARY KEY, url text NOT NULL, email text NOT NULL
);
CREATE TABLE IF NOT EXISTS baseline_prices (
    id bigserial PRIMARY KEY,
    product_id integer NOT NULL REFERENCES baseline_products (id),
    price numeric NOT NULL,
    observed_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS baseline_prices_latest ON baseline_prices (product_id, observed_at);
"""


def create_schema(database_url: str, products: list[tuple[int, str, str]]) -> None:
    """The baseline's tables, filled with (id, url, subscriber email)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(SCHEMA)
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO baseline_products (id, url, email) VALUES (%s, %s, %s)", products
            )


class PollingJob:
    def __init__(self, settings: Settings, connection: psycopg.Connection[Any]) -> None:
        self.settings = settings
        self.connection = connection
        self.backend = OutboxBackend(settings.outbox_path)
        self.loop = asyncio.new_event_loop()  # to call the async backend synchronously

    def run_once(self, stop: threading.Event) -> None:
        products = self.connection.execute(
            "SELECT id, url, email FROM baseline_products ORDER BY id"
        ).fetchall()
        for product_id, url, email in products:
            if stop.is_set():
                return
            self.check(int(product_id), str(url), str(email))

    def check(self, product_id: int, url: str, email: str) -> None:
        observed_at = datetime.now(UTC)
        try:
            with urllib.request.urlopen(url, timeout=15) as response:
                html = response.read().decode("utf-8", errors="replace")
        except (urllib.error.URLError, OSError):
            FETCHES.inc()
            return
        FETCHES.inc()
        price = extract(html, url).price
        if price is None:
            return
        row = self.connection.execute(
            "SELECT price FROM baseline_prices WHERE product_id = %s "
            "ORDER BY observed_at DESC LIMIT 1",
            (product_id,),
        ).fetchone()
        self.connection.execute(
            "INSERT INTO baseline_prices (product_id, price, observed_at) VALUES (%s, %s, %s)",
            (product_id, price, observed_at),
        )
        if row is not None and price < Decimal(row[0]):
            self.send_email(url, email, Decimal(row[0]), price, observed_at)

    def send_email(
        self, url: str, email: str, old: Decimal, new: Decimal, observed_at: datetime
    ) -> None:
        pid = product_id_for(url)
        subscription_id = subscription_id_for(email, pid)
        event_id = event_id_for(pid, "price_drop", observation_id_for(pid, observed_at))
        key = notification_key_for(subscription_id, event_id)
        notification = Notification(
            idempotency_key=key,
            kind=NotificationKind.PRICE_DROPPED,
            subscription_id=subscription_id,
            email=email,
            product_id=pid,
            url=url,
            event_id=event_id,
            event_type=EventType.PRICE_DROP,
            observed_at=observed_at,
            old_price=old,
            new_price=new,
            currency="EUR",
            created_at=datetime.now(UTC),
        )
        message = render(notification, self.settings)
        self.loop.run_until_complete(self.backend.send(message, key))
        EMAILS.inc()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.polling_baseline", description=__doc__)
    parser.add_argument("--interval", type=float, required=True, help="seconds between job runs")
    parser.add_argument("--metrics-port", type=int, required=True)
    args = parser.parse_args(argv)
    settings = Settings()
    if not settings.database_url:
        parser.error("PRICEWATCH_DATABASE_URL must be set")
    start_http_server(args.metrics_port, addr="127.0.0.1")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with psycopg.connect(settings.database_url, autocommit=True) as connection:
        job = PollingJob(settings, connection)
        while not stop.is_set():
            began = time.monotonic()
            job.run_once(stop)
            elapsed = time.monotonic() - began
            LAST_CYCLE.set(elapsed)
            CYCLES.inc()
            stop.wait(max(0.0, args.interval - elapsed))


if __name__ == "__main__":
    main()
