"""A restarted stream worker processes every observation and every price event, also on
partitions it had not committed an offset for yet.

faust-streaming 0.15.3 rewinds the source partitions to their committed offsets after
table recovery, but only partitions committed at an offset above 0. Its consumer already
hands records of the source partitions to the agents' queues while that rewind runs, and
Faust empties those queues when it resumes the flow right after: a partition the rewind
skipped never saw those records again (``streams.faust_compat``,
``seek_to_committed_or_reset``, rewinds every source partition).

One real worker on the test broker, commits held back (a long commit interval) so that the
state at the kill is known: partitions 0 and 1 of ``price-observations`` have a committed
offset (from a clean stop before), the others none, and get their records while the worker
is down (records the killed worker had processed would hide a loss: their effects are
out). Every observation changes its product's price, and every product has a subscriber
told of any drop and any rise, so every observation but a product's first has a price
event and a notification of its own: a lost observation or event shows as a missing one.
The worker restarts on its local table store, or without it (a new machine or container):
either way it recovers its tables from the changelogs (a SIGKILL leaves them ahead of the
store's offsets) while its consumer already fetches from the source partitions. More
partitions make Faust's rewind, one committed-offset request per partition, last longer:
the loss showed at 12 partitions.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from launcher.processes import free_port
from pricewatch.contract.records import (
    Availability,
    Outcome,
    PriceObservation,
    Subscription,
)
from pricewatch.contract.topics import (
    DEAD_LETTERS,
    NOTIFICATIONS,
    PRICE_EVENTS,
    PRICE_OBSERVATIONS,
)
from pricewatch.ids import (
    observation_id_for,
    partition_for,
    product_id_for,
    subscription_id_for,
)
from pricewatch.settings import Settings
from tests.conftest import Broker
from tests.helpers import wait_for
from tests.workers import (
    OBSERVED,
    T0,
    ObservationProducer,
    Scenario,
    WorkerProcess,
    check_alert_states,
    check_events,
    check_notifications,
    check_product_states,
    keep_logs,
    prepare_topics,
    produce_subscriptions,
    read_topic,
    table_store,
    wait_for_end_markers,
    wait_for_subscriptions,
    worker_settings,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(420)]

PARTITIONS = 12
COMMITTED_BEFORE = (0, 1)  # partitions with a committed offset when the worker is killed
PRODUCTS = 96
ROUNDS = 40  # observations per product
HOLD_COMMITS_SECONDS = 3600.0  # no periodic commit during the test: only a clean stop commits


def observations_for(products: list[str]) -> list[PriceObservation]:
    """``ROUNDS`` observations of every product, round by round, the price alternating so
    that each one is a change."""
    out: list[PriceObservation] = []
    for r in range(ROUNDS):
        for i, url in enumerate(products):
            product_id = product_id_for(url)
            observed_at = T0 + timedelta(seconds=r * len(products) + i)
            out.append(
                PriceObservation(
                    observation_id=observation_id_for(product_id, observed_at),
                    product_id=product_id,
                    url=url,
                    observed_at=observed_at,
                    outcome=Outcome.OK,
                    price=Decimal("100.00") if r % 2 == 0 else Decimal("90.00"),
                    currency="EUR",
                    availability=Availability.IN_STOCK,
                    http_status=200,
                )
            )
    return out


def products_by_partition() -> dict[int, list[str]]:
    by_partition: dict[int, list[str]] = {p: [] for p in range(PARTITIONS)}
    n = 0
    while min(len(urls) for urls in by_partition.values()) < PRODUCTS // PARTITIONS:
        url = f"https://shop.example/restart/{n}"
        urls = by_partition[partition_for(product_id_for(url), PARTITIONS)]
        if len(urls) < PRODUCTS // PARTITIONS:
            urls.append(url)
        n += 1
    return by_partition


async def committed(settings: Settings) -> dict[int, int | None]:
    """The worker group's committed offset of each price-observations partition."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap(), group_id=settings.app_id, enable_auto_commit=False
    )
    await consumer.start()
    try:
        topic = settings.topic(PRICE_OBSERVATIONS)
        return {p: await consumer.committed(TopicPartition(topic, p)) for p in range(PARTITIONS)}
    finally:
        await consumer.stop()


