"""The at-least-once batch consumer that feeds a sink's topics into it (``run_sink``).

Per batch: fetch, parse (bad records go to the dead-letter topic), write the good ones as one
``Batch`` (``sinks.contract``), and only then commit the offsets. A failing write is retried,
same batch, with capped exponential backoff until it succeeds or the process is asked to
stop: a database outage pauses the sink, it never skips records. Redelivery after a crash or
rebalance is normal, so every sink's ``write`` must be idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Histogram

from pricewatch.contract.topics import DEAD_LETTERS
from pricewatch.deadletters import send_dead_letter
from pricewatch.kafka import make_consumer, make_producer
from pricewatch.metrics import report_lag
from pricewatch.settings import Settings
from sinks.contract import Batch, Consumed, Feed, Sink
from sinks.registry import sink_kind

log = logging.getLogger(__name__)

INITIAL_BACKOFF_SECONDS = 0.2
MAX_BACKOFF_SECONDS = 10.0
LAG_REPORT_INTERVAL_SECONDS = 1.0
# How long the loop waits for fetched records before it looks at ``stop`` and the lag
# report again (records end the wait as soon as they arrive): short, so a stop is quick;
# an empty wake-up costs no broker round trip (the fetcher's own wait adapts).
POLL_TIMEOUT_MS = 200

RECORDS_WRITTEN = Counter(
    "pricewatch_sink_records_written_total", "Records a sink wrote (then committed).", ["sink"]
)
BATCH_SIZE = Histogram(
    "pricewatch_sink_batch_size",
    "Records per written batch.",
    ["sink"],
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000),
)
FLUSH_SECONDS = Histogram(
    "pricewatch_sink_flush_seconds",
    "Duration of one successful batch write.",
    ["sink"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
WRITE_FAILURES = Counter(
    "pricewatch_sink_write_failures_total", "Batch writes that raised (and were retried).", ["sink"]
)
OUTAGE_SECONDS = Counter(
    "pricewatch_sink_outage_seconds_total",
    "Time spent backing off before retrying a failed batch.",
    ["sink"],
)


def describe_error(exc: BaseException) -> str:
    """One short line: the exception type and the first line of its message.

    SQLAlchemy wraps the driver's exception and appends the SQL and a link; the driver's
    own message is the useful part.
    """
    inner = getattr(exc, "orig", None)
    shown = inner if isinstance(inner, BaseException) else exc
    lines = str(shown).strip().splitlines()
    message = lines[0][:300] if lines else ""
    return f"{type(shown).__name__}: {message}" if message else type(shown).__name__


async def _stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to ``seconds``; True as soon as ``stop`` is set."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True


async def retry_until_done(
    action: Callable[[], Awaitable[None]],
    *,
    role: str,
    what: str,
    stop: asyncio.Event,
    on_failure: Callable[[], None] | None = None,
) -> bool:
    """Run ``action`` until it succeeds (True) or ``stop`` is set while backing off (False)."""
    delay = INITIAL_BACKOFF_SECONDS
    failures = 0
    first_failure_at = 0.0
    while True:
        try:
            await action()
        except Exception as exc:
            failures += 1
            if failures == 1:
                first_failure_at = time.monotonic()
            if on_failure is not None:
                on_failure()
            log.warning(
                "%s: %s failed (%s); retrying the same batch in %.1fs (attempt %d)",
                role,
                what,
                describe_error(exc),
                delay,
                failures,
            )
            began = time.monotonic()
            stopped = await _stopped_within(stop, delay)
            OUTAGE_SECONDS.labels(role).inc(time.monotonic() - began)
            if stopped:
                log.warning(
                    "%s: stopping with %s unfinished; nothing was committed, "
                    "the batch will be delivered again",
                    role,
                    what,
                )
                return False
            delay = min(delay * 2, MAX_BACKOFF_SECONDS)
            continue
        if failures:
            log.info(
                "%s: %s succeeded after %d failed attempts (%.1fs)",
                role,
                what,
                failures,
                time.monotonic() - first_failure_at,
            )
        return True


def _parse_batch(
    fetched: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]], feed: Feed
) -> tuple[Batch[Any], list[tuple[ConsumerRecord[bytes, bytes], str]]]:
    good: list[Consumed[Any]] = []
    rejected: list[tuple[ConsumerRecord[bytes, bytes], str]] = []
    for records in fetched.values():
        for record in records:
            try:
                if record.value is not None:
                    parsed = feed.parse(record.value)
                elif feed.parse_tombstone is not None:
                    parsed = feed.parse_tombstone(record.key)
                else:
                    rejected.append((record, "null value (tombstone) on a topic without deletes"))
                    continue
            except ValueError as exc:  # pydantic's ValidationError is a ValueError
                rejected.append((record, str(exc)))
                continue
            good.append(Consumed(record.topic, record.partition, record.offset, parsed))
    return Batch(good), rejected


async def _send_dead_letters(
    producer: AIOKafkaProducer,
    settings: Settings,
    role: str,
    rejected: list[tuple[ConsumerRecord[bytes, bytes], str]],
) -> None:
    topic = settings.topic(DEAD_LETTERS)

    def send(key: bytes, value: bytes) -> Awaitable[asyncio.Future[Any]]:
        return producer.send(topic, key=key, value=value)

    deliveries = [
        await send_dead_letter(send, record, stage=role, reason="invalid_record", error=error)
        for record, error in rejected
    ]
    # Acknowledged by the broker before the source offsets may be committed.
    await asyncio.gather(*deliveries)


async def _commit(
    consumer: AIOKafkaConsumer,
    fetched: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
    role: str,
) -> None:
    offsets = {tp: records[-1].offset + 1 for tp, records in fetched.items() if records}
    try:
        await consumer.commit(offsets)
    except KafkaError as exc:
        # Typically a rebalance during a long write or outage: the partitions moved on, and
        # their new owner reprocesses from the last commit. Harmless for idempotent sinks.
        log.warning(
            "%s: commit failed (%s); the batch will be delivered again", role, describe_error(exc)
        )


async def _report_lag(consumer: AIOKafkaConsumer, group: str) -> None:
    """Lag of each assigned partition: its high-water mark (from the last fetch response)
    minus our position, which is what the group has committed once a batch is done."""
    lags: dict[tuple[str, int], int] = {}
    for tp in consumer.assignment():
        highwater = consumer.highwater(tp)
        if highwater is None:  # nothing fetched from it yet
            continue
        lags[(tp.topic, tp.partition)] = highwater - await consumer.position(tp)
    report_lag(group, lags)


async def run_sink(kind: str, settings: Settings, stop: asyncio.Event) -> None:
    """Make sink ``kind`` (``sinks.registry``) and feed it every topic it reads until
    ``stop``: one consumer group per feed, one sink."""
    declared = sink_kind(kind)
    async with declared.open(settings) as sink:
        await asyncio.gather(
            *(run_batch_consumer(settings, feed, sink, stop) for feed in declared.feeds)
        )


async def run_sinks(kinds: Sequence[str], settings: Settings, stop: asyncio.Event) -> None:
    """Run several sinks in this process until ``stop`` (a small deployment needs one
    process for all of them, not one each); if one fails, the others stop too."""
    async with asyncio.TaskGroup() as sinks:
        for kind in kinds:
            sinks.create_task(run_sink(kind, settings, stop), name=f"sink {kind}")


async def run_batch_consumer(
    settings: Settings, feed: Feed, sink: Sink[Any], stop: asyncio.Event
) -> None:
    """Consume ``feed.topic`` in group ``settings.group(feed.role)`` into ``sink`` until
    ``stop``. The records of one partition reach the sink in offset order."""
    role = feed.role
    topic = settings.topic(feed.topic)
    consumer = make_consumer(
        settings, settings.group(role), settings.group(role), topic, bulk=feed.bulk
    )
    producer = make_producer(settings)
    await producer.start()
    try:
        await consumer.start()
        try:
            log.info("%s: consuming %s as group %s", role, topic, settings.group(role))
            next_lag_report = 0.0
            while not stop.is_set():
                fetched = await consumer.getmany(
                    timeout_ms=POLL_TIMEOUT_MS, max_records=feed.max_batch
                )
                if not fetched:
                    if time.monotonic() >= next_lag_report:
                        await _report_lag(consumer, settings.group(role))
                        next_lag_report = time.monotonic() + LAG_REPORT_INTERVAL_SECONDS
                    continue
                good, rejected = _parse_batch(fetched, feed)
                if rejected and not await retry_until_done(
                    partial(_send_dead_letters, producer, settings, role, rejected),
                    role=role,
                    what=f"dead-lettering {len(rejected)} records",
                    stop=stop,
                ):
                    return
                if good and not await _write(sink, good, role=role, stop=stop):
                    return
                await _commit(consumer, fetched, role)
                if time.monotonic() >= next_lag_report:
                    await _report_lag(consumer, settings.group(role))
                    next_lag_report = time.monotonic() + LAG_REPORT_INTERVAL_SECONDS
        finally:
            await consumer.stop()
    finally:
        await producer.stop()
        log.info("%s: stopped", role)


async def _write(sink: Sink[Any], batch: Batch[Any], *, role: str, stop: asyncio.Event) -> bool:
    flush_seconds = 0.0

    async def timed_write() -> None:
        nonlocal flush_seconds
        began = time.monotonic()
        await sink.write(batch)
        flush_seconds = time.monotonic() - began

    written = await retry_until_done(
        timed_write,
        role=role,
        what=f"writing {len(batch)} records",
        stop=stop,
        on_failure=WRITE_FAILURES.labels(role).inc,
    )
    if written:
        RECORDS_WRITTEN.labels(role).inc(len(batch))
        BATCH_SIZE.labels(role).observe(len(batch))
        FLUSH_SECONDS.labels(role).observe(flush_seconds)
    return written
