"""Shared harness of the pipeline benchmarks (e2e, stages, time_to_alert, scale).

Real processes, as deployed: every role runs as ``python -m launcher.cli <role>`` with the
``PRICEWATCH_*`` environment that ``launcher.stack.Stack`` builds, its own Prometheus
port, and a log in the run's work directory. The harness only feeds topics, reads topics,
the outbox and ``/metrics``, and reads CPU time and memory from ``/proc``.

Services: the embedded tansu broker (or ``--bootstrap-servers``); PostgreSQL at
``PRICEWATCH_BENCH_DATABASE_URL``, else 127.0.0.1:5432 when it answers, else a throwaway
embedded server. Every benchmark run gets a throwaway database, dropped afterwards.

The pure parts (percentiles, lag analysis, rates) are at the top and unit-tested.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

from launcher.embedded.broker import EmbeddedBroker
from launcher.embedded.postgres import start_embedded_postgres, with_database
from launcher.processes import Process, free_port
from launcher.stack import Stack
from pricewatch.contract.records import Subscription
from pricewatch.contract.topics import SUBSCRIPTIONS
from pricewatch.ids import partition_for, product_id_for, subscription_id_for
from pricewatch.kafka import create_topics, make_producer, wait_for_broker
from pricewatch.settings import Settings

from .detector_agent import cpu_seconds, metrics_text, scrape

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
READY_MARKER = "Worker]: Ready"  # Faust logs it once partitions are assigned and recovered
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
OBSERVED = "pricewatch_stream_observations_total"
TRACKED = "pricewatch_scheduler_tracked_products"
BACKEND = "database-backend-"  # CpuMeter names of PostgreSQL backend processes


# --- Pure parts ---------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100), nearest-rank: a value that was actually measured."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def latency_summary(seconds: Sequence[float], expected: int | None = None) -> dict[str, Any]:
    """p50/p95/p99/max in milliseconds, and how many were measured (of how many expected)."""
    ms = [s * 1000 for s in seconds]
    return {
        "count": len(ms),
        "expected": expected,
        "p50_ms": percentile(ms, 50),
        "p95_ms": percentile(ms, 95),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms) if ms else None,
    }


@dataclass(frozen=True)
class LagVerdict:
    """Did the consumer keep up with the offered load?"""

    offered_per_second: float
    produced: int
    processed_in_window: int
    final_lag: int  # produced - processed when the load stopped
    lag_slope_per_second: float  # least-squares slope of the lag over the second half
    held: bool

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def lag_verdict(
    samples: Sequence[tuple[float, float, float]], offered_per_second: float
) -> LagVerdict:
    """From (seconds since the load started, produced, processed) samples taken while the
    load ran: the load is *held* when the lag at the end is under one second of load (or
    100 messages) and the lag did not grow over the second half (slope under 5 % of the
    offered rate). A lag that grows means the consumer falls further behind for as long as
    the load lasts, whatever its size at the end."""
    if not samples:
        return LagVerdict(offered_per_second, 0, 0, 0, 0.0, False)
    produced = int(samples[-1][1])
    processed = int(samples[-1][2] - samples[0][2])
    final_lag = max(0, int(samples[-1][1] - samples[-1][2]))
    half = [s for s in samples if s[0] >= samples[-1][0] / 2]
    slope = _slope([(t, p - c) for t, p, c in half]) if len(half) >= 2 else 0.0
    held = final_lag <= max(offered_per_second, 100) and slope <= 0.05 * offered_per_second
    return LagVerdict(offered_per_second, produced, processed, final_lag, slope, held)


def _slope(points: Sequence[tuple[float, float]]) -> float:
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / var


def rate_between(samples: Sequence[tuple[float, float]], target: float) -> tuple[float, float]:
    """(rate, seconds) from the first sample whose count moved to the moment the count
    reached ``target`` (interpolated between the two polls around it)."""
    moving = [i for i, (_, c) in enumerate(samples) if c > 0]
    if not moving:
        return 0.0, 0.0
    t0, c0 = samples[moving[0]]
    for i in range(moving[0] + 1, len(samples)):
        t1, c1 = samples[i]
        if c1 >= target:
            tp, cp = samples[i - 1]
            done = t1 if c1 == cp else tp + (t1 - tp) * (target - cp) / (c1 - cp)
            window = max(done - t0, 1e-9)
            return (target - c0) / window, window
    t1, c1 = samples[-1]
    window = max(t1 - t0, 1e-9)
    return (c1 - c0) / window, window


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def parse_ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


# --- Process measurements (Linux /proc) ---------------------------------------------------


def rss_bytes(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return None


def database_backend_pids(url: str) -> list[int]:
    """PostgreSQL server processes serving connections to ``url``'s database, when the server
    runs on this machine (their CPU time is then readable in /proc), else none."""
    host = urlsplit(url).hostname or ""
    if host not in ("127.0.0.1", "localhost", "::1", ""):
        return []
    database = urlsplit(url).path.lstrip("/")
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            ).fetchall()
    except psycopg.Error:
        return []
    return [int(pid) for (pid,) in rows]


@dataclass
class CpuMeter:
    """CPU seconds used by a set of processes (and a database's backends) over a window.

    Backends that connect during the window count from zero; one that disconnects before
    the end is missed (the sinks and the baseline keep their connections open)."""

    pids: dict[str, int]
    database_url: str | None = None
    _start: dict[str, float] = field(default_factory=dict)
    _started_at: float = 0.0

    def _read(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, pid in self.pids.items():
            value = cpu_seconds(pid)
            if value is not None:
                out[name] = value
        if self.database_url:
            for pid in database_backend_pids(self.database_url):
                value = cpu_seconds(pid)
                if value is not None:
                    out[f"{BACKEND}{pid}"] = value
        return out

    def start(self) -> CpuMeter:
        self._start = self._read()
        self._started_at = time.perf_counter()
        return self

    def stop(self) -> dict[str, Any]:
        """Per process CPU seconds, the total, the database's share and the wall time."""
        end = self._read()
        used = {name: end[name] - self._start.get(name, 0.0) for name in end}
        database = sum(v for k, v in used.items() if k.startswith(BACKEND))
        processes = {k: round(v, 3) for k, v in used.items() if not k.startswith(BACKEND)}
        return {
            "wall_seconds": time.perf_counter() - self._started_at,
            "processes": processes,
            "database_backends": round(database, 3),
            "total": sum(used.values()),
        }


# --- Services -----------------------------------------------------------------------------


def database_server_url() -> tuple[str, Any]:
    """(server URL, embedded handle or None): the configured or local server, else embedded."""
    configured = os.environ.get("PRICEWATCH_BENCH_DATABASE_URL")
    if configured:
        return configured, None
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            pass
        with psycopg.connect(DEFAULT_SERVER_URL, connect_timeout=3):
            return DEFAULT_SERVER_URL, None
    except (OSError, psycopg.Error):
        pass
    data_dir = ROOT / "bench" / "results" / "work" / "embedded-postgres"
    handle, url = start_embedded_postgres(data_dir, throwaway=True)
    return url, handle


@dataclass
class Services:
    """Broker and database server for one benchmark; a throwaway database per ``database()``."""

    workdir: Path
    bootstrap_servers: str | None = None
    # A given bootstrap_servers is a real cluster unless this says it is a tansu (tests).
    kafka_embedded: bool = False
    broker: EmbeddedBroker | None = None
    server_url: str = ""
    postgres: Any = None
    databases: list[str] = field(default_factory=list)

    def __enter__(self) -> Services:
        # The last run's logs and worker stores only: each benchmark has its own workdir.
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "logs").mkdir(exist_ok=True)
        if self.bootstrap_servers is None:
            self.broker = EmbeddedBroker(log_path=self.workdir / "logs" / "broker.log").start()
            self.bootstrap_servers = self.broker.bootstrap_servers
        self.server_url, self.postgres = database_server_url()
        return self

    def __exit__(self, *exc: object) -> None:
        for name in self.databases:
            try:
                with psycopg.connect(self.server_url, autocommit=True, connect_timeout=10) as c:
                    c.execute(
                        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                            sql.Identifier(name)
                        )
                    )
            except psycopg.Error:
                pass
        if self.broker is not None:
            self.broker.stop()
        if self.postgres is not None:
            self.postgres.cleanup()

    @property
    def embedded(self) -> bool:
        return self.broker is not None or self.kafka_embedded

    @property
    def broker_pid(self) -> int | None:
        process = None if self.broker is None else self.broker.process
        return None if process is None else process.pid

    def database(self) -> str:
        """A new, migrated database; dropped when the services stop."""
        from pricewatch.db.engine import upgrade

        name = f"pw_bench_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.server_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.databases.append(name)
        url = with_database(self.server_url, name)
        upgrade(url)
        return url

    def settings(self, name: str, partitions: int, **overrides: Any) -> Settings:
        """Settings isolating one run: its own topics, consumer groups and data dir."""
        run = f"{name}-{uuid.uuid4().hex[:6]}"
        values: dict[str, Any] = {
            "kafka_bootstrap_servers": self.bootstrap_servers,
            "kafka_embedded": self.embedded,
            "topic_partitions": partitions,
            "app_id": run,
            "topic_prefix": f"{run}-",
            "data_dir": self.workdir / run,
            "log_level": "INFO",
            # The scheduler publishes a scrape request per tracked product when due; the
            # benchmarks that feed observations themselves keep it to one round.
            "default_check_interval_seconds": 1e6,
        }
        values.update(overrides)
        settings = Settings(**values)
        asyncio.run(_create_topics(settings))
        return settings


