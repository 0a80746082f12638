"""Where archived observations live in the bucket and how an object is encoded. Pure: no I/O.

Key: ``<prefix>/date=YYYY-MM-DD/hour=HH/part-<partition>-<first offset>-<last offset>.jsonl.gz``
(the UTC hour of the observations' ``observed_at``; the offsets are the Kafka offsets of the
first and last record in the object). Body: gzip (mtime 0, so equal input gives equal bytes)
of one ``PriceObservation`` JSON document per line, in offset order.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

from pricewatch.contract.records import PriceObservation

_KEY = re.compile(
    r"(?:^|/)date=(\d{4}-\d{2}-\d{2})/hour=(\d{2})/part-(\d+)-(\d+)-(\d+)\.jsonl\.gz$"
)


@dataclass(frozen=True, order=True)
class ObjectKey:
    """An archive object's place; orders as the observations were archived."""

    hour: datetime  # UTC, truncated to the hour
    partition: int
    first_offset: int
    last_offset: int


def hour_of(observation: PriceObservation) -> datetime:
    return observation.observed_at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _base(prefix: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/" if prefix else ""


def object_key(prefix: str, key: ObjectKey) -> str:
    return (
        f"{_base(prefix)}date={key.hour:%Y-%m-%d}/hour={key.hour:%H}/"
        f"part-{key.partition}-{key.first_offset}-{key.last_offset}.jsonl.gz"
    )


def day_prefix(prefix: str, day: date) -> str:
    """The key prefix of every object of one UTC day."""
    return f"{_base(prefix)}date={day:%Y-%m-%d}/"


def parse_key(key: str) -> ObjectKey | None:
    """The place an archive key names; None for anything else in the bucket."""
    match = _KEY.search(key)
    if match is None:
        return None
    day, hour, partition, first, last = match.groups()
    return ObjectKey(
        hour=datetime.fromisoformat(day).replace(hour=int(hour), tzinfo=UTC),
        partition=int(partition),
        first_offset=int(first),
        last_offset=int(last),
    )


def encode(observations: list[PriceObservation]) -> bytes:
    lines = "".join(o.model_dump_json() + "\n" for o in observations)
    return gzip.compress(lines.encode(), mtime=0)


def decode(body: bytes) -> list[PriceObservation]:
    return [
        PriceObservation.model_validate_json(line)
        for line in gzip.decompress(body).splitlines()
        if line.strip()
    ]
