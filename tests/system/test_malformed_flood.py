"""A flood of bad messages mixed into a good stream: invalid JSON, non-UTF-8 bytes, a
schema version the worker does not know, missing and mistyped fields, null values and
oversize messages, several hundred of them between the good observations.

The stream worker must dead-letter every bad one with its reason (read back from the
``dead-letters`` topic), process every good one (its price events and notifications equal
the pure functions' reference) and never crash. Speed is the benchmarks' business; here
only completeness within a generous bound.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from launcher.processes import free_port
from pricewatch.contract.records import DeadLetter, PriceObservation
from pricewatch.contract.topics import DEAD_LETTERS, NOTIFICATIONS, PRICE_EVENTS, PRICE_OBSERVATIONS
from pricewatch.kafka import make_producer
from pricewatch.settings import Settings
from tests.conftest import Broker
from tests.workers import (
    STALL_SECONDS,
    ObservationProducer,
    Scenario,
    TopicReader,
    WorkerProcess,
    check_events,
    check_notifications,
    keep_logs,
    prepare_topics,
    processed_by,
    produce_subscriptions,
    read_topic,
    scenario_settings,
    wait_for_end_markers,
    wait_for_subscriptions,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.timeout(1800),
]  # waits follow progress

PER_KIND = 60  # bad messages of each kind
OVERSIZE_BYTES = 2 * 1024 * 1024  # well past any observation a scraper produces


def _good(template: PriceObservation) -> dict[str, object]:
    return json.loads(template.model_dump_json())


def bad_messages(template: PriceObservation) -> dict[str, Callable[[int], bytes | None]]:
    """Kind -> a maker of one bad value (``i`` varies them). Built from a good observation,
    so each is wrong in exactly one way."""

    def drop(field: str) -> Callable[[int], bytes]:
        def make(i: int) -> bytes:
            record = _good(template)
            del record[field]
            return json.dumps(record).encode()

        return make

    def with_fields(**changes: object) -> Callable[[int], bytes]:
        def make(i: int) -> bytes:
            return json.dumps({**_good(template), **changes}).encode()

        return make

    return {
        "truncated_json": lambda i: template.model_dump_json().encode()[: 10 + i % 50],
        "not_json": lambda i: f"<html>not json {i}</html>".encode(),
        "non_utf8_bytes": lambda i: (
            b'{"schema_version": 1, "url": "\xff\xfe' + bytes([0x80 + i % 64]) + b'"}'
        ),
        "latin1_title": lambda i: json.dumps(
            {**_good(template), "title": f"Caf\u00e9 cr\u00e8me {i}"}, ensure_ascii=False
        ).encode("latin-1"),
        "schema_version_2": with_fields(schema_version=2),
        "missing_product_id": drop("product_id"),
        "missing_observed_at": drop("observed_at"),
        "price_not_a_number": with_fields(price="twelve euros"),
        "negative_price": with_fields(price="-5.00"),
        "currency_not_iso": with_fields(currency="euro"),
        "json_array": lambda i: b"[1, 2, 3]",
        "null_value": lambda i: None,
        "oversize": lambda i: json.dumps(
            {**_good(template), "title": "x" * OVERSIZE_BYTES}
        ).encode(),
    }


async def produce_flood(
    settings: Settings, scenario: Scenario, *, seed: int = 11
) -> dict[str, str]:
    """The scenario's observations with bad messages shuffled in; returns key -> kind of
    each bad message (its key says which one it is)."""
    rng = random.Random(seed)
    makers = bad_messages(scenario.observations[0])
    bad: list[tuple[str, bytes | None]] = []
    for kind, make in makers.items():
        count = 3 if kind == "oversize" else PER_KIND
        bad += [(f"bad-{kind}-{i}", make(i)) for i in range(count)]
    rng.shuffle(bad)
    kinds = {key: key.rsplit("-", 1)[0].removeprefix("bad-") for key, _ in bad}

    raw = make_producer(settings, max_request_size=OVERSIZE_BYTES + 64 * 1024)
    await raw.start()
    try:
        async with ObservationProducer(settings) as producer:
            good = scenario.observations
            chunk = len(good) // 10 + 1
            per_chunk = len(bad) // 10 + 1
            for n in range(10):
                await producer.send(good[n * chunk : (n + 1) * chunk], pause=0)
                sends = [
                    await raw.send(
                        settings.topic(PRICE_OBSERVATIONS),
                        value,
                        key=key.encode(),
                        partition=rng.randrange(settings.topic_partitions),
                    )
                    for key, value in bad[n * per_chunk : (n + 1) * per_chunk]
                ]
                await asyncio.gather(*sends)
    finally:
        await raw.stop()
    return kinds


# What the dead letter's error must mention, per kind (pydantic's words).
EXPECTED_ERROR = {
    "truncated_json": "Invalid JSON",
    "not_json": "Invalid JSON",
    "non_utf8_bytes": "Invalid JSON",
    "latin1_title": "Invalid JSON",
    "schema_version_2": "schema_version",
    "missing_product_id": "product_id",
    "missing_observed_at": "observed_at",
    "price_not_a_number": "price",
    "negative_price": "price",
    "currency_not_iso": "currency",
    "json_array": "PriceObservation",
    "null_value": "Invalid JSON",
    "oversize": "bytes; an observation may have at most",
}


async def dead_letters_for(settings: Settings, keys: set[str], seconds: float) -> list[DeadLetter]:
    """The detector's dead letters, read until every key in ``keys`` has one."""
    async with TopicReader(settings, settings.topic(DEAD_LETTERS)) as reader:

        def letters() -> list[DeadLetter]:
            return [DeadLetter.model_validate_json(r.value or b"") for r in reader.records]

        await reader.wait_until(
            lambda _: keys <= {d.key for d in letters() if d.stage == "detector"}, seconds
        )
        return letters()


