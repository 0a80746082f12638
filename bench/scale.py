"""The worker's cost as tracked products grow: CPU per observation and memory per product.

For each size N (default 1k, 10k, 100k products), a fresh worker (``pricewatch worker``,
detector, matcher and scheduler) on fresh topics:

1. Ready, then its RSS is read (``rss_ready``);
2. N verified subscriptions (one per product, a target price far below every price, so
   the matcher keeps state for every product and alerts rarely); the harness waits until
   the scheduler tracks all N (``rss_tracked``);
3. ``sweeps`` x N observations of the realistic stream (``bench/workload.py``: every
   product once per sweep; the first sweep learns every product, later ones mostly repeat
   prices, ~10 % change something), produced while the worker consumes;
4. the rate and the CPU seconds of the worker and of the broker from the first counted
   observation to the last, and the RSS at the end (``rss_end``).

Reported: CPU microseconds per observation (worker; worker + broker), and the worker's
memory per tracked product: (rss_end - rss_ready) / N, plus the slope between the smallest
and the largest size (what one more product costs, the fixed part removed).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from pricewatch.contract.topics import PRICE_OBSERVATIONS

from . import workload
from .pipeline import (
    OBSERVED,
    Services,
    bench_subscription,
    produce_records,
    produce_subscriptions,
    roles,
    rss_bytes,
    spawn_worker,
    wait_tracked,
)
from .report import RESULTS_DIR, BenchResult
from .stages import _observation_records, measure

NAME = "scale"
MB = 1024 * 1024


def run(
    sizes: Sequence[int] = (1_000, 10_000, 100_000),
    sweeps: int = 3,
    partitions: int = 4,
    poll_interval: float = 0.2,
    bootstrap_servers: str | None = None,
    results_dir: Path = RESULTS_DIR,
    log: Callable[[str], None] = print,
) -> BenchResult:
    import asyncio

    started = time.perf_counter()
    workdir = results_dir / "work" / NAME
    runs: list[dict[str, Any]] = []
    with Services(workdir, bootstrap_servers) as services:
        broker = {} if services.broker_pid is None else {"broker": services.broker_pid}
        for size in sizes:
            settings = services.settings(f"{NAME}-{size}", partitions)
            worker = spawn_worker(settings, "w0")
            with roles(worker):
                worker.wait_ready()
                time.sleep(1.0)  # let start-up allocations settle before the first reading
                rss_ready = rss_bytes(worker.pid) or 0
                catalogue = workload.realistic(size, size)
                log(f"[{NAME}] {size} products: subscriptions")
                produce_subscriptions(
                    settings,
                    [
                        bench_subscription(o.url, n, any_drop=False, target_price=Decimal("1"))
                        for n, o in enumerate(catalogue)
                    ],
                )
                wait_tracked([worker], size, 120 + size / 200)
                rss_tracked = rss_bytes(worker.pid) or 0
                observations = size * sweeps
                log(f"[{NAME}] {size} products: {observations} observations")
                records = _observation_records(size, observations, partitions)
                asyncio.run(produce_records(settings, settings.topic(PRICE_OBSERVATIONS), records))
                timeout = 120 + observations / 300
                result = measure([worker], OBSERVED, observations, timeout, poll_interval, broker)
                rss_end = rss_bytes(worker.pid) or 0
            counted = result["counted_in_window"] or 1
            cpu = result["cpu_seconds"]
            entry = {
                "products": size,
                "observations": observations,
                "completed": result["completed"],
                "rate": result["rate"],
                "worker_us_per_obs": 1e6 * cpu.get(worker.name, 0.0) / counted,
                "worker_and_broker_us_per_obs": 1e6
                * (cpu.get(worker.name, 0.0) + cpu.get("broker", 0.0))
                / counted,
                "rss_ready": rss_ready,
                "rss_tracked": rss_tracked,
                "rss_end": rss_end,
                "rss_bytes_per_product": (rss_end - rss_ready) / size,
                "measure": result,
            }
            runs.append(entry)
            log(
                f"  {size}: {entry['rate']:,.0f} obs/s, worker {entry['worker_us_per_obs']:.0f} "
                f"us/obs, RSS {rss_ready / MB:.0f} -> {rss_end / MB:.0f} MB "
                f"({entry['rss_bytes_per_product']:,.0f} B/product)"
                + ("" if entry["completed"] else " INCOMPLETE")
            )
    slope = None
    if len(runs) >= 2 and runs[-1]["products"] != runs[0]["products"]:
        slope = (runs[-1]["rss_end"] - runs[0]["rss_end"]) / (
            runs[-1]["products"] - runs[0]["products"]
        )
    return BenchResult(
        name=NAME,
        description=__doc__ or "",
        candidate="pricewatch worker (detector, matcher, scheduler), one process",
        baseline="none (a curve over sizes)",
        params={
            "sizes": list(sizes),
            "sweeps": sweeps,
            "partitions": partitions,
            "broker": "embedded tansu" if bootstrap_servers is None else bootstrap_servers,
        },
        extra={
            "sizes": runs,
            "incomplete": [str(r["products"]) for r in runs if not r["completed"]],
            "rss_slope_bytes_per_product": slope,
            "tables": [_table(runs, slope)],
        },
        elapsed_seconds=time.perf_counter() - started,
    )


def _table(runs: list[dict[str, Any]], slope: float | None) -> dict[str, Any]:
    rows = [
        [
            f"{r['products']:,}",
            f"{r['observations']:,}",
            f"{r['rate']:,.0f}" + ("" if r["completed"] else " (INCOMPLETE)"),
            f"{r['worker_us_per_obs']:,.0f}",
            f"{r['worker_and_broker_us_per_obs']:,.0f}",
            f"{r['rss_ready'] / MB:.0f} / {r['rss_tracked'] / MB:.0f} / {r['rss_end'] / MB:.0f}",
            f"{r['rss_bytes_per_product']:,.0f}",
        ]
        for r in runs
    ]
    title = "scale: worker cost vs tracked products"
    if slope is not None:
        title += f" (RSS slope between sizes: {slope:,.0f} B per product)"
    return {
        "title": title,
        "columns": [
            "products",
            "observations",
            "obs/s",
            "worker us/obs",
            "+broker us/obs",
            "RSS MB ready/tracked/end",
            "RSS B/product",
        ],
        "rows": rows,
    }
