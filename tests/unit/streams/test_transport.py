"""Stream workers' consumers get the adaptive fetch wait the settings say
(streams.faust_compat, pricewatch.kafka.AdaptiveFetchWait)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from pricewatch.settings import FetchWait, Settings
from streams.app import create_worker_topology
from streams.faust_compat import Transport

# Explicit, so the tests' own short waits (tests/conftest.py) do not apply here.
DEFAULT_WAITS: dict[str, Any] = {"kafka_fetch_wait_min_ms": None, "kafka_fetch_wait_max_ms": None}


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"kafka_embedded": True}, FetchWait(5, 250)),
        ({}, FetchWait(500, 500)),
        (
            {"kafka_embedded": True, "kafka_fetch_wait_min_ms": 7, "kafka_fetch_wait_max_ms": 70},
            FetchWait(7, 70),
        ),
    ],
)
def test_the_worker_consumer_fetch_wait_comes_from_the_settings(
    tmp_path: Path, env: dict[str, object], expected: FetchWait
) -> None:
    settings = Settings(
        kafka_bootstrap_servers="127.0.0.1:1", data_dir=tmp_path, **{**DEFAULT_WAITS, **env}
    )  # type: ignore[arg-type]
    app = create_worker_topology(settings).app

    async def build_consumer() -> tuple[int, FetchWait]:
        assert isinstance(app.transport, Transport)
        thread = app.consumer._thread
        consumer = thread._create_worker_consumer(app.transport)
        first_wait: int = consumer._fetch_max_wait_ms
        return first_wait, consumer.fetch_wait.wait

    assert asyncio.run(build_consumer()) == (expected.min_ms, expected)
