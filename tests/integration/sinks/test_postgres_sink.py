"""PriceHistorySink and the migrations against a real PostgreSQL database."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from pricewatch.contract.records import Availability, Outcome, PriceObservation
from pricewatch.db.engine import alembic_config, make_engine, sqlalchemy_url, upgrade
from pricewatch.db.schema import metadata
from pricewatch.ids import observation_id_for, product_id_for
from sinks.contract import Batch
from sinks.postgres.prices import PriceHistorySink

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SHOE = "https://shop.example/p/shoe"
HAT = "https://shop.example/p/hat"


def observe(
    url: str,
    minutes: int,
    price: str | None = "10.00",
    *,
    outcome: Outcome = Outcome.OK,
    currency: str | None = "EUR",
    availability: Availability | None = Availability.IN_STOCK,
    title: str | None = "A product",
    error: str | None = None,
) -> PriceObservation:
    product_id = product_id_for(url)
    observed_at = T0 + timedelta(minutes=minutes)
    ok = outcome is Outcome.OK
    return PriceObservation(
        observation_id=observation_id_for(product_id, observed_at),
        product_id=product_id,
        url=url,
        observed_at=observed_at,
        outcome=outcome,
        price=Decimal(price) if ok and price is not None else None,
        currency=currency if ok else None,
        availability=availability if ok else None,
        title=title if ok else None,
        error=error,
    )


@pytest.fixture
def engine(postgres_url: str) -> Iterator[sqlalchemy.Engine]:
    upgrade(postgres_url)
    engine = make_engine(postgres_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sink(engine: sqlalchemy.Engine) -> PriceHistorySink:
    return PriceHistorySink(engine)


def rows(engine: sqlalchemy.Engine, query: str, **params: Any) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(text(query), params)]


def product(engine: sqlalchemy.Engine, url: str) -> dict[str, Any]:
    (row,) = rows(engine, "SELECT * FROM products WHERE product_id = :id", id=product_id_for(url))
    return row


def history(engine: sqlalchemy.Engine, url: str) -> list[tuple[Decimal | None, str | None, int]]:
    """(price, availability, minutes after T0) per prices row, oldest first."""
    return [
        (row["price"], row["availability"], int((row["observed_at"] - T0).total_seconds() // 60))
        for row in rows(
            engine,
            "SELECT * FROM prices WHERE product_id = :id ORDER BY observed_at",
            id=product_id_for(url),
        )
    ]


def snapshot(engine: sqlalchemy.Engine) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return (
        rows(engine, "SELECT * FROM products ORDER BY product_id"),
        rows(engine, "SELECT * FROM prices ORDER BY id"),
    )


def test_sqlalchemy_url_uses_psycopg_and_keeps_the_query() -> None:
    assert sqlalchemy_url("postgres://u:p@h:5/db") == "postgresql+psycopg://u:p@h:5/db"
    assert (
        sqlalchemy_url("postgresql://postgres@/pw?host=/tmp/sock")
        == "postgresql+psycopg://postgres@/pw?host=/tmp/sock"
    )
    assert sqlalchemy_url("postgresql+psycopg://h/db") == "postgresql+psycopg://h/db"
    with pytest.raises(ValueError):
        sqlalchemy_url("mysql://h/db")


def test_upgrade_twice_is_a_noop_and_matches_the_schema_module(postgres_url: str) -> None:
    upgrade(postgres_url)
    engine = make_engine(postgres_url)
    try:
        before = rows(engine, "SELECT table_name FROM information_schema.tables ORDER BY 1")
        upgrade(postgres_url)
        assert rows(engine, "SELECT table_name FROM information_schema.tables ORDER BY 1") == before
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        assert rows(engine, "SELECT version_num FROM alembic_version") == [{"version_num": head}]
        with engine.connect() as connection:
            # What the migrations built is what schema.py (and the sinks' queries) expect.
            assert compare_metadata(MigrationContext.configure(connection), metadata) == []
    finally:
        engine.dispose()


async def test_a_batch_writes_products_and_price_history(
    sink: PriceHistorySink, engine: sqlalchemy.Engine
) -> None:
    await sink.write(
        Batch.of(
            [
                observe(SHOE, 0, "79.990000", title="Running shoe"),
                observe(HAT, 0, "15.00", availability=Availability.OUT_OF_STOCK, title="Hat"),
            ]
        )
    )

    shoe = product(engine, SHOE)
    assert shoe["url"] == SHOE
    assert shoe["title"] == "Running shoe"
    assert shoe["current_price"] == Decimal("79.99")
    assert shoe["currency"] == "EUR"
    assert shoe["availability"] == "in_stock"
    assert shoe["status"] == "active"
    assert shoe["last_checked_at"] == shoe["last_ok_at"] == T0
    assert shoe["last_error"] is None
    assert shoe["created_at"] is not None
    assert product(engine, HAT)["availability"] == "out_of_stock"
    assert history(engine, SHOE) == [(Decimal("79.99"), "in_stock", 0)]
    assert history(engine, HAT) == [(Decimal("15.00"), "out_of_stock", 0)]


async def test_writing_the_same_batch_again_changes_no_row(
    sink: PriceHistorySink, engine: sqlalchemy.Engine
) -> None:
    batch = [
        observe(SHOE, 0, "10"),
        observe(SHOE, 5, "9"),
        observe(SHOE, 10, outcome=Outcome.ERROR, error="timeout"),
        observe(HAT, 0, "20"),
        observe(HAT, 5, outcome=Outcome.GONE),
    ]
    await sink.write(Batch.of(batch))
    first = snapshot(engine)
    assert len(first[0]) == 2
    assert len(first[1]) == 3

    await sink.write(Batch.of(batch))
    await sink.write(Batch.of(list(reversed(batch))))
    await sink.write(Batch.of(batch[2:3] + batch[:1]))
    assert snapshot(engine) == first


async def test_unchanged_observations_add_no_history_row(
    sink: PriceHistorySink, engine: sqlalchemy.Engine
) -> None:
    await sink.write(Batch.of([observe(SHOE, 0, "10")]))
    await sink.write(Batch.of([observe(SHOE, 5, "10.000000"), observe(SHOE, 10, "10")]))
    await sink.write(Batch.of([observe(SHOE, 15, "10", availability=Availability.OUT_OF_STOCK)]))
    await sink.write(
        Batch.of([observe(SHOE, 20, "10", currency="USD", availability=Availability.OUT_OF_STOCK)])
    )
    await sink.write(
        Batch.of([observe(SHOE, 25, "12", currency="USD", availability=Availability.OUT_OF_STOCK)])
    )

    assert history(engine, SHOE) == [
        (Decimal("10"), "in_stock", 0),
        (Decimal("10"), "out_of_stock", 15),
        (Decimal("10"), "out_of_stock", 20),  # the currency changed
        (Decimal("12"), "out_of_stock", 25),
    ]
    shoe = product(engine, SHOE)
    assert shoe["last_checked_at"] == T0 + timedelta(minutes=25)
    assert (shoe["current_price"], shoe["currency"]) == (Decimal("12"), "USD")


async def test_an_older_observation_arriving_late_does_not_overwrite_the_product(
    sink: PriceHistorySink, engine: sqlalchemy.Engine
) -> None:
    await sink.write(Batch.of([observe(SHOE, 10, "8", title="New title")]))
    await sink.write(Batch.of([observe(SHOE, 5, "9", title="Old title")]))
    await sink.write(Batch.of([observe(SHOE, 7, outcome=Outcome.GONE)]))
    await sink.write(Batch.of([observe(SHOE, 8, outcome=Outcome.ERROR, error="late error")]))

    shoe = product(engine, SHOE)
    assert shoe["current_price"] == Decimal("8")
    assert shoe["title"] == "New title"
    assert shoe["status"] == "active"
    assert shoe["last_checked_at"] == shoe["last_ok_at"] == T0 + timedelta(minutes=10)
    assert shoe["last_error"] is None
    # The late observation still belongs in the history, before the newer one.
    assert history(engine, SHOE) == [(Decimal("9"), "in_stock", 5), (Decimal("8"), "in_stock", 10)]


async def test_observations_in_one_batch_apply_in_observed_order(
    sink: PriceHistorySink, engine: sqlalchemy.Engine
) -> None:
    await sink.write(
        Batch.of(
            [
                observe(SHOE, 20, "7"),
                observe(SHOE, 10, "8"),
                observe(SHOE, 15, "8"),
                observe(SHOE, 0, "9"),
            ]
        )
    )
    assert product(engine, SHOE)["current_price"] == Decimal("7")
    assert history(engine, SHOE) == [
        (Decimal("9"), "in_stock", 0),
        (Decimal("8"), "in_stock", 10),
        (Decimal("7"), "in_stock", 20),
    ]


async def test_errors_and_gone_update_status_and_keep_the_last_good_price(
    sink: PriceHistorySink, engine: sqlalchemy.Engine
) -> None:
    await sink.write(Batch.of([observe(HAT, 0, outcome=Outcome.ERROR, error="connect timeout")]))
    hat = product(engine, HAT)
    assert (hat["status"], hat["last_error"], hat["last_ok_at"]) == (
        "error",
        "connect timeout",
        None,
    )
    assert history(engine, HAT) == []

    await sink.write(Batch.of([observe(HAT, 5, "30", title="Hat")]))
    await sink.write(Batch.of([observe(HAT, 10, outcome=Outcome.ERROR, error="HTTP 503")]))
    hat = product(engine, HAT)
    assert hat["status"] == "active"  # an error says nothing about a known product
    assert hat["last_error"] == "HTTP 503"
    assert hat["current_price"] == Decimal("30")
    assert hat["last_ok_at"] == T0 + timedelta(minutes=5)
    assert hat["last_checked_at"] == T0 + timedelta(minutes=10)

    await sink.write(Batch.of([observe(HAT, 15, outcome=Outcome.GONE, error="HTTP 404")]))
    hat = product(engine, HAT)
    assert (hat["status"], hat["current_price"], hat["title"]) == ("gone", Decimal("30"), "Hat")

    await sink.write(Batch.of([observe(HAT, 20, "31", title=None)]))
    hat = product(engine, HAT)
    assert (hat["status"], hat["current_price"], hat["title"]) == ("active", Decimal("31"), "Hat")
    assert history(engine, HAT) == [(Decimal("30"), "in_stock", 5), (Decimal("31"), "in_stock", 20)]


async def test_hostile_scraped_text_cannot_wedge_the_sink(
    sink: PriceHistorySink, engine: sqlalchemy.Engine
) -> None:
    await sink.write(Batch.of([observe(SHOE, 0, "1", title="Nul\x00 title " + "x" * 5000)]))
    title = product(engine, SHOE)["title"]
    assert "\x00" not in title
    assert title.startswith("Nul title")
    assert len(title) <= 1000


async def test_a_url_owned_by_another_product_id_is_skipped_not_retried_forever(
    sink: PriceHistorySink, engine: sqlalchemy.Engine
) -> None:
    await sink.write(Batch.of([observe(SHOE, 0, "10")]))
    impostor = observe(SHOE, 5, "1").model_copy(update={"product_id": "f" * 32})
    await sink.write(Batch.of([impostor, observe(HAT, 5, "2")]))

    product_ids = {row["product_id"] for row in rows(engine, "SELECT product_id FROM products")}
    assert product_ids == {product_id_for(SHOE), product_id_for(HAT)}
    assert product(engine, SHOE)["current_price"] == Decimal("10")
    assert rows(engine, "SELECT count(*) AS n FROM prices WHERE product_id = :id", id="f" * 32) == [
        {"n": 0}
    ]


async def test_a_product_is_linked_to_the_website_of_its_host(
    sink: PriceHistorySink, engine: sqlalchemy.Engine
) -> None:
    await sink.write(Batch.of([observe(SHOE, 0, "10")]))
    assert product(engine, SHOE)["website_id"] is None  # no such website yet

    with engine.begin() as connection:
        website_id = connection.execute(
            text(
                "INSERT INTO websites (name, host, base_url) "
                "VALUES ('Shop', 'shop.example', 'https://shop.example/') RETURNING id"
            )
        ).scalar_one()
    await sink.write(
        Batch.of([observe(HAT, 0, "20"), observe("https://Shop.Example:443/p/cap", 0)])
    )
    await sink.write(Batch.of([observe(SHOE, 5, "10")]))
    await sink.write(Batch.of([observe("https://elsewhere.example/p/1", 0)]))

    assert product(engine, SHOE)["website_id"] == website_id  # linked at its next observation
    assert product(engine, HAT)["website_id"] == website_id
    assert product(engine, "https://Shop.Example:443/p/cap")["website_id"] == website_id
    assert product(engine, "https://elsewhere.example/p/1")["website_id"] is None
    # An older observation arriving late does not unlink it.
    await sink.write(Batch.of([observe(SHOE, 1, "10")]))
    assert product(engine, SHOE)["website_id"] == website_id


def _stable(engine: sqlalchemy.Engine) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The tables without what depends on when rows were written (created_at, id)."""
    products, prices = snapshot(engine)
    return (
        [{k: v for k, v in row.items() if k != "created_at"} for row in products],
        sorted(
            ({k: v for k, v in row.items() if k != "id"} for row in prices),
            key=lambda row: (row["product_id"], row["observed_at"]),
        ),
    )


