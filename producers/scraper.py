"""The scraper process: scrape requests in, price observations out, at least once.

Reads ``scrape-requests`` in the ``<app_id>-scrapers`` group and handles each request as
its own task: fetch the page (``PageFetcher``: per-host limits, retries, robots.txt),
publish one ``PriceObservation`` to ``price-observations`` keyed by product, wait for Kafka's
acknowledgement. Requests flow continuously rather than in poll batches, because one host's
politeness limits (a request a second, a Retry-After) must not hold up the other hosts.

Offsets are committed per partition up to the first request not yet finished, so a crash
re-fetches only unfinished requests (and those after them): a request may yield two
observations (each a true reading of the page); a producer retry may repeat one
observation, which consumers drop by its ``observation_id``.

At most ``scraper_queue_limit`` requests are held at once (``pricewatch_scraper_queue_depth``);
a partition holding half of them is paused until it drains, so a slow host on one partition
leaves room for the others.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError
from pydantic import ValidationError

from pricewatch.contract.records import Outcome, ScrapeRequest
from pricewatch.contract.topics import DEAD_LETTERS, PRICE_OBSERVATIONS, SCRAPE_REQUESTS
from pricewatch.deadletters import send_dead_letter
from pricewatch.kafka import make_consumer, make_producer
from pricewatch.settings import Settings
from producers import metrics
from producers.fetch import FetchResult, PageFetcher
from producers.paused import PausedHosts
from producers.render import Renderer

log = logging.getLogger(__name__)

STAGE = "scraper"
POLL_TIMEOUT_MS = 200
# On a rebalance, requests of revoked partitions get this long to finish before their
# offsets are committed; later ones are fetched again by the partition's new owner.
REVOKE_GRACE_SECONDS = 10.0
STOP_GRACE_SECONDS = 8.0


@dataclass
class _Entry:
    offset: int
    done: bool = False


@dataclass
class _PartitionProgress:
    """Requests of one partition in offset order; the committable offset is the first
    unfinished one (or one past the last, when all are done)."""

    entries: deque[_Entry] = field(default_factory=deque)

    def add(self, offset: int) -> _Entry:
        entry = _Entry(offset)
        self.entries.append(entry)
        return entry

    def committable(self) -> int | None:
        last_done: int | None = None
        while self.entries and self.entries[0].done:
            last_done = self.entries.popleft().offset
        if last_done is None:
            return None
        return last_done + 1

    @property
    def pending(self) -> int:
        return len(self.entries)


class _Pipeline(ConsumerRebalanceListener):
    """The in-flight requests of one scraper process and their offsets."""

    def __init__(
        self,
        settings: Settings,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        fetcher: PageFetcher,
        paused: PausedHosts | None = None,
    ) -> None:
        self.settings = settings
        self.paused = paused or PausedHosts(None, 0)
        self.consumer = consumer
        self.producer = producer
        self.fetcher = fetcher
        self.limit = settings.scraper_queue_limit
        self.partition_limit = max(1, self.limit // 2)
        self.fetch_slots = asyncio.Semaphore(settings.scraper_concurrency)
        self.progress: dict[TopicPartition, _PartitionProgress] = {}
        self.tasks: dict[asyncio.Task[None], TopicPartition] = {}
        self.to_commit: dict[TopicPartition, int] = {}
        self.failure: BaseException | None = None

    # --- intake ----------------------------------------------------------------------
    def accept(self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]) -> None:
        progress = self.progress.setdefault(tp, _PartitionProgress())
        entry = progress.add(record.offset)
        metrics.QUEUE_DEPTH.inc()
        task = asyncio.create_task(self._handle(record, entry))
        self.tasks[task] = tp
        task.add_done_callback(self._finished)
        if progress.pending >= self.partition_limit and tp in self.consumer.assignment():
            self.consumer.pause(tp)

    def _finished(self, task: asyncio.Task[None]) -> None:
        tp = self.tasks.pop(task)
        metrics.QUEUE_DEPTH.dec()
        if not task.cancelled() and task.exception() is not None and self.failure is None:
            self.failure = task.exception()
        progress = self.progress.get(tp)
        if progress is None:
            return  # revoked meanwhile
        offset = progress.committable()
        if offset is not None:
            self.to_commit[tp] = offset
        if progress.pending < self.partition_limit and tp in self.consumer.paused():
            self.consumer.resume(tp)

    @property
    def free(self) -> int:
        return self.limit - len(self.tasks)

    # --- one request -----------------------------------------------------------------
    async def _handle(self, record: ConsumerRecord[bytes, bytes], entry: _Entry) -> None:
        parsed = _parse(record)
        if isinstance(parsed, ScrapeRequest) and urlsplit(parsed.url).hostname in self.paused:
            # No observation at all: a paused website is not an error of the product.
            metrics.PAUSED_SKIPS.inc()
        elif isinstance(parsed, ScrapeRequest):
            async with self.fetch_slots:
                result = await self.fetcher.fetch_page(parsed.product_id, parsed.url)
            _log_fetch(result)
            observation = result.observation
            delivery = await self.producer.send(
                self.settings.topic(PRICE_OBSERVATIONS),
                value=observation.model_dump_json().encode(),
                key=observation.product_id.encode(),
            )
            await delivery  # raises if the send failed: the offset is then never committed
            metrics.OBSERVATIONS_PUBLISHED.inc()
        else:
            await self._dead_letter(record, parsed)
        entry.done = True

    async def _dead_letter(self, record: ConsumerRecord[bytes, bytes], error: str) -> None:
        topic = self.settings.topic(DEAD_LETTERS)

        def send(key: bytes, value: bytes) -> Awaitable[asyncio.Future[Any]]:
            return self.producer.send(topic, value=value, key=key)

        delivery = await send_dead_letter(
            send, record, stage=STAGE, reason="invalid_record", error=error
        )
        await delivery

    # --- offsets ---------------------------------------------------------------------
    async def commit(self) -> None:
        # Partitions revoked meanwhile belong to another member now; it resumes from
        # their last committed offset, so those requests are fetched again.
        assigned = self.consumer.assignment()
        offsets = {tp: o for tp, o in self.to_commit.items() if tp in assigned}
        self.to_commit.clear()
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            log.warning("commit failed after a rebalance, requests will be redelivered: %s", exc)

    async def drain(self, tps: set[TopicPartition] | None, seconds: float) -> None:
        """Wait up to ``seconds`` for the requests of ``tps`` (None: all) to finish."""
        waiting = [t for t, tp in self.tasks.items() if tps is None or tp in tps]
        if waiting:
            await asyncio.wait(waiting, timeout=seconds)

    # --- rebalance listener (aiokafka calls these between polls) -----------------------
    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        revoked = set(revoked)
        await self.drain(revoked, REVOKE_GRACE_SECONDS)
        await self.commit()
        for tp in revoked:
            self.progress.pop(tp, None)
            self.to_commit.pop(tp, None)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        for tp in assigned:
            # Offsets start again from the committed position: forget older bookkeeping.
            self.progress.pop(tp, None)


async def run_scraper(settings: Settings, stop: asyncio.Event) -> None:
    """Consume scrape requests and publish observations until ``stop`` is set."""
    source_topic = settings.topic(SCRAPE_REQUESTS)
    consumer = make_consumer(
        settings, settings.group("scrapers"), f"{settings.app_id}-scraper", bulk=True
    )
    producer = make_producer(settings)
    await producer.start()
    try:
        await consumer.start()
        try:
            paused = PausedHosts(settings.database_url, settings.paused_hosts_refresh_seconds)
            await paused.refresh()
            refresher = asyncio.create_task(paused.refresh_forever())
            async with PageFetcher(settings, renderer=Renderer(settings)) as fetcher:
                pipeline = _Pipeline(settings, consumer, producer, fetcher, paused)
                consumer.subscribe([source_topic], listener=pipeline)
                log.info(
                    "scraper consuming %s as group %s", source_topic, settings.group("scrapers")
                )
                try:
                    await _consume(consumer, pipeline, stop)
                finally:
                    await pipeline.drain(None, STOP_GRACE_SECONDS)
                    await pipeline.commit()
                    for task in [*pipeline.tasks, refresher]:
                        task.cancel()
                    paused.close()
        finally:
            await consumer.stop()
    finally:
        await producer.stop()
    log.info("scraper stopped")


async def _consume(consumer: AIOKafkaConsumer, pipeline: _Pipeline, stop: asyncio.Event) -> None:
    last_commit = time.monotonic()
    while not stop.is_set():
        if pipeline.failure is not None:
            # A publish failed: stop before committing past it; a restart re-fetches.
            raise pipeline.failure
        free = pipeline.free
        if free <= 0:
            await asyncio.wait(
                list(pipeline.tasks),
                timeout=POLL_TIMEOUT_MS / 1000,
                return_when=asyncio.FIRST_COMPLETED,
            )
        else:
            batches = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS, max_records=free)
            for tp, records in batches.items():
                for record in records:
                    pipeline.accept(tp, record)
        # Commit when something finished, at most every poll interval.
        if pipeline.to_commit and time.monotonic() - last_commit >= POLL_TIMEOUT_MS / 1000:
            await pipeline.commit()
            last_commit = time.monotonic()


def _parse(record: ConsumerRecord[bytes, bytes]) -> ScrapeRequest | str:
    """The request, or why the record is not one."""
    if record.value is None:
        return "empty value (tombstone)"
    try:
        return ScrapeRequest.model_validate_json(record.value)
    except ValidationError as exc:
        return str(exc)


def _log_fetch(result: FetchResult) -> None:
    observation = result.observation
    if observation.outcome is Outcome.ERROR:
        log.warning(
            "fetch %s: error %s (http %s, %d attempts, %.2fs)",
            observation.url,
            observation.error,
            observation.http_status,
            result.attempts,
            result.elapsed_seconds,
        )
    else:
        log.debug(
            "fetch %s: %s price=%s %s availability=%s (%.2fs)",
            observation.url,
            observation.outcome.value,
            observation.price,
            observation.currency,
            observation.availability,
            result.elapsed_seconds,
        )