async def _create_topics(settings: Settings) -> None:
    await wait_for_broker(settings.bootstrap())
    await create_topics(settings)


# --- Role processes -----------------------------------------------------------------------


@dataclass
class Role:
    """One ``pricewatch`` process (or any module) with a /metrics port and a log file."""

    process: Process
    metrics_port: int

    @property
    def name(self) -> str:
        return self.process.name

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def log_path(self) -> Path:
        assert self.process.log_path is not None
        return self.process.log_path

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def metric(self, name: str) -> float | None:
        values = scrape(self.metrics_url, (name,))
        return None if values is None else values[name]

    def check_alive(self) -> None:
        if not self.process.running:
            tail = self.process.log_tail(3000)
            raise RuntimeError(f"{self.name} exited ({self.process.returncode}):\n{tail}")

    def log_text(self) -> str:
        return self.process.log_text(since_start=False)

    def wait_ready(self, timeout: float = 90.0) -> None:
        """A worker: until Faust says Ready. Anything else: until /metrics answers."""
        if self.name.startswith("worker"):
            self.process.wait_for_log(READY_MARKER, timeout)
        else:
            self.process.wait_ready(
                lambda: scrape(self.metrics_url, ()) is not None, timeout, "serving /metrics"
            )

    def stop(self, timeout: float = 20.0) -> None:
        self.process.stop(timeout)


