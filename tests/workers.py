"""Stream workers as real subprocesses for tests, and the observation streams fed to them.

``WorkerProcess`` starts ``pricewatch worker`` exactly as the Stack does (the same
``PRICEWATCH_*`` environment, the launcher's ``Process``), and can wait for it, stop it
cleanly or SIGKILL it; ``SinkProcess`` and ``ScraperProcess`` do the same for a sink and a
scraper. A worker is a black box: tests feed its input topics and read its output topics
only.

``Scenario`` is a deterministic stream of observations for many products plus subscriptions,
with its reference outcome computed by the pure functions (``detect``, ``evaluate``): what a
single, never-interrupted worker must publish. The ``check_*`` functions compare what the
workers published (read back from the topics, the changelogs or a stopped worker's rocksdb
store) with that reference.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import shutil
import time
import urllib.request
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from rocksdict import AccessType, Options, Rdict

from launcher.processes import Process, pricewatch_command
from launcher.stack import Stack
from pricewatch.contract.records import (
    Availability,
    Notification,
    Outcome,
    PriceEvent,
    PriceObservation,
    Subscription,
)
from pricewatch.contract.topics import (
    NOTIFICATIONS,
    PRICE_OBSERVATIONS,
    SCRAPE_REQUESTS,
    SUBSCRIPTIONS,
)
from pricewatch.ids import (
    observation_id_for,
    partition_for,
    product_id_for,
    subscription_id_for,
)
from pricewatch.kafka import create_topics, make_producer
from pricewatch.settings import Settings
from streams.codec import decode_alert_states, decode_product_state
from streams.domain.alerts import AlertRules, AlertState, evaluate, new_alert_state
from streams.domain.detector import DetectorConfig, ProductState, detect
from tests.conftest import ARTIFACTS, Broker
from tests.helpers import Progress

READY_MARKER = "Worker]: Ready"
OBSERVED = "pricewatch_stream_observations_total"  # the detector's counter, per worker
# How long a fault test's wait may see no progress at all before it fails (its overall
# deadline is tests.helpers.OVERALL_WINDOWS times this). Waits end as soon as their
# condition holds, so a generous value costs a passing run nothing; a worker's restart on
# tansu alone takes ~10 s, and several times that on a loaded machine.
STALL_SECONDS = 120.0


def worker_settings(
    bootstrap_servers: str, embedded: bool, prefix: str, data_dir: Path, **overrides: Any
) -> Settings:
    """Settings isolating one test's topics, consumer group and worker stores."""
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": bootstrap_servers,
        "kafka_embedded": embedded,
        "app_id": f"{prefix}pw",
        "topic_prefix": prefix,
        "topic_partitions": 4,
        "data_dir": data_dir,
        "log_level": "INFO",
    }
    values.update(overrides)
    return Settings(**values)


def scenario_settings(broker: Broker, prefix: str, data_dir: Path) -> Settings:
    """Worker settings for ``Scenario``: alert windows short enough, in observation time
    (one observation a second), that cool-downs and stock-flap windows come into play."""
    return worker_settings(
        broker.bootstrap_servers,
        broker.embedded,
        prefix,
        data_dir,
        alert_cooldown_seconds=600,
        stock_flap_window_seconds=120,
    )


def prepare_topics(settings: Settings) -> None:
    """Create every topic up front (nothing relies on auto-creation)."""
    asyncio.run(create_topics(settings))


