"""An idle consumer on a real broker fetches less and less often, and records that come
after a quiet spell still arrive, the ones after them with the short wait again."""

from __future__ import annotations

import asyncio
import time

from pricewatch.contract.topics import PRICE_OBSERVATIONS
from pricewatch.kafka import create_topics, make_consumer, make_producer
from pricewatch.settings import FetchWait
from tests.conftest import Broker
from tests.workers import worker_settings


def test_idle_consumer_backs_off_and_records_bring_the_short_wait_back(
    broker: Broker, unique_prefix: str, tmp_path: object
) -> None:
    settings = worker_settings(
        broker.bootstrap_servers,
        broker.embedded,
        unique_prefix,
        tmp_path,  # type: ignore[arg-type]
        kafka_fetch_wait_min_ms=5,
        kafka_fetch_wait_max_ms=200,
    )
    topic = settings.topic(PRICE_OBSERVATIONS)

    async def scenario() -> None:
        await create_topics(settings, [PRICE_OBSERVATIONS])
        consumer = make_consumer(settings, f"{unique_prefix}g", "adaptive-test", topic)
        producer = make_producer(settings)
        await producer.start()
        await consumer.start()
        try:
            adaptive = consumer.fetch_wait
            assert adaptive.wait == FetchWait(5, 200)
            # Quiet: the wait reaches its longest, and stays there.
            deadline = time.monotonic() + 60
            while adaptive.current_ms < 200:
                assert time.monotonic() < deadline, "the wait never grew to its longest"
                await consumer.getmany(timeout_ms=200)
            fetches_before = adaptive.fetches
            quiet_began = time.monotonic()
            await consumer.getmany(timeout_ms=1000)
            quiet = time.monotonic() - quiet_began
            # At the longest wait a second holds a handful of fetches, not the 200 a
            # fixed 5 ms wait would make (on the embedded broker; a real one answers
            # empty fetches only at the wait's end too).
            assert adaptive.fetches - fetches_before <= quiet / 0.2 + 2
            # A record after the quiet spell arrives, and the wait drops back.
            waits: list[int] = []
            answered = adaptive.answered

            def recording(had_records: bool) -> int:
                waits.append(answered(had_records))
                return waits[-1]

            adaptive.answered = recording  # type: ignore[method-assign]
            await producer.send_and_wait(topic, b"one", key=b"k", partition=0)
            got: list[bytes] = []
            deadline = time.monotonic() + 30
            while not got:
                assert time.monotonic() < deadline, "the record never arrived"
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    got += [r.value or b"" for r in records]
            assert got == [b"one"]
            assert 5 in waits, waits
        finally:
            await consumer.stop()
            await producer.stop()

    asyncio.run(scenario())
