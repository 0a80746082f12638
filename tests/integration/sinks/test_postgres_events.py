"""PriceEventSink against a real PostgreSQL, and its consumer against a real broker."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy import text

from pricewatch.contract.records import Availability, EventType, PriceEvent
from pricewatch.contract.topics import PRICE_EVENTS
from pricewatch.db.engine import make_engine, upgrade
from pricewatch.ids import observation_id_for, product_id_for
from pricewatch.kafka import create_topics, make_producer
from pricewatch.settings import Settings
from sinks.base import run_sink
from sinks.contract import Batch
from sinks.postgres.events import ROLE, PriceEventSink
from tests import helpers

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
PARTITIONS = 2


def event(
    n: int,
    minutes: int = 0,
    event_type: EventType = EventType.PRICE_DROP,
    old: str | None = "10.00",
    new: str | None = "9.00",
) -> PriceEvent:
    url = f"https://shop.example/p/{n}"
    product_id = product_id_for(url)
    observed_at = T0 + timedelta(minutes=minutes)
    observation_id = observation_id_for(product_id, observed_at)
    return PriceEvent(
        event_id=f"{product_id}:{event_type.value}:{observation_id}",
        event_type=event_type,
        product_id=product_id,
        url=url,
        observation_id=observation_id,
        observed_at=observed_at,
        detected_at=observed_at + timedelta(seconds=1),
        old_price=Decimal(old) if old is not None else None,
        new_price=Decimal(new) if new is not None else None,
        old_currency="EUR" if old is not None else None,
        new_currency="EUR" if new is not None else None,
        old_availability=Availability.IN_STOCK,
        new_availability=Availability.IN_STOCK,
    )


@pytest.fixture
def engine(postgres_url: str) -> Iterator[sqlalchemy.Engine]:
    upgrade(postgres_url)
    engine = make_engine(postgres_url)
    yield engine
    engine.dispose()


def rows(engine: sqlalchemy.Engine) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        query = text("SELECT * FROM price_events ORDER BY event_id")
        return [dict(row._mapping) for row in connection.execute(query)]


async def test_a_batch_writes_one_row_per_event_and_a_replay_none(
    engine: sqlalchemy.Engine,
) -> None:
    sink = PriceEventSink(engine)
    sold_out = event(2, 5, EventType.SOLD_OUT, "20.00", "20.00").model_copy(
        update={"new_availability": Availability.OUT_OF_STOCK}
    )
    removed = event(3, 7, EventType.REMOVED, "5.00", None)
    batch = [event(1), event(1, 5, EventType.PRICE_INCREASE, "9.00", "11.50"), sold_out, removed]
    await sink.write(Batch.of(batch + batch[:1]))  # a duplicate within the batch too

    first = rows(engine)
    assert len(first) == 4
    by_type = {row["event_type"]: row for row in first}
    increase = by_type["price_increase"]
    assert (increase["old_price"], increase["new_price"]) == (Decimal("9"), Decimal("11.5"))
    assert (increase["old_currency"], increase["new_currency"]) == ("EUR", "EUR")
    assert increase["observed_at"] == T0 + timedelta(minutes=5)
    assert increase["detected_at"] == T0 + timedelta(minutes=5, seconds=1)
    assert increase["observation_id"] == batch[1].observation_id
    assert by_type["sold_out"]["new_availability"] == "out_of_stock"
    assert (by_type["removed"]["new_price"], by_type["removed"]["new_currency"]) == (None, None)

    await sink.write(Batch.of(batch))
    await sink.write(Batch.of(batch[::-1]))
    assert rows(engine) == first


@contextlib.asynccontextmanager
async def running_sink(settings: Settings) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(run_sink("events", settings, stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


async def committed_offsets(settings: Settings) -> int:
    return await helpers.committed_offsets(settings, ROLE, PRICE_EVENTS, PARTITIONS)


async def wait_for_commits(settings: Settings, expected: int) -> None:
    await helpers.wait_for_commits(settings, ROLE, PRICE_EVENTS, PARTITIONS, expected)


async def test_the_consumer_writes_events_and_a_replay_changes_nothing(
    kafka_bootstrap: str, postgres_url: str, unique_prefix: str, engine: sqlalchemy.Engine
) -> None:
    settings = Settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        database_url=postgres_url,
        topic_prefix=unique_prefix,
        app_id=f"pw-{unique_prefix}",
        topic_partitions=PARTITIONS,
        kafka_session_timeout_seconds=6,
    )
    await create_topics(settings)
    events = [event(n, minutes) for n in range(15) for minutes in (0, 5)]
    producer = make_producer(settings)
    await producer.start()
    try:
        for e in [*events, events[0]]:  # one redelivered by its producer
            await producer.send_and_wait(
                settings.topic(PRICE_EVENTS),
                e.model_dump_json().encode(),
                key=e.product_id.encode(),
            )
        await producer.send_and_wait(settings.topic(PRICE_EVENTS), b"not json", key=b"k")
    finally:
        await producer.stop()

    async with running_sink(settings):
        await wait_for_commits(settings, len(events) + 2)
    first = rows(engine)
    assert len(first) == len(events)

    replay = settings.model_copy(update={"app_id": f"{settings.app_id}replay"})
    async with running_sink(replay):
        await wait_for_commits(replay, len(events) + 2)
    assert rows(engine) == first
