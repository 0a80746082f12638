"""Time to alert and CPU per observation: Pricewatch against the original system's design.

Both watch the same ``products`` pages of the same local shop (``bench.shop``: the demo
shop's pages, in its own process), check every product every ``interval`` seconds, and see
the same ``changes`` price drops made through the shop's admin API. One subscriber per
product; each drop is one alert email, handed to the same outbox backend.

- **Pricewatch**: worker (scheduler, detector, matcher), scraper, PostgreSQL sink and email
  sink, one process each, on the embedded broker; ``default_check_interval_seconds`` =
  ``interval`` (with its ±10 % jitter); verified subscriptions, in place before the clock
  starts (the scheduler reports every product tracked).
- **Baseline** (``bench.polling_baseline``): one process; a job every ``interval`` seconds
  reads every product from PostgreSQL, fetches each page (blocking), extracts the price
  with the same extractor, compares with the last stored price and inserts the new one row
  by row, and sends the email synchronously.

Each system runs alone (the other is stopped; the shop restarts with its original prices).
Once its first full sweep is done, the harness waits until half an interval after that
sweep began, then drops the price of ``changes`` products spread over the catalogue
(one cent below the original price) and waits for every alert email.

- **time to alert**: the ``.eml`` file's mtime minus the moment the shop answered the
  price change (median and p95/max over the drops);
- **CPU per observation**: CPU time of every process of the system (the shop excluded,
  PostgreSQL's backends for its database included) from the end of the first sweep to the
  last alert, divided by the pages it checked meanwhile.
"""

from __future__ import annotations

import email
import email.policy
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from launcher.processes import free_port, wait_for_port
from pricewatch.settings import Settings

from . import shop as bench_shop
from .pipeline import (
    OBSERVED,
    CpuMeter,
    Role,
    Services,
    bench_subscription,
    latency_summary,
    produce_subscriptions,
    roles,
    spawn,
    spawn_worker,
    wait_tracked,
    wait_until,
)
from .polling_baseline import create_schema
from .report import RESULTS_DIR, BenchResult, Figure, Row

NAME = "time_to_alert"


def subscriber_of(eml: Path) -> int | None:
    """The product number n of an alert email to ``user-n@bench.example``."""
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    to = str(message.get("To", ""))
    start = to.find("user-")
    if start < 0:
        return None
    digits = to[start + 5 : to.find("@", start)]
    return int(digits) if digits.isdigit() else None


def first_email_after(outbox: Path, changed_at: dict[int, float]) -> dict[int, float]:
    """Product n -> mtime of the first alert email to its subscriber after its change."""
    found: dict[int, float] = {}
    if not outbox.exists():
        return found
    for eml in outbox.glob("*.eml"):
        mtime = eml.stat().st_mtime
        n = subscriber_of(eml)
        if n is None or n not in changed_at or mtime < changed_at[n]:
            continue
        found[n] = min(mtime, found.get(n, mtime))
    return found


