"""The capacity benchmark still runs: Pricewatch (real broker, PostgreSQL and role
processes) and the polling baseline on a 5-product shop checked every 5 s, each drop
alerted exactly once. Figures are not checked (this machine is shared); completeness is.
changedetection.io is left out: it is installed from PyPI by the benchmark itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import capacity
from bench.report import machine_info, write_json
from tests.conftest import Broker


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_tiny_capacity_run_alerts_every_drop_once(
    broker: Broker, postgres_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRICEWATCH_BENCH_DATABASE_URL", postgres_server)
    result = capacity.run(
        products=[5],
        interval=5.0,
        systems=("pricewatch", "polling"),
        min_changes=5,
        extra_wait=120.0,  # a busy machine may be late; only a lost alert fails this
        bootstrap_servers=broker.bootstrap_servers,
        kafka_embedded=broker.embedded,
        results_dir=tmp_path,
        log=lambda _message: None,
    )
    assert not result.extra["incomplete"], result.extra["system_runs"]
    for run in result.extra["system_runs"]:
        outcome = run["outcome"]
        assert outcome["changes"] == 5, run
        assert outcome["alerted"] == 5, run  # every drop, whatever the machine's load
        assert outcome["duplicates"] == 0 and outcome["spurious"] == 0, run
        assert outcome["time_to_alert"]["p50_ms"] > 0  # from the change forward
        assert run["checks"] > 0 and run["cpu_ms_per_check"] > 0 and run["peak_rss_mb"] > 0
    path = write_json(result, machine_info(), tmp_path)
    assert json.loads(path.read_text())["extra"]["tables"][0]["rows"]
