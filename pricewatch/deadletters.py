"""Dead letters: the one way every stage (stream agents, scrapers, sinks) parks a message it
cannot process. The record says what was rejected, where it came from and why; it goes to
the ``dead-letters`` topic keyed by its source topic, and one metric counts it once the
broker has it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol

from prometheus_client import Counter

from pricewatch.contract.records import DeadLetter

log = logging.getLogger(__name__)

# Keep dead letters small enough to always fit in a Kafka message.
MAX_VALUE_CHARS = 64_000

# One metric for every stage. Values of "stage": a sink's role, "scraper", "detector",
# "matcher".
DEAD_LETTERS = Counter(
    "pricewatch_dead_letters_total",
    "Messages sent to the dead-letter topic (acknowledged by the broker), by the stage that "
    "rejected them and reason.",
    ["stage", "reason"],
)


class SourceRecord(Protocol):
    """A consumed Kafka record (aiokafka's ConsumerRecord has these)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


@dataclass(frozen=True)
class Source:
    """A consumed record's origin and bytes, for consumers whose records look otherwise."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


# Sends (key, value) to the dead-letter topic; returns the delivery, a future the broker's
# acknowledgement resolves (aiokafka's producer.send and a Faust topic's send both do).
Send = Callable[[bytes, bytes], Awaitable["asyncio.Future[Any]"]]


def _text(data: bytes | str | None, limit: int) -> str | None:
    if data is None:
        return None
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    return text[:limit]


def dead_letter(
    *,
    source_topic: str,
    source_partition: int,
    source_offset: int,
    stage: str,
    reason: str,
    error: str,
    key: bytes | str | None,
    value: bytes | str | None,
) -> DeadLetter:
    raw_len = len(value.encode() if isinstance(value, str) else value) if value is not None else 0
    return DeadLetter(
        source_topic=source_topic,
        source_partition=source_partition,
        source_offset=source_offset,
        stage=stage,
        reason=reason,
        error=error[:2000],
        key=_text(key, 1000),
        value=_text(value, MAX_VALUE_CHARS),
        value_bytes=raw_len,
        dead_lettered_at=datetime.now(UTC),
    )


def dead_letter_for_record(
    record: SourceRecord, *, stage: str, reason: str, error: str
) -> DeadLetter:
    return dead_letter(
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
        stage=stage,
        reason=reason,
        error=error,
        key=record.key,
        value=record.value,
    )


def _count(stage: str, reason: str, delivery: asyncio.Future[Any]) -> None:
    if not delivery.cancelled() and delivery.exception() is None:
        DEAD_LETTERS.labels(stage, reason).inc()


async def send_dead_letter(
    send: Send, record: SourceRecord, *, stage: str, reason: str, error: str
) -> asyncio.Future[Any]:
    """Dead-letter ``record``: log it, send its dead letter, and count it once delivered.

    Returns the delivery. Await it before committing the source offset (or rely on a
    producer flushed before every commit, as Faust's is), so a crash before delivery
    redelivers the bad message instead of losing it.
    """
    letter = dead_letter_for_record(record, stage=stage, reason=reason, error=error)
    log.warning(
        "%s: dead-lettered %s[%d]@%d (%s: %s)",
        stage,
        record.topic,
        record.partition,
        record.offset,
        reason,
        error.splitlines()[0][:300] if error else "",
    )
    delivery = await send(record.topic.encode(), letter.model_dump_json().encode())
    delivery.add_done_callback(partial(_count, stage, reason))
    return delivery