@dataclass
class WorkerProcess:
    """One ``pricewatch worker`` subprocess. Its log is appended to across restarts."""

    settings: Settings
    worker_id: str
    log_path: Path
    metrics_port: int | None = None
    process: Process | None = None

    # What this run's log shows once the process is ready (Faust: assigned and recovered).
    ready_marker = READY_MARKER

    def command(self) -> list[str]:
        return ["worker", "--worker-id", self.worker_id]

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.running

    def start(self) -> WorkerProcess:
        assert not self.running, f"{self.worker_id} is already running"
        args = self.command()
        if self.metrics_port:
            args += ["--metrics-port", str(self.metrics_port)]
        self.process = Process(
            self.worker_id,
            pricewatch_command(*args),
            self.log_path,
            env=Stack(self.settings).child_env(),
        ).start(banner=f"test harness: starting {' '.join(self.command())}")
        return self

    def log_text(self, *, since_start: bool = True) -> str:
        return "" if self.process is None else self.process.log_text(since_start=since_start)

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_text(since_start=False)[-chars:]

    def wait_ready(self, timeout: float = 45.0) -> None:
        """Until this run's log shows ``ready_marker``."""
        assert self.process is not None
        self.process.wait_for_log(self.ready_marker, timeout)

    def returncode(self) -> int | None:
        return None if self.process is None else self.process.returncode

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait: Faust stops its agents, flushes and commits. Returns the exit
        code; a worker that does not stop in time is killed and the test fails."""
        assert self.process is not None
        code = self.process.stop(timeout)
        if self.process.killed:
            raise AssertionError(
                f"{self.worker_id} ignored SIGTERM for {timeout}s:\n{self.log_tail()}"
            )
        assert code is not None
        return code

    def kill(self) -> None:
        """SIGKILL: no flush, no commit, no clean close of its stores."""
        assert self.process is not None
        self.process.kill()

    def metric(self, name: str) -> float:
        """Sum of a metric's samples (over all labels) from this worker's /metrics."""
        assert self.metrics_port, "start the worker with a metrics_port"
        url = f"http://{self.settings.metrics_host}:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def metric_or_none(self, name: str) -> float | None:
        """``metric``, or None while the worker does not answer (starting, restarting)."""
        try:
            return self.metric(name)
        except OSError:
            return None

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.running:
            with contextlib.suppress(AssertionError):
                self.terminate(timeout=15)


@dataclass
class SinkProcess(WorkerProcess):
    """One ``pricewatch sink <worker_id>`` subprocess: ``worker_id`` names the sink
    (``postgres``, ``events``, ``subscriptions``, ``email``, ``archive``)."""

    ready_marker = ": consuming "  # logged as its consumer starts

    def command(self) -> list[str]:
        return ["sink", self.worker_id]


@dataclass
class ScraperProcess(WorkerProcess):
    """One ``pricewatch scraper`` subprocess, started like the Stack starts it (the
    ``worker_id`` only names it)."""

    ready_marker = "scraper consuming "  # logged as its consumer starts

    def command(self) -> list[str]:
        return ["scraper"]


def keep_logs(logs: Path, name: str) -> None:
    """Copy the workers' logs into test-artifacts/ for a failing CI run."""
    target = ARTIFACTS / name
    shutil.rmtree(target, ignore_errors=True)
    if logs.exists():
        shutil.copytree(logs, target)


def table_store(settings: Settings, worker_id: str, table: str) -> dict[bytes, bytes]:
    """A stopped worker's local rocksdb store of ``table``, all partitions merged.

    Faust keeps one database per table and partition under the worker's data dir
    (``workers/<id>/v1/tables/<table>-<partition>.db``) plus its own offset bookkeeping key.
    """
    tables = settings.data_dir / "workers" / worker_id / "v1" / "tables"
    paths = sorted(tables.glob(f"{table}-*.db"))
    assert paths, f"no {table} store under {tables}: {sorted(tables.glob('*'))}"
    merged: dict[bytes, bytes] = {}
    for path in paths:
        db = Rdict(str(path), options=Options(raw_mode=True), access_type=AccessType.read_only())
        try:
            for key, value in db.items():  # raw mode: bytes in, bytes out
                assert isinstance(key, bytes) and isinstance(value, bytes)
                if not key.startswith(b"__faust"):  # Faust's offset bookkeeping
                    merged[key] = value
        finally:
            db.close()
    return merged


def changelog_topic(settings: Settings, table: str) -> str:
    return f"{settings.app_id}-{table}-changelog"


# --- Kafka helpers ------------------------------------------------------------------


