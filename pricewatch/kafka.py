"""Thin, broker-agnostic Kafka helpers (plain Kafka protocol via aiokafka)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from pricewatch.contract.topics import ALL_TOPICS, TopicSpec
from pricewatch.settings import Settings

log = logging.getLogger(__name__)


async def wait_for_broker(bootstrap: str, deadline_seconds: float = 30.0) -> None:
    """Return once the broker answers a metadata request."""
    deadline = time.monotonic() + deadline_seconds
    last: Exception | None = None
    while time.monotonic() < deadline:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        try:
            await admin.start()
            await admin.describe_cluster()
            return
        except (KafkaError, OSError) as exc:
            last = exc
            await asyncio.sleep(0.2)
        finally:
            await admin.close()
    raise TimeoutError(f"Kafka at {bootstrap} did not answer within {deadline_seconds}s: {last!r}")


async def create_topics(settings: Settings, specs: Iterable[TopicSpec] = ALL_TOPICS) -> list[str]:
    """Create every topic with its final partition count. Existing topics are left alone.

    Returns the names that were created.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap())
    await admin.start()
    created: list[str] = []
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                name=settings.topic(spec),
                num_partitions=settings.topic_partitions,
                replication_factor=settings.topic_replication_factor,
                topic_configs=dict(spec.configs),
            )
            for spec in specs
            if settings.topic(spec) not in existing
        ]
        for topic in wanted:
            try:
                await admin.create_topics([topic])
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass  # another process won the race: fine
    finally:
        await admin.close()
    if created:
        log.info("created topics: %s", ", ".join(created))
    return created


def make_consumer(
    settings: Settings, group_id: str, client_id: str, *topics: str
) -> AIOKafkaConsumer:
    """A group member that commits itself: the session, heartbeat and fetch wait every
    Pricewatch consumer shares (see ``Settings.fetch_max_wait_ms`` for why the wait)."""
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=settings.bootstrap(),
        group_id=group_id,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=int(settings.session_timeout_seconds * 1000),
        heartbeat_interval_ms=int(settings.heartbeat_interval_seconds * 1000),
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
    )


def make_producer(settings: Settings, **overrides: object) -> AIOKafkaProducer:
    # acks=all and a short linger: observations batch well without adding visible latency.
    options: dict[str, object] = {
        "bootstrap_servers": settings.bootstrap(),
        "acks": "all",
        "linger_ms": 5,
        "enable_idempotence": False,  # the embedded broker has no InitProducerId
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)
