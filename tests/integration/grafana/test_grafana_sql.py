"""Every SQL query of the dashboards (panels and template variables), expanded as Grafana's
PostgreSQL datasource expands it, run against a real, migrated PostgreSQL holding a
realistic few weeks of Pricewatch: its columns must be what the panel type needs, and where
the seeded data makes the answer known, the answer must be right."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from grafana import admin, user
from grafana.dashboards import DASHBOARDS
from grafana.macros import TimeRange, grafana_sql
from grafana.model import Panel, SqlQuery
from pricewatch.db.engine import upgrade

TIMESTAMPTZ = 1184
TEXT_TYPES = {25, 1043, 1042, 19}  # text, varchar, bpchar, name
NUMERIC_TYPES = {20, 21, 23, 700, 701, 1700}  # int8, int2, int4, float4, float8, numeric
BOOL = 16

NOW = datetime.now(UTC)
TODAY = NOW.replace(hour=0, minute=0, second=0, microsecond=0)
SINCE_MIDNIGHT = NOW - TODAY
RANGE = TimeRange(NOW - timedelta(days=30), NOW)


def today(fraction: float) -> datetime:
    """A moment earlier today (UTC), whatever time the test runs."""
    return TODAY + SINCE_MIDNIGHT * fraction


def days_ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


@dataclass(frozen=True)
class Seeded:
    alice_id: int  # verified, three products with targets
    alice_products: list[str]
    bob_id: int
    failing_urls: set[str]


WEBSITES = [
    ("Alpha Shop", "alpha.example"),
    ("Beta Market", "beta.example"),
    ("Gamma Store", "gamma.example"),
]


def _product(conn: psycopg.Connection[Any], pid: str, host: str | None, **values: Any) -> None:
    website_id = None
    if host is not None:
        row = conn.execute("SELECT id FROM websites WHERE host = %s", (host,)).fetchone()
        website_id = row[0] if row else None
    url = f"https://{host or 'unknown.example'}/p/{pid}"
    columns = {
        "product_id": pid,
        "url": url,
        "title": values.pop("title", f"Product {pid}"),
        "currency": "EUR",
        "status": "active",
        "website_id": website_id,
        **values,
    }
    names = ", ".join(columns)
    marks = ", ".join(["%s"] * len(columns))
    conn.execute(f"INSERT INTO products ({names}) VALUES ({marks})", list(columns.values()))


def _prices(conn: psycopg.Connection[Any], pid: str, history: list[tuple[datetime, str]]) -> None:
    for at, price in history:
        conn.execute(
            "INSERT INTO prices (product_id, price, currency, availability, observed_at)"
            " VALUES (%s, %s, 'EUR', 'in_stock', %s)",
            (pid, Decimal(price), at),
        )
    _, last_price = history[-1]
    conn.execute(
        "UPDATE products SET current_price = %s, availability = 'in_stock',"
        " last_checked_at = %s, last_ok_at = %s WHERE product_id = %s",
        (Decimal(last_price), NOW - timedelta(minutes=3), NOW - timedelta(minutes=3), pid),
    )


def _user(conn: psycopg.Connection[Any], email: str, verified: bool, created: datetime) -> int:
    row = conn.execute(
        "INSERT INTO users (email, verified_at, created_at) VALUES (%s, %s, %s) RETURNING id",
        (email, created + timedelta(minutes=5) if verified else None, created),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _subscribe(
    conn: psycopg.Connection[Any],
    sid: str,
    user_id: int,
    pid: str,
    target: str | None,
    created: datetime,
    active: bool = True,
) -> None:
    url = conn.execute("SELECT url FROM products WHERE product_id = %s", (pid,)).fetchone()
    conn.execute(
        "INSERT INTO subscriptions (subscription_id, user_id, product_id, url, target_price,"
        " notify_any_drop, notify_back_in_stock, notify_sold_out, notify_removed, active,"
        " created_at, updated_at) VALUES (%s, %s, %s, %s, %s, false, true, false, false,"
        " %s, %s, %s)",
        (
            sid,
            user_id,
            pid,
            url[0] if url else f"https://later.example/{pid}",
            None if target is None else Decimal(target),
            active,
            created,
            created,
        ),
    )


def _event(
    conn: psycopg.Connection[Any],
    pid: str,
    kind: str,
    at: datetime,
    old: str | None,
    new: str | None,
    old_availability: str = "in_stock",
    new_availability: str = "in_stock",
) -> str:
    event_id = f"{pid}:{kind}:{at.isoformat()}"
    conn.execute(
        "INSERT INTO price_events (event_id, event_type, product_id, observation_id,"
        " observed_at, detected_at, old_price, new_price, old_currency, new_currency,"
        " old_availability, new_availability)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'EUR', 'EUR', %s, %s)",
        (
            event_id,
            kind,
            pid,
            f"obs-{event_id}",
            at,
            at + timedelta(seconds=2),
            None if old is None else Decimal(old),
            None if new is None else Decimal(new),
            old_availability,
            new_availability,
        ),
    )
    return event_id


def _notify(
    conn: psycopg.Connection[Any],
    key: str,
    kind: str,
    sid: str,
    email: str,
    pid: str,
    event_id: str,
    status: str,
    at: datetime,
) -> None:
    conn.execute(
        "INSERT INTO notifications (idempotency_key, kind, subscription_id, email, product_id,"
        " event_id, status, attempts, last_error, created_at, sent_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, 1, %s, %s, %s)",
        (
            key,
            kind,
            sid,
            email,
            pid,
            event_id,
            status,
            "550 mailbox unavailable" if status == "failed" else None,
            at,
            at + timedelta(seconds=3) if status == "sent" else None,
        ),
    )


def _channel(
    conn: psycopg.Connection[Any],
    channel_id: str,
    user_id: int,
    kind: str,
    status: str,
    paused_reason: str | None = None,
) -> None:
    conn.execute(
        "INSERT INTO channels (channel_id, user_id, kind, target, url_sealed, url_digest,"
        " status, paused_reason) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (channel_id, user_id, kind, f"{kind}://x/…abcd", b"sealed", channel_id, status,
         paused_reason),
    )  # fmt: skip


def _delivery(
    conn: psycopg.Connection[Any], key: str, channel_id: str, kind: str, status: str, at: datetime
) -> None:
    conn.execute(
        "INSERT INTO channel_deliveries (idempotency_key, channel_id, channel_kind, message,"
        " email, subscription_id, status, attempts, created_at)"
        " VALUES (%s, %s, %s, 'alert', 'alice@example.com', 's-a1', %s, 1, %s)",
        (key, channel_id, kind, status, at),
    )


def seed(conn: psycopg.Connection[Any]) -> Seeded:
    for name, host in WEBSITES:
        conn.execute(
            "INSERT INTO websites (name, host, base_url) VALUES (%s, %s, %s)",
            (name, host, f"https://{host}/"),
        )
    # Alpha: 4 products with price histories over three weeks; Beta: 2; Gamma: 1 gone;
    # plus one product on a host without a website record and two that fail to scrape.
    daily = [(days_ago(21 - 3 * i), f"{100 - 4 * i}.00") for i in range(7)]
    _product(conn, "a1", "alpha.example", title="Kettle")
    _prices(conn, "a1", [*daily, (today(0.5), "70.00")])
    _product(conn, "a2", "alpha.example", title="Toaster")
    _prices(conn, "a2", [(days_ago(40), "50.00"), (days_ago(2), "45.00"), (today(0.25), "40.00")])
    _product(conn, "a3", "alpha.example", title="Blender")
    _prices(conn, "a3", [(days_ago(10), "80.00")])
    _product(conn, "a4", "alpha.example", title="Mixer")
    _prices(conn, "a4", [(days_ago(5), "120.00")])
    _product(conn, "b1", "beta.example", title="Headphones")
    _prices(conn, "b1", [(days_ago(9), "199.00"), (days_ago(1), "189.00")])
    _product(conn, "b2", "beta.example", title="Speaker")
    _prices(conn, "b2", [(days_ago(3), "59.00")])
    _product(conn, "g1", "gamma.example", title="Lamp", status="gone", last_checked_at=days_ago(1))
    _product(conn, "x1", None, title="Mystery box")
    _prices(conn, "x1", [(days_ago(6), "15.00")])
    # Failing: never read (status error), and a known product whose last check failed.
    _product(
        conn,
        "b3",
        "beta.example",
        title=None,
        status="error",
        last_checked_at=NOW - timedelta(minutes=1),
        last_error="HTTP 503 from beta.example",
    )
    _product(conn, "a5", "alpha.example", title="Grill")
    _prices(conn, "a5", [(days_ago(4), "300.00")])
    conn.execute(
        "UPDATE products SET last_checked_at = %s, last_error = 'no price found on the page'"
        " WHERE product_id = 'a5'",
        (NOW - timedelta(minutes=1),),
    )

    # Blocked by a bot check at its last fetch (failing), and one blocked once but read since.
    _product(conn, "b4", "beta.example", title="Camera")
    _prices(conn, "b4", [(days_ago(2), "399.00")])
    _product(conn, "a6", "alpha.example", title="Fan")
    _prices(conn, "a6", [(days_ago(2), "25.00")])
    conn.execute(
        "UPDATE products SET last_checked_at = %s, last_error = 'blocked' WHERE product_id = 'b4'",
        (NOW - timedelta(minutes=2),),
    )
    conn.execute("UPDATE products SET last_error = 'blocked' WHERE product_id = 'a6'")

    alice = _user(conn, "alice@example.com", True, days_ago(25))
    bob = _user(conn, "bob@example.com", True, days_ago(12))
    _user(conn, "carol@example.com", False, days_ago(3))
    _user(conn, "dave@example.com", False, today(0.1))
    _subscribe(conn, "s-a1", alice, "a1", "75.00", days_ago(24))
    _subscribe(conn, "s-a2", alice, "a2", "42.00", days_ago(20))
    _subscribe(conn, "s-b1", alice, "b1", None, days_ago(11))
    _subscribe(conn, "s-bob-a1", bob, "a1", "60.00", days_ago(12))
    _subscribe(conn, "s-bob-b2", bob, "b2", "55.00", days_ago(3), active=False)

    drop_a1 = _event(conn, "a1", "price_drop", today(0.5), "76.00", "70.00")
    drop_a2 = _event(conn, "a2", "price_drop", today(0.25), "45.00", "40.00")
    _event(conn, "a2", "price_drop", days_ago(2), "50.00", "45.00")  # not today
    _event(conn, "b1", "price_drop", days_ago(1), "199.00", "189.00")
    _event(conn, "a1", "new_lowest_price", today(0.5), "76.00", "70.00")
    _event(conn, "b2", "price_increase", today(0.3), "55.00", "59.00")  # not a drop
    stock = _event(
        conn, "b1", "sold_out", days_ago(4), "199.00", "199.00", "in_stock", "out_of_stock"
    )
    _notify(conn, "n1", "target_price_reached", "s-a1", "alice@example.com", "a1", drop_a1,
            "sent", today(0.5))  # fmt: skip
    _notify(conn, "n2", "target_price_reached", "s-a2", "alice@example.com", "a2", drop_a2,
            "sent", today(0.25))  # fmt: skip
    _notify(conn, "n3", "sold_out", "s-b1", "alice@example.com", "b1", stock,
            "failed", days_ago(4))  # fmt: skip
    _notify(conn, "n4", "target_price_reached", "s-bob-a1", "bob@example.com", "a1", drop_a1,
            "retrying", today(0.5))  # fmt: skip
    _notify(
        conn,
        "n5",
        "price_dropped",
        "s-bob-a1",
        "bob@example.com",
        "a1",
        "old-event",
        "sent",
        days_ago(45),
    )  # fmt: skip  (outside the 30-day range)
    _channel(conn, "c-hook", alice, "webhook", "active")
    _channel(conn, "c-tg", alice, "telegram", "paused", "failures")
    _channel(conn, "c-ntfy", bob, "ntfy", "pending")
    _channel(conn, "c-ntfy2", alice, "ntfy", "paused", "owner")
    _delivery(conn, "n1", "c-hook", "webhook", "sent", today(0.5))
    _delivery(conn, "n2", "c-hook", "webhook", "sent", today(0.25))
    _delivery(conn, "n1", "c-tg", "telegram", "failed", today(0.5))
    _delivery(conn, "n0", "c-tg", "telegram", "retrying", days_ago(45))  # outside the range
    failing = {
        "https://gamma.example/p/g1",
        "https://beta.example/p/b3",
        "https://alpha.example/p/a5",
        "https://beta.example/p/b4",
    }
    return Seeded(alice, ["a1", "a2", "b1"], bob, failing)


@pytest.fixture
def db(postgres_url: str) -> Iterator[tuple[psycopg.Connection[Any], Seeded]]:
    upgrade(postgres_url)
    with psycopg.connect(postgres_url) as conn:
        seeded = seed(conn)
        conn.commit()
        # Grafana's datasource user only reads: run every query in a read-only transaction.
        conn.read_only = True
        yield conn, seeded


@dataclass
class Result:
    columns: list[str]
    types: list[int]
    rows: list[tuple[Any, ...]]

    def column(self, name: str) -> list[Any]:
        return [row[self.columns.index(name)] for row in self.rows]


def run(
    conn: psycopg.Connection[Any], sql: str, variables: dict[str, str | list[str]] | None = None
) -> Result:
    expanded = grafana_sql(sql, RANGE, variables, multi=frozenset({"product"}))
    with conn.cursor() as cur:
        cur.execute(expanded.encode())  # as Grafana sends it: no parameters
        assert cur.description is not None
        result = Result(
            [d.name for d in cur.description],
            [d.type_code for d in cur.description],
            cur.fetchall(),
        )
    conn.rollback()
    return result


def user_variables(seeded: Seeded) -> dict[str, str | list[str]]:
    return {"user": str(seeded.alice_id), "product": seeded.alice_products}


def check_shape(panel: Panel, query: SqlQuery, result: Result) -> None:
    """What each panel type needs from its query, checked against the real result."""
    where = f"{panel.title!r}: columns {list(zip(result.columns, result.types, strict=True))}"
    assert result.rows, f"{panel.title!r} returned no rows for the seeded data"
    if panel.type == "timeseries":
        assert result.columns[0] == "time" and result.types[0] == TIMESTAMPTZ, where
        rest = list(zip(result.columns[1:], result.types[1:], strict=True))
        if query.format == "time_series" and rest and rest[0][0] == "metric":
            assert rest[0][1] in TEXT_TYPES, where
            rest = rest[1:]
        assert rest and all(t in NUMERIC_TYPES for _, t in rest), where
        times = result.column("time")
        assert times == sorted(times), f"{panel.title!r}: Grafana needs ascending time"
    elif panel.type == "stat":
        assert len(result.rows) == 1, where
        assert all(t in NUMERIC_TYPES for t in result.types), where
    elif panel.type == "barchart":
        assert result.types[0] in TEXT_TYPES, where
        assert all(t in NUMERIC_TYPES for t in result.types[1:]), where
    else:
        assert panel.type == "table", where
        assert len(set(result.columns)) == len(result.columns), where


SQL_PANELS = [
    (dashboard.uid, panel, query)
    for dashboard in DASHBOARDS
    for panel in dashboard.panels()
    for query in panel.queries
    if isinstance(query, SqlQuery)
]


@pytest.mark.parametrize(
    ("uid", "panel", "query"),
    SQL_PANELS,
    ids=[f"{uid}:{panel.title}" for uid, panel, _ in SQL_PANELS],
)
def test_every_sql_panel_returns_what_its_panel_needs(
    db: tuple[psycopg.Connection[Any], Seeded], uid: str, panel: Panel, query: SqlQuery
) -> None:
    conn, seeded = db
    result = run(conn, query.sql, user_variables(seeded) if uid == user.USER.uid else None)
    check_shape(panel, query, result)


def test_there_are_sql_panels_on_both_dashboards() -> None:
    assert {uid for uid, _, _ in SQL_PANELS} == {d.uid for d in DASHBOARDS}


def test_business_figures(db: tuple[psycopg.Connection[Any], Seeded]) -> None:
    conn, seeded = db
    users = run(conn, admin.USERS_STAT.queries[0].sql)  # type: ignore[union-attr]
    assert users.rows == [(4, 2)]
    subs = run(conn, admin.SUBSCRIPTIONS_STAT.queries[0].sql)  # type: ignore[union-attr]
    assert subs.rows == [(4, 3)]  # active subscriptions; distinct products a1, a2, b1
    alerts = run(conn, admin.ALERTS_TODAY_STAT.queries[0].sql)  # type: ignore[union-attr]
    assert alerts.rows == [(2, 0, 1)]

    per_site = run(conn, admin.PRODUCTS_PER_WEBSITE.queries[0].sql)  # type: ignore[union-attr]
    assert per_site.rows == [
        ("Alpha Shop", 6, 0, 0),
        ("Beta Market", 3, 0, 1),
        ("Gamma Store", 0, 1, 0),
        ("no website record", 1, 0, 0),
    ]

    drops = run(conn, admin.BIGGEST_DROPS_TODAY.queries[0].sql)  # type: ignore[union-attr]
    # Toaster 45 -> 40 is 11.1 %, Kettle 76 -> 70 is 7.9 %; yesterday's and the increase
    # are not today's drops.
    assert drops.column("product") == ["Toaster", "Kettle"]
    assert drops.column("drop %") == [Decimal("11.1"), Decimal("7.9")]

    failing = run(conn, admin.FAILING_PRODUCTS.queries[0].sql)  # type: ignore[union-attr]
    assert set(failing.column("url")) == seeded.failing_urls
    reasons = dict(zip(failing.column("url"), failing.column("reason"), strict=True))
    assert reasons["https://beta.example/p/b3"] == "HTTP 503 from beta.example"
    assert reasons["https://alpha.example/p/a5"] == "no price found on the page"
    assert reasons["https://gamma.example/p/g1"].startswith("gone")
    assert reasons["https://beta.example/p/b4"] == "blocked"
    by_reason = run(conn, admin.FAILURE_REASONS.queries[0].sql)  # type: ignore[union-attr]
    assert sum(by_reason.column("products")) == 4

    # Only the product whose latest fetch was blocked; a6 has been read since.
    blocked = run(conn, admin.BLOCKED_WEBSITES.queries[0].sql)  # type: ignore[union-attr]
    assert [row[:2] for row in blocked.rows] == [("Beta Market", 1)]

    per_day = run(conn, admin.ALERTS_PER_DAY.queries[0].sql)  # type: ignore[union-attr]
    assert sum(per_day.column("value")) == 4  # n5 is older than the range
    assert {t.time() for t in per_day.column("time")} == {datetime.min.time()}  # UTC days

    sql = admin.CHANNEL_MESSAGES_PER_DAY.queries[0].sql  # type: ignore[union-attr]
    messages = run(conn, sql)
    assert dict(zip(messages.column("metric"), messages.column("value"), strict=True)) == {
        "webhook sent": 2,
        "telegram failed": 1,
    }
    channels = run(conn, admin.CHANNELS_BY_KIND.queries[0].sql)  # type: ignore[union-attr]
    assert channels.rows == [
        ("ntfy", 0, 1, 0, 1),
        ("telegram", 0, 0, 1, 0),
        ("webhook", 1, 0, 0, 0),
    ]


def test_user_dashboard_shows_one_users_products(
    db: tuple[psycopg.Connection[Any], Seeded],
) -> None:
    conn, seeded = db
    variables = user_variables(seeded)

    users = run(conn, user.USER_VARIABLE.sql)
    # Only people with subscriptions are offered: carol and dave have none.
    assert users.columns == ["__text", "__value"]
    assert [r[0] for r in users.rows] == ["alice@example.com", "bob@example.com"]
    products = run(conn, user.PRODUCT_VARIABLE.sql, {"user": str(seeded.alice_id)})
    assert sorted(products.column("__value")) == seeded.alice_products

    history = run(conn, user.PRICE_HISTORY.queries[0].sql, variables)  # type: ignore[union-attr]
    series: dict[str, list[tuple[datetime, Decimal]]] = {}
    for time, metric, value in history.rows:
        series.setdefault(metric, []).append((time, value))
    assert set(series) == {
        "Kettle",
        "Kettle (target)",
        "Toaster",
        "Toaster (target)",
        "Headphones",
    }
    # Bob's target on the same kettle is not Alice's business.
    assert {v for _, v in series["Kettle (target)"]} == {Decimal("75.00")}
    # The toaster's price at the start of the range came from 40 days ago.
    assert series["Toaster"][0] == (RANGE.start, Decimal("50.00"))
    assert series["Toaster"][-1][1] == Decimal("40.00")
    kettle = [v for _, v in series["Kettle"]]
    assert kettle[-1] == Decimal("70.00") and max(kettle) == Decimal("100.00")

    current = run(conn, user.CURRENT_PRICES.queries[0].sql, variables)  # type: ignore[union-attr]
    rows = {r[0]: dict(zip(current.columns, r, strict=True)) for r in current.rows}
    assert set(rows) == {"Kettle", "Toaster", "Headphones"}
    assert rows["Kettle"]["at or below target"] is True  # 70 <= 75
    assert rows["Toaster"]["at or below target"] is True  # 40 <= 42
    assert rows["Headphones"]["at or below target"] is None  # no target

    events = run(conn, user.EVENTS.queries[0].sql, variables)  # type: ignore[union-attr]
    assert "price_increase" not in events.column("event")  # that was Bob's speaker
    assert sorted(events.column("event")) == [
        "new_lowest_price",
        *["price_drop"] * 4,  # kettle, toaster twice, headphones
        "sold_out",
    ]

    alerts = run(conn, user.ALERTS.queries[0].sql, variables)  # type: ignore[union-attr]
    assert sorted(alerts.column("status")) == ["failed", "sent", "sent"]

    # Narrowed to one product, the chart shows only that one.
    one = run(
        conn, user.PRICE_HISTORY.queries[0].sql, {"user": str(seeded.alice_id), "product": ["a2"]}
    )  # type: ignore[union-attr]
    assert {r[1] for r in one.rows} == {"Toaster", "Toaster (target)"}
