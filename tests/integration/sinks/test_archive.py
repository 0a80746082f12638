"""The S3 archive sink and its replay against a real moto S3 server over HTTP, a real broker
and a real PostgreSQL database."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import io
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy
from aiokafka import AIOKafkaConsumer
from moto.server import ThreadedMotoServer
from prometheus_client import REGISTRY
from sqlalchemy import text

from launcher import cli
from launcher.processes import free_port
from pricewatch.contract.records import Availability, Outcome, PriceObservation
from pricewatch.contract.topics import PRICE_OBSERVATIONS
from pricewatch.db.engine import make_engine
from pricewatch.ids import observation_id_for, product_id_for
from pricewatch.kafka import create_topics, make_producer
from pricewatch.settings import Settings
from sinks.archive.layout import ObjectKey, decode, object_key, parse_key
from sinks.archive.replay import list_archive, replay_archive
from sinks.archive.sink import ObservationArchiveSink, make_s3_client
from sinks.base import run_sink
from sinks.contract import Batch, Consumed

PARTITIONS = 2
REGION = "us-east-1"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_settings(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings naming a fresh, empty bucket on the moto server (fake credentials)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    settings = Settings(
        s3_bucket=f"archive-{uuid.uuid4().hex[:12]}",
        s3_endpoint_url=s3_endpoint,
        s3_region=REGION,
    )
    make_s3_client(settings).create_bucket(Bucket=settings.s3_bucket)
    return settings


def observe(n: int, observed_at: datetime, price: str) -> PriceObservation:
    url = f"https://shop.example/p/{n}"
    product_id = product_id_for(url)
    return PriceObservation(
        observation_id=observation_id_for(product_id, observed_at),
        product_id=product_id,
        url=url,
        observed_at=observed_at,
        outcome=Outcome.OK,
        price=Decimal(price),
        currency="EUR",
        availability=Availability.IN_STOCK,
        title=f"Product {n}",
    )


def consumed(
    partition: int, offset: int, observation: PriceObservation
) -> Consumed[PriceObservation]:
    return Consumed(PRICE_OBSERVATIONS.name, partition, offset, observation)


def bucket_objects(settings: Settings) -> dict[str, bytes]:
    client = make_s3_client(settings)
    listed = client.list_objects_v2(Bucket=settings.s3_bucket).get("Contents", [])
    return {
        item["Key"]: client.get_object(Bucket=settings.s3_bucket, Key=item["Key"])["Body"].read()
        for item in listed
    }


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


H12 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def a_batch() -> Batch[PriceObservation]:
    """Partition 0 spans 12:xx and 13:xx (one record out of time order); partition 1 is 12:xx."""
    return Batch(
        [
            consumed(0, 10, observe(1, H12 + timedelta(minutes=58), "10")),
            consumed(0, 11, observe(2, H12 + timedelta(minutes=59), "11")),
            consumed(0, 12, observe(1, H12 + timedelta(minutes=60), "9")),
            consumed(0, 13, observe(3, H12 + timedelta(minutes=30), "12")),
            consumed(0, 14, observe(2, H12 + timedelta(minutes=75), "8")),
            consumed(1, 3, observe(4, H12 + timedelta(minutes=5), "20")),
            consumed(1, 4, observe(5, H12 + timedelta(minutes=6), "21")),
        ]
    )


def test_keys_name_the_day_hour_partition_and_offsets() -> None:
    place = ObjectKey(datetime(2025, 3, 1, 7, tzinfo=UTC), 3, 17, 250)
    key = object_key("observations", place)
    assert key == "observations/date=2025-03-01/hour=07/part-3-17-250.jsonl.gz"
    assert parse_key(key) == place
    assert object_key("", place) == "date=2025-03-01/hour=07/part-3-17-250.jsonl.gz"
    assert object_key("/a/b/", place).startswith("a/b/date=2025-03-01/")
    assert parse_key("observations/date=2025-03-01/hour=07/notes.txt") is None


async def test_a_batch_lands_under_its_documented_keys(s3_settings: Settings) -> None:
    assert s3_settings.s3_bucket is not None
    sink = ObservationArchiveSink(make_s3_client(s3_settings), s3_settings.s3_bucket, "obs")
    batch = a_batch()
    objects_before = metric("pricewatch_archive_objects_total")
    bytes_before = metric("pricewatch_archive_bytes_total")

    await sink.write(batch)

    stored = bucket_objects(s3_settings)
    by_offset = {(r.partition, r.offset): r.value for r in batch}
    assert sorted(stored) == [
        "obs/date=2025-03-01/hour=12/part-0-10-13.jsonl.gz",
        "obs/date=2025-03-01/hour=12/part-1-3-4.jsonl.gz",
        "obs/date=2025-03-01/hour=13/part-0-12-14.jsonl.gz",
    ]
    expected = {
        "obs/date=2025-03-01/hour=12/part-0-10-13.jsonl.gz": [(0, 10), (0, 11), (0, 13)],
        "obs/date=2025-03-01/hour=12/part-1-3-4.jsonl.gz": [(1, 3), (1, 4)],
        "obs/date=2025-03-01/hour=13/part-0-12-14.jsonl.gz": [(0, 12), (0, 14)],
    }
    for key, places in expected.items():
        lines = gzip.decompress(stored[key]).decode().splitlines()
        assert lines == [by_offset[p].model_dump_json() for p in places]
        assert decode(stored[key]) == [by_offset[p] for p in places]
        hour = parse_key(key)
        assert hour is not None
        assert all(o.observed_at.hour == hour.hour.hour for o in decode(stored[key]))
    assert metric("pricewatch_archive_objects_total") == objects_before + 3
    assert metric("pricewatch_archive_bytes_total") == bytes_before + sum(
        len(body) for body in stored.values()
    )


async def test_the_same_batch_written_again_overwrites_with_identical_bytes(
    s3_settings: Settings,
) -> None:
    assert s3_settings.s3_bucket is not None
    sink = ObservationArchiveSink(
        make_s3_client(s3_settings), s3_settings.s3_bucket, s3_settings.s3_prefix
    )
    await sink.write(a_batch())
    first = bucket_objects(s3_settings)
    assert len(first) == 3

    await sink.write(a_batch())
    # A fresh sink and client (a restarted process) writes the same bytes too.
    again = ObservationArchiveSink(
        make_s3_client(s3_settings), s3_settings.s3_bucket, s3_settings.s3_prefix
    )
    await again.write(a_batch())
    assert bucket_objects(s3_settings) == first


# --- End to end: broker -> archive sink -> S3 -> replay -> PostgreSQL / topic -------------

DAY1_LATE = datetime(2025, 3, 1, 23, 55, tzinfo=UTC)  # the series crosses midnight
PRODUCTS = 6
MINUTES = (0, 10, 20)
OUT_OF_RANGE = datetime(2025, 3, 5, 9, 0, tzinfo=UTC)


def produced_observations() -> tuple[list[PriceObservation], list[PriceObservation]]:
    """(in the replayed days, outside them). Every in-range observation changes the price."""
    in_range = [
        observe(n, DAY1_LATE + timedelta(minutes=m), f"{100 + n}.{i}0")
        for n in range(PRODUCTS)
        for i, m in enumerate(MINUTES)
    ]
    outside = [observe(n, OUT_OF_RANGE, "1.00") for n in range(2)]
    return in_range, outside


async def produce(settings: Settings, observations: list[PriceObservation]) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        for o in observations:
            await producer.send_and_wait(
                settings.topic(PRICE_OBSERVATIONS),
                o.model_dump_json().encode(),
                key=o.product_id.encode(),
            )
    finally:
        await producer.stop()


async def archived_count(settings: Settings) -> int:
    stored = await asyncio.to_thread(bucket_objects, settings)
    return sum(len(decode(body)) for body in stored.values())


async def wait_until_archived(settings: Settings, expected: int, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while (found := await archived_count(settings)) < expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"{found} observations archived, expected {expected}")
        await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def running_archive_sink(settings: Settings) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(run_sink("archive", settings, stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


def table_rows(engine: sqlalchemy.Engine) -> tuple[list[Any], list[Any]]:
    with engine.connect() as connection:
        return (
            list(connection.execute(text("SELECT * FROM products ORDER BY product_id"))),
            list(connection.execute(text("SELECT * FROM prices ORDER BY id"))),
        )


async def read_topic(settings: Settings, expected: int, seconds: float = 30) -> list[Any]:
    consumer = AIOKafkaConsumer(
        settings.topic(PRICE_OBSERVATIONS),
        bootstrap_servers=settings.bootstrap(),
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = time.monotonic() + seconds
        while len(records) < expected and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(batch)
        # Anything beyond the expected count would show up now.
        for batch in (await consumer.getmany(timeout_ms=1000)).values():
            records.extend(batch)
    finally:
        await consumer.stop()
    return records


@pytest.fixture
def e2e_settings(
    s3_settings: Settings, kafka_bootstrap: str, postgres_url: str, unique_prefix: str
) -> Settings:
    return s3_settings.model_copy(
        update={
            "kafka_bootstrap_servers": kafka_bootstrap,
            "database_url": postgres_url,  # fresh and empty: replay migrates it
            "topic_prefix": unique_prefix,
            "app_id": f"pw-{unique_prefix}",
            "topic_partitions": PARTITIONS,
            "kafka_session_timeout_seconds": 6,
        }
    )


async def test_archive_then_replay_restores_the_database_and_republishes(
    e2e_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = e2e_settings
    assert settings.s3_bucket is not None
    await create_topics(settings)
    in_range, outside = produced_observations()
    await produce(settings, in_range + outside)

    async with running_archive_sink(settings):
        await wait_until_archived(settings, len(in_range) + len(outside))

    client = make_s3_client(settings)
    keys = list_archive(
        client, settings.s3_bucket, settings.s3_prefix, date(2025, 3, 1), date(2025, 3, 2)
    )
    assert keys, "nothing archived in the replayed days"
    assert {k.split("/")[1] for k in keys} == {"date=2025-03-01", "date=2025-03-02"}
    others = set(bucket_objects(settings)) - set(keys)
    assert others
    assert {k.split("/")[1] for k in others} == {"date=2025-03-05"}
    places = [parse_key(k) for k in keys]
    assert places == sorted(places), "replayed in archive order"

    # Replay into the empty database.
    progress = io.StringIO()
    result = await replay_archive(
        settings, date(2025, 3, 1), date(2025, 3, 2), target="database", progress=progress
    )
    assert (result.objects, result.observations) == (len(keys), len(in_range))
    assert f"{len(keys)}/{len(keys)} objects, {len(in_range)} observations" in progress.getvalue()
    engine = make_engine(settings.database())
    try:
        restored = table_rows(engine)
        assert len(restored[0]) == PRODUCTS
        assert len(restored[1]) == len(in_range)
        latest = {row.product_id: row.current_price for row in restored[0]}
        assert latest == {
            product_id_for(f"https://shop.example/p/{n}"): Decimal(f"{100 + n}.20")
            for n in range(PRODUCTS)
        }

        # The second replay, through the command line, changes no row.
        for name, value in {
            "PRICEWATCH_DATABASE_URL": settings.database(),
            "PRICEWATCH_S3_BUCKET": settings.s3_bucket,
            "PRICEWATCH_S3_ENDPOINT_URL": str(settings.s3_endpoint_url),
            "PRICEWATCH_S3_REGION": REGION,
        }.items():
            monkeypatch.setenv(name, value)
        argv = ["archive", "replay", "--from", "2025-03-01", "--to", "2025-03-02", "--to-database"]
        await asyncio.to_thread(cli.main, argv)
        assert f"replayed {len(in_range)} observations" in capsys.readouterr().out
        assert table_rows(engine) == restored
    finally:
        engine.dispose()

    # Replay into a topic (another prefix: a fresh topic) republishes every observation once.
    target = settings.model_copy(update={"topic_prefix": f"{settings.topic_prefix}replay-"})
    await create_topics(target)
    result = await replay_archive(
        target, date(2025, 3, 1), date(2025, 3, 2), target="topic", progress=None
    )
    assert result.observations == len(in_range)
    records = await read_topic(target, expected=len(in_range))
    assert len(records) == len(in_range)
    republished = [PriceObservation.model_validate_json(r.value) for r in records]
    assert sorted(o.observation_id for o in republished) == sorted(
        o.observation_id for o in in_range
    )
    assert all(
        r.key == PriceObservation.model_validate_json(r.value).product_id.encode() for r in records
    )


async def test_a_missing_bucket_pauses_the_archive_sink_and_loses_nothing(
    e2e_settings: Settings,
) -> None:
    settings = e2e_settings.model_copy(update={"s3_bucket": f"later-{uuid.uuid4().hex[:12]}"})
    await create_topics(settings)
    in_range, _ = produced_observations()
    failures_before = metric("pricewatch_sink_write_failures_total", sink="archive-sink")

    async with running_archive_sink(settings):
        await produce(settings, in_range)
        deadline = time.monotonic() + 60
        while (
            metric("pricewatch_sink_write_failures_total", sink="archive-sink")
            < failures_before + 2
        ):
            assert time.monotonic() < deadline, "no failed write while the bucket is missing"
            await asyncio.sleep(0.1)

        await asyncio.to_thread(make_s3_client(settings).create_bucket, Bucket=settings.s3_bucket)
        await wait_until_archived(settings, len(in_range))

    archived = [o for body in bucket_objects(settings).values() for o in decode(body)]
    assert sorted(o.observation_id for o in archived) == sorted(o.observation_id for o in in_range)
