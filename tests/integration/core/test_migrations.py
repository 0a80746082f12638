"""The Alembic migrations on a real PostgreSQL: from nothing, and from 0001 with data in it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from pricewatch.db.engine import alembic_config, make_engine, upgrade
from pricewatch.db.schema import metadata

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
NEW_TABLES = (
    "websites",
    "users",
    "subscriptions",
    "price_events",
    "channels",
    "channel_choices",
    "channel_deliveries",
)


@pytest.fixture
def engine(postgres_url: str) -> Iterator[sqlalchemy.Engine]:
    engine = make_engine(postgres_url)
    yield engine
    engine.dispose()


def head() -> str:
    revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert revision is not None
    return revision


def rows(engine: sqlalchemy.Engine, query: str) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(text(query))]


def tables(engine: sqlalchemy.Engine) -> set[str]:
    return {
        row["table_name"]
        for row in rows(
            engine,
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
        )
    }


def differences(engine: sqlalchemy.Engine) -> list[Any]:
    with engine.connect() as connection:
        return list(compare_metadata(MigrationContext.configure(connection), metadata))


def version(engine: sqlalchemy.Engine) -> str:
    (row,) = rows(engine, "SELECT version_num FROM alembic_version")
    return str(row["version_num"])


def test_the_revisions_form_one_line_ending_in_0006_channels() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert script.get_heads() == ["0006_channels"]
    assert [r.revision for r in script.walk_revisions()] == [
        "0006_channels",
        "0005_alert_options",
        "0004_subscription_currency",
        "0003_dashboards",
        "0002",
        "0001",
    ]


def test_an_empty_database_upgrades_to_head_and_matches_the_schema_module(
    postgres_url: str, engine: sqlalchemy.Engine
) -> None:
    assert tables(engine) == set()
    upgrade(postgres_url)
    assert version(engine) == head()
    assert tables(engine) == {
        "alembic_version",
        "products",
        "prices",
        "notifications",
        *NEW_TABLES,
    }
    assert differences(engine) == []


def _fill_at_0001(engine: sqlalchemy.Engine) -> None:
    with engine.begin() as connection:
        connection.execute(
            text(
                """
                INSERT INTO products (product_id, url, title, currency, current_price,
                                      availability, status, last_checked_at, last_ok_at)
                VALUES ('p1', 'https://shop.example/p/1', 'Kettle', 'EUR', 19.99,
                        'in_stock', 'active', :t, :t),
                       ('p2', 'https://other.example/p/2', NULL, NULL, NULL,
                        NULL, 'error', :t, NULL)
                """
            ),
            {"t": T0},
        )
        connection.execute(
            text(
                """
                INSERT INTO prices (product_id, price, currency, availability, observed_at)
                VALUES ('p1', 21.50, 'EUR', 'in_stock', :t - interval '1 hour'),
                       ('p1', 19.99, 'EUR', 'in_stock', :t)
                """
            ),
            {"t": T0},
        )
        connection.execute(
            text(
                """
                INSERT INTO notifications (idempotency_key, kind, subscription_id, email,
                                           product_id, event_id, status, attempts, sent_at)
                VALUES ('k1', 'price_dropped', 's1', 'a@example.com', 'p1', 'e1', 'sent', 1, :t),
                       ('k2', 'sold_out', 's1', 'a@example.com', 'p1', 'e2', 'retrying', 2,
                        NULL)
                """
            ),
            {"t": T0},
        )


def _old_data(engine: sqlalchemy.Engine) -> dict[str, list[dict[str, Any]]]:
    return {
        "products": rows(
            engine,
            "SELECT product_id, url, title, currency, current_price, availability, status,"
            " last_checked_at, last_ok_at, last_error, created_at FROM products ORDER BY 1",
        ),
        "prices": rows(engine, "SELECT * FROM prices ORDER BY id"),
        "notifications": rows(engine, "SELECT * FROM notifications ORDER BY 1"),
    }


def test_a_database_at_0001_with_data_upgrades_to_head_keeping_it(
    postgres_url: str, engine: sqlalchemy.Engine
) -> None:
    command.upgrade(alembic_config(postgres_url), "0001")
    assert version(engine) == "0001"
    assert tables(engine) == {"alembic_version", "products", "prices", "notifications"}
    _fill_at_0001(engine)
    before = _old_data(engine)
    assert [len(before[t]) for t in ("products", "prices", "notifications")] == [2, 2, 2]

    upgrade(postgres_url)  # what every sink does when it starts

    assert version(engine) == head()
    assert _old_data(engine) == before
    assert rows(engine, "SELECT product_id, website_id FROM products ORDER BY 1") == [
        {"product_id": "p1", "website_id": None},
        {"product_id": "p2", "website_id": None},
    ]
    for table in NEW_TABLES:
        assert rows(engine, f"SELECT count(*) AS n FROM {table}") == [{"n": 0}]
    assert differences(engine) == []
    # The old rows still work with the new schema: a website links to them, a price is added.
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO websites (name, host, base_url) "
                "VALUES ('Shop', 'shop.example', 'https://shop.example/')"
            )
        )
        connection.execute(
            text(
                "UPDATE products SET website_id = (SELECT id FROM websites) WHERE product_id = 'p1'"
            )
        )
        connection.execute(
            text(
                "INSERT INTO prices (product_id, price, currency, availability, observed_at) "
                "VALUES ('p1', 18.00, 'EUR', 'in_stock', now())"
            )
        )
    assert rows(engine, "SELECT max(price) AS top FROM prices") == [{"top": Decimal("21.500000")}]
    website = rows(engine, "SELECT * FROM websites")[0]
    assert (website["adapter_config"], website["paused"]) == ({}, False)
    assert website["default_check_interval_seconds"] == 300

    upgrade(postgres_url)  # at head already: nothing happens
    assert version(engine) == head()