async def group_members(settings: Settings, group_id: str) -> tuple[str, int]:
    """(state, member count) of a consumer group, from DescribeGroups."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap())
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([group_id])
        group = response.groups[0]
        # (error_code, group_id, state, protocol_type, protocol, members[, ...])
        return group[2], len(group[5])
    finally:
        await admin.close()


class TopicReader:
    """Reads every partition of some topics from offset 0 (no group, no commits).

    ``drain`` stops at each partition's high watermark as reported by Fetch responses,
    which the embedded broker gets right (unlike ListOffsets' end offsets)."""

    def __init__(self, settings: Settings, *topics: str) -> None:
        self.settings = settings
        self.topics = topics
        self.records: list[ConsumerRecord[bytes, bytes]] = []
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.bootstrap(),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
        )
        self.partitions: list[TopicPartition] = []

    async def __aenter__(self) -> TopicReader:
        await self.consumer.start()
        existing = await self.consumer.topics()
        for topic in self.topics:
            assert topic in existing, f"topic {topic} does not exist"
            # Ours and Faust's changelogs all have the configured partition count.
            partitions = range(self.settings.topic_partitions)
            self.partitions += [TopicPartition(topic, p) for p in partitions]
        self.consumer.assign(self.partitions)
        await self.consumer.seek_to_beginning(*self.partitions)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def poll(self, timeout_ms: int = 200) -> None:
        batch = await self.consumer.getmany(timeout_ms=timeout_ms)
        for records in batch.values():
            self.records.extend(records)

    async def caught_up(self) -> bool:
        for tp in self.partitions:
            highwater = self.consumer.highwater(tp)
            if highwater is None or await self.consumer.position(tp) < highwater:
                return False
        return True

    async def drain(self, seconds: float = 30.0) -> list[ConsumerRecord[bytes, bytes]]:
        """Read until every partition is at its high watermark."""
        deadline = time.monotonic() + seconds
        await self.poll(100)
        while not await self.caught_up():
            assert time.monotonic() < deadline, f"could not read {self.topics} to the end"
            await self.poll(100)
        return self.records

    def latest_by_key(self) -> dict[bytes, bytes]:
        """A compacted view: the last value per key, tombstones deleting."""
        latest: dict[bytes, bytes] = {}
        for record in sorted(self.records, key=lambda r: (r.partition, r.offset)):
            assert record.key is not None
            if record.value is None:
                latest.pop(record.key, None)
            else:
                latest[record.key] = record.value
        return latest

    async def wait_until(
        self,
        done: Callable[[list[ConsumerRecord[bytes, bytes]]], bool],
        seconds: float,
        progress: Callable[[], Awaitable[object]] | None = None,
    ) -> bool:
        """Read until ``done(records)``. False (the caller asserts) once neither the records
        read nor ``progress()`` (e.g. a worker's processed-message counter) have moved for
        ``seconds``, or at the overall deadline (helpers.OVERALL_WINDOWS windows): a loaded
        machine gets all the time it needs while the pipeline keeps moving."""
        waiting = Progress(seconds)
        elsewhere: object = None  # the last value of progress()
        polled_at = 0.0
        while not done(self.records):
            if progress is not None and time.monotonic() - polled_at >= 1.0:
                polled_at = time.monotonic()
                elsewhere = await progress()
            waiting.saw((len(self.records), elsewhere))
            if waiting.expired():
                return False
            await self.poll(200)
        return True


async def read_topic(settings: Settings, topic: str) -> TopicReader:
    """Everything on ``topic`` now (``.records``, ``.latest_by_key()``)."""
    reader = TopicReader(settings, topic)
    async with reader:
        await reader.drain()
    return reader


async def wait_for_subscriptions(settings: Settings, scenario: Scenario) -> None:
    """The scheduler asks for a check of every product with an active subscription: once
    every subscribed product has been asked for, the matcher holds the subscriptions."""
    async with TopicReader(settings, settings.topic(SCRAPE_REQUESTS)) as reader:

        def all_tracked(records: list[ConsumerRecord[bytes, bytes]]) -> bool:
            asked = {json.loads(r.value)["product_id"] for r in records if r.value}
            return asked >= scenario.subscribed_products

        assert await reader.wait_until(all_tracked, 30), "the subscriptions were not applied"


def processed_by(*workers: WorkerProcess) -> Callable[[], Awaitable[object]]:
    """The workers' processed-observation counters: the progress a wait for their output
    follows (a tuple, so a restarted worker's counter starting again still moves)."""

    async def counters() -> object:
        return tuple(
            [await asyncio.to_thread(worker.metric_or_none, OBSERVED) for worker in workers]
        )

    return counters


async def wait_for_end_markers(
    settings: Settings,
    markers: set[str],
    seconds: float,
    progress: Callable[[], Awaitable[object]] | None = None,
) -> bool:
    """Until every partition's last alert is out: the workers have processed everything.
    False once nothing moved for ``seconds`` (notifications read, or ``progress()``: pass
    the workers' processed counter), or at the overall deadline."""
    async with TopicReader(settings, settings.topic(NOTIFICATIONS)) as reader:
        return await reader.wait_until(
            lambda records: markers <= {r.key.decode() for r in records if r.key},
            seconds,
            progress,
        )


# --- The scenario -------------------------------------------------------------------

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
PRICES = ["80.00", "90.00", "95.00", "99.99", "100.00", "100.01", "105.00", "110.00", "120.00"]


