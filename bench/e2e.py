"""End-to-end latency at steady offered loads: observation -> notification -> email.

The pipeline as deployed, one process per role: a stream worker (detector, matcher,
scheduler), the PostgreSQL sink and the email sink (outbox backend), on the embedded tansu
broker and a throwaway PostgreSQL database. Scrapers are bypassed: the harness publishes
observations straight to ``price-observations`` at a steady rate, each stamped
``observed_at = now`` when it is sent, for ``products`` products that each have one verified
subscription with ``notify_any_drop``.

A seeded fraction ``change_fraction`` of observations changes its product's price; a
product's changes alternate between a drop (one notification, one email) and an increase
(nothing), so the expected notifications are exactly the drops sent.

Before measuring: the subscriptions are produced and the harness waits until the worker's
scheduler reports every product tracked (``pricewatch_scheduler_tracked_products``), then
one warm-up observation per product is processed (the detector learns each price).

Per load (ascending, each for ``duration`` seconds, then drained):
- latency to the **notification** on ``notifications``: the record's timestamp (set by the
  worker's producer) minus the observation's ``observed_at``; also to the moment the
  harness's consumer received it;
- latency to the **email** handed to the outbox backend: the ``.eml`` file's mtime minus
  ``observed_at``;
- **held**: produced vs processed (the worker's counter) polled every 0.5 s; held when the
  lag at the end is under one second of load and it did not grow over the second half;
- CPU of the worker, the sinks, the broker and the database backends per observation.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pricewatch.contract.topics import NOTIFICATIONS, PRICE_OBSERVATIONS
from pricewatch.ids import observation_id_for, partition_for, product_id_for
from pricewatch.kafka import AdaptiveConsumer
from pricewatch.settings import Settings

from .pipeline import (
    OBSERVED,
    CpuMeter,
    Role,
    Services,
    bench_subscription,
    histogram_delta,
    histogram_quantile,
    lag_verdict,
    latency_summary,
    outbox_times,
    parse_ts,
    produce_subscriptions,
    roles,
    scrape_histograms,
    spawn,
    spawn_worker,
    wait_tracked,
    wait_until,
)
from .report import RESULTS_DIR, BenchResult

NAME = "e2e"
AIM_P99_MS_AT_1K = 100.0
SINK_WRITTEN = "pricewatch_sink_records_written_total"
EMAILS_SENT = "pricewatch_emails_sent_total"
FETCHES = "pricewatch_kafka_fetches_total"
# The worker's own timings: where an observation's time to notification goes.
WORKER_HISTOGRAMS = (
    "pricewatch_stream_detection_latency_seconds",
    "pricewatch_stream_batch_seconds",
    "pricewatch_stream_batch_size",
)


@dataclass
class Product:
    url: str
    product_id: str
    partition: int
    base: Decimal
    low: bool = False  # the price is one cent below base (after a drop)


@dataclass
class LoadPlan:
    """Which observations change a price: seeded, so every run sends the same changes."""

    products: list[Product]
    change_fraction: float
    seed: int = 7
    rng: random.Random = field(init=False)
    index: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def next(self, warm_up: bool = False) -> tuple[Product, Decimal, bool]:
        """(product, price to publish, whether this observation is a drop)."""
        product = self.products[self.index % len(self.products)]
        self.index += 1
        drop = False
        if not warm_up and self.rng.random() < self.change_fraction:
            product.low = not product.low
            drop = product.low
        return product, product.base - (Decimal("0.01") if product.low else 0), drop


def make_products(count: int, partitions: int) -> list[Product]:
    out = []
    for n in range(count):
        url = f"https://shop{n % 50}.bench.example/p/{n}"
        product_id = product_id_for(url)
        base = Decimal(1000 + n % 9000) / 10
        out.append(Product(url, product_id, partition_for(product_id, partitions), base))
    return out


def observation_json(product: Product, price: Decimal, observed_at: float) -> bytes:
    """A valid ``PriceObservation`` as the scraper would publish it, built without pydantic
    so the generator keeps up with 10k/s on a shared core."""
    at = datetime.fromtimestamp(observed_at, UTC)
    return json.dumps(
        {
            "schema_version": 1,
            "observation_id": observation_id_for(product.product_id, at),
            "product_id": product.product_id,
            "url": product.url,
            "observed_at": at.isoformat(),
            "outcome": "ok",
            "price": format(price, "f"),
            "currency": "EUR",
            "availability": "in_stock",
            "title": "Bench product",
            "http_status": 200,
            "extractor": "jsonld",
        }
    ).encode()


@dataclass
class Seen:
    """Notifications the harness consumed: key -> (observed_at, record timestamp, received)."""

    by_key: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def between(self, start: float, end: float) -> dict[str, tuple[float, float, float]]:
        with self.lock:
            return {k: v for k, v in self.by_key.items() if start <= v[0] <= end}


async def consume_notifications(settings: Settings, seen: Seen, stop: threading.Event) -> None:
    """Record every notification's times until ``stop`` (set from another thread)."""
    # The pipeline's own adaptive wait: a fixed 20 ms one made 50 fetches a second, broker
    # CPU that is the harness's, not the pipeline's.
    consumer = AdaptiveConsumer(
        settings.topic(NOTIFICATIONS),
        fetch_wait=settings.fetch_wait(),
        bootstrap_servers=settings.bootstrap(),
        group_id=None,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100, max_records=1000)
            received = time.time()
            for records in batches.values():
                for record in records:
                    value = json.loads(record.value or b"{}")
                    observed = parse_ts(value["observed_at"])
                    with seen.lock:
                        seen.by_key[value["idempotency_key"]] = (
                            observed,
                            record.timestamp / 1000,
                            received,
                        )
    finally:
        await consumer.stop()


