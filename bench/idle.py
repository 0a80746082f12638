"""What the demo stack costs at rest, under a light load, and how fast a drop still alerts.

The stack ``pricewatch demo`` runs (``launcher.stack.Stack`` on the embedded broker and an
embedded PostgreSQL, the demo's settings: one product checked every 5 s), watching one
product of the demo shop for one verified subscriber. Measured, one after the other:

- **at rest**: CPU (percent of one core) and RSS of every process of the stack (the
  broker, the worker, the scraper, the sinks, the API, the demo shop), summed over
  ``rest_seconds``; PostgreSQL (its server and backends) is reported apart;
- **light load**: the same while the harness publishes ``light_rate`` observations a
  second straight to ``price-observations`` (unchanged prices of other products: the
  worker and the PostgreSQL sink work, nothing alerts);
- **drop -> email**: the demo product's price is moved below the subscriber's target at
  the shop and back ``flips`` times; each alert's latency is the email's hand-over to the
  outbox (file mtime) minus the observation's ``observed_at`` (the notification record
  carries it), i.e. from the moment the scraper saw the change, after a quiet spell.

Candidate: the demo's layout (a worker, and one process for everything else: ``pricewatch
together``) with the adaptive fetch wait. Baseline, same run: one process per role (as
docker-compose deploys them) with the fixed 20 ms fetch wait every consumer had before
(the batching agents' idle timer cannot be switched back, so the baseline is kinder than
the old code was).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import re
import shutil
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import psutil
import psycopg

from pricewatch.contract.topics import PRICE_OBSERVATIONS
from pricewatch.ids import partition_for, product_id_for
from pricewatch.settings import Settings

from .detector_agent import scrape
from .e2e import Product, Seen, _consume_in_thread, observation_json
from .pipeline import latency_summary, outbox_times, wait_until
from .report import RESULTS_DIR, BenchResult, Figure, Row

NAME = "idle"
AIM_CPU_PERCENT = 5.0
AIM_RSS_MB = 300.0
SAMPLE_SECONDS = 1.0
FETCHES = "pricewatch_kafka_fetches_total"


@dataclass(frozen=True)
class Variant:
    name: str
    together: bool
    fetch_wait_ms: tuple[int | None, int | None]  # (min, max); None: the default
    describe: str


CANDIDATE = Variant(
    "candidate",
    True,
    (None, None),
    "worker + one process (scraper, sinks, API, demo shop), adaptive fetch wait",
)
BASELINE = Variant(
    "baseline",
    False,
    (20, 20),
    "one process per role, fixed 20 ms fetch wait (the wait before this change)",
)


# --- measuring processes ----------------------------------------------------------------------


def _kind(process: psutil.Process) -> str:
    """'postgres' for the database's processes, else 'stack'."""
    try:
        name = process.name()
        exe = process.exe()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "gone"
    return "postgres" if name.startswith("postgres") or "postgres" in Path(exe).name else "stack"