def changed_products(products: int, changes: int) -> list[int]:
    step = max(1, products // max(changes, 1))
    return list(range(step // 2, products, step))[:changes]


def _drop_prices(port: int, products: list[int]) -> dict[int, float]:
    changed_at: dict[int, float] = {}
    for n in products:
        bench_shop.set_price(port, n, bench_shop.product_price(n) - Decimal("0.01"))
        changed_at[n] = time.time()
    return changed_at


def _system_run(
    label: str,
    settings: Settings,
    port: int,
    members: list[Role],
    checks: Callable[[], float | None],
    sweep_started: float,
    products: int,
    changes: list[int],
    interval: float,
    meter: CpuMeter,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Shared by both systems once they run: first sweep, the drops, the emails."""

    def swept() -> bool:
        value = checks()
        return value is not None and value >= products

    timeout = 120 + 3 * interval + products / 20
    wait_until(swept, timeout, f"{label}: the first sweep", alive=members)
    first_sweep = time.time() - sweep_started
    meter.start()
    checks_before = checks() or 0.0
    # The changes land half an interval into the cycle (or right after a slower sweep).
    # Nothing is due meanwhile: what the system uses then is its cost of staying up.
    pause = sweep_started + interval / 2 - time.time()
    idle = CpuMeter(meter.pids, meter.database_url).start()
    if pause > 0:
        time.sleep(pause)
    idle_cpu = idle.stop()
    idle_checks = (checks() or 0.0) - checks_before
    changed_at = _drop_prices(port, changes)
    log(f"[{NAME}] {label}: first sweep {first_sweep:.1f} s; {len(changes)} drops made")

    def alerted() -> bool:
        return len(first_email_after(settings.outbox_path, changed_at)) >= len(changes)

    try:
        wait_until(alerted, timeout, f"{label}: the alert emails", alive=members, interval=0.5)
        complete = True
    except TimeoutError:
        complete = False
    cpu = meter.stop()
    checked = (checks() or 0.0) - checks_before
    emailed = first_email_after(settings.outbox_path, changed_at)
    seconds = [emailed[n] - changed_at[n] for n in emailed]
    result: dict[str, Any] = {
        "first_sweep_seconds": first_sweep,
        "time_to_alert": latency_summary(seconds, len(changes)),
        "complete": complete,
        "checks_in_window": checked,
        "cpu": cpu,
        "cpu_us_per_observation": 1e6 * cpu["total"] / checked if checked else None,
        "idle": {"cpu": idle_cpu, "checks": idle_checks},
        "idle_cpu_percent": None,
        "cpu_us_per_observation_net_of_idle": None,
    }
    # Net of idle: the window's CPU minus the idle rate times its length, per check. Only
    # when the idle window was long enough and nothing was checked in it.
    if idle_cpu["wall_seconds"] >= 1.0 and not idle_checks and checked:
        idle_rate = idle_cpu["total"] / idle_cpu["wall_seconds"]
        result["idle_cpu_percent"] = 100 * idle_rate
        busy = max(0.0, cpu["total"] - idle_rate * cpu["wall_seconds"])
        result["cpu_us_per_observation_net_of_idle"] = 1e6 * busy / checked
    tta = result["time_to_alert"]
    log(
        f"[{NAME}] {label}: time to alert p50 {_s(tta['p50_ms'])}, max {_s(tta['max_ms'])} "
        f"({tta['count']}/{len(changes)}), {checked:.0f} checks, "
        f"CPU {result['cpu_us_per_observation'] or 0:,.0f} us/check "
        f"({result['cpu_us_per_observation_net_of_idle'] or 0:,.0f} net of idle; idle "
        f"{result['idle_cpu_percent'] or 0:.0f}% of a core)"
    )
    return result


def _s(ms: float | None) -> str:
    return "n/a" if ms is None else f"{ms / 1000:.1f} s"


def run(
    products: int = 2_000,
    interval: float = 60.0,
    changes: int = 50,
    partitions: int = 4,
    bootstrap_servers: str | None = None,
    results_dir: Path = RESULTS_DIR,
    log: Callable[[str], None] = print,
) -> BenchResult:
    started = time.perf_counter()
    workdir = results_dir / "work" / NAME
    port = free_port()
    chosen = changed_products(products, changes)
    with Services(workdir, bootstrap_servers) as services:
        broker = {} if services.broker_pid is None else {"broker": services.broker_pid}

        # --- Pricewatch ---
        database_url = services.database()
        settings = services.settings(
            f"{NAME}-pricewatch",
            partitions,
            database_url=database_url,
            email_backend="outbox",
            allowed_private_hosts=f"127.0.0.1:{port}",
            default_check_interval_seconds=interval,
            # Every product lives on one local host: open up per-host politeness, as the
            # baseline has none (with the defaults one host gets 1 request/s).
            host_min_request_interval_seconds=0.0,
            host_max_concurrent_requests=16,
        )
        shop = _start_shop(settings, port, products)
        with roles(shop):
            worker = spawn_worker(settings, "w0")
            members = [
                worker,
                spawn(settings, "scraper", ["scraper"]),
                spawn(settings, "postgres-sink", ["sink", "postgres"]),
                spawn(settings, "email-sink", ["sink", "email"]),
            ]
            with roles(*members):
                for role in members:
                    role.wait_ready()
                log(f"[{NAME}] pricewatch: {products} subscriptions, every {interval:.0f} s")
                produce_subscriptions(
                    settings,
                    [
                        bench_subscription(bench_shop.product_url(port, n), n)
                        for n in range(products)
                    ],
                )
                # The scheduler checks every product at its first tick with them tracked.
                wait_tracked([worker], products, 120 + products / 500)
                sweep_started = time.time()
                pricewatch = _system_run(
                    "pricewatch",
                    settings,
                    port,
                    members,
                    lambda: worker.metric(OBSERVED),
                    sweep_started,
                    products,
                    chosen,
                    interval,
                    CpuMeter({r.name: r.pid for r in members} | broker, database_url),
                    log,
                )

        # --- Baseline: same shop pages (fresh prices), same drops ---
        baseline_db = services.database()
        base_settings = services.settings(
            f"{NAME}-baseline", partitions, database_url=baseline_db, email_backend="outbox"
        )
        create_schema(
            baseline_db,
            [
                (n, bench_shop.product_url(port, n), f"user-{n}@bench.example")
                for n in range(products)
            ],
        )
        shop = _start_shop(base_settings, port, products)
        with roles(shop):
            job = spawn(
                base_settings,
                "polling-baseline",
                ["--interval", str(interval)],
                module="bench.polling_baseline",
            )
            with roles(job):
                sweep_started = time.time()
                job.wait_ready()
                baseline = _system_run(
                    "baseline",
                    base_settings,
                    port,
                    [job],
                    lambda: job.metric("pricewatch_baseline_fetches_total"),
                    sweep_started,
                    products,
                    chosen,
                    interval,
                    CpuMeter({job.name: job.pid}, baseline_db),
                    log,
                )
    rows = _rows(products, interval, pricewatch, baseline)
    return BenchResult(
        name=NAME,
        description=__doc__ or "",
        candidate="Pricewatch: worker + scraper + postgres sink + email sink + broker",
        baseline="bench.polling_baseline: a job every interval, row by row, synchronous email",
        params={
            "products": products,
            "interval_seconds": interval,
            "changes": len(chosen),
            "partitions": partitions,
            "broker": "embedded tansu" if bootstrap_servers is None else bootstrap_servers,
        },
        rows=rows,
        extra={
            "pricewatch": pricewatch,
            "baseline": baseline,
            "incomplete": [
                name
                for name, r in (("pricewatch", pricewatch), ("baseline", baseline))
                if not r["complete"]
            ],
        },
        elapsed_seconds=time.perf_counter() - started,
    )


def _start_shop(settings: Settings, port: int, products: int) -> Role:
    shop = spawn(
        settings, "shop", ["--port", str(port), "--products", str(products)], module="bench.shop"
    )
    shop.wait_ready()
    wait_for_port("127.0.0.1", port, 30)
    return shop


def _rows(
    products: int, interval: float, pricewatch: dict[str, Any], baseline: dict[str, Any]
) -> list[Row]:
    def seconds(result: dict[str, Any], q: float) -> list[float]:
        values = [result["time_to_alert"][f"p{q}_ms"]]
        return [v / 1000 for v in values if v is not None]

    def cpu(result: dict[str, Any]) -> list[float]:
        value = result["cpu_us_per_observation"]
        return [] if value is None else [value]

    def net(result: dict[str, Any]) -> list[float]:
        value = result["cpu_us_per_observation_net_of_idle"]
        return [] if value is None else [value]

    case = f"{products} products, every {interval:.0f} s"
    details = {"pricewatch": pricewatch["time_to_alert"], "baseline": baseline["time_to_alert"]}
    rows = [
        Row(
            case=f"time to alert p50, {case}",
            candidate=Figure(seconds(pricewatch, 50), unit="s", higher_is_better=False),
            baseline=Figure(seconds(baseline, 50), unit="s", higher_is_better=False),
            details=details,
        ),
        Row(
            case=f"time to alert p95, {case}",
            candidate=Figure(seconds(pricewatch, 95), unit="s", higher_is_better=False),
            baseline=Figure(seconds(baseline, 95), unit="s", higher_is_better=False),
        ),
        Row(
            case=f"CPU per observation, {case}",
            candidate=Figure(cpu(pricewatch), unit="us/obs", higher_is_better=False),
            baseline=Figure(cpu(baseline), unit="us/obs", higher_is_better=False),
            notes="all processes of the system and its PostgreSQL backends; shop excluded",
            details={"pricewatch": pricewatch["cpu"], "baseline": baseline["cpu"]},
        ),
    ]
    if net(pricewatch) and net(baseline):
        rows.append(
            Row(
                case=f"CPU per observation net of idle, {case}",
                candidate=Figure(net(pricewatch), unit="us/obs", higher_is_better=False),
                baseline=Figure(net(baseline), unit="us/obs", higher_is_better=False),
                notes="minus each system's CPU while up and idle (measured before the drops)",
                details={
                    "pricewatch_idle_cpu_percent": pricewatch["idle_cpu_percent"],
                    "baseline_idle_cpu_percent": baseline["idle_cpu_percent"],
                },
            )
        )
    rows.append(
        Row(
            case=f"first full sweep, {case}",
            candidate=Figure([pricewatch["first_sweep_seconds"]], "s", higher_is_better=False),
            baseline=Figure([baseline["first_sweep_seconds"]], "s", higher_is_better=False),
        )
    )
    return rows
