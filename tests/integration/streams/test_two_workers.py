"""Two stream workers in one consumer group share the partitions: together they publish
exactly what one worker publishes (the pure functions' reference), and both do work."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from launcher.processes import free_port
from pricewatch.contract.topics import DEAD_LETTERS, NOTIFICATIONS, PRICE_EVENTS
from pricewatch.settings import Settings
from tests.conftest import Broker
from tests.helpers import wait_for
from tests.workers import (
    OBSERVED,
    ObservationProducer,
    Reference,
    Scenario,
    WorkerProcess,
    check_events,
    check_notifications,
    group_members,
    keep_logs,
    prepare_topics,
    produce_subscriptions,
    read_topic,
    scenario_settings,
    wait_for_end_markers,
    wait_for_subscriptions,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(150)]


async def feed_two_workers(
    settings: Settings, scenario: Scenario, reference: Reference, workers: list[WorkerProcess]
) -> dict[str, float]:
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    for worker in workers:
        worker.start()
    for worker in workers:
        await asyncio.to_thread(worker.wait_ready, 60)
    timings["ready"] = time.monotonic() - t0

    # Faust's consumer group is named after the app id. Once both are members of a stable
    # generation, no partition moves while the stream flows.
    def settled() -> bool:
        return asyncio.run(group_members(settings, settings.app_id)) == ("Stable", 2)

    await asyncio.to_thread(wait_for, settled, timeout=40, what="a stable group of two")
    timings["settled"] = time.monotonic() - t0

    await produce_subscriptions(settings, scenario.subscriptions)
    await wait_for_subscriptions(settings, scenario)
    async with ObservationProducer(settings) as producer:
        await producer.send(scenario.observations)
    finished = await wait_for_end_markers(settings, scenario.end_markers(reference), 45)
    timings["processed"] = time.monotonic() - t0
    for worker in workers:
        timings[f"observed_by_{worker.worker_id}"] = worker.metric(OBSERVED)
    for worker in workers:
        assert worker.terminate() == 0, worker.log_tail()
    timings["finished"] = float(finished)
    return timings


def test_two_workers_publish_what_one_would(
    tmp_path: Path, broker: Broker, unique_prefix: str
) -> None:
    settings = scenario_settings(broker, unique_prefix, tmp_path / "data")
    prepare_topics(settings)
    scenario = Scenario.build(partitions=settings.topic_partitions, seed=7)
    reference = scenario.reference(settings)
    logs = tmp_path / "logs"
    w1, w2 = (
        WorkerProcess(settings, wid, logs / f"worker-{wid}.log", metrics_port=free_port())
        for wid in ("w1", "w2")
    )
    try:
        with w1, w2:
            timings = asyncio.run(feed_two_workers(settings, scenario, reference, [w1, w2]))
        print(f"timings and counters: {timings}")

        dead = asyncio.run(read_topic(settings, settings.topic(DEAD_LETTERS))).records
        assert [r.value for r in dead] == []
        events = asyncio.run(read_topic(settings, settings.topic(PRICE_EVENTS))).records
        notifications = asyncio.run(read_topic(settings, settings.topic(NOTIFICATIONS))).records
        redelivered_events = check_events(events, reference)
        redelivered_notifications = check_notifications(notifications, reference)
        print(
            f"{len(reference.events)} events ({redelivered_events} redelivered), "
            f"{len(reference.notifications)} notifications "
            f"({redelivered_notifications} redelivered)"
        )
        assert timings["finished"], "the end-of-stream alerts never came"
        # Both took a share; together they saw every observation (more only if redelivered).
        assert timings["observed_by_w1"] > 0 and timings["observed_by_w2"] > 0, timings
        observed = timings["observed_by_w1"] + timings["observed_by_w2"]
        assert observed >= len(scenario.observations), timings
    finally:
        keep_logs(logs, "two-workers")
