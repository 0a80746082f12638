"""Throughput of each pipeline stage alone, one process per stage, and the worker with two.

Each stage is a real ``pricewatch`` process on the embedded tansu broker, with its input
produced by the harness and its own Prometheus counter polled every ``poll_interval``:

- **scraper**: ``pricewatch scraper`` (fetch, extract, publish) against the local shop
  (``bench.shop``, the demo shop's pages, in its own process); input: N scrape requests;
  counter ``pricewatch_scraper_observations_published_total``.
- **worker, 1 and 2 processes**: ``pricewatch worker`` (detector, matcher, scheduler) with
  every product subscribed (verified, any drop) and the subscriptions in place before the
  observations; input: the realistic stream (``bench/workload.py``); counter
  ``pricewatch_stream_observations_total`` summed over the workers. Two workers split the
  partitions: both are Ready before anything is produced, so no rebalance falls inside.
- **postgres sink**: ``pricewatch sink postgres``; input: the same realistic stream;
  counter ``pricewatch_sink_records_written_total``.
- **email sink**: ``pricewatch sink email`` with the outbox backend; input: N distinct
  notifications; counter ``pricewatch_emails_sent_total``.

Rate = from the first poll that sees the counter move to the moment it reaches N
(interpolated), so start-up and group joins are excluded. CPU (100 % = one core) of each
process over that window is reported too, and the broker's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from launcher.processes import free_port, wait_for_port
from pricewatch.contract.records import (
    EventType,
    Notification,
    NotificationKind,
    ScrapeRequest,
)
from pricewatch.contract.topics import NOTIFICATIONS, PRICE_OBSERVATIONS, SCRAPE_REQUESTS
from pricewatch.ids import event_id_for, notification_key_for, product_id_for
from pricewatch.settings import Settings

from . import shop as bench_shop
from . import workload
from .pipeline import (
    OBSERVED,
    CpuMeter,
    Role,
    Services,
    bench_subscription,
    metric_sum,
    produce_records,
    produce_subscriptions,
    rate_between,
    roles,
    spawn,
    spawn_worker,
    wait_tracked,
)
from .report import RESULTS_DIR, BenchResult

NAME = "stages"
AIM_PER_WORKER = 10_000.0
STAGES = ("scraper", "worker", "worker-x2", "postgres-sink", "email-sink")


def measure(
    running: Sequence[Role],
    metric: str,
    target: int,
    timeout: float,
    poll_interval: float,
    extra_pids: dict[str, int],
    database_url: str | None = None,
) -> dict[str, Any]:
    """Poll ``metric`` (summed over ``running``) until it reaches ``target``."""
    samples: list[tuple[float, float]] = []
    start = time.perf_counter()
    meter: CpuMeter | None = None
    pids = {role.name: role.pid for role in running} | extra_pids
    completed = False
    while True:
        for role in running:
            role.check_alive()
        value = metric_sum(running, metric)
        now = time.perf_counter() - start
        if value is not None:
            samples.append((now, value))
            if meter is None and value > 0:
                meter = CpuMeter(pids, database_url).start()
            if value >= target:
                completed = True
                break
        if now > timeout:
            break
        time.sleep(poll_interval)
    cpu = meter.stop() if meter is not None else None
    moved = [c for _, c in samples if c > 0]
    counted = (min(samples[-1][1], target) - moved[0]) if moved else 0.0
    rate, seconds = rate_between(samples, target)
    if samples and samples[0][1] >= target:
        rate = 0.0  # all done before the first poll: no window to measure
    window = cpu["wall_seconds"] if cpu else 0.0
    used = (cpu or {}).get("processes", {})
    cpu_percent = {name: round(100 * s / window, 1) for name, s in used.items()} if window else {}
    return {
        "target": target,
        "completed": completed,
        "rate": rate,
        "processing_seconds": seconds,
        "cpu_percent": cpu_percent,
        "cpu_seconds": (cpu or {}).get("processes", {}),
        "window_seconds": window,
        "counted_in_window": counted,
        "database_backends_cpu_percent": (
            round(100 * cpu["database_backends"] / window, 1)
            if database_url and cpu and window
            else None
        ),
        "samples": [(round(t, 3), c) for t, c in samples],
    }


def _observation_records(
    products: int, observations: int, partitions: int
) -> list[tuple[bytes, bytes, int | None]]:
    from pricewatch.ids import partition_for

    return [
        (o.product_id.encode(), o.model_dump_json().encode(), partition_for(o.product_id, n))
        for o in workload.realistic(products, observations)
        for n in (partitions,)
    ]


def _notification_records(count: int) -> list[tuple[bytes, bytes, int | None]]:
    now = datetime.now(UTC)
    out: list[tuple[bytes, bytes, int | None]] = []
    for n in range(count):
        url = f"https://shop{n % 50}.bench.example/p/{n}"
        subscription = bench_subscription(url, n)
        observed_at = now - timedelta(seconds=1)
        event_id = event_id_for(subscription.product_id, "price_drop", f"obs-{n}")
        key = notification_key_for(subscription.subscription_id, event_id)
        notification = Notification(
            idempotency_key=key,
            kind=NotificationKind.PRICE_DROPPED,
            subscription_id=subscription.subscription_id,
            email=subscription.email,
            product_id=product_id_for(url),
            url=url,
            title=f"Bench product {n}",
            event_id=event_id,
            event_type=EventType.PRICE_DROP,
            observed_at=observed_at,
            old_price=Decimal("100.00"),
            new_price=Decimal("99.99"),
            currency="EUR",
            created_at=now,
        )
        out.append((key.encode(), notification.model_dump_json().encode(), None))
    return out


def run(
    stages: Sequence[str] = STAGES,
    observations: int = 100_000,
    products: int = 10_000,
    scrape_requests: int = 5_000,
    shop_products: int = 1_000,
    notifications: int = 2_000,
    partitions: int = 4,
    poll_interval: float = 0.2,
    bootstrap_servers: str | None = None,
    results_dir: Path = RESULTS_DIR,
    log: Callable[[str], None] = print,
) -> BenchResult:
    started = time.perf_counter()
    workdir = results_dir / "work" / NAME
    results: dict[str, dict[str, Any]] = {}
    with Services(workdir, bootstrap_servers) as services:
        broker = {} if services.broker_pid is None else {"broker": services.broker_pid}
        timeout = 120.0 + observations / 500

        def settings(stage: str, **overrides: Any) -> Settings:
            return services.settings(f"{NAME}-{stage}", partitions, **overrides)

        for stage in stages:
            log(f"[{NAME}] {stage}")
            if stage == "scraper":
                port = free_port()
                s = settings(
                    stage,
                    allowed_private_hosts=f"127.0.0.1:{port}",
                    # One local host: politeness opened up, as in scraper_e2e (this
                    # measures our cost; with the defaults one host gets 1 request/s).
                    host_min_request_interval_seconds=0.0,
                    host_max_concurrent_requests=16,
                )
                shop = spawn(
                    s,
                    "shop",
                    ["--port", str(port), "--products", str(shop_products)],
                    module="bench.shop",
                )
                with roles(shop):
                    shop.wait_ready()
                    wait_for_port("127.0.0.1", port, 30)
                    now = datetime.now(UTC)
                    requests = []
                    for i in range(scrape_requests):
                        url = bench_shop.product_url(port, i % shop_products)
                        request = ScrapeRequest(
                            product_id=product_id_for(url), url=url, requested_at=now
                        )
                        requests.append((b"127.0.0.1", request.model_dump_json().encode(), None))
                    asyncio.run(produce_records(s, s.topic(SCRAPE_REQUESTS), requests))
                    scraper = spawn(s, "scraper", ["scraper"])
                    with roles(scraper):
                        results[stage] = measure(
                            [scraper],
                            "pricewatch_scraper_observations_published_total",
                            scrape_requests,
                            timeout,
                            poll_interval,
                            broker | {"shop": shop.pid},
                        )
            elif stage in ("worker", "worker-x2"):
                s = settings(stage)
                count = 2 if stage == "worker-x2" else 1
                workers = [spawn_worker(s, f"w{i}") for i in range(count)]
                with roles(*workers):
                    for worker in workers:
                        worker.wait_ready()
                    produce_subscriptions(
                        s,
                        [
                            bench_subscription(o.url, n)
                            for n, o in enumerate(workload.realistic(products, products))
                        ],
                    )
                    wait_tracked(workers, products, timeout)
                    records = _observation_records(products, observations, partitions)
                    asyncio.run(produce_records(s, s.topic(PRICE_OBSERVATIONS), records))
                    results[stage] = measure(
                        workers, OBSERVED, observations, timeout, poll_interval, broker
                    )
                    results[stage]["per_worker"] = results[stage]["rate"] / count
            elif stage == "postgres-sink":
                database_url = services.database()
                s = settings(stage, database_url=database_url)
                records = _observation_records(products, observations, partitions)
                asyncio.run(produce_records(s, s.topic(PRICE_OBSERVATIONS), records))
                sink = spawn(s, "postgres-sink", ["sink", "postgres"])
                with roles(sink):
                    results[stage] = measure(
                        [sink],
                        "pricewatch_sink_records_written_total",
                        observations,
                        timeout,
                        poll_interval,
                        broker,
                        database_url,
                    )
            elif stage == "email-sink":
                database_url = services.database()
                s = settings(stage, database_url=database_url, email_backend="outbox")
                asyncio.run(
                    produce_records(s, s.topic(NOTIFICATIONS), _notification_records(notifications))
                )
                sink = spawn(s, "email-sink", ["sink", "email"])
                with roles(sink):
                    results[stage] = measure(
                        [sink],
                        "pricewatch_emails_sent_total",
                        notifications,
                        timeout,
                        poll_interval,
                        broker,
                        database_url,
                    )
            else:
                raise ValueError(f"unknown stage {stage!r}; one of {', '.join(STAGES)}")
            r = results[stage]
            log(
                f"  {stage}: {r['rate']:,.0f}/s over {r['processing_seconds']:.1f} s, CPU "
                f"{r['cpu_percent']}" + ("" if r["completed"] else " INCOMPLETE")
            )
    return BenchResult(
        name=NAME,
        description=__doc__ or "",
        candidate="each stage as a real process",
        baseline="none (throughput against the aims)",
        params={
            "stages": list(stages),
            "observations": observations,
            "products": products,
            "scrape_requests": scrape_requests,
            "shop_products": shop_products,
            "notifications": notifications,
            "partitions": partitions,
            "broker": "embedded tansu" if bootstrap_servers is None else bootstrap_servers,
        },
        extra={
            "stages": results,
            "tables": [_table(results)],
            "incomplete": [stage for stage, r in results.items() if not r["completed"]],
        },
        elapsed_seconds=time.perf_counter() - started,
    )


UNITS = {
    "scraper": "pages/s",
    "worker": "obs/s",
    "worker-x2": "obs/s",
    "postgres-sink": "obs/s",
    "email-sink": "emails/s",
}


def _table(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    rows = []
    for stage, r in results.items():
        aim = ""
        if stage in ("worker", "worker-x2"):
            per = r["rate"] / (2 if stage == "worker-x2" else 1)
            aim = f">= 10k/s per worker: {'ok' if per >= AIM_PER_WORKER else 'MISSED'}"
        cpu = ", ".join(f"{k} {v:.0f}%" for k, v in r["cpu_percent"].items())
        if r.get("database_backends_cpu_percent") is not None:
            cpu += f", postgres {r['database_backends_cpu_percent']:.0f}%"
        rows.append(
            [
                stage,
                f"{r['rate']:,.0f} {UNITS.get(stage, '/s')}"
                + ("" if r["completed"] else " (INCOMPLETE)"),
                f"{r['target']:,}",
                cpu,
                aim,
            ]
        )
    return {
        "title": "stages: throughput, one process per stage",
        "columns": ["stage", "throughput", "input", "CPU over the window", "aim"],
        "rows": rows,
    }