async def test_a_batch_writes_what_its_observations_written_one_at_a_time_write(
    engine: sqlalchemy.Engine,
) -> None:
    """The set-based statements (rounds) against one observation per transaction."""
    rng = random.Random(7)
    urls = [f"https://shop.example/p/{n}" for n in range(4)]
    stream: list[PriceObservation] = []
    for minutes in range(30):
        for url in rng.sample(urls, 3):
            kind = rng.random()
            if kind < 0.1:
                stream.append(observe(url, minutes, outcome=Outcome.ERROR, error=f"e{minutes}"))
            elif kind < 0.15:
                stream.append(observe(url, minutes, outcome=Outcome.GONE))
            else:
                stream.append(
                    observe(
                        url,
                        minutes,
                        rng.choice(["9.99", "10.00", "12.50"]),
                        availability=rng.choice(list(Availability)[:2]),
                        title=rng.choice([None, "A", "B"]),
                    )
                )
    # The log: some observations twice, some arriving late.
    log = stream + rng.sample(stream, 10)
    for _ in range(10):
        late = log.pop(rng.randrange(len(log) // 2))
        log.insert(rng.randrange(len(log) // 2, len(log)), late)

    def reset() -> None:
        with engine.begin() as connection:
            connection.execute(text("TRUNCATE prices, products"))

    for size in (7, 50, len(log)):
        batches = [log[i : i + size] for i in range(0, len(log), size)]
        reset()
        for batch in batches:
            for observation in sorted(batch, key=lambda o: o.observed_at):
                await PriceHistorySink(engine).write(Batch.of([observation]))
        expected = _stable(engine)
        assert len(expected[1]) > 20
        reset()
        for batch in batches:
            await PriceHistorySink(engine).write(Batch.of(rng.sample(batch, len(batch))))
        assert _stable(engine) == expected, size


async def test_a_url_claimed_by_two_product_ids_keeps_the_first_and_fails_nothing(
    sink: PriceHistorySink, engine: sqlalchemy.Engine
) -> None:
    first = observe(SHOE, 0, "10")
    impostor = first.model_copy(
        update={"product_id": "f" * 32, "observed_at": T0 + timedelta(minutes=1)}
    )
    await sink.write(Batch.of([impostor, first, observe(HAT, 0, "5")]))  # one batch, one round
    await sink.write(
        Batch.of([impostor.model_copy(update={"observed_at": T0 + timedelta(minutes=2)})])
    )

    assert [r["product_id"] for r in rows(engine, "SELECT * FROM products ORDER BY 1")] == sorted(
        [product_id_for(SHOE), product_id_for(HAT)]
    )
    assert history(engine, SHOE) == [(Decimal("10"), "in_stock", 0)]