def subscriptions_for(products: list[str]) -> list[Subscription]:
    """A subscriber of every product, told of any drop and any rise."""
    return [
        Subscription(
            subscription_id=subscription_id_for(f"user{i}@example.com", product_id_for(url)),
            email=f"user{i}@example.com",
            product_id=product_id_for(url),
            url=url,
            notify_any_drop=True,
            notify_price_increase=True,
            verified=True,
            created_at=T0 - timedelta(days=1),
        )
        for i, url in enumerate(products)
    ]


async def run(
    settings: Settings,
    worker: WorkerProcess,
    scenario: Scenario,
    observations: dict[str, list[PriceObservation]],
    expected_notifications: set[str],
    wipe_store: bool,
) -> dict[str, object]:
    facts: dict[str, object] = {}
    async with ObservationProducer(settings) as producer:
        # 1. Partitions 0 and 1 get a committed offset: some of their observations, then
        # a clean stop (Faust commits what it processed).
        worker.start()
        await asyncio.to_thread(worker.wait_ready, 60)
        await produce_subscriptions(settings, scenario.subscriptions)
        await wait_for_subscriptions(settings, scenario)
        first = observations["committed_first"]
        await producer.send(first)
        await asyncio.to_thread(
            wait_for,
            lambda: worker.metric(OBSERVED) >= len(first),
            timeout=60,
            what="the first observations processed",
        )
        assert worker.terminate() == 0, worker.log_tail()
        before = await committed(settings)
        facts["committed_after_clean_stop"] = before
        assert all(before[p] for p in COMMITTED_BEFORE), before
        assert all(before[p] is None for p in set(range(PARTITIONS)) - set(COMMITTED_BEFORE))

        # 2. More of partitions 0 and 1, in bursts; the worker is killed while it works on
        # them. The other partitions have no committed offset (nor any record yet).
        worker.start()
        await asyncio.to_thread(worker.wait_ready, 60)
        more = observations["more_of_committed"]
        await producer.send(more[: len(more) // 2])
        await asyncio.to_thread(
            wait_for,
            lambda: worker.metric(OBSERVED) >= len(more) // 4,
            timeout=60,
            what="some work after the restart",
        )
        await producer.send(more[len(more) // 2 :], burst=400, pause=0)
        facts["observed_before_kill"] = worker.metric(OBSERVED)
        worker.kill()
        if wipe_store:  # a new machine: the tables are recovered from their changelogs
            shutil.rmtree(settings.data_dir / "workers" / worker.worker_id)
        at_kill = await committed(settings)
        facts["committed_at_kill"] = at_kill
        assert all(at_kill[p] is None for p in set(range(PARTITIONS)) - set(COMMITTED_BEFORE))

        # 3. While it is down, every observation of the other partitions; then it starts
        # again (the killed member is still in the group, as after a real crash): its
        # consumer fetches them while the tables recover from the changelogs.
        await producer.send(observations["uncommitted"])
        worker.start()
        await asyncio.to_thread(worker.wait_ready, 90)

    t0 = time.monotonic()
    facts["all_notified"] = await wait_for_end_markers(settings, expected_notifications, 180)
    facts["seconds_to_last_notification"] = round(time.monotonic() - t0, 1)
    facts["observed_after_restart"] = worker.metric(OBSERVED)
    # The restarted worker said where it rewound the partitions without a commit.
    topic = settings.topic(PRICE_OBSERVATIONS)
    log = worker.log_text()
    facts["rewound_to_reset_position"] = [
        p for p in range(PARTITIONS) if f"{topic}[{p}] to its reset position" in log
    ]
    assert worker.terminate() == 0, worker.log_tail()
    return facts


@pytest.mark.parametrize("local_store", ["kept", "lost"])
def test_a_restarted_worker_processes_every_observation_of_uncommitted_partitions(
    tmp_path: Path, broker: Broker, unique_prefix: str, local_store: str
) -> None:
    settings = worker_settings(
        broker.bootstrap_servers,
        broker.embedded,
        unique_prefix,
        tmp_path / "data",
        topic_partitions=PARTITIONS,
        kafka_commit_interval_seconds=HOLD_COMMITS_SECONDS,
    )
    prepare_topics(settings)
    by_partition = products_by_partition()
    products = [url for urls in by_partition.values() for url in urls]
    everything = observations_for(products)
    # Two rounds of the products of partitions 0 and 1 are processed before the others.
    committed_first = [
        o
        for o in everything[: 2 * PRODUCTS]
        if partition_for(o.product_id, PARTITIONS) in COMMITTED_BEFORE
    ]
    first_ids = {o.observation_id for o in committed_first}
    more_of_committed = [
        o
        for o in everything
        if partition_for(o.product_id, PARTITIONS) in COMMITTED_BEFORE
        and o.observation_id not in first_ids
    ]
    uncommitted = [
        o for o in everything if partition_for(o.product_id, PARTITIONS) not in COMMITTED_BEFORE
    ]
    scenario = Scenario(everything, subscriptions_for(products), sentinels=[])
    # What one uninterrupted worker publishes. Every observation but a product's first
    # has an event, and every event a notification (checked here, so that a lost
    # observation or event cannot go unnoticed).
    reference = scenario.reference(settings)
    firsts = set({o.product_id: o.observation_id for o in reversed(everything)}.values())
    changes = {o.observation_id for o in everything if o.observation_id not in firsts}
    observation_of = {e.event_id: e.observation_id for e in reference.events}
    assert {e.observation_id for e in reference.events} == changes
    assert {observation_of[n.event_id] for n in reference.notifications} == changes

    logs = tmp_path / "logs"
    worker = WorkerProcess(settings, "w0", logs / "worker-w0.log", metrics_port=free_port())
    try:
        with worker:
            facts = asyncio.run(
                run(
                    settings,
                    worker,
                    scenario,
                    {
                        "committed_first": committed_first,
                        "more_of_committed": more_of_committed,
                        "uncommitted": uncommitted,
                    },
                    {n.idempotency_key for n in reference.notifications},
                    wipe_store=local_store == "lost",
                )
            )
        print(f"facts: {facts}")
        dead = asyncio.run(read_topic(settings, settings.topic(DEAD_LETTERS))).records
        assert [r.value for r in dead] == []
        # Every observation's event and every event's notification, exactly as one
        # uninterrupted worker publishes them (a redelivery is an exact copy under the
        # same id or key), none other.
        events = asyncio.run(read_topic(settings, settings.topic(PRICE_EVENTS))).records
        notifications = asyncio.run(read_topic(settings, settings.topic(NOTIFICATIONS))).records
        redelivered_events = check_events(events, reference)
        redelivered_notifications = check_notifications(notifications, reference)
        print(
            f"{len(reference.events)} events ({redelivered_events} redelivered), "
            f"{len(reference.notifications)} notifications "
            f"({redelivered_notifications} redelivered)"
        )
        check_product_states(
            "rocksdb product_state", table_store(settings, "w0", "product_state"), reference
        )
        check_alert_states(
            "rocksdb product_subscriptions",
            table_store(settings, "w0", "product_subscriptions"),
            reference,
        )
        # The restarted worker rewound the partitions without a commit (the log says).
        assert facts["rewound_to_reset_position"] == [
            p for p in range(PARTITIONS) if p not in COMMITTED_BEFORE
        ]
    finally:
        keep_logs(logs, f"restart-offsets-{local_store}")