@dataclass
class Reference:
    """What one uninterrupted worker publishes for the scenario (from the pure functions)."""

    events: list[PriceEvent]
    notifications: list[Notification]
    states: dict[str, ProductState]  # product_id -> detector state
    alert_states: dict[str, AlertState]  # subscription_id -> matcher state


@dataclass
class Scenario:
    """Observations of many products whose prices move across and around the targets,
    with out-of-stock spells, fetch errors, 404/410 removals, currency switches and
    replayed (duplicate) observations; subscriptions on some of the products."""

    observations: list[PriceObservation]
    subscriptions: list[Subscription]
    # One per partition, alerted by the last observations: the end-of-stream markers.
    sentinels: list[Subscription]

    @classmethod
    def build(
        cls,
        *,
        products: int = 40,
        observations: int = 2400,
        subscribed: int = 12,
        partitions: int = 4,
        seed: int = 20260105,
    ) -> Scenario:
        rng = random.Random(seed)
        urls = [f"https://shop.example/p/{seed}-{i}" for i in range(products)]
        price = {url: rng.choice(PRICES) for url in urls}
        currency = dict.fromkeys(urls, "EUR")
        history: dict[str, list[PriceObservation]] = {url: [] for url in urls}
        out: list[PriceObservation] = []
        for step in range(observations):
            url = rng.choice(urls)
            roll = rng.random()
            if roll < 0.02 and history[url]:
                out.append(rng.choice(history[url][-5:]))  # a replay: at-least-once scraping
                continue
            observed_at = T0 + timedelta(seconds=step)
            product_id = product_id_for(url)
            common = {
                "observation_id": observation_id_for(product_id, observed_at),
                "product_id": product_id,
                "url": url,
                "observed_at": observed_at,
                "title": f"Product {url.rsplit('-', 1)[1]}",
            }
            if roll < 0.06:
                obs = PriceObservation(**common, outcome=Outcome.ERROR, error="timeout")
            elif roll < 0.11:
                status = 410 if rng.random() < 0.2 else 404
                obs = PriceObservation(
                    **common, outcome=Outcome.GONE, http_status=status, error=f"http_{status}"
                )
            else:
                if rng.random() < 0.55:
                    price[url] = rng.choice(PRICES)
                if rng.random() < 0.01:
                    currency[url] = "USD" if currency[url] == "EUR" else "EUR"
                availability = (
                    Availability.OUT_OF_STOCK if rng.random() < 0.1 else Availability.IN_STOCK
                )
                obs = PriceObservation(
                    **common,
                    outcome=Outcome.OK,
                    price=Decimal(price[url]),
                    currency=currency[url],
                    availability=availability,
                    http_status=200,
                )
            history[url].append(obs)
            out.append(obs)

        subscriptions: list[Subscription] = []
        for i, url in enumerate(urls[:subscribed]):
            product_id = product_id_for(url)
            kinds: list[dict[str, Any]] = [{"target_price": Decimal("100.00")}]
            if i % 4 == 1:  # a second subscriber: 10 % below the first price seen, any drop
                kinds.append({"drop_percent": Decimal("10"), "notify_any_drop": True})
            if i % 4 == 2:  # an ended subscription: never alerts
                kinds.append({"target_price": Decimal("110.00"), "active": False})
            if i % 4 == 3:  # stock and removal alerts
                kinds = [
                    {
                        "target_price": Decimal("95.00"),
                        "notify_back_in_stock": True,
                        "notify_sold_out": True,
                        "notify_removed": True,
                    }
                ]
            for j, options in enumerate(kinds):
                email = f"user{i}-{j}@example.com"
                subscriptions.append(
                    Subscription(
                        subscription_id=subscription_id_for(email, product_id),
                        email=email,
                        product_id=product_id,
                        url=url,
                        created_at=T0 - timedelta(days=1),
                        verified=True,
                        **options,
                    )
                )
        # Last in every partition: a product whose drop alerts a subscriber. Once all
        # these alerts are out, the worker has processed everything produced before them.
        sentinels: list[str] = []
        for partition in range(partitions):
            n = 0
            while (
                partition_for(product_id_for(url := f"https://shop.example/end/{n}"), partitions)
                != partition
            ):
                n += 1
            sentinels.append(url)
        for k, last_price in enumerate(["50.00", "40.00"]):
            for url in sentinels:
                product_id = product_id_for(url)
                observed_at = T0 + timedelta(seconds=observations + k)
                out.append(
                    PriceObservation(
                        observation_id=observation_id_for(product_id, observed_at),
                        product_id=product_id,
                        url=url,
                        observed_at=observed_at,
                        outcome=Outcome.OK,
                        price=Decimal(last_price),
                        currency="EUR",
                        availability=Availability.IN_STOCK,
                        http_status=200,
                    )
                )
        sentinel_subscriptions = [
            Subscription(
                subscription_id=subscription_id_for("end@example.com", product_id_for(url)),
                email="end@example.com",
                product_id=product_id_for(url),
                url=url,
                notify_any_drop=True,
                verified=True,
                created_at=T0 - timedelta(days=1),
            )
            for url in sentinels
        ]
        return cls(out, subscriptions + sentinel_subscriptions, sentinel_subscriptions)

    @property
    def subscribed_products(self) -> set[str]:
        return {s.product_id for s in self.subscriptions if s.active}

    def end_markers(self, reference: Reference) -> set[str]:
        """Idempotency keys of the sentinel alerts: the last notification of each partition."""
        ids = {s.subscription_id for s in self.sentinels}
        keys = {n.idempotency_key for n in reference.notifications if n.subscription_id in ids}
        assert len(keys) == len(self.sentinels)
        return keys

    def reference(self, settings: Settings) -> Reference:
        """The outcome of one uninterrupted worker, configured like the agents are.

        Subscriptions are applied before any observation (the tests wait for that), so
        each starts with no known price."""
        config = DetectorConfig(
            removed_confirmations=settings.removed_confirmations,
            stock_flap_window=timedelta(seconds=settings.stock_flap_window_seconds),
        )
        rules = AlertRules(
            cooldown=timedelta(seconds=settings.alert_cooldown_seconds),
            stock_flap_window=timedelta(seconds=settings.stock_flap_window_seconds),
        )
        now = datetime.now(UTC)
        states: dict[str, ProductState] = {}
        events: list[PriceEvent] = []
        for obs in self.observations:
            new_state, emitted = detect(states.get(obs.product_id), obs, config, now)
            if new_state is not None:
                states[obs.product_id] = new_state
            # As the wire carries them (and the matcher reads them).
            events.extend(PriceEvent.model_validate(e, from_attributes=True) for e in emitted)
        alert_states = {s.subscription_id: new_alert_state(s, None) for s in self.subscriptions}
        notifications: list[Notification] = []
        for event in events:
            for s in self.subscriptions:
                if s.product_id != event.product_id:
                    continue
                state, notification = evaluate(alert_states[s.subscription_id], event, rules, now)
                alert_states[s.subscription_id] = state
                if notification is not None:
                    notifications.append(notification)
        return Reference(events, notifications, states, alert_states)