@dataclass
class Phase:
    rate: float
    duration: float
    started_at: float = 0.0  # wall clock
    ended_at: float = 0.0
    sent: int = 0
    drops: int = 0
    samples: list[tuple[float, float, float, float]] = field(default_factory=list)


async def generate(
    settings: Settings,
    plan: LoadPlan,
    phase: Phase,
    poll: Callable[[], tuple[float, float] | None],
    base_counts: tuple[float, float],
) -> None:
    """Publish at ``phase.rate`` for ``phase.duration`` s; sample produced vs processed."""
    from pricewatch.kafka import make_producer

    # The scrapers' producer settings (Settings.producer_linger_ms): each produce request
    # costs the embedded broker about a millisecond of CPU whatever it carries, and at a
    # 1 ms linger the harness alone kept it ~75 % busy at 1,000 obs/s. observed_at is
    # stamped before the linger, so its wait counts in every latency.
    producer = make_producer(settings)
    await producer.start()
    topic = settings.topic(PRICE_OBSERVATIONS)
    loop = asyncio.get_running_loop()
    pending: list[asyncio.Future[Any]] = []

    async def sampler() -> None:
        while True:
            counts = await asyncio.to_thread(poll)
            t = loop.time() - start
            if counts is not None:
                phase.samples.append(
                    (t, phase.sent, counts[0] - base_counts[0], counts[1] - base_counts[1])
                )
            await asyncio.sleep(0.5)

    try:
        start = loop.time()
        phase.started_at = time.time()
        sampling = asyncio.create_task(sampler())
        while (elapsed := loop.time() - start) < phase.duration:
            due = int(phase.rate * elapsed) - phase.sent
            for _ in range(due):
                product, price, drop = plan.next()
                pending.append(
                    await producer.send(
                        topic,
                        observation_json(product, price, time.time()),
                        key=product.product_id.encode(),
                        partition=product.partition,
                    )
                )
                phase.sent += 1
                phase.drops += drop
            if len(pending) > 5000:
                await asyncio.gather(*pending)
                pending.clear()
            await asyncio.sleep(0.002)
        phase.ended_at = time.time()
        await asyncio.gather(*pending)
        await asyncio.sleep(0.6)  # one more sample after the last send
        sampling.cancel()
    finally:
        await producer.stop()


