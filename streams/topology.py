"""The Faust app, its topics and its tables: declared here, in one place.

Agents live one per module in ``streams/agents`` and are registered onto a ``Topology``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import faust

from pricewatch.contract.topics import (
    DEAD_LETTERS,
    NOTIFICATIONS,
    PRICE_EVENTS,
    PRICE_OBSERVATIONS,
    SCRAPE_REQUESTS,
    SUBSCRIPTIONS,
    TopicSpec,
)
from pricewatch.deadletters import Source, send_dead_letter
from pricewatch.settings import FetchWait, Settings
from streams.batching import InFlightBatches
from streams.codec import alert_states_version, product_state_version
from streams.faust_compat import RevocationAwareApp, broker_urls
from streams.rocksdb_table_store import store_url

log = logging.getLogger(__name__)


IN_FLIGHT_DEADLINE_SECONDS = 30.0


class PricewatchApp(RevocationAwareApp):
    """A Faust app that lets in-flight batches finish before it stops or gives partitions
    away (see ``streams.batching.InFlightBatches``)."""

    in_flight: InFlightBatches
    fetch_wait: FetchWait | None = None

    async def _wait_for_batches(self, why: str) -> None:
        self.flow_control.suspend()  # no new batch starts; Faust resumes it after recovery
        if not await self.in_flight.wait_idle(IN_FLIGHT_DEADLINE_SECONDS):
            log.warning("%s: a batch still runs after %.0f s", why, IN_FLIGHT_DEADLINE_SECONDS)

    async def on_stop(self) -> None:
        await self._wait_for_batches("stopping")
        await super().on_stop()

    async def before_partitions_revoked(self, revoked: Any) -> None:
        await self._wait_for_batches("partitions revoked")


@dataclass
class Topology:
    settings: Settings
    app: PricewatchApp
    scrape_requests_topic: Any
    price_observations_topic: Any
    price_events_topic: Any
    notifications_topic: Any
    dead_letters_topic: Any
    # Matcher input: subscriptions and price events share partitions (see Subscription).
    matcher_input_topic: Any
    product_state_table: Any
    product_subscriptions_table: Any
    # Products whose product_subscriptions_table value the matcher wrote since the
    # scheduler last looked (same process): the scheduler re-reads only those.
    subscriptions_changed: set[bytes] = field(default_factory=set)
    # Products whose observation the detector processed (and stored) since the scheduler
    # last looked (same process): their checks came back. None: no scheduler collects them.
    checks_completed: set[str] | None = None

    async def dead_letter(self, event: Any, *, stage: str, reason: str, error: str) -> None:
        """Dead-letter ``event`` (a Faust event of a raw topic).

        Not lost although its delivery is not awaited: Faust flushes the producer before it
        commits the source offset, so a crash before delivery redelivers the bad message.
        """
        message = event.message
        source = Source(message.topic, message.partition, message.offset, event.key, event.value)

        def send(key: bytes, value: bytes) -> Awaitable[Any]:
            return self.dead_letters_topic.send(key=key, value=value)

        await send_dead_letter(send, source, stage=stage, reason=reason, error=error)


def _raw_topic(app: faust.App, settings: Settings, *specs: TopicSpec) -> Any:
    # Raw bytes in and out: agents validate records themselves so that a malformed
    # message is dead-lettered with its reason instead of being skipped by Faust.
    return app.topic(
        *(settings.topic(spec) for spec in specs),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.topic_partitions,
    )


def build_topology(settings: Settings, worker_id: str = "w0") -> Topology:
    bootstrap = settings.bootstrap()
    app = PricewatchApp(
        settings.app_id,
        broker=broker_urls(bootstrap),
        # A persistent local store: a restarted worker keeps what it wrote instead of
        # trusting changelog end offsets (wrong on the embedded broker for batches).
        store="rocksdb://",
        datadir=str(settings.data_dir / "workers" / worker_id),
        autodiscover=False,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=settings.heartbeat_interval_seconds,
        broker_rebalance_timeout=settings.session_timeout_seconds,
        broker_commit_interval=settings.kafka_commit_interval_seconds,
        consumer_auto_offset_reset="earliest",
        # tansu answers ListOffsets with too low an end offset after multi-record batches,
        # so a correct local store looks "ahead of its changelog" to this check, which then
        # refuses to start a restarted worker. A real cluster keeps the check.
        recovery_consistency_check=not settings.embedded_broker,
        # Bigger fetches and buffers: Faust's per-message path is the ceiling (see bench/).
        broker_max_poll_records=5000,
        stream_buffer_maxsize=16384,
        consumer_max_fetch_size=8 * 1024 * 1024,
        producer_acks=-1,
        web_enabled=settings.worker_web_port > 0,
        web_port=settings.worker_web_port or 6066,
        web_bind=settings.api_host,
        key_serializer="raw",
        value_serializer="raw",
    )
    app.in_flight = InFlightBatches()
    app.fetch_wait = settings.fetch_wait()
    return Topology(
        settings=settings,
        app=app,
        scrape_requests_topic=_raw_topic(app, settings, SCRAPE_REQUESTS),
        price_observations_topic=_raw_topic(app, settings, PRICE_OBSERVATIONS),
        price_events_topic=_raw_topic(app, settings, PRICE_EVENTS),
        notifications_topic=_raw_topic(app, settings, NOTIFICATIONS),
        dead_letters_topic=_raw_topic(app, settings, DEAD_LETTERS),
        matcher_input_topic=_raw_topic(app, settings, SUBSCRIPTIONS, PRICE_EVENTS),
        product_state_table=_versioned_table(app, settings, "product_state", product_state_version),
        product_subscriptions_table=_versioned_table(
            app, settings, "product_subscriptions", alert_states_version
        ),
    )


def _versioned_table(
    app: faust.App, settings: Settings, name: str, version_of: Callable[[bytes], Any]
) -> Any:
    # Recovery keeps the newer of the local value and a changelog record
    # (streams.rocksdb_table_store).
    table: Any = app.Table(
        name,
        default=None,
        key_type=bytes,
        value_type=bytes,
        partitions=settings.topic_partitions,
        store=store_url(name),
    )
    table.version_of = version_of
    return table
