"""The adaptive fetch wait: grows while fetches come back empty, drops when records come."""

from __future__ import annotations

from typing import Any

from pricewatch.kafka import AdaptiveFetchWait
from pricewatch.settings import FetchWait, Settings

# Explicit, so the tests' own short waits (tests/conftest.py) do not apply here.
DEFAULT_WAITS: dict[str, Any] = {"kafka_fetch_wait_min_ms": None, "kafka_fetch_wait_max_ms": None}


def test_the_wait_grows_while_empty_up_to_the_longest_and_drops_on_records() -> None:
    wait = AdaptiveFetchWait(FetchWait(5, 250))
    empty = [wait.answered(had_records=False) for _ in range(5)]
    assert empty == [20, 80, 250, 250, 250]
    assert wait.answered(had_records=True) == 5
    assert wait.answered(had_records=False) == 20


def test_embedded_defaults_alert_path_short_bulk_path_long() -> None:
    settings = Settings(kafka_bootstrap_servers="127.0.0.1:1", kafka_embedded=True, **DEFAULT_WAITS)
    assert settings.fetch_wait() == FetchWait(5, 250)
    assert settings.fetch_wait(bulk=True) == FetchWait(250, 2000)


def test_a_real_cluster_waits_long_since_it_answers_when_data_arrives() -> None:
    settings = Settings(kafka_bootstrap_servers="127.0.0.1:1", **DEFAULT_WAITS)
    assert settings.fetch_wait() == FetchWait(500, 500)
    assert settings.fetch_wait(bulk=True) == FetchWait(500, 4000)


def test_settings_choose_both_ends_and_a_longest_below_the_shortest_is_raised() -> None:
    settings = Settings(
        kafka_bootstrap_servers="127.0.0.1:1",
        kafka_embedded=True,
        kafka_fetch_wait_min_ms=40,
        kafka_fetch_wait_max_ms=20,
    )
    assert settings.fetch_wait() == FetchWait(40, 40)
    assert settings.fetch_wait(bulk=True) == FetchWait(40, 320)


def test_while_the_application_reads_fetched_records_the_wait_stays_short() -> None:
    # An empty fetch of the quiet partitions while the busy ones' records are being read:
    # the busy partitions' next fetch waits behind it, so it must not wait long.
    wait = AdaptiveFetchWait(FetchWait(5, 250))
    assert [wait.answered(False, reading=True) for _ in range(3)] == [20, 20, 20]
    assert [wait.answered(False) for _ in range(3)] == [80, 250, 250]


def test_producers_batch_longer_on_the_embedded_broker_and_a_setting_chooses() -> None:
    embedded = Settings(kafka_bootstrap_servers="127.0.0.1:1", kafka_embedded=True)
    assert embedded.producer_linger_ms == 20
    assert Settings(kafka_bootstrap_servers="127.0.0.1:1").producer_linger_ms == 5
    chosen = Settings(kafka_bootstrap_servers="127.0.0.1:1", kafka_producer_linger_ms=0)
    assert chosen.producer_linger_ms == 0