def run(
    loads: tuple[float, ...] = (100.0, 1_000.0, 10_000.0),
    duration: float = 30.0,
    products: int = 10_000,
    change_fraction: float = 0.02,
    partitions: int = 4,
    drain_timeout: float | None = None,
    bootstrap_servers: str | None = None,
    kafka_embedded: bool = False,
    results_dir: Any = RESULTS_DIR,
    log: Callable[[str], None] = print,
    baseline: bool = False,
) -> BenchResult:
    started = time.perf_counter()
    baseline_phases: list[dict[str, Any]] = []
    workdir = results_dir / "work" / NAME
    drain_timeout = drain_timeout or max(60.0, 3 * duration)
    phases: list[dict[str, Any]] = []
    with Services(workdir, bootstrap_servers, kafka_embedded) as services:
        database_url = services.database()
        settings = services.settings(
            NAME, partitions, database_url=database_url, email_backend="outbox"
        )
        catalogue = make_products(products, partitions)
        plan = LoadPlan(catalogue, change_fraction)
        worker = spawn_worker(settings, "w0")
        pg_sink = spawn(settings, "postgres-sink", ["sink", "postgres"])
        email_sink = spawn(settings, "email-sink", ["sink", "email"])
        with roles(worker, pg_sink, email_sink) as running:
            for role in running:
                role.wait_ready()
            log(f"[{NAME}] {products} subscriptions (verified), waiting until all are tracked")
            produce_subscriptions(
                settings, [bench_subscription(p.url, n) for n, p in enumerate(catalogue)]
            )
            waited = wait_tracked([worker], products, timeout=120 + products / 500)
            log(f"[{NAME}] subscriptions in place after {waited:.1f} s; warm-up sweep")
            _warm_up(settings, plan, worker, products)
            seen = Seen()
            stop = threading.Event()
            consumer = threading.Thread(
                target=_consume_in_thread, args=(settings, seen, stop), daemon=True
            )
            consumer.start()
            meter_pids = {"worker": worker.pid, "postgres-sink": pg_sink.pid}
            meter_pids["email-sink"] = email_sink.pid
            if services.broker_pid is not None:
                meter_pids["broker"] = services.broker_pid
            try:
                for rate in sorted(loads):
                    phases.append(
                        _run_phase(
                            settings,
                            plan,
                            Phase(rate, duration),
                            worker,
                            pg_sink,
                            email_sink,
                            seen,
                            CpuMeter(meter_pids, database_url),
                            drain_timeout,
                            log,
                        )
                    )
            finally:
                stop.set()
                consumer.join(10)
        if baseline:
            baseline_phases = _run_baseline(
                services, loads, duration, products, change_fraction, partitions, log
            )
    table = _table(phases)
    return BenchResult(
        name=NAME,
        description=__doc__ or "",
        candidate="worker + postgres sink + email sink (outbox), one process each",
        baseline=(
            "naive agent (bench/naive_worker.py: one table write per observation, nothing "
            "emitted) at the same loads, same broker"
            if baseline
            else "none (latency against the aims)"
        ),
        params={
            "loads_obs_per_second": sorted(loads),
            "duration_seconds": duration,
            "products": products,
            "change_fraction": change_fraction,
            "notifying_fraction": change_fraction / 2,
            "partitions": partitions,
            "broker": "embedded tansu" if bootstrap_servers is None else bootstrap_servers,
        },
        extra={
            "phases": phases,
            "baseline_phases": baseline_phases,
            "tables": [table] + ([_baseline_table(baseline_phases)] if baseline else []),
        },
        elapsed_seconds=time.perf_counter() - started,
    )


