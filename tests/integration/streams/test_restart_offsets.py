"""A restarted stream worker processes every observation, also on partitions it had
not committed an offset for yet.

faust-streaming 0.15.3 rewinds the source partitions to their committed offsets after
table recovery, and whenever its consumer was handed records while its flow was stopped;
partitions without a committed offset were left where the fetcher had got to, so records
fetched and dropped in between were never processed (``streams.faust_compat``,
``seek_to_committed_or_reset``).

One real worker on the test broker, commits held back (a long commit interval) so that the
state at the kill is known: partitions 0 and 1 have a committed offset (from a clean stop
before), partitions 2 and 3 none. Every observation changes its product's price, so every
observation but a product's first has one price event of its own: a lost one shows as a
missing event (and as a wrong ``old_price`` on the next one). The worker restarts on its
local table store, or without it (a new machine or container): then it recovers its tables
from the changelogs first, while its consumer already fetches from the source partitions.
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
from pricewatch.contract.records import Availability, Outcome, PriceEvent, PriceObservation
from pricewatch.contract.topics import DEAD_LETTERS, PRICE_EVENTS, PRICE_OBSERVATIONS
from pricewatch.ids import observation_id_for, partition_for, product_id_for
from pricewatch.settings import Settings
from tests.conftest import Broker
from tests.helpers import wait_for
from tests.workers import (
    OBSERVED,
    T0,
    ObservationProducer,
    TopicReader,
    WorkerProcess,
    check_events,
    check_product_states,
    keep_logs,
    prepare_topics,
    read_topic,
    table_store,
    worker_settings,
)
from tests.workers import Scenario as _Scenario  # for its reference outcome only

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

PARTITIONS = 4
COMMITTED_BEFORE = (0, 1)  # partitions with a committed offset when the worker is killed
PRODUCTS = 64
ROUNDS = 60  # observations per product
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


async def wait_for_events(settings: Settings, observation_ids: set[str], seconds: float) -> int:
    """Read price events until one per id in ``observation_ids`` is out (or the deadline):
    the number seen."""
    async with TopicReader(settings, settings.topic(PRICE_EVENTS)) as reader:

        def seen() -> set[str]:
            return {
                PriceEvent.model_validate_json(r.value or b"").observation_id
                for r in reader.records
            }

        await reader.wait_until(lambda _: seen() >= observation_ids, seconds)
        return len(seen() & observation_ids)


async def run(
    settings: Settings,
    worker: WorkerProcess,
    observations: dict[str, list[PriceObservation]],
    wipe_store: bool,
) -> dict[str, object]:
    facts: dict[str, object] = {}
    async with ObservationProducer(settings) as producer:
        # 1. Partitions 0 and 1 get a committed offset: some of their observations, then
        # a clean stop (Faust commits what it processed).
        worker.start()
        await asyncio.to_thread(worker.wait_ready, 60)
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

        # 2. Everything else, in bursts; the worker is killed while it works on them,
        # partitions 2 and 3 still without a committed offset.
        worker.start()
        await asyncio.to_thread(worker.wait_ready, 60)
        stream = observations["rest"]
        kill_at = len(stream) // 2
        await producer.send(stream[: kill_at - 800])
        await asyncio.to_thread(
            wait_for,
            lambda: worker.metric(OBSERVED) >= 300,
            timeout=60,
            what="some work after the restart",
        )
        await producer.send(stream[kill_at - 800 : kill_at], burst=400, pause=0)
        facts["observed_before_kill"] = worker.metric(OBSERVED)
        worker.kill()
        if wipe_store:  # a new machine: the tables are recovered from their changelogs
            shutil.rmtree(settings.data_dir / "workers" / worker.worker_id)
        at_kill = await committed(settings)
        facts["committed_at_kill"] = at_kill
        assert all(at_kill[p] is None for p in set(range(PARTITIONS)) - set(COMMITTED_BEFORE))

        # 3. Restarted at once (the killed member is still in the group, as after a real
        # crash), the rest produced while it rejoins and recovers.
        worker.start()
        await producer.send(stream[kill_at:], burst=200, pause=0.01)
        await asyncio.to_thread(worker.wait_ready, 90)

    expected = {o.observation_id for o in observations["changes"]}
    t0 = time.monotonic()
    facts["events_seen"] = await wait_for_events(settings, expected, 120)
    facts["seconds_to_last_event"] = round(time.monotonic() - t0, 1)
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
    everything = observations_for([url for urls in by_partition.values() for url in urls])
    # Two rounds of the products of partitions 0 and 1 are processed before the others.
    committed_first = [
        o
        for o in everything[: 2 * PRODUCTS]
        if partition_for(o.product_id, PARTITIONS) in COMMITTED_BEFORE
    ]
    first_ids = {o.observation_id for o in committed_first}
    rest = [o for o in everything if o.observation_id not in first_ids]
    # What one uninterrupted worker publishes: events of every observation but a
    # product's first (checked here, so that a lost observation cannot go unnoticed).
    reference = _Scenario(everything, [], []).reference(settings)
    firsts = {o.product_id: o.observation_id for o in reversed(everything)}
    changes = [o for o in everything if o.observation_id not in set(firsts.values())]
    assert {e.observation_id for e in reference.events} == {o.observation_id for o in changes}

    logs = tmp_path / "logs"
    worker = WorkerProcess(settings, "w0", logs / "worker-w0.log", metrics_port=free_port())
    try:
        with worker:
            facts = asyncio.run(
                run(
                    settings,
                    worker,
                    {"committed_first": committed_first, "rest": rest, "changes": changes},
                    wipe_store=local_store == "lost",
                )
            )
        print(f"facts: {facts}")
        assert facts["rewound_to_reset_position"] == [
            p for p in range(PARTITIONS) if p not in COMMITTED_BEFORE
        ]
        dead = asyncio.run(read_topic(settings, settings.topic(DEAD_LETTERS))).records
        assert [r.value for r in dead] == []
        # Every observation's event, exactly as one uninterrupted worker publishes it (a
        # redelivery is an exact copy under the same event_id), none other.
        events = asyncio.run(read_topic(settings, settings.topic(PRICE_EVENTS))).records
        redelivered = check_events(events, reference)
        print(f"{len(reference.events)} events, {redelivered} redelivered")
        check_product_states(
            "rocksdb product_state", table_store(settings, "w0", "product_state"), reference
        )
    finally:
        keep_logs(logs, f"restart-offsets-{local_store}")