def test_a_flood_of_bad_messages_is_dead_lettered_and_the_good_ones_processed(
    tmp_path: Path, broker: Broker, unique_prefix: str
) -> None:
    settings = scenario_settings(broker, unique_prefix, tmp_path / "data")
    prepare_topics(settings)
    scenario = Scenario.build(partitions=settings.topic_partitions, observations=1600, seed=31)
    reference = scenario.reference(settings)
    logs = tmp_path / "logs"
    worker = WorkerProcess(settings, "w0", logs / "worker-w0.log", metrics_port=free_port())

    async def run() -> tuple[dict[str, str], list[DeadLetter], float]:
        worker.start()
        await asyncio.to_thread(worker.wait_ready, STALL_SECONDS)
        await produce_subscriptions(settings, scenario.subscriptions)
        await wait_for_subscriptions(settings, scenario)
        began = time.monotonic()
        kinds = await produce_flood(settings, scenario)
        finished = await wait_for_end_markers(
            settings, scenario.end_markers(reference), STALL_SECONDS, processed_by(worker)
        )
        assert finished, "the good observations were not all processed"
        letters = await dead_letters_for(settings, set(kinds), STALL_SECONDS)
        took = time.monotonic() - began
        assert worker.running, f"the worker died:\n{worker.log_tail()}"
        return kinds, letters, took

    try:
        with worker:
            kinds, letters, took = asyncio.run(run())
            assert worker.terminate() == 0, worker.log_tail()
        print(f"{len(kinds)} bad and {len(scenario.observations)} good messages in {took:.1f}s")

        by_key: dict[str, list[DeadLetter]] = {}
        for letter in letters:
            by_key.setdefault(letter.key or "", []).append(letter)
        # Every bad message dead-lettered (once, unless the worker redelivered), nothing else.
        assert set(by_key) == set(kinds), set(by_key) ^ set(kinds)
        for key, kind in kinds.items():
            (letter, *again) = by_key[key]
            assert all(a.source_offset == letter.source_offset for a in again)
            assert letter.stage == "detector"
            assert letter.source_topic == settings.topic(PRICE_OBSERVATIONS)
            assert letter.reason == ("oversize" if kind == "oversize" else "invalid_record"), (
                kind,
                letter.reason,
                letter.error[:300],
            )
            assert EXPECTED_ERROR[kind] in letter.error, (kind, letter.error[:300])
        reasons = Counter((kinds[d.key or ""], d.reason) for d in letters)
        print(f"dead letters by kind and reason: {dict(reasons)}")

        events = asyncio.run(read_topic(settings, settings.topic(PRICE_EVENTS))).records
        notifications = asyncio.run(read_topic(settings, settings.topic(NOTIFICATIONS))).records
        check_events(events, reference)
        check_notifications(notifications, reference)
    finally:
        keep_logs(logs, "malformed-flood")
