"""Thin, broker-agnostic Kafka helpers (plain Kafka protocol via aiokafka)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from prometheus_client import Counter

from pricewatch.contract.topics import ALL_TOPICS, TopicSpec
from pricewatch.settings import FetchWait, Settings

log = logging.getLogger(__name__)


async def wait_for_broker(bootstrap: str, deadline_seconds: float = 30.0) -> None:
    """Return once the broker answers a metadata request."""
    deadline = time.monotonic() + deadline_seconds
    last: Exception | None = None
    while time.monotonic() < deadline:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        try:
            await admin.start()
            await admin.describe_cluster()
            return
        except (KafkaError, OSError) as exc:
            last = exc
            await asyncio.sleep(0.2)
        finally:
            await admin.close()
    raise TimeoutError(f"Kafka at {bootstrap} did not answer within {deadline_seconds}s: {last!r}")


async def create_topics(settings: Settings, specs: Iterable[TopicSpec] = ALL_TOPICS) -> list[str]:
    """Create every topic with its final partition count. Existing topics are left alone.

    Returns the names that were created.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap())
    await admin.start()
    created: list[str] = []
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                name=settings.topic(spec),
                num_partitions=settings.topic_partitions,
                replication_factor=settings.topic_replication_factor,
                topic_configs=dict(spec.configs),
            )
            for spec in specs
            if settings.topic(spec) not in existing
        ]
        for topic in wanted:
            try:
                await admin.create_topics([topic])
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass  # another process won the race: fine
    finally:
        await admin.close()
    if created:
        log.info("created topics: %s", ", ".join(created))
    return created


GROWTH = 4  # the wait's factor after an empty fetch (see AdaptiveFetchWait)
# While the application reads records fetched in the last READING_SECONDS, an empty fetch
# (of the partitions without buffered records) grows the wait to READING_WAIT_MS at most:
# the next fetch of the busy partitions waits behind it.
READING_SECONDS = 1.0
READING_WAIT_MS = 20
FETCHES_TOTAL = Counter(
    "pricewatch_kafka_fetches_total",
    "Fetch requests this process's consumers made, by whether they brought records: what an "
    "idle consumer costs the broker.",
    ["outcome"],
)
FETCHES = {True: FETCHES_TOTAL.labels("records"), False: FETCHES_TOTAL.labels("empty")}


class AdaptiveFetchWait:
    """A consumer's fetch wait that grows fourfold while fetches come back empty, up to
    ``wait.max_ms``, and drops to ``wait.min_ms`` as soon as one brings records.

    aiokafka's fetcher keeps one fetch in flight per broker whether or not anyone reads,
    and the embedded broker answers a waiting fetch only when its wait ends: with a fixed
    20 ms wait every idle consumer made 50 fetches a second (most of the demo's idle CPU,
    in the broker and in each process). Growing the wait makes an idle consumer cheap; the
    price is that the first record after a quiet spell waits up to ``max_ms``, and the ones
    after it only ``min_ms``.

    Fourfold rather than twofold: each empty fetch costs the embedded broker about a
    millisecond of CPU, and a lone record (a demo check, a light load) left a consumer
    making six empty fetches on its way back up (5, 10, ... 250 ms); now three (5, 20, 80).
    """

    def __init__(self, wait: FetchWait) -> None:
        self.wait = wait
        self.current_ms = wait.min_ms
        self.fetches = 0  # answered fetches, for tests and benchmarks

    def answered(self, had_records: bool, reading: bool = False) -> int:
        """The wait for the next fetch, after one that had records or did not; ``reading``:
        the application still reads records fetched before (the wait grows, but stays at
        most ``READING_WAIT_MS``)."""
        self.fetches += 1
        FETCHES[had_records].inc()
        if had_records:
            self.current_ms = self.wait.min_ms
        else:
            grown = min(self.wait.max_ms, self.current_ms * GROWTH)
            if reading:
                grown = min(grown, max(self.wait.min_ms, READING_WAIT_MS))
            self.current_ms = grown
        return self.current_ms

    def install(self, consumer: AIOKafkaConsumer) -> None:
        """Drive ``consumer``'s fetcher (call once it has started: start() makes it).

        Uses aiokafka's Fetcher internals (``_fetch_max_wait_ms``, read each time a fetch
        request is built, and ``_proc_fetch_request``, which answers whether a fetch brought
        records); tested with aiokafka 0.14.
        """
        fetcher: Any = consumer._fetcher
        if fetcher is None:
            raise RuntimeError("the consumer has not started: it has no fetcher yet")
        fetcher._fetch_max_wait_ms = self.current_ms
        process = fetcher._proc_fetch_request

        async def proc_fetch_request(*args: Any, **kwargs: Any) -> bool:
            had_records: bool = await process(*args, **kwargs)
            # Records fetched lately and not yet read mean records flow, even when this fetch
            # came back empty: aiokafka leaves a partition with buffered records out of its
            # next fetches, which then ask only the quiet partitions. Growing the wait on
            # those stalled the busy ones: their next fetch waits for the one in flight,
            # which the embedded broker answers only when its wait ends (a worker at 2,000
            # obs/s made 4 fetches a second and fell behind, 20% busy). Records left unread
            # for long (a paused partition) do not count.
            fetcher._fetch_max_wait_ms = self.answered(had_records, _reading(fetcher))
            return had_records

        fetcher._proc_fetch_request = proc_fetch_request


def _reading(fetcher: Any) -> bool:
    """Whether records fetched in the last ``READING_SECONDS`` are still buffered for the
    application (aiokafka Fetcher internals: ``_records``, ``FetchResult._created``)."""
    if not fetcher._records:
        return False
    recent = time.monotonic() - READING_SECONDS
    return any(result._created >= recent for result in fetcher._records.values())


class AdaptiveConsumer(AIOKafkaConsumer):
    """An AIOKafkaConsumer whose fetch wait adapts (``AdaptiveFetchWait``)."""

    def __init__(self, *topics: str, fetch_wait: FetchWait, **options: Any) -> None:
        super().__init__(*topics, fetch_max_wait_ms=fetch_wait.min_ms, **options)
        self.fetch_wait = AdaptiveFetchWait(fetch_wait)

    async def start(self) -> None:
        await super().start()
        self.fetch_wait.install(self)


def make_consumer(
    settings: Settings, group_id: str, client_id: str, *topics: str, bulk: bool = False
) -> AdaptiveConsumer:
    """A group member that commits itself: the session, heartbeat and adaptive fetch wait
    every Pricewatch consumer shares; ``bulk`` for consumers whose records nobody waits
    for (``Settings.fetch_wait``)."""
    return AdaptiveConsumer(
        *topics,
        bootstrap_servers=settings.bootstrap(),
        group_id=group_id,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=int(settings.session_timeout_seconds * 1000),
        heartbeat_interval_ms=int(settings.heartbeat_interval_seconds * 1000),
        fetch_wait=settings.fetch_wait(bulk),
    )


def make_producer(settings: Settings, **overrides: object) -> AIOKafkaProducer:
    # acks=all and a short linger (Settings.producer_linger_ms): records batch into few
    # requests without adding visible latency.
    options: dict[str, object] = {
        "bootstrap_servers": settings.bootstrap(),
        "acks": "all",
        "linger_ms": settings.producer_linger_ms,
        "enable_idempotence": False,  # the embedded broker has no InitProducerId
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)