def _run_baseline(
    services: Services,
    loads: tuple[float, ...],
    duration: float,
    products: int,
    change_fraction: float,
    partitions: int,
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    """The naive agent at the same loads, on topics of its own: does it hold, and its CPU."""
    settings = services.settings(f"{NAME}-naive", partitions)
    plan = LoadPlan(make_products(products, partitions), change_fraction)
    worker = spawn(
        settings,
        "worker-naive",
        ["--worker-id", "naive", "--mode", "table"],
        module="bench.naive_worker",
    )
    out = []
    with roles(worker):
        worker.wait_ready()
        pids = {"worker": worker.pid}
        if services.broker_pid is not None:
            pids["broker"] = services.broker_pid
        for rate in sorted(loads):

            def poll() -> tuple[float, float] | None:
                processed = worker.metric(OBSERVED)
                return None if processed is None else (processed, processed)

            base = poll() or (0.0, 0.0)
            phase = Phase(rate, duration)
            log(f"[{NAME}] baseline (naive agent): {rate:,.0f} obs/s for {duration:.0f} s")
            meter = CpuMeter(pids).start()
            asyncio.run(generate(settings, plan, phase, poll, base))
            cpu = meter.stop()
            lag = lag_verdict([(t, p, c) for t, p, c, _ in phase.samples], phase.rate)
            log(f"  held={lag.held} (final lag {lag.final_lag}), CPU {cpu['processes']}")
            out.append(
                {
                    "offered_obs_per_second": rate,
                    "sent": phase.sent,
                    "achieved_send_rate": phase.sent / max(phase.ended_at - phase.started_at, 1e-9),
                    "worker": lag.to_json(),
                    "cpu": cpu,
                }
            )
    return out


def _baseline_table(phases: list[dict[str, Any]]) -> dict[str, Any]:
    rows = [
        [
            f"{p['offered_obs_per_second']:,.0f}",
            f"{p['achieved_send_rate']:,.0f}",
            _held(p["worker"]),
            ", ".join(
                f"{name} {100 * seconds / p['cpu']['wall_seconds']:.0f}%"
                for name, seconds in p["cpu"]["processes"].items()
            ),
        ]
        for p in phases
    ]
    return {
        "title": "e2e baseline: the naive agent (one table write per observation) at the "
        "same loads",
        "columns": ["offered obs/s", "sent/s", "held", "CPU (% of a core)"],
        "rows": rows,
    }


def _consume_in_thread(settings: Settings, seen: Seen, stop: threading.Event) -> None:
    asyncio.run(consume_notifications(settings, seen, stop))


def _warm_up(settings: Settings, plan: LoadPlan, worker: Role, products: int) -> None:
    from .pipeline import produce_records

    now = time.time()
    records = []
    for _ in range(products):
        product, price, _drop = plan.next(warm_up=True)
        records.append(
            (product.product_id.encode(), observation_json(product, price, now), product.partition)
        )
    asyncio.run(produce_records(settings, settings.topic(PRICE_OBSERVATIONS), records))

    def learnt() -> bool:
        value = worker.metric(OBSERVED)
        return value is not None and value >= products

    wait_until(learnt, 120 + products / 500, "the warm-up sweep", alive=[worker])


def _run_phase(
    settings: Settings,
    plan: LoadPlan,
    phase: Phase,
    worker: Role,
    pg_sink: Role,
    email_sink: Role,
    seen: Seen,
    meter: CpuMeter,
    drain_timeout: float,
    log: Callable[[str], None],
) -> dict[str, Any]:
    def poll() -> tuple[float, float] | None:
        processed = worker.metric(OBSERVED)
        written = pg_sink.metric(SINK_WRITTEN)
        return None if processed is None or written is None else (processed, written)

    base = poll()
    emails_before = email_sink.metric(EMAILS_SENT) or 0.0
    fetch_roles = {"worker": worker, "postgres-sink": pg_sink, "email-sink": email_sink}
    fetches_before = {name: role.metric(FETCHES) or 0.0 for name, role in fetch_roles.items()}
    assert base is not None, "worker or postgres sink /metrics not answering"
    histograms_before = scrape_histograms(worker.metrics_url, WORKER_HISTOGRAMS)
    log(f"[{NAME}] {phase.rate:,.0f} obs/s for {phase.duration:.0f} s")
    meter.start()
    asyncio.run(generate(settings, plan, phase, poll, base))
    lag = lag_verdict([(t, p, c) for t, p, c, _ in phase.samples], phase.rate)
    sink_lag = lag_verdict([(t, p, w) for t, p, _, w in phase.samples], phase.rate)

    # Drain: everything processed, every expected notification and email out (or timeout).
    def notified() -> dict[str, tuple[float, float, float]]:
        # Every observation of this load was stamped inside [started_at, ended_at].
        return seen.between(phase.started_at, phase.ended_at)

    def drained() -> bool:
        counts = poll()
        emails = (email_sink.metric(EMAILS_SENT) or 0.0) - emails_before
        return (
            counts is not None
            and counts[0] - base[0] >= phase.sent
            and len(notified()) >= phase.drops
            and emails >= phase.drops
        )

    try:
        drain = wait_until(drained, drain_timeout, "the drain", alive=[worker, email_sink])
        complete = True
    except TimeoutError:
        drain, complete = drain_timeout, False
    # Over the load and its drain: a load not held is paid for after it stops.
    cpu = meter.stop()
    fetches_per_second = {
        name: ((role.metric(FETCHES) or 0.0) - fetches_before[name]) / cpu["wall_seconds"]
        for name, role in fetch_roles.items()
    }
    stages = worker_stages(
        histogram_delta(scrape_histograms(worker.metrics_url, WORKER_HISTOGRAMS), histograms_before)
    )
    notes = notified()
    emailed = outbox_times(settings.outbox_path)
    to_topic = [created - observed for observed, created, _ in notes.values()]
    to_consumer = [received - observed for observed, _, received in notes.values()]
    to_email = [emailed[k] - v[0] for k, v in notes.items() if k in emailed]
    achieved = phase.sent / max(phase.ended_at - phase.started_at, 1e-9)
    result = {
        "offered_obs_per_second": phase.rate,
        "sent": phase.sent,
        "achieved_send_rate": achieved,
        "expected_notifications": phase.drops,
        "worker": lag.to_json(),
        "postgres_sink": sink_lag.to_json(),
        "drain_seconds": drain,
        "complete": complete,
        "notification_on_topic": latency_summary(to_topic, phase.drops),
        "notification_consumed": latency_summary(to_consumer, phase.drops),
        "email_handed_to_backend": latency_summary(to_email, phase.drops),
        "cpu": cpu,
        "cpu_us_per_observation": 1e6 * cpu["total"] / max(phase.sent, 1),
        "fetches_per_second": fetches_per_second,
        "worker_stages": stages,
        "samples": [tuple(round(x, 3) for x in s) for s in phase.samples],
    }
    n = result["notification_on_topic"]
    e = result["email_handed_to_backend"]
    log(
        f"  sent {phase.sent} ({achieved:,.0f}/s), held={lag.held} (final lag {lag.final_lag}), "
        f"notification p50/p99 {_ms(n['p50_ms'])}/{_ms(n['p99_ms'])} ({n['count']}/"
        f"{phase.drops}), email p50/p99 {_ms(e['p50_ms'])}/{_ms(e['p99_ms'])} ({e['count']}), "
        f"CPU {result['cpu_us_per_observation']:,.0f} us/obs "
        f"({_shares(cpu)}), fetches/s "
        + ", ".join(f"{k} {v:.0f}" for k, v in fetches_per_second.items())
        + ("" if complete else f"; NOT DRAINED within {drain_timeout:.0f} s")
    )
    log(f"  worker: {_stages_line(stages)}")
    return result


def worker_stages(delta: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    """The worker's histograms over a phase: observed_at -> the detector's events acknowledged
    (p50/p95/p99), and per agent its mean batch size and each phase's mean and p99 (ms)."""
    out: dict[str, Any] = {}
    for (name, labels), entry in sorted(delta.items()):
        label = dict(labels)
        if name == "pricewatch_stream_detection_latency_seconds":
            out["detection_ms"] = {
                f"p{round(100 * q)}": _to_ms(histogram_quantile(entry, q))
                for q in (0.5, 0.95, 0.99)
            }
        elif entry["count"] > 0:
            agent = out.setdefault("agents", {}).setdefault(label["agent"], {})
            if name == "pricewatch_stream_batch_size":
                agent["batches"] = entry["count"]
                agent["mean_batch"] = entry["sum"] / entry["count"]
            else:
                agent[label["phase"]] = {
                    "mean_ms": 1000 * entry["sum"] / entry["count"],
                    "p99_ms": _to_ms(histogram_quantile(entry, 0.99)),
                }
    return out


def _to_ms(seconds: float | None) -> float | None:
    return None if seconds is None else 1000 * seconds


def _stages_line(stages: dict[str, Any]) -> str:
    detection = stages.get("detection_ms", {})
    parts = [
        "observed -> events acked p50/p95/p99 "
        + "/".join(_ms(detection.get(k)) for k in ("p50", "p95", "p99"))
    ]
    for agent, figures in stages.get("agents", {}).items():
        phases = ", ".join(
            f"{phase} {_ms(v['mean_ms'])} (p99 {_ms(v['p99_ms'])})"
            for phase, v in figures.items()
            if isinstance(v, dict)
        )
        batches, mean = figures.get("batches", 0), figures.get("mean_batch", 0)
        parts.append(f"{agent} {batches:,.0f} batches of {mean:.1f}: {phases}")
    return "; ".join(parts)


def _shares(cpu: dict[str, Any]) -> str:
    wall = cpu["wall_seconds"]
    return ", ".join(f"{k} {100 * v / wall:.0f}%" for k, v in cpu["processes"].items())


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} ms" if value >= 10 else f"{value:.1f} ms"


def _held(verdict: dict[str, Any]) -> str:
    return "yes" if verdict["held"] else f"NO (lag {verdict['final_lag']:,})"


def _table(phases: list[dict[str, Any]]) -> dict[str, Any]:
    rows = []
    for p in phases:
        n, c = p["notification_on_topic"], p["notification_consumed"]
        e = p["email_handed_to_backend"]
        aim = ""
        if p["offered_obs_per_second"] == 1_000:
            p99 = n["p99_ms"]
            aim = "n/a" if p99 is None else ("ok" if p99 < AIM_P99_MS_AT_1K else "MISSED")
            aim = f"p99 < 100 ms: {aim}"
        rows.append(
            [
                f"{p['offered_obs_per_second']:,.0f}",
                f"{p['achieved_send_rate']:,.0f}",
                _held(p["worker"]) + " / " + _held(p["postgres_sink"]),
                f"{_ms(n['p50_ms'])} / {_ms(n['p95_ms'])} / {_ms(n['p99_ms'])}",
                f"{_ms(c['p99_ms'])}",
                f"{_ms(e['p50_ms'])} / {_ms(e['p95_ms'])} / {_ms(e['p99_ms'])}",
                f"{e['count']}/{p['expected_notifications']}",
                f"{p['cpu_us_per_observation']:,.0f}",
                aim,
            ]
        )
    return {
        "title": "e2e: observed_at -> notification record / email handed to the backend",
        "columns": [
            "offered obs/s",
            "sent/s",
            "held: worker / pg sink",
            "notification p50/p95/p99",
            "consumed p99",
            "email p50/p95/p99",
            "emails",
            "CPU us/obs",
            "aim",
        ],
        "rows": rows,
    }
