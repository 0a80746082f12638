"""SubscriptionSink against a real PostgreSQL, and its consumer against a real broker."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from pricewatch.contract.records import Subscription
from pricewatch.contract.topics import SUBSCRIPTIONS
from pricewatch.db.engine import make_engine, upgrade
from pricewatch.ids import partition_for, product_id_for, subscription_id_for
from pricewatch.kafka import create_topics, make_producer
from pricewatch.settings import Settings
from sinks.base import run_sink
from sinks.contract import Batch
from sinks.postgres.subscription_changes import (
    SubscriptionChange,
    SubscriptionDeleted,
    parse_tombstone,
    reduce_batch,
)
from sinks.postgres.subscriptions import ROLE, SubscriptionSink
from tests import helpers

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SHOE = "https://shop.example/p/shoe"
HAT = "https://shop.example/p/hat"


def subscription(
    email: str = "Ann@Example.com",
    url: str = SHOE,
    minutes: int = 0,
    *,
    target_price: str | None = "50.00",
    active: bool = True,
    **fields: Any,
) -> Subscription:
    product_id = product_id_for(url)
    return Subscription(
        subscription_id=subscription_id_for(email, product_id),
        email=email,
        product_id=product_id,
        url=url,
        target_price=Decimal(target_price) if target_price is not None else None,
        active=active,
        created_at=T0 + timedelta(minutes=minutes),
        **fields,
    )


def deleted(s: Subscription) -> SubscriptionDeleted:
    return SubscriptionDeleted(s.subscription_id)


@pytest.fixture
def engine(postgres_url: str) -> Iterator[sqlalchemy.Engine]:
    upgrade(postgres_url)
    engine = make_engine(postgres_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sink(engine: sqlalchemy.Engine) -> SubscriptionSink:
    return SubscriptionSink(engine)


def rows(engine: sqlalchemy.Engine, query: str, **params: Any) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(text(query), params)]


def snapshot(engine: sqlalchemy.Engine) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return (
        rows(engine, "SELECT * FROM users ORDER BY id"),
        rows(engine, "SELECT * FROM subscriptions ORDER BY subscription_id"),
    )


def stored(engine: sqlalchemy.Engine, s: Subscription) -> dict[str, Any] | None:
    found = rows(
        engine,
        "SELECT s.*, u.email FROM subscriptions s JOIN users u ON u.id = s.user_id "
        "WHERE subscription_id = :id",
        id=s.subscription_id,
    )
    return found[0] if found else None


async def test_a_batch_writes_users_and_subscriptions(
    sink: SubscriptionSink, engine: sqlalchemy.Engine
) -> None:
    shoe = subscription(
        drop_percent=Decimal("12.5"),
        reference_price=Decimal("80"),
        notify_any_drop=True,
        notify_sold_out=True,
    )
    hat = subscription(url=HAT, target_price=None, notify_back_in_stock=True)
    bob = subscription("bob@example.com", minutes=1)
    await sink.write(Batch.of([shoe, hat, bob]))

    users = rows(engine, "SELECT * FROM users ORDER BY email")
    assert [u["email"] for u in users] == ["ann@example.com", "bob@example.com"]
    assert all(u["display_name"] is None and u["verified_at"] is None for u in users)
    row = stored(engine, shoe)
    assert row is not None
    assert row["email"] == "ann@example.com"
    assert (row["product_id"], row["url"]) == (product_id_for(SHOE), SHOE)
    assert (row["target_price"], row["drop_percent"], row["reference_price"]) == (
        Decimal("50"),
        Decimal("12.5"),
        Decimal("80"),
    )
    flags = ("notify_any_drop", "notify_back_in_stock", "notify_sold_out", "notify_removed")
    assert [row[f] for f in flags] == [True, False, True, False]
    assert row["active"] is True
    assert row["created_at"] == row["updated_at"] == T0
    hat_row = stored(engine, hat)
    assert hat_row is not None
    assert hat_row["user_id"] == row["user_id"]  # one user per address
    assert hat_row["target_price"] is None
    assert hat_row["notify_back_in_stock"] is True
    assert len(snapshot(engine)[1]) == 3


async def test_the_same_batch_again_changes_no_row(
    sink: SubscriptionSink, engine: sqlalchemy.Engine
) -> None:
    batch: list[SubscriptionChange] = [
        subscription(),
        subscription(url=HAT),
        subscription("bob@example.com"),
        subscription(minutes=5, target_price="40"),
    ]
    await sink.write(Batch.of(batch))
    first = snapshot(engine)
    assert (len(first[0]), len(first[1])) == (2, 3)
    xmin_before = rows(engine, "SELECT subscription_id, xmin::text FROM subscriptions ORDER BY 1")

    await sink.write(Batch.of(batch))
    await sink.write(Batch.of(batch[::-1]))
    await sink.write(Batch.of(batch[:1]))

    assert snapshot(engine) == first
    # Not even a new row version: a replay is a no-op for PostgreSQL too.
    assert (
        rows(engine, "SELECT subscription_id, xmin::text FROM subscriptions ORDER BY 1")
        == xmin_before
    )
    assert rows(engine, "SELECT last_value FROM users_id_seq") == [{"last_value": 2}]


async def test_an_older_record_arriving_late_does_not_overwrite_a_newer_one(
    sink: SubscriptionSink, engine: sqlalchemy.Engine
) -> None:
    newer = subscription(minutes=10, target_price="30", active=False)
    older = subscription(minutes=5, target_price="45", notify_removed=True)
    await sink.write(Batch.of([newer]))
    await sink.write(Batch.of([older]))

    row = stored(engine, newer)
    assert row is not None
    assert (row["target_price"], row["active"], row["notify_removed"]) == (
        Decimal("30"),
        False,
        False,
    )
    assert row["updated_at"] == T0 + timedelta(minutes=10)
    assert row["created_at"] == T0 + timedelta(minutes=5)  # the oldest record seen

    # Within one batch too, in either order.
    await sink.write(
        Batch.of([subscription(url=HAT, minutes=10), subscription(url=HAT, minutes=5)])
    )
    await sink.write(Batch.of([subscription(url=HAT, minutes=1, target_price="1")]))
    hat = stored(engine, subscription(url=HAT))
    assert hat is not None
    assert (hat["target_price"], hat["updated_at"], hat["created_at"]) == (
        Decimal("50"),
        T0 + timedelta(minutes=10),
        T0 + timedelta(minutes=1),
    )

    await sink.write(Batch.of([subscription(minutes=20, target_price="25")]))
    row = stored(engine, newer)
    assert row is not None
    assert (row["target_price"], row["active"]) == (Decimal("25"), True)


async def test_a_tombstone_deletes_the_subscription_and_not_the_user(
    sink: SubscriptionSink, engine: sqlalchemy.Engine
) -> None:
    shoe, hat = subscription(), subscription(url=HAT)
    await sink.write(Batch.of([shoe, hat]))
    await sink.write(Batch.of([deleted(shoe)]))
    assert stored(engine, shoe) is None
    assert stored(engine, hat) is not None
    assert len(rows(engine, "SELECT * FROM users")) == 1

    # Again, and for one that never existed: nothing happens.
    await sink.write(Batch.of([deleted(shoe), SubscriptionDeleted("never-seen")]))
    assert [r["subscription_id"] for r in snapshot(engine)[1]] == [hat.subscription_id]


async def test_a_batch_applies_in_log_order_around_a_tombstone(
    sink: SubscriptionSink, engine: sqlalchemy.Engine
) -> None:
    await sink.write(Batch.of([subscription(minutes=30)]))
    # Deleted, then subscribed again (an older created_at: a clock behind): it is back.
    await sink.write(
        Batch.of([subscription(minutes=31), deleted(subscription()), subscription(minutes=2)])
    )
    row = stored(engine, subscription())
    assert row is not None
    assert row["created_at"] == row["updated_at"] == T0 + timedelta(minutes=2)

    await sink.write(Batch.of([subscription(url=HAT), deleted(subscription(url=HAT))]))
    assert stored(engine, subscription(url=HAT)) is None


async def test_addresses_python_and_postgresql_lower_case_differently_do_not_fail_a_batch(
    sink: SubscriptionSink, engine: sqlalchemy.Engine
) -> None:
    # Python: "İ".lower() is "i" + a combining dot; PostgreSQL may say otherwise.
    odd = [subscription(email) for email in ("İNCİ@example.com", " ÉMILE@Exämple.com ")]
    await sink.write(Batch.of(odd))
    await sink.write(Batch.of(odd))
    assert all(stored(engine, s) is not None for s in odd)
    assert len(rows(engine, "SELECT * FROM users WHERE email = lower(email)")) == 2


def test_a_tombstone_needs_a_key() -> None:
    assert parse_tombstone(b"abc") == SubscriptionDeleted("abc")
    with pytest.raises(ValueError):
        parse_tombstone(None)
    with pytest.raises(ValueError):
        parse_tombstone(b"\xff\xfe")


# Several versions of few subscriptions, tombstones among them, in any order and batching.
_changes = st.lists(
    st.tuples(st.sampled_from([SHOE, HAT]), st.integers(0, 5), st.booleans()),
    min_size=1,
    max_size=12,
)


def _sequential(changes: list[SubscriptionChange]) -> dict[str, tuple[int, int, Decimal | None]]:
    """The reference: apply one record at a time. id -> (created, updated, target minutes)."""
    state: dict[str, tuple[int, int, Decimal | None]] = {}
    for change in changes:
        if isinstance(change, SubscriptionDeleted):
            state.pop(change.subscription_id, None)
            continue
        minutes = int((change.created_at - T0).total_seconds() // 60)
        old = state.get(change.subscription_id)
        if old is None:
            state[change.subscription_id] = (minutes, minutes, change.target_price)
        elif minutes > old[1]:
            state[change.subscription_id] = (min(old[0], minutes), minutes, change.target_price)
        else:
            state[change.subscription_id] = (min(old[0], minutes), old[1], old[2])
    return state


def _apply(
    state: dict[str, tuple[int, int, Decimal | None]], batch: list[SubscriptionChange]
) -> None:
    """What SubscriptionSink's statements do with ``reduce_batch(batch)``."""
    for key, p in reduce_batch(batch).items():
        if p.delete_first:
            state.pop(key, None)
        if p.newest is None or p.oldest_created_at is None:
            continue
        oldest = int((p.oldest_created_at - T0).total_seconds() // 60)
        newest = int((p.newest.created_at - T0).total_seconds() // 60)
        old = state.get(key)
        if old is None:
            state[key] = (oldest, newest, p.newest.target_price)
        elif newest > old[1]:
            state[key] = (min(old[0], oldest), newest, p.newest.target_price)
        else:
            state[key] = (min(old[0], oldest), old[1], old[2])


@given(_changes)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_reducing_a_batch_equals_applying_it_record_by_record(
    spec: list[tuple[str, int, bool]],
) -> None:
    changes: list[SubscriptionChange] = [
        deleted(subscription(url=url))
        if tombstone
        else subscription(url=url, minutes=m, target_price=f"{m}.00")
        for url, m, tombstone in spec
    ]
    expected = _sequential(changes)
    for cut in range(len(changes) + 1):  # any split into two batches
        state: dict[str, tuple[int, int, Decimal | None]] = {}
        _apply(state, changes[:cut])
        _apply(state, changes[cut:])
        assert state == expected, cut


# --- the consumer, on a real broker ---------------------------------------------------------

PARTITIONS = 2


async def eventually(check: Callable[[], bool], seconds: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds}s waiting for {what}")
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def running_sink(settings: Settings) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(run_sink("subscriptions", settings, stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


async def produce(settings: Settings, records: list[tuple[Subscription, bool]]) -> None:
    """(subscription, tombstone?) in order, each to its product's partition."""
    producer = make_producer(settings)
    await producer.start()
    try:
        for s, tombstone in records:
            await producer.send_and_wait(
                settings.topic(SUBSCRIPTIONS),
                None if tombstone else s.model_dump_json().encode(),
                key=s.subscription_id.encode(),
                partition=partition_for(s.product_id, settings.topic_partitions),
            )
    finally:
        await producer.stop()


async def test_the_consumer_applies_records_and_tombstones_and_a_replay_changes_nothing(
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
    kept = [subscription(f"user{n}@example.com", minutes=n) for n in range(10)]
    gone = subscription("gone@example.com")
    await produce(
        settings,
        [(s, False) for s in kept]
        + [(gone, False), (gone, True)]
        + [(subscription("user0@example.com", minutes=9, target_price="9"), False)],
    )

    def done() -> bool:
        row = stored(engine, kept[0])
        return row is not None and row["target_price"] == Decimal("9")

    async with running_sink(settings):
        await eventually(lambda: len(snapshot(engine)[1]) == 10 and done(), what="10 rows")
    first = snapshot(engine)
    assert stored(engine, gone) is None
    assert len(first[0]) == 11  # the deleted subscription's user stays

    replay = settings.model_copy(update={"app_id": f"{settings.app_id}replay"})
    async with running_sink(replay):
        await wait_for_commits(replay, 13)  # the whole topic read and written again
    assert snapshot(engine) == first


async def committed_offsets(settings: Settings) -> int:
    return await helpers.committed_offsets(settings, ROLE, SUBSCRIPTIONS, PARTITIONS)


async def wait_for_commits(settings: Settings, expected: int) -> None:
    await helpers.wait_for_commits(settings, ROLE, SUBSCRIPTIONS, PARTITIONS, expected)