@dataclass
class StackMeter:
    """CPU and RSS of this harness's descendants (the stack), sampled every second from a
    thread: CPU as deltas of each process's CPU time (processes that come and go, such as
    PostgreSQL backends, count while they are seen), RSS as the mean of the samples."""

    names: dict[int, str]
    # The embedded PostgreSQL server detaches from its parent (pg_ctl): found by its pid file.
    postgres_pids: list[int] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)
    rss_samples: dict[str, list[int]] = field(default_factory=dict)
    _last: dict[int, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _began: float = 0.0
    wall: float = 0.0

    def _label(self, process: psutil.Process, kind: str) -> str:
        if kind == "postgres":
            return "postgresql"
        label = self.names.get(process.pid)
        if label is None:
            try:
                label = "broker" if "tansu" in process.name() else f"pid {process.pid}"
            except psutil.NoSuchProcess:
                label = f"pid {process.pid}"
        return label

    def _sample(self, first: bool = False) -> None:
        rss: dict[str, int] = {}
        for process in self._processes():
            kind = _kind(process)
            if kind == "gone":
                continue
            try:
                times = process.cpu_times()
                used = times.user + times.system
                resident = process.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            label = self._label(process, kind)
            previous = self._last.get(process.pid)
            self._last[process.pid] = used
            if not first and previous is not None:
                self.cpu[label] = self.cpu.get(label, 0.0) + used - previous
            elif not first:
                self.cpu.setdefault(label, 0.0)
            rss[label] = rss.get(label, 0) + resident
        if not first:
            for label, value in rss.items():
                self.rss_samples.setdefault(label, []).append(value)

    def _processes(self) -> list[psutil.Process]:
        found = {p.pid: p for p in psutil.Process().children(recursive=True)}
        for pid in self.postgres_pids:
            try:
                root = psutil.Process(pid)
                found.update({p.pid: p for p in [root, *root.children(recursive=True)]})
            except psutil.NoSuchProcess:
                continue
        return list(found.values())

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self._sample()

    def start(self) -> StackMeter:
        self._sample(first=True)
        self._began = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        self.wall = time.monotonic() - self._began
        per_process = {
            label: {
                "cpu_percent": 100 * used / self.wall,
                "rss_mb": _mean(self.rss_samples.get(label, [])) / 2**20,
            }
            for label, used in sorted(self.cpu.items())
        }
        stack = {k: v for k, v in per_process.items() if k != "postgresql"}
        database = per_process.get("postgresql", {"cpu_percent": 0.0, "rss_mb": 0.0})
        return {
            "wall_seconds": self.wall,
            "processes": per_process,
            "stack_cpu_percent": sum(v["cpu_percent"] for v in stack.values()),
            "stack_rss_mb": sum(v["rss_mb"] for v in stack.values()),
            "postgresql_cpu_percent": database["cpu_percent"],
            "postgresql_rss_mb": database["rss_mb"],
        }


def postmaster_pids(data_dir: Path) -> list[int]:
    """The embedded PostgreSQL server's pid, from ``postmaster.pid`` under ``data_dir``."""
    pids = []
    for pid_file in data_dir.glob("postgres/**/postmaster.pid"):
        try:
            pids.append(int(pid_file.read_text().split()[0]))
        except (OSError, IndexError, ValueError):
            continue
    return pids


def fetches_made(urls: dict[str, str]) -> float:
    """Fetch requests the stack's consumers have made so far (every process with consumers
    serves its own /metrics; the API's port serves the together process's registry too)."""
    total = 0.0
    for name, url in urls.items():
        if name == "api":
            continue
        values = scrape(url, (FETCHES,))
        total += 0.0 if values is None else values[FETCHES]
    return total


def _mean(values: list[int]) -> float:
    return sum(values) / len(values) if values else 0.0


# --- driving the demo ---------------------------------------------------------------------------


def _http(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _emails(outbox: Path) -> list[email.message.EmailMessage]:
    if not outbox.exists():
        return []
    return [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
        for p in sorted(outbox.glob("*.eml"))
    ]


def _latest_price(database_url: str, product_url: str, after: float) -> Decimal | None:
    """The price of the product's newest observation made after ``after`` (epoch s)."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT pr.price FROM prices pr JOIN products p USING (product_id)"
            " WHERE p.url = %s AND pr.observed_at > to_timestamp(%s)"
            " ORDER BY pr.observed_at DESC LIMIT 1",
            (product_url, after),
        ).fetchone()
    return None if row is None else Decimal(row[0])


@dataclass
class Demo:
    """The one watched product of the demo shop and its verified subscriber."""

    settings: Settings
    slug: str
    url: str
    high: Decimal
    low: Decimal

    @property
    def shop(self) -> str:
        return f"http://{self.settings.api_host}:{self.settings.demo_shop_port}"

    def set_price(self, price: Decimal) -> None:
        status, body = _http(
            "POST", f"{self.shop}/admin/products/{self.slug}", {"price": str(price)}
        )
        if status != 200:
            raise RuntimeError(f"the demo shop refused a price: {status} {body!r}")

    def wait_price_seen(self, price: Decimal, after: float, timeout: float = 60) -> None:
        """Until an observation made after ``after`` (epoch s) has seen ``price``."""

        def seen() -> bool:
            return _latest_price(self.settings.database(), self.url, after) == price

        wait_until(seen, timeout, f"an observation of {price}")


def _subscribe_and_verify(settings: Settings) -> Demo:
    from launcher.demo.shop import DEFAULT_PRODUCTS

    product = DEFAULT_PRODUCTS[0]
    demo = Demo(
        settings,
        product.slug,
        "",
        product.price,
        (product.price * Decimal("0.8")).quantize(Decimal("0.01")),
    )
    demo.url = f"{demo.shop}/products/{product.slug}"
    target = (product.price * Decimal("0.9")).quantize(Decimal("0.01"))
    subscriber = f"bench-{uuid.uuid4().hex[:6]}@example.com"
    status, body = _http(
        "POST",
        f"{settings.api_base_url}/api/subscriptions",
        {"email": subscriber, "url": demo.url, "target_price": str(target)},
    )
    if status != 201:
        raise RuntimeError(f"subscribing failed: {status} {body!r}")
    wait_until(lambda: bool(_emails(settings.outbox_path)), 60, "the verification email")
    [verification] = _emails(settings.outbox_path)
    text = verification.get_body(preferencelist=("plain",))
    assert text is not None
    found = re.search(r"(http://\S+/verify\?token=\S+)", text.get_content())
    if found is None:
        raise RuntimeError("no verification link in the email")
    status, body = _http("POST", found.group(1))
    if status != 200:
        raise RuntimeError(f"verifying failed: {status} {body!r}")
    demo.wait_price_seen(demo.high, after=0.0, timeout=90)  # the first check learnt the price
    return demo


async def _light_load(settings: Settings, rate: float, seconds: float, products: int) -> int:
    """Publish ``rate`` unchanged observations a second of ``products`` other products."""
    from pricewatch.kafka import make_producer

    catalogue = []
    for n in range(products):
        url = f"https://light{n % 10}.bench.example/p/{n}"
        product_id = product_id_for(url)
        partition = partition_for(product_id, settings.topic_partitions)
        catalogue.append(Product(url, product_id, partition, Decimal(100 + n)))
    producer = make_producer(settings)
    await producer.start()
    topic = settings.topic(PRICE_OBSERVATIONS)
    sent = 0
    try:
        began = time.monotonic()
        while (elapsed := time.monotonic() - began) < seconds:
            for _ in range(int(rate * elapsed) - sent):
                product = catalogue[sent % len(catalogue)]
                await producer.send(
                    topic,
                    observation_json(product, product.base, time.time()),
                    key=product.product_id.encode(),
                    partition=product.partition,
                )
                sent += 1
            await asyncio.sleep(0.05)
        await producer.flush()
    finally:
        await producer.stop()
    return sent


def _new_email(outbox: Path, before: frozenset[str]) -> bool:
    return bool(set(outbox_times(outbox)) - before)


def _drop_to_email(demo: Demo, flips: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Move the price below the target and back ``flips`` times; the latency of each alert
    from its observation (``observed_at``) to the email handed to the outbox."""
    settings = demo.settings
    seen = Seen()
    stop = threading.Event()
    consumer = threading.Thread(target=_consume_in_thread, args=(settings, seen, stop), daemon=True)
    consumer.start()
    latencies: list[float] = []
    try:
        for n in range(flips):
            before = frozenset(outbox_times(settings.outbox_path))
            demo.set_price(demo.low)
            wait_until(partial(_new_email, settings.outbox_path, before), 90, f"alert {n + 1}")
            [key] = set(outbox_times(settings.outbox_path)) - before
            wait_until(partial(seen.by_key.__contains__, key), 30, "the alert's notification")
            observed = seen.by_key[key][0]
            latencies.append(outbox_times(settings.outbox_path)[key] - observed)
            raised_at = time.time()
            demo.set_price(demo.high)
            demo.wait_price_seen(demo.high, after=raised_at)
        log(f"  drop -> email: {', '.join(f'{s * 1000:.0f}' for s in latencies)} ms")
    finally:
        stop.set()
        consumer.join(10)
    return latency_summary(latencies, flips)


# --- one variant, and the benchmark -------------------------------------------------------------


def _settings(variant: Variant, workdir: Path) -> Settings:
    from launcher.demo.run import demo_settings
    from launcher.processes import free_port

    low, high = variant.fetch_wait_ms
    return demo_settings(
        Settings(
            data_dir=workdir,
            kafka_bootstrap_servers=None,
            kafka_embedded=False,
            database_url=None,
            topic_prefix="",
            api_port=free_port(),
            demo_shop_port=free_port(),
            log_level="INFO",
            kafka_fetch_wait_min_ms=low,
            kafka_fetch_wait_max_ms=high,
        )
    )


def measure(
    variant: Variant,
    rest_seconds: float,
    light_rate: float,
    light_products: int,
    flips: int,
    results_dir: Path,
    log: Callable[[str], None],
) -> dict[str, Any]:
    from launcher.stack import Stack

    workdir = results_dir / "work" / NAME / variant.name
    shutil.rmtree(workdir, ignore_errors=True)
    settings = _settings(variant, workdir)
    log(f"[{NAME}] {variant.name}: {variant.describe}")
    with Stack(settings, together=variant.together) as stack:
        names = {child.pid: child.name for child in stack.children if child.pid is not None}
        demo = _subscribe_and_verify(stack.settings)
        processes = [child.name for child in stack.children]
        log(f"  processes: broker, postgresql, {', '.join(processes)}; settling 10 s")
        time.sleep(10)
        database_pids = postmaster_pids(settings.data_dir)
        urls = stack.metrics_urls()
        fetched = fetches_made(urls)
        meter = StackMeter(names, database_pids).start()
        time.sleep(rest_seconds)
        rest = meter.stop()
        rest["fetches_per_second"] = (fetches_made(urls) - fetched) / rest["wall_seconds"]
        log(
            f"  at rest: {rest['stack_cpu_percent']:.1f}% of a core, "
            f"{rest['stack_rss_mb']:.0f} MB (PostgreSQL {rest['postgresql_cpu_percent']:.1f}%, "
            f"{rest['postgresql_rss_mb']:.0f} MB), {rest['fetches_per_second']:.1f} fetches/s"
        )
        fetched = fetches_made(urls)
        meter = StackMeter(names, database_pids).start()
        sent = asyncio.run(_light_load(stack.settings, light_rate, rest_seconds, light_products))
        light = meter.stop()
        light["fetches_per_second"] = (fetches_made(urls) - fetched) / light["wall_seconds"]
        light["observations_sent"] = sent
        log(
            f"  light load ({light_rate:g} obs/s): {light['stack_cpu_percent']:.1f}% of a core, "
            f"{light['stack_rss_mb']:.0f} MB (PostgreSQL {light['postgresql_cpu_percent']:.1f}%)"
        )
        latency = _drop_to_email(demo, flips, log)
        dead = [child.name for child in stack.dead_children()]
    return {
        "variant": variant.name,
        "describe": variant.describe,
        "processes": processes,
        "rest": rest,
        "light": light,
        "drop_to_email": latency,
        "dead_children": dead,
    }


def run(
    rest_seconds: float = 60.0,
    light_rate: float = 5.0,
    light_products: int = 200,
    flips: int = 8,
    baseline: bool = True,
    results_dir: Path = RESULTS_DIR,
    log: Callable[[str], None] = print,
) -> BenchResult:
    started = time.perf_counter()
    runs = [measure(CANDIDATE, rest_seconds, light_rate, light_products, flips, results_dir, log)]
    if baseline:
        runs.append(
            measure(BASELINE, rest_seconds, light_rate, light_products, flips, results_dir, log)
        )
    candidate, base = runs[0], runs[-1] if baseline else None

    def figure(run: dict[str, Any] | None, phase: str, key: str, unit: str) -> Figure:
        samples = [] if run is None else [run[phase][key]]
        return Figure(samples, unit=unit, higher_is_better=False)

    def p50(run: dict[str, Any] | None) -> Figure:
        value = None if run is None else run["drop_to_email"]["p50_ms"]
        return Figure([] if value is None else [value], unit="ms", higher_is_better=False)

    rows = [
        Row(
            "at rest: CPU, % of one core (PostgreSQL aside)",
            figure(candidate, "rest", "stack_cpu_percent", "%"),
            figure(base, "rest", "stack_cpu_percent", "%"),
            aim=AIM_CPU_PERCENT,
        ),
        Row(
            "at rest: RSS, MB (PostgreSQL aside)",
            figure(candidate, "rest", "stack_rss_mb", "MB"),
            figure(base, "rest", "stack_rss_mb", "MB"),
            aim=AIM_RSS_MB,
        ),
        Row(
            f"light load ({light_rate:g} obs/s): CPU, % of one core",
            figure(candidate, "light", "stack_cpu_percent", "%"),
            figure(base, "light", "stack_cpu_percent", "%"),
        ),
        Row(
            f"light load ({light_rate:g} obs/s): RSS, MB",
            figure(candidate, "light", "stack_rss_mb", "MB"),
            figure(base, "light", "stack_rss_mb", "MB"),
        ),
        Row("drop -> email p50 (from observed_at), ms", p50(candidate), p50(base)),
    ]
    return BenchResult(
        name=NAME,
        description=__doc__ or "",
        candidate=CANDIDATE.describe,
        baseline=BASELINE.describe if baseline else "none",
        params={
            "rest_seconds": rest_seconds,
            "light_rate_obs_per_second": light_rate,
            "light_products": light_products,
            "flips": flips,
        },
        rows=rows,
        extra={"runs": [], "variants": runs, "tables": [_table(runs)]},
        elapsed_seconds=time.perf_counter() - started,
    )


def _table(runs: list[dict[str, Any]]) -> dict[str, Any]:
    rows = []
    for run in runs:
        for phase in ("rest", "light"):
            figures = run[phase]
            top = sorted(figures["processes"].items(), key=lambda kv: -kv[1]["cpu_percent"])
            rows.append(
                [
                    run["variant"],
                    phase,
                    f"{figures['stack_cpu_percent']:.1f}%",
                    f"{figures['stack_rss_mb']:.0f} MB",
                    f"{figures['postgresql_cpu_percent']:.1f}% / "
                    f"{figures['postgresql_rss_mb']:.0f} MB",
                    f"{figures['fetches_per_second']:.1f}",
                    ", ".join(
                        f"{name} {v['cpu_percent']:.1f}%/{v['rss_mb']:.0f}MB"
                        for name, v in top
                        if name != "postgresql"
                    ),
                ]
            )
        latency = run["drop_to_email"]
        rows.append(
            [
                run["variant"],
                "drop -> email",
                f"p50 {_ms(latency['p50_ms'])}",
                f"p95 {_ms(latency['p95_ms'])}",
                f"{latency['count']}/{latency['expected']} alerts",
                "",
                "",
            ]
        )
    return {
        "title": "idle: the demo stack at rest and under a light load",
        "columns": ["variant", "phase", "CPU", "RSS", "PostgreSQL", "fetches/s", "per process"],
        "rows": rows,
    }


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} ms"