async def produce_subscriptions(settings: Settings, subscriptions: Iterable[Subscription]) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        for s in subscriptions:
            await producer.send_and_wait(
                settings.topic(SUBSCRIPTIONS),
                s.model_dump_json().encode(),
                key=s.subscription_id.encode(),
                partition=partition_for(s.product_id, settings.topic_partitions),
            )
    finally:
        await producer.stop()


class ObservationProducer:
    """Sends observations in bursts so the broker stores multi-record batches (the case
    whose end offsets the embedded broker reports wrongly)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer = make_producer(settings, linger_ms=20, max_batch_size=64 * 1024)

    async def __aenter__(self) -> ObservationProducer:
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()

    async def send(
        self, observations: list[PriceObservation], *, burst: int = 50, pause: float = 0.02
    ) -> None:
        topic = self.settings.topic(PRICE_OBSERVATIONS)
        partitions = self.settings.topic_partitions
        for start in range(0, len(observations), burst):
            futures = [
                await self.producer.send(
                    topic,
                    o.model_dump_json().encode(),
                    key=o.product_id.encode(),
                    partition=partition_for(o.product_id, partitions),
                )
                for o in observations[start : start + burst]
            ]
            await asyncio.gather(*futures)
            if pause:
                await asyncio.sleep(pause)


# --- Comparing with the reference ---------------------------------------------------


def event_fact(e: PriceEvent) -> tuple[Any, ...]:
    """Everything about an event that is deterministic (not detected_at)."""
    return (
        e.event_id,
        e.event_type,
        e.product_id,
        e.observation_id,
        e.old_price,
        e.new_price,
        e.old_currency,
        e.new_currency,
        e.old_availability,
        e.new_availability,
    )


def notification_fact(n: Notification) -> tuple[Any, ...]:
    """Everything about a notification that is deterministic (not created_at)."""
    return (
        n.idempotency_key,
        n.subscription_id,
        n.event_id,
        n.event_type,
        n.old_price,
        n.new_price,
        n.kind,
        n.currency,
        n.target_price,
        n.drop_percent,
        n.reference_price,
    )


def state_fact(s: ProductState) -> tuple[Any, ...]:
    return (
        s.price,
        s.currency,
        s.availability,
        s.lowest_price,
        s.removed,
        s.gone_count,
        s.error_count,
    )


def check_events(records: list[ConsumerRecord[bytes, bytes]], reference: Reference) -> int:
    """No event lost, none invented, redeliveries are exact copies: deduplicated by
    event_id the published events are the reference's. Returns the number of redeliveries."""
    published = [PriceEvent.model_validate_json(r.value or b"") for r in records]
    assert all(r.key == e.product_id.encode() for r, e in zip(records, published, strict=True))
    facts_by_id: dict[str, set[tuple[Any, ...]]] = defaultdict(set)
    for e in published:
        facts_by_id[e.event_id].add(event_fact(e))
    changed = {i: f for i, f in facts_by_id.items() if len(f) > 1}
    assert not changed, f"one event_id published with different contents: {changed}"
    got = {next(iter(f)) for f in facts_by_id.values()}
    want = {event_fact(e) for e in reference.events}
    assert len(want) == len(reference.events)
    assert got == want, describe_set_diff("price events", got, want)
    return len(published) - len(got)


