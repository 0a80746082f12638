"""The PostgreSQL price sink: observations written per second into ``products`` and ``prices``.

Candidate: ``PriceHistorySink.write_blocking`` on batches as the consumer hands them over
(``max_batch`` 500): one transaction per batch, two set-based statements per batch (the
rows as one JSON parameter) when no product is observed twice in it.
Baseline: the naive sink: one observation at a time (the same statements), a commit per
observation.

Both write the same realistic stream (``bench/workload.py``) into empty tables of a
throwaway database on a real server (``PRICEWATCH_BENCH_DATABASE_URL``, else
``postgresql://postgres@127.0.0.1:5432/postgres``), created and dropped by the run.
"""

from __future__ import annotations

import gc
import os
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import sqlalchemy
from psycopg import sql
from sqlalchemy import text

from launcher.embedded.postgres import with_database
from pricewatch.contract.records import PriceObservation
from pricewatch.db.engine import make_engine, upgrade
from sinks.postgres.prices import PriceHistorySink

from . import workload
from .report import BenchResult, Figure, Row

NAME = "postgres_sink"
AIM_ROWS_PER_SECOND = 50_000.0
DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def server_url() -> str:
    return os.environ.get("PRICEWATCH_BENCH_DATABASE_URL") or DEFAULT_SERVER_URL


@contextmanager
def throwaway_database(server: str) -> Iterator[str]:
    """A new, migrated database on ``server``; dropped afterwards."""
    name = f"pw_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = with_database(server, name)
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(server, autocommit=True, connect_timeout=10) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _empty(engine: sqlalchemy.Engine) -> None:
    # No ANALYZE here: statistics of empty tables make the planner choose sequential scans
    # that a growing table then pays for on every row until autovacuum analyzes it again.
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE prices, products"))


def _counts(engine: sqlalchemy.Engine) -> tuple[int, int]:
    with engine.connect() as connection:
        products = connection.execute(text("SELECT count(*) FROM products")).scalar_one()
        prices = connection.execute(text("SELECT count(*) FROM prices")).scalar_one()
    return int(products), int(prices)


def run_candidate(
    engine: sqlalchemy.Engine, stream: list[PriceObservation], batch_size: int
) -> None:
    sink = PriceHistorySink(engine)
    for start in range(0, len(stream), batch_size):
        sink.write_blocking(stream[start : start + batch_size])


def run_baseline(
    engine: sqlalchemy.Engine, stream: list[PriceObservation], batch_size: int
) -> None:
    """Row by row: the sink's statements for one observation, then a commit."""
    sink = PriceHistorySink(engine)
    for observation in stream:
        sink.write_blocking([observation])


def _rates(
    fn: Callable[[sqlalchemy.Engine, list[PriceObservation], int], None],
    engine: sqlalchemy.Engine,
    stream: list[PriceObservation],
    batch_size: int,
    repeats: int,
    log: Callable[[str], None],
    label: str,
) -> tuple[Figure, tuple[int, int]]:
    samples: list[float] = []
    counts = (0, 0)
    for n in range(repeats):
        _empty(engine)
        gc.collect()
        start = time.perf_counter()
        fn(engine, stream, batch_size)
        elapsed = time.perf_counter() - start
        samples.append(len(stream) / elapsed)
        counts = _counts(engine)
        log(f"[{NAME}] {label} pass {n + 1}/{repeats}: {samples[-1]:,.0f} rows/s")
    return Figure(samples, unit="rows/s"), counts


def _server_settings(engine: sqlalchemy.Engine) -> dict[str, Any]:
    with engine.connect() as connection:
        return {
            name: connection.execute(text(f"SHOW {name}")).scalar_one()
            for name in ("server_version", "synchronous_commit", "fsync", "shared_buffers")
        }


def run(
    products: int = 10_000,
    observations: int = 200_000,
    batch_size: int = 500,
    repeats: int = 3,
    baseline_observations: int = 20_000,
    baseline_repeats: int = 1,
    seed: int = 1,
    log: Callable[[str], None] = print,
) -> BenchResult:
    started = time.perf_counter()
    log(f"[{NAME}] building a realistic stream: {products} products, {observations} obs")
    stream = workload.realistic(products, observations, seed)
    # The baseline is slow: it writes the first observations of the same stream.
    baseline_stream = stream[:baseline_observations]
    server = server_url()
    with throwaway_database(server) as url:
        engine = make_engine(url)
        try:
            server_settings = _server_settings(engine)
            log(f"[{NAME}] candidate: {repeats} passes of {len(stream)} observations")
            candidate, (products_written, prices_written) = _rates(
                run_candidate, engine, stream, batch_size, repeats, log, "candidate"
            )
            log(
                f"[{NAME}] baseline: {baseline_repeats} passes of "
                f"{len(baseline_stream)} observations"
            )
            baseline, base_counts = _rates(
                run_baseline, engine, baseline_stream, batch_size, baseline_repeats, log, "baseline"
            )
            # The candidate on the baseline's slice too: the same rows, side by side.
            same_slice, slice_counts = _rates(
                run_candidate, engine, baseline_stream, batch_size, repeats, log, "candidate-slice"
            )
        finally:
            engine.dispose()
    assert base_counts == slice_counts, "candidate and baseline wrote different rows"
    ok = sum(1 for o in stream if o.price is not None)
    rows = [
        Row(
            case=f"realistic {products // 1000}k products, {len(stream) // 1000}k obs",
            candidate=candidate,
            baseline=baseline,
            aim=AIM_ROWS_PER_SECOND,
            notes=f"batches of {batch_size}; baseline on the first {len(baseline_stream)} obs",
            details={
                "products_rows": products_written,
                "prices_rows": prices_written,
                "ok_observations": ok,
                "candidate_us_per_row_median": 1e6 / statistics.median(candidate.samples),
                "baseline_us_per_row_median": 1e6 / statistics.median(baseline.samples),
            },
        ),
        Row(
            case=f"same {len(baseline_stream) // 1000}k obs as the baseline",
            candidate=same_slice,
            baseline=baseline,
            aim=AIM_ROWS_PER_SECOND,
            notes="both on the same slice (mostly the first sweep: inserts)",
            details={"products_rows": slice_counts[0], "prices_rows": slice_counts[1]},
        ),
    ]
    return BenchResult(
        name=NAME,
        description=__doc__ or "",
        candidate=f"PriceHistorySink: set-based statements, one transaction per {batch_size} obs",
        baseline="the same statements row by row, a commit per observation",
        params={
            "products": products,
            "observations": observations,
            "batch_size": batch_size,
            "repeats": repeats,
            "baseline_observations": len(baseline_stream),
            "baseline_repeats": baseline_repeats,
            "seed": seed,
            "server": server.rsplit("@", 1)[-1],  # no credentials in the JSON
            "server_settings": server_settings,
            "mix": workload.Mix().__dict__,
        },
        rows=rows,
        elapsed_seconds=time.perf_counter() - started,
    )
