"""The scraper process: scrape requests in, price observations out, at least once.

Reads ``scrape-requests`` in the ``<app_id>-scrapers`` group, fetches each page (bounded
concurrency, one shared HTTP session), publishes one ``PriceObservation`` per request to
``price-observations`` keyed by product, and commits a batch's offsets only after every
observation of that batch is acknowledged. A crash before the commit re-fetches the batch,
so a request may yield two observations (each a true reading of the page); a producer retry
may repeat one observation, which consumers drop by its ``observation_id``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from prometheus_client import Counter, Histogram
from pydantic import ValidationError

from pricewatch.contract.records import Outcome, PriceObservation, ScrapeRequest
from pricewatch.contract.topics import DEAD_LETTERS, PRICE_OBSERVATIONS, SCRAPE_REQUESTS
from pricewatch.deadletter import dead_letter_for_record
from pricewatch.kafka import make_producer
from pricewatch.settings import Settings
from producers.fetch import FetchResult, PageFetcher

log = logging.getLogger(__name__)

STAGE = "scraper"
POLL_TIMEOUT_MS = 500

FETCHES = Counter(
    "pricewatch_scraper_fetches_total", "Page fetches by outcome (ok, gone, error).", ["outcome"]
)
FETCH_SECONDS = Histogram(
    "pricewatch_scraper_fetch_seconds",
    "Wall time of one page fetch, redirects included.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0),
)
RESPONSE_BYTES = Counter(
    "pricewatch_scraper_response_bytes_total", "Response body bytes read (decompressed)."
)
DEAD_LETTERS_TOTAL = Counter(
    "pricewatch_scraper_dead_letters_total", "Scrape requests dead-lettered, by reason.", ["reason"]
)
OBSERVATIONS_PUBLISHED = Counter(
    "pricewatch_scraper_observations_published_total",
    "Price observations acknowledged by Kafka.",
)

# Pre-create the label sets so dashboards show zeros instead of gaps.
for _outcome in Outcome:
    FETCHES.labels(outcome=_outcome.value)
DEAD_LETTERS_TOTAL.labels(reason="invalid_record")


async def run_scraper(settings: Settings, stop: asyncio.Event) -> None:
    """Consume scrape requests and publish observations until ``stop`` is set."""
    source_topic = settings.topic(SCRAPE_REQUESTS)
    consumer = AIOKafkaConsumer(
        source_topic,
        bootstrap_servers=settings.bootstrap(),
        group_id=settings.group("scrapers"),
        client_id=f"{settings.app_id}-scraper",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=int(settings.session_timeout_seconds * 1000),
        heartbeat_interval_ms=int(settings.heartbeat_interval_seconds * 1000),
    )
    producer = make_producer(settings)
    # A batch never holds more requests than can be fetched at once, twice over: the
    # whole batch must finish well inside max_poll_interval before its commit.
    max_records = settings.scraper_concurrency * 2
    slots = asyncio.Semaphore(settings.scraper_concurrency)

    await producer.start()
    try:
        await consumer.start()
        try:
            async with PageFetcher(settings) as fetcher:
                log.info(
                    "scraper consuming %s as group %s", source_topic, settings.group("scrapers")
                )
                while not stop.is_set():
                    batches = await consumer.getmany(
                        timeout_ms=POLL_TIMEOUT_MS, max_records=max_records
                    )
                    if not batches:
                        continue
                    await _process(settings, producer, fetcher, slots, batches)
                    await _commit(consumer, batches)
        finally:
            await consumer.stop()
    finally:
        await producer.stop()
    log.info("scraper stopped")


async def _process(
    settings: Settings,
    producer: AIOKafkaProducer,
    fetcher: PageFetcher,
    slots: asyncio.Semaphore,
    batches: dict[TopicPartition, list[ConsumerRecord]],
) -> None:
    """Fetch and publish every record of a poll; returns once Kafka acknowledged them all."""
    requests: list[ScrapeRequest] = []
    deliveries: list[asyncio.Future[object]] = []
    for records in batches.values():
        for record in records:
            parsed = _parse(record)
            if isinstance(parsed, ScrapeRequest):
                requests.append(parsed)
            else:
                deliveries.append(await _dead_letter(settings, producer, record, parsed))

    async def fetch_and_publish(request: ScrapeRequest) -> asyncio.Future[object]:
        async with slots:
            result = await fetcher.fetch_page(request.product_id, request.url)
        _record_fetch(result)
        observation = result.observation
        return await producer.send(
            settings.topic(PRICE_OBSERVATIONS),
            value=observation.model_dump_json().encode(),
            key=observation.product_id.encode(),
        )

    deliveries.extend(await asyncio.gather(*(fetch_and_publish(r) for r in requests)))
    # Raises if any send failed: the batch is then not committed and gets redelivered.
    await asyncio.gather(*deliveries)
    OBSERVATIONS_PUBLISHED.inc(len(requests))


def _parse(record: ConsumerRecord) -> ScrapeRequest | str:
    """The request, or why the record is not one."""
    if record.value is None:
        return "empty value (tombstone)"
    try:
        return ScrapeRequest.model_validate_json(record.value)
    except ValidationError as exc:
        return str(exc)


async def _dead_letter(
    settings: Settings, producer: AIOKafkaProducer, record: ConsumerRecord, error: str
) -> asyncio.Future[object]:
    letter = dead_letter_for_record(record, stage=STAGE, reason="invalid_record", error=error)
    log.warning(
        "dead-lettering %s[%d]@%d: invalid_record", record.topic, record.partition, record.offset
    )
    DEAD_LETTERS_TOTAL.labels(reason="invalid_record").inc()
    future: asyncio.Future[object] = await producer.send(
        settings.topic(DEAD_LETTERS),
        value=letter.model_dump_json().encode(),
        key=record.topic.encode(),
    )
    return future


def _record_fetch(result: FetchResult) -> None:
    observation: PriceObservation = result.observation
    FETCHES.labels(outcome=observation.outcome.value).inc()
    FETCH_SECONDS.observe(result.elapsed_seconds)
    RESPONSE_BYTES.inc(result.response_bytes)
    if observation.outcome is Outcome.ERROR:
        log.warning(
            "fetch %s: error %s (http %s, %.2fs)",
            observation.url,
            observation.error,
            observation.http_status,
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


async def _commit(
    consumer: AIOKafkaConsumer, batches: dict[TopicPartition, Sequence[ConsumerRecord]]
) -> None:
    # Partitions revoked while the batch was fetched belong to another member now; it
    # resumes from their last committed offset, so those requests are fetched again.
    assigned = consumer.assignment()
    offsets = {
        tp: records[-1].offset + 1 for tp, records in batches.items() if records and tp in assigned
    }
    if not offsets:
        return
    try:
        await consumer.commit(offsets)
    except (CommitFailedError, IllegalStateError) as exc:
        log.warning("commit failed after a rebalance, the batch will be redelivered: %s", exc)