def check_notifications(records: list[ConsumerRecord[bytes, bytes]], reference: Reference) -> int:
    """Deduplicated by idempotency key the notifications are the reference's, and a
    redelivery never comes under another key (the email sink dedupes by key): one key per
    (subscription, event). Returns the number of redeliveries."""
    published = [Notification.model_validate_json(r.value or b"") for r in records]
    assert all(r.key == n.idempotency_key.encode() for r, n in zip(records, published, strict=True))
    keys_per_pair: dict[tuple[str, str], set[str]] = defaultdict(set)
    for n in published:
        keys_per_pair[(n.subscription_id, n.event_id)].add(n.idempotency_key)
    several = {pair: keys for pair, keys in keys_per_pair.items() if len(keys) > 1}
    assert not several, f"one (subscription, event) alerted under several keys: {several}"
    facts_by_key: dict[str, set[tuple[Any, ...]]] = defaultdict(set)
    for n in published:
        facts_by_key[n.idempotency_key].add(notification_fact(n))
    changed = {k: f for k, f in facts_by_key.items() if len(f) > 1}
    assert not changed, f"one idempotency key published with different contents: {changed}"
    got = {next(iter(f)) for f in facts_by_key.values()}
    want = {notification_fact(n) for n in reference.notifications}
    assert len(want) == len(reference.notifications)
    assert got == want, describe_set_diff("notifications", got, want)
    return len(published) - len(got)


def check_product_states(where: str, table: dict[bytes, bytes], reference: Reference) -> None:
    """The detector's table equals the reference's final state of every product."""
    got = {k.decode(): state_fact(decode_product_state(v)) for k, v in table.items()}
    want = {product_id: state_fact(s) for product_id, s in reference.states.items()}
    wrong = {
        product_id: (got.get(product_id), want.get(product_id))
        for product_id in got.keys() | want.keys()
        if got.get(product_id) != want.get(product_id)
    }
    assert not wrong, f"{where}: {len(wrong)} products differ (got, want): {wrong}"


def check_alert_states(where: str, table: dict[bytes, bytes], reference: Reference) -> None:
    """The matcher's table equals the reference's final alert state of every subscription."""
    got = {sub_id: s for raw in table.values() for sub_id, s in decode_alert_states(raw).items()}
    wrong = {
        sub_id: (got.get(sub_id), reference.alert_states.get(sub_id))
        for sub_id in got.keys() | reference.alert_states.keys()
        if got.get(sub_id) != reference.alert_states.get(sub_id)
    }
    assert not wrong, f"{where}: {len(wrong)} subscriptions differ (got, want): {wrong}"


def describe_set_diff(name: str, got: set[Any], want: set[Any], limit: int = 10) -> str:
    missing = sorted(want - got, key=repr)
    extra = sorted(got - want, key=repr)
    return (
        f"{name}: {len(got)} published, {len(want)} expected; "
        f"{len(missing)} missing {missing[:limit]}; {len(extra)} unexpected {extra[:limit]}"
    )
