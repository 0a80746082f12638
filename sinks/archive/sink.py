"""Price observations into S3: one gzip JSON-lines object per topic partition, hour and batch.

Idempotent per batch: an object's key is made of its partition, the UTC hour of its
observations and the offsets of its first and last record, and its bytes depend only on
those records, so a batch delivered again overwrites the same objects with the same bytes.
(A redelivery cut at other batch boundaries writes objects with other offset ranges: the
archive can then hold an observation twice, which replaying into PostgreSQL absorbs.)
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import boto3
from botocore.config import Config
from prometheus_client import Counter

from pricewatch.contract.records import PriceObservation
from pricewatch.contract.topics import PRICE_OBSERVATIONS
from pricewatch.settings import Settings
from sinks.archive.layout import ObjectKey, encode, hour_of, object_key
from sinks.contract import Batch, Feed, SinkKind

log = logging.getLogger(__name__)

ROLE = "archive-sink"

OBJECTS_WRITTEN = Counter(
    "pricewatch_archive_objects_total", "Archive objects written to S3 (rewrites included)."
)
BYTES_WRITTEN = Counter(
    "pricewatch_archive_bytes_total", "Compressed bytes of archive objects written to S3."
)


def make_s3_client(settings: Settings) -> Any:
    """An S3 client for the archive; credentials come from boto3's usual chain."""
    # Path-style addressing: MinIO and moto answer on one host name, not per bucket.
    config = Config(s3={"addressing_style": "path"}) if settings.s3_endpoint_url else None
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        config=config,
    )


def plan_objects(batch: Batch[PriceObservation]) -> dict[ObjectKey, list[PriceObservation]]:
    """Split a batch into objects: one per (partition, UTC hour), records in offset order."""
    groups: dict[tuple[int, datetime], list[tuple[int, PriceObservation]]] = defaultdict(list)
    for record in batch:
        observation = record.value
        groups[(record.partition, hour_of(observation))].append((record.offset, observation))
    objects: dict[ObjectKey, list[PriceObservation]] = {}
    for (partition, hour), members in groups.items():
        members.sort(key=lambda member: member[0])
        key = ObjectKey(hour, partition, members[0][0], members[-1][0])
        objects[key] = [observation for _, observation in members]
    return objects


class ObservationArchiveSink:
    """Writes each batch of observations to S3 (see the module docstring for the layout)."""

    def __init__(self, client: Any, bucket: str, prefix: str) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix

    async def write(self, batch: Batch[PriceObservation]) -> None:
        if batch:
            await asyncio.to_thread(self.write_blocking, batch)

    def write_blocking(self, batch: Batch[PriceObservation]) -> list[str]:
        """Put every object of ``batch``; returns their keys."""
        keys: list[str] = []
        for place, observations in sorted(plan_objects(batch).items()):
            key = object_key(self.prefix, place)
            body = encode(observations)
            self.client.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentType="application/gzip"
            )
            OBJECTS_WRITTEN.inc()
            BYTES_WRITTEN.inc(len(body))
            keys.append(key)
        log.debug("%s: wrote %d objects", ROLE, len(keys))
        return keys


@asynccontextmanager
async def open_sink(settings: Settings) -> AsyncIterator[ObservationArchiveSink]:
    if not settings.s3_bucket:
        raise RuntimeError("the archive sink needs PRICEWATCH_S3_BUCKET")
    yield ObservationArchiveSink(make_s3_client(settings), settings.s3_bucket, settings.s3_prefix)


SINK = SinkKind(
    feeds=(Feed(ROLE, PRICE_OBSERVATIONS, PriceObservation.model_validate_json, bulk=True),),
    open=open_sink,
)
