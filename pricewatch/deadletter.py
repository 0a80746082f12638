"""Building dead-letter records: what was rejected, where it came from, and why."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from pricewatch.contract.records import DeadLetter

# Keep dead letters small enough to always fit in a Kafka message.
MAX_VALUE_CHARS = 64_000


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


class SourceRecord(Protocol):
    """A consumed Kafka record (aiokafka's ConsumerRecord has these)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


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
