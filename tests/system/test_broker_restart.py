"""The broker stops and starts again while the pipeline runs, its storage kept: the
embedded tansu broker with ``s3://`` storage on a local moto server (its ``memory://``
default would forget everything). A stream worker, the PostgreSQL and events sinks and the
test's producer all stay up across the restart and reconnect by themselves.

Nothing lost, nothing doubled: the events and notifications are the pure functions'
reference, and the price history in PostgreSQL equals what one uninterrupted PostgreSQL
sink writes for the same observations, including those produced while the broker was down.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from launcher.embedded.broker import EmbeddedBroker
from launcher.processes import free_port
from pricewatch.contract.topics import DEAD_LETTERS, NOTIFICATIONS, PRICE_EVENTS
from tests.conftest import ARTIFACTS, Broker, fresh_database
from tests.helpers import wait_for
from tests.system.test_pipeline_faults import (
    history,
    query,
    reference_history,
    start_sinks,
)
from tests.workers import (
    OBSERVED,
    STALL_SECONDS,
    ObservationProducer,
    Scenario,
    WorkerProcess,
    check_events,
    check_notifications,
    keep_logs,
    prepare_topics,
    processed_by,
    produce_subscriptions,
    read_topic,
    wait_for_end_markers,
    wait_for_subscriptions,
    worker_settings,
)

# The waits below follow progress (tests.helpers.Progress): they give up when nothing has
# moved for their window, not at a fixed time. This cap is only for a run that hangs.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1800)]
STALL = STALL_SECONDS

REGION = "us-east-1"
database = contextmanager(fresh_database)  # a fresh database for as long as the block runs
WRITTEN = "pricewatch_sink_records_written_total"


@dataclass
class PersistentBroker:
    broker: EmbeddedBroker
    bucket: str
    s3_endpoint: str

    def objects(self) -> int:
        s3 = boto3.client(
            "s3",
            endpoint_url=self.s3_endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        return sum(
            page.get("KeyCount", 0)
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
        )


@pytest.fixture
def persistent_broker() -> Iterator[PersistentBroker]:
    """tansu on a fixed port, storing in a bucket of a moto S3 server."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    bucket = f"tansu-{uuid.uuid4().hex[:8]}"
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket=bucket)
    env = {  # what tansu's s3:// storage reads to reach the moto server
        "AWS_ENDPOINT": endpoint,
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    broker = EmbeddedBroker(
        storage=f"s3://{bucket}/", env=env, log_path=ARTIFACTS / "tansu-s3.log"
    ).start()
    try:
        yield PersistentBroker(broker, bucket, endpoint)
    finally:
        broker.stop()
        moto.stop()


def test_broker_restart_with_persistent_storage_loses_nothing(
    tmp_path: Path, postgres_server: str, unique_prefix: str, persistent_broker: PersistentBroker
) -> None:
    tansu = persistent_broker.broker
    broker = Broker(tansu.bootstrap_servers, embedded=True)
    with ExitStack() as stack:
        database_url = stack.enter_context(database(postgres_server))
        reference_url = stack.enter_context(database(postgres_server))
        settings = worker_settings(
            broker.bootstrap_servers,
            True,
            unique_prefix,
            tmp_path / "data",
            alert_cooldown_seconds=600,
            stock_flap_window_seconds=120,
            database_url=database_url,
            # tansu on s3:// storage serves every fetch from S3 requests: the embedded
            # default's 5 ms shortest fetch wait (for memory storage) would flood the moto server.
            kafka_fetch_wait_min_ms=500,
            kafka_fetch_wait_max_ms=500,
        )
        prepare_topics(settings)
        scenario = Scenario.build(partitions=settings.topic_partitions, seed=515)
        reference = scenario.reference(settings)
        want_history = reference_history(reference_url, scenario)
        observations = scenario.observations
        down_at, up_at = int(len(observations) * 0.4), int(len(observations) * 0.6)
        logs = tmp_path / "logs"
        worker = stack.enter_context(
            WorkerProcess(settings, "w0", logs / "worker-w0.log", metrics_port=free_port())
        )
        figures: dict[str, float] = {}

        async def run() -> None:
            t0 = time.monotonic()
            worker.start()
            await asyncio.to_thread(worker.wait_ready, STALL)
            await produce_subscriptions(settings, scenario.subscriptions)
            await wait_for_subscriptions(settings, scenario)
            async with ObservationProducer(settings) as producer:
                await producer.send(observations[:down_at])
                await asyncio.to_thread(
                    wait_for,
                    lambda: worker.metric(OBSERVED) > 200 and sinks["postgres"].metric(WRITTEN),
                    timeout=STALL,
                    progress=lambda: worker.metric_or_none(OBSERVED),
                    what="the worker and the sink at work",
                )
                figures["objects_before_restart"] = persistent_broker.objects()
                figures["stopped_at"] = time.monotonic() - t0
                await asyncio.to_thread(tansu.stop)
                # Produced while the broker is down: the producer holds them and retries.
                pending = asyncio.create_task(producer.send(observations[down_at:up_at]))
                await asyncio.sleep(5)
                assert not pending.done() or pending.exception() is None
                await asyncio.to_thread(tansu.start)
                figures["started_at"] = time.monotonic() - t0
                await asyncio.wait_for(pending, STALL * 2)  # sent once the broker is back
                # And the worker restarts on the restarted broker: it resumes from the
                # offsets it committed before, kept in the broker's storage.
                assert worker.terminate() == 0, worker.log_tail()
                worker.start()
                await asyncio.to_thread(worker.wait_ready, STALL)
                figures["worker_ready_again_at"] = time.monotonic() - t0
                await producer.send(observations[up_at:])
            finished = await wait_for_end_markers(
                settings, scenario.end_markers(reference), STALL, processed_by(worker)
            )
            figures["finished_at"] = time.monotonic() - t0
            assert finished, f"the end-of-stream alerts never came:\n{worker.log_tail()}"

        try:
            sinks = start_sinks(settings, logs, ["postgres", "events"], stack)
            asyncio.run(run())
            assert worker.running and all(s.running for s in sinks.values())
            wait_for(
                lambda: history(database_url) == want_history,
                timeout=STALL,
                progress=lambda: sinks["postgres"].metric_or_none(WRITTEN),
                what="the price history to equal one uninterrupted run's",
            )
            assert worker.terminate() == 0, worker.log_tail()

            dead = asyncio.run(read_topic(settings, settings.topic(DEAD_LETTERS))).records
            assert [r.value for r in dead] == []
            events = asyncio.run(read_topic(settings, settings.topic(PRICE_EVENTS))).records
            notes = asyncio.run(read_topic(settings, settings.topic(NOTIFICATIONS))).records
            figures["redelivered_events"] = check_events(events, reference)
            figures["redelivered_notifications"] = check_notifications(notes, reference)
            stored = {r[0] for r in query(database_url, "SELECT event_id FROM price_events")}
            assert stored == {e.event_id for e in reference.events}
            figures["objects_after"] = persistent_broker.objects()
            print(f"figures: {figures}")
        finally:
            keep_logs(logs, "broker-restart")
