"""``seek_to_committed_or_reset`` against a real broker: where every source partition goes,
whether or not it has a committed offset, and that changelog partitions stay put.

aiokafka's own ``seek_to_committed`` (what faust-streaming 0.15.3 rewinds with) leaves a
partition without a committed offset, or committed at 0, wherever the fetcher had got to:
the restart data loss that ``test_restart_offsets`` reproduces with a whole worker.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.faust_compat import seek_to_committed_or_reset
from tests.conftest import Broker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

RECORDS = 10  # per partition


async def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, replication_factor=1)])
    finally:
        await admin.close()


async def fill(bootstrap: str, topics: dict[str, int]) -> None:
    """``RECORDS`` records in every partition, one batch each (the embedded broker's end
    offsets are right for single-record batches only)."""
    for topic, partitions in topics.items():
        await create_topic(bootstrap, topic, partitions)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for topic, partitions in topics.items():
            for partition in range(partitions):
                for n in range(RECORDS):
                    await producer.send_and_wait(topic, f"{n}".encode(), partition=partition)
    finally:
        await producer.stop()


async def next_offsets(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition], seconds: float = 30
) -> dict[TopicPartition, int]:
    """The offset of the next record the consumer hands out for each partition."""
    first: dict[TopicPartition, int] = {}
    deadline = time.monotonic() + seconds
    while set(first) != set(partitions):
        assert time.monotonic() < deadline, f"no records from {set(partitions) - set(first)}"
        batch = await consumer.getmany(*partitions, timeout_ms=200, max_records=1)
        for tp, records in batch.items():
            first.setdefault(tp, records[0].offset)
    return first


async def queue_records(consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> None:
    """Read 3 records of each partition, and let the fetcher queue the rest, as a
    worker's consumer does while table recovery runs."""
    for tp in partitions:
        consumer.seek(tp, 0)
    taken = {tp: 0 for tp in partitions}
    deadline = time.monotonic() + 30
    while any(n < 3 for n in taken.values()):
        assert time.monotonic() < deadline, f"records not fetched: {taken}"
        wanted = [tp for tp, n in taken.items() if n < 3]
        batch = await consumer.getmany(*wanted, timeout_ms=200, max_records=1)
        for tp, records in batch.items():
            taken[tp] += len(records)
    for tp in partitions:
        assert await consumer.position(tp) == 3


def test_every_source_partition_goes_to_its_committed_offset_or_its_beginning(
    broker: Broker, unique_prefix: str
) -> None:
    source, changelog = f"{unique_prefix}source", f"{unique_prefix}table-changelog"
    uncommitted, at_zero, at_four, other_uncommitted = (TopicPartition(source, p) for p in range(4))
    changelog_tp = TopicPartition(changelog, 0)

    async def scenario() -> None:
        await fill(broker.bootstrap_servers, {source: 4, changelog: 1})
        consumer = AIOKafkaConsumer(
            bootstrap_servers=broker.bootstrap_servers,
            group_id=f"{unique_prefix}group",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=50,
        )
        await consumer.start()
        try:
            sources = [uncommitted, at_zero, at_four, other_uncommitted]
            consumer.assign([*sources, changelog_tp])
            await consumer.commit({at_zero: 0, at_four: 4})
            await queue_records(consumer, sources)
            consumer.seek(changelog_tp, 7)  # where table recovery left it

            # What faust-streaming rewinds with: partitions without a committed offset
            # above 0 stay where the fetcher got to.
            await consumer.seek_to_committed(*sources)
            for tp in (uncommitted, at_zero, other_uncommitted):
                assert await consumer.position(tp) == 3

            rewound = await seek_to_committed_or_reset(consumer, {changelog}, "earliest")

            assert rewound == {uncommitted: None, at_zero: 0, at_four: 4, other_uncommitted: None}
            positions = {tp: await consumer.position(tp) for tp in [*sources, changelog_tp]}
            assert positions == {
                uncommitted: 0,
                at_zero: 0,
                at_four: 4,
                other_uncommitted: 0,
                changelog_tp: 7,
            }
            # Nothing the fetcher queued before the rewind comes out after it.
            assert await next_offsets(consumer, [*sources, changelog_tp]) == positions
        finally:
            await consumer.stop()

    asyncio.run(scenario())


def test_latest_sends_a_partition_without_a_committed_offset_to_its_end(
    broker: Broker, unique_prefix: str
) -> None:
    source = f"{unique_prefix}source"
    uncommitted, committed = TopicPartition(source, 0), TopicPartition(source, 1)

    async def scenario() -> None:
        await fill(broker.bootstrap_servers, {source: 2})
        consumer = AIOKafkaConsumer(
            bootstrap_servers=broker.bootstrap_servers,
            group_id=f"{unique_prefix}group",
            enable_auto_commit=False,
            fetch_max_wait_ms=50,
        )
        await consumer.start()
        try:
            consumer.assign([uncommitted, committed])
            await consumer.commit({committed: 2})
            await queue_records(consumer, [uncommitted, committed])

            rewound = await seek_to_committed_or_reset(consumer, set(), "latest")

            assert rewound == {uncommitted: None, committed: 2}
            assert await consumer.position(uncommitted) == RECORDS
            assert await consumer.position(committed) == 2
            with pytest.raises(ValueError, match="earliest or latest"):
                await seek_to_committed_or_reset(consumer, set(), "none")
        finally:
            await consumer.stop()

    asyncio.run(scenario())