def spawn(settings: Settings, name: str, args: list[str], module: str = "launcher.cli") -> Role:
    """Start ``python -m <module> <args> --metrics-port P`` with the settings' environment."""
    port = free_port()
    logs = settings.data_dir.parent / "logs"
    process = Process(
        name,
        [sys.executable, "-m", module, *args, "--metrics-port", str(port)],
        logs / f"{settings.app_id}-{name}.log",
        env=Stack(settings=settings).child_env(),
        cwd=ROOT,
    )
    return Role(process.start(), port)


def spawn_worker(settings: Settings, worker_id: str) -> Role:
    return spawn(settings, f"worker-{worker_id}", ["worker", "--worker-id", worker_id])


@contextmanager
def roles(*started: Role) -> Iterator[list[Role]]:
    """Stop every role on the way out, in reverse order."""
    running = list(started)
    try:
        yield running
    finally:
        for role in reversed(running):
            role.stop()


def metric_sum(roles_: Iterable[Role], name: str) -> float | None:
    """A metric summed over processes; None while any of them does not answer."""
    total = 0.0
    for role in roles_:
        value = role.metric(name)
        if value is None:
            return None
        total += value
    return total


def wait_until(
    condition: Callable[[], bool],
    timeout: float,
    what: str,
    alive: Sequence[Role] = (),
    interval: float = 0.2,
) -> float:
    """Poll ``condition`` until true; seconds waited. Raises TimeoutError with ``what``."""
    start = time.monotonic()
    while not condition():
        for role in alive:
            role.check_alive()
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
    return time.monotonic() - start


# --- Feeding topics -----------------------------------------------------------------------


def bench_subscription(
    url: str, n: int, *, any_drop: bool = True, target_price: Decimal | None = None
) -> Subscription:
    """A subscription of a benchmark's subscriber ``n`` (one per product: ``user-n@...``)."""
    product_id = product_id_for(url)
    email = f"user-{n}@bench.example"
    return Subscription(
        subscription_id=subscription_id_for(email, product_id),
        email=email,
        product_id=product_id,
        url=url,
        target_price=target_price,
        notify_any_drop=any_drop,
        created_at=datetime.now(UTC),
    )


