"""Read archived observations back: republish them to the topic, or restore PostgreSQL.

Objects are listed per UTC day (by key prefix) and read in archive order: hour, partition,
first offset. Restoring PostgreSQL goes through ``PriceHistorySink``, which is idempotent,
so a second replay changes no row. Republishing is at-least-once like any producer: the
consumers of ``price-observations`` are idempotent and absorb repeats.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Literal, TextIO

from pricewatch.contract.records import PriceObservation
from pricewatch.contract.topics import PRICE_OBSERVATIONS
from pricewatch.db.engine import make_engine, upgrade
from pricewatch.kafka import make_producer
from pricewatch.settings import Settings
from sinks.archive.layout import ObjectKey, day_prefix, decode, parse_key
from sinks.archive.sink import make_s3_client
from sinks.postgres.prices import PriceHistorySink

log = logging.getLogger(__name__)

Target = Literal["topic", "database"]


@dataclass(frozen=True)
class ReplayResult:
    objects: int
    observations: int


def days(start: date, end: date) -> Iterator[date]:
    """Every day from ``start`` to ``end``, both included."""
    day = start
    while day <= end:
        yield day
        day += timedelta(days=1)


def list_archive(client: Any, bucket: str, prefix: str, start: date, end: date) -> list[str]:
    """The archive objects of the UTC days ``start`` to ``end`` (inclusive), in archive order."""
    found: list[tuple[ObjectKey, str]] = []
    paginator = client.get_paginator("list_objects_v2")
    for day in days(start, end):
        for page in paginator.paginate(Bucket=bucket, Prefix=day_prefix(prefix, day)):
            for item in page.get("Contents", []):
                place = parse_key(item["Key"])
                if place is not None:
                    found.append((place, item["Key"]))
    return [key for _, key in sorted(found)]


def read_object(client: Any, bucket: str, key: str) -> list[PriceObservation]:
    body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    return decode(body)


class _Progress:
    """One self-overwriting stderr line: objects done of total, observations so far."""

    def __init__(self, total: int, stream: TextIO | None) -> None:
        self.total = total
        self.stream = stream
        self.done = 0
        self.observations = 0

    def advance(self, observations: int) -> None:
        self.done += 1
        self.observations += observations
        if self.stream is not None:
            width = 30
            filled = width * self.done // self.total if self.total else width
            self.stream.write(
                f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} objects, "
                f"{self.observations} observations"
            )
            self.stream.flush()

    def close(self) -> None:
        if self.stream is not None and self.total:
            self.stream.write("\n")
            self.stream.flush()


async def replay_archive(
    settings: Settings,
    start: date,
    end: date,
    *,
    target: Target,
    progress: TextIO | None = sys.stderr,
) -> ReplayResult:
    """Replay the archived observations of ``start``..``end`` (UTC days) into ``target``."""
    if not settings.s3_bucket:
        raise RuntimeError("replaying the archive needs PRICEWATCH_S3_BUCKET")
    bucket = settings.s3_bucket
    client = make_s3_client(settings)
    keys = await asyncio.to_thread(list_archive, client, bucket, settings.s3_prefix, start, end)
    log.info("replaying %d archive objects (%s to %s) into the %s", len(keys), start, end, target)
    bar = _Progress(len(keys), progress)
    try:
        if target == "database":
            await _into_database(settings, client, bucket, keys, bar)
        else:
            await _into_topic(settings, client, bucket, keys, bar)
    finally:
        bar.close()
    return ReplayResult(objects=bar.done, observations=bar.observations)


async def _into_database(
    settings: Settings, client: Any, bucket: str, keys: list[str], bar: _Progress
) -> None:
    url = settings.database()
    await asyncio.to_thread(upgrade, url)
    engine = make_engine(url)
    try:
        # The price sink's own writes, so a replay is exactly as idempotent as the sink.
        sink = PriceHistorySink(engine)
        for key in keys:
            observations = await asyncio.to_thread(read_object, client, bucket, key)
            if observations:
                await asyncio.to_thread(sink.write_blocking, observations)
            bar.advance(len(observations))
    finally:
        engine.dispose()


async def _into_topic(
    settings: Settings, client: Any, bucket: str, keys: list[str], bar: _Progress
) -> None:
    topic = settings.topic(PRICE_OBSERVATIONS)
    producer = make_producer(settings)
    await producer.start()
    try:
        for key in keys:
            observations = await asyncio.to_thread(read_object, client, bucket, key)
            sends = [
                await producer.send(
                    topic, key=o.product_id.encode(), value=o.model_dump_json().encode()
                )
                for o in observations
            ]
            await asyncio.gather(*sends)  # acknowledged before the object counts as done
            bar.advance(len(observations))
    finally:
        await producer.stop()
