"""The at-least-once batch consumer end to end: real broker, real PostgreSQL, a real outage."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import urlsplit, urlunsplit

import pytest
import sqlalchemy
from aiokafka import AIOKafkaConsumer
from prometheus_client import REGISTRY
from sqlalchemy import text

from launcher.processes import free_port
from pricewatch.contract.records import DeadLetter, Outcome, PriceObservation
from pricewatch.contract.topics import DEAD_LETTERS, PRICE_OBSERVATIONS
from pricewatch.db.engine import make_engine, upgrade
from pricewatch.ids import observation_id_for, product_id_for
from pricewatch.kafka import create_topics, make_producer
from pricewatch.settings import Settings
from sinks.base import run_sink
from sinks.postgres.prices import ROLE
from tests import helpers

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
PARTITIONS = 2


def observation(n: int, minutes: int = 0, price: str = "10.00") -> PriceObservation:
    url = f"https://shop.example/p/{n}"
    product_id = product_id_for(url)
    observed_at = T0 + timedelta(minutes=minutes)
    return PriceObservation(
        observation_id=observation_id_for(product_id, observed_at),
        product_id=product_id,
        url=url,
        observed_at=observed_at,
        outcome=Outcome.OK,
        price=Decimal(price),
        currency="EUR",
        title=f"Product {n}",
    )


def settings_for(kafka_bootstrap: str, database_url: str, prefix: str) -> Settings:
    return Settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        database_url=database_url,
        topic_prefix=prefix,
        app_id=f"pw-{prefix}",
        topic_partitions=PARTITIONS,
        # Short sessions: group joins on the embedded broker take about half of it.
        kafka_session_timeout_seconds=6,
    )


async def produce(settings: Settings, messages: list[tuple[bytes, bytes]]) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        for key, value in messages:
            await producer.send_and_wait(settings.topic(PRICE_OBSERVATIONS), value, key=key)
    finally:
        await producer.stop()


def encoded(observations: list[PriceObservation]) -> list[tuple[bytes, bytes]]:
    return [(o.product_id.encode(), o.model_dump_json().encode()) for o in observations]


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def eventually(check: Callable[[], bool], seconds: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds}s waiting for {what or check}")
        await asyncio.sleep(0.1)


def count(engine: sqlalchemy.Engine, table: str) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


@contextlib.asynccontextmanager
async def running_sink(settings: Settings) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(run_sink("postgres", settings, stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


async def read_dead_letters(settings: Settings, expected: int) -> list[DeadLetter]:
    consumer = AIOKafkaConsumer(
        settings.topic(DEAD_LETTERS),
        bootstrap_servers=settings.bootstrap(),
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    letters: list[DeadLetter] = []
    try:
        deadline = time.monotonic() + 30
        while len(letters) < expected and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                letters.extend(DeadLetter.model_validate_json(r.value) for r in records)
    finally:
        await consumer.stop()
    return letters


async def committed_offsets(settings: Settings) -> int:
    return await helpers.committed_offsets(settings, ROLE, PRICE_OBSERVATIONS, PARTITIONS)


async def wait_for_commits(settings: Settings, expected: int) -> None:
    await helpers.wait_for_commits(settings, ROLE, PRICE_OBSERVATIONS, PARTITIONS, expected)


@pytest.fixture
def engine(postgres_url: str) -> Iterator[sqlalchemy.Engine]:
    upgrade(postgres_url)
    engine = make_engine(postgres_url)
    yield engine
    engine.dispose()


async def test_the_sink_writes_dead_letters_and_commits_only_what_it_handled(
    kafka_bootstrap: str, postgres_url: str, unique_prefix: str, engine: sqlalchemy.Engine
) -> None:
    settings = settings_for(kafka_bootstrap, postgres_url, unique_prefix)
    await create_topics(settings)
    good = [observation(n) for n in range(20)] + [observation(n, 5, "9") for n in range(20)]
    bad = [(b"k", b"not json"), (b"k", b'{"schema_version": 1, "product_id": "nope"}')]
    dead_before = metric("pricewatch_dead_letters_total", stage=ROLE, reason="invalid_record")
    await produce(settings, encoded(good[:20]) + bad + encoded(good[20:]))

    async with running_sink(settings):
        await eventually(lambda: count(engine, "prices") == 40, what="40 price rows")
        letters = await read_dead_letters(settings, expected=2)
        await wait_for_commits(settings, len(good) + len(bad))

    assert count(engine, "products") == 20
    assert sorted(letter.value or "" for letter in letters) == sorted(v.decode() for _, v in bad)
    assert {letter.source_topic for letter in letters} == {settings.topic(PRICE_OBSERVATIONS)}
    assert {(letter.stage, letter.reason) for letter in letters} == {(ROLE, "invalid_record")}
    assert (
        metric("pricewatch_dead_letters_total", stage=ROLE, reason="invalid_record")
        == dead_before + 2
    )
    assert await committed_offsets(settings) == len(good) + len(bad)

    # Replaying the whole topic (a new consumer group) changes no row.
    replay = settings.model_copy(update={"app_id": f"{settings.app_id}replay"})
    async with running_sink(replay):
        await wait_for_commits(replay, len(good) + len(bad))
    assert (count(engine, "products"), count(engine, "prices")) == (20, 40)


class TcpProxy:
    """Forwards a local port to PostgreSQL; ``down()`` is the database going away."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.pipes: set[asyncio.Task[None]] = set()
        self.writers: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def down(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for writer in list(self.writers):
            writer.transport.abort()
        self.writers.clear()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.transport.abort()
            return
        self.writers.update((client_w, server_w))
        for source, sink in ((client_r, server_w), (server_r, client_w)):
            task = asyncio.create_task(self._pipe(source, sink))
            self.pipes.add(task)
            task.add_done_callback(self.pipes.discard)

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            sink.transport.abort()


async def test_a_database_outage_pauses_the_sink_and_loses_nothing(
    kafka_bootstrap: str,
    postgres_url: str,
    unique_prefix: str,
    engine: sqlalchemy.Engine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    parts = urlsplit(postgres_url)
    if not parts.hostname or parts.port is None:
        pytest.skip("the outage test proxies TCP; this database is on a Unix socket")
    proxy = TcpProxy(parts.hostname, parts.port)
    await proxy.up()
    netloc = f"{parts.username or ''}{':' + parts.password if parts.password else ''}@"
    proxied_url = urlunsplit(
        (parts.scheme, f"{netloc}127.0.0.1:{proxy.port}", parts.path, parts.query, "")
    )
    settings = settings_for(kafka_bootstrap, proxied_url, unique_prefix)
    await create_topics(settings)
    failures_before = metric("pricewatch_sink_write_failures_total", sink=ROLE)
    outage_before = metric("pricewatch_sink_outage_seconds_total", sink=ROLE)

    try:
        async with running_sink(settings):
            await produce(settings, encoded([observation(n) for n in range(10)]))
            await eventually(lambda: count(engine, "prices") == 10, what="the first batch")

            await proxy.down()
            await produce(settings, encoded([observation(n, 5, "8") for n in range(10)]))
            await eventually(
                lambda: (
                    metric("pricewatch_sink_write_failures_total", sink=ROLE) >= failures_before + 2
                ),
                what="failed writes while the database is down",
            )
            assert count(engine, "prices") == 10

            await proxy.up()
            await eventually(lambda: count(engine, "prices") == 20, what="the retried batch")
            await wait_for_commits(settings, 20)
    finally:
        await proxy.down()

    with engine.connect() as connection:
        prices = connection.execute(text("SELECT DISTINCT current_price FROM products")).all()
    assert prices == [(Decimal("8"),)]
    assert metric("pricewatch_sink_outage_seconds_total", sink=ROLE) > outage_before
    warnings = [r.getMessage() for r in caplog.records if r.name == "sinks.base"]
    assert any("retrying the same batch" in w and "OperationalError" in w for w in warnings)
