"""The stream worker commits its offsets as often as the settings say."""

from __future__ import annotations

from pathlib import Path

import pytest

from pricewatch.settings import Settings
from streams.app import create_worker_topology


@pytest.mark.parametrize(
    ("env", "expected_seconds"), [({}, 2.8), ({"kafka_commit_interval_seconds": 0.5}, 0.5)]
)
def test_the_worker_commit_interval_comes_from_the_settings(
    tmp_path: Path, env: dict[str, float], expected_seconds: float
) -> None:
    settings = Settings(kafka_bootstrap_servers="127.0.0.1:1", data_dir=tmp_path, **env)
    app = create_worker_topology(settings).app
    assert app.conf.broker_commit_interval == expected_seconds


def test_a_commit_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="greater than 0"):
        Settings(kafka_commit_interval_seconds=0)