def subscription_json(subscription: Subscription) -> bytes:
    """The wire JSON plus ``verified: true``: subscriptions confirmed by their owner (a
    field today's code ignores and a verifying matcher requires)."""
    data = json.loads(subscription.model_dump_json())
    data["verified"] = True
    return json.dumps(data).encode()


async def produce_records(
    settings: Settings,
    topic: str,
    records: Iterable[tuple[bytes, bytes, int | None]],
    linger_ms: int = 20,
) -> float:
    """Produce (key, value, partition or None) as fast as the broker takes them; msg/s."""
    producer = make_producer(settings, linger_ms=linger_ms, max_batch_size=512 * 1024)
    await producer.start()
    count = 0
    try:
        start = time.perf_counter()
        pending: list[asyncio.Future[Any]] = []
        for key, value, partition in records:
            pending.append(await producer.send(topic, value=value, key=key, partition=partition))
            count += 1
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        return count / max(time.perf_counter() - start, 1e-9)
    finally:
        await producer.stop()


def produce_subscriptions(settings: Settings, subscriptions: Sequence[Subscription]) -> float:
    partitions = settings.topic_partitions
    records = [
        (s.subscription_id.encode(), subscription_json(s), partition_for(s.product_id, partitions))
        for s in subscriptions
    ]
    return asyncio.run(produce_records(settings, settings.topic(SUBSCRIPTIONS), records))


def wait_tracked(worker_roles: Sequence[Role], products: int, timeout: float) -> float:
    """Until the workers' schedulers see ``products`` products with an active subscription:
    the subscriptions are in the matcher's table, so measurement may start."""

    def tracked() -> bool:
        value = metric_sum(worker_roles, TRACKED)
        return value is not None and value >= products

    return wait_until(tracked, timeout, f"{products} tracked products", alive=worker_roles)


def outbox_times(outbox: Path) -> dict[str, float]:
    """Idempotency key -> the time its email was handed to the outbox backend (file mtime)."""
    if not outbox.exists():
        return {}
    return {p.name[: -len(".eml")]: p.stat().st_mtime for p in outbox.glob("*.eml")}


Histograms = dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, Any]]


def scrape_histograms(url: str, names: tuple[str, ...]) -> Histograms:
    """The named histograms at ``url``, by (name, labels without ``le``): cumulative bucket
    counts by upper bound, ``sum`` and ``count``. Empty when the endpoint does not answer."""
    from prometheus_client.parser import text_string_to_metric_families

    text = metrics_text(url)
    if text is None:
        return {}
    out: Histograms = {}
    for family in text_string_to_metric_families(text):
        if family.name not in names:
            continue
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
            entry = out.setdefault((family.name, labels), {"buckets": {}, "sum": 0.0, "count": 0.0})
            if sample.name.endswith("_bucket"):
                entry["buckets"][float(sample.labels["le"])] = sample.value
            elif sample.name.endswith("_sum"):
                entry["sum"] = sample.value
            elif sample.name.endswith("_count"):
                entry["count"] = sample.value
    return out


def histogram_delta(after: Histograms, before: Histograms) -> Histograms:
    """What each histogram gained between two scrapes."""
    out: Histograms = {}
    for key, entry in after.items():
        old = before.get(key, {"buckets": {}, "sum": 0.0, "count": 0.0})
        out[key] = {
            "buckets": {le: n - old["buckets"].get(le, 0.0) for le, n in entry["buckets"].items()},
            "sum": entry["sum"] - old["sum"],
            "count": entry["count"] - old["count"],
        }
    return out


def histogram_quantile(entry: dict[str, Any], q: float) -> float | None:
    """Prometheus's estimate: linear within the bucket the quantile falls in."""
    count = entry["count"]
    if count <= 0:
        return None
    rank = q * count
    lower_bound, lower_count = 0.0, 0.0
    for le in sorted(entry["buckets"]):
        n = entry["buckets"][le]
        if n >= rank:
            if math.isinf(le):
                return lower_bound
            share = (rank - lower_count) / max(n - lower_count, 1e-12)
            return lower_bound + (le - lower_bound) * share
        lower_bound, lower_count = le, n
    return lower_bound
