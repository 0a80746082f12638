"""Stream workers' consumers wait as long as the settings say (streams.faust_compat)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pricewatch.settings import Settings
from streams.app import create_worker_topology
from streams.faust_compat import Transport


@pytest.mark.parametrize(
    ("env", "expected_ms"),
    [
        ({"kafka_embedded": True}, 20),
        ({}, 500),
        ({"kafka_embedded": True, "kafka_fetch_max_wait_ms": 7}, 7),
    ],
)
def test_the_worker_consumer_fetch_wait_comes_from_the_settings(
    tmp_path: Path, env: dict[str, object], expected_ms: int
) -> None:
    settings = Settings(kafka_bootstrap_servers="127.0.0.1:1", data_dir=tmp_path, **env)  # type: ignore[arg-type]
    app = create_worker_topology(settings).app

    async def build_consumer() -> int:
        assert isinstance(app.transport, Transport)
        thread = app.consumer._thread
        consumer = thread._create_worker_consumer(app.transport)
        wait: int = consumer._fetch_max_wait_ms
        return wait

    assert asyncio.run(build_consumer()) == expected_ms
