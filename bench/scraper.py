"""Scraper benchmarks: extraction on one core, and fetch + extract + publish end to end.

``scraper_extract``: ``producers.extractors.chain.extract`` (one parse shared by the chain, first
price wins) over realistic 100-300 KB pages (``bench.pages``), bytes decoded as the fetcher
does. Baseline in the same run: the naive way, every extractor and the visible-text
fallback each on a fresh parse of the page. Figure: pages per CPU-second of this process
(one thread: per core), so other load on the machine lowers it less than a wall-clock rate.

``scraper_e2e``: the real scraper loop (``producers.scraper.run_scraper``: Kafka consumer,
``PageFetcher`` with robots.txt and conditional-GET memory, producer with acknowledgements)
against a local page server in its own process and the embedded broker. N scrape requests
are produced first; the figure is observations acknowledged per second. Per-host politeness
is set wide open (no interval, 16 in flight): this measures our cost, not a site's limits.
Baseline in the same run: one request at a time (fetch, extract, send and wait).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY

from launcher.embedded.broker import EmbeddedBroker
from launcher.processes import Process, free_port
from pricewatch.contract.records import ScrapeRequest
from pricewatch.contract.topics import PRICE_OBSERVATIONS, SCRAPE_REQUESTS
from pricewatch.ids import product_id_for
from pricewatch.kafka import create_topics, make_producer
from pricewatch.settings import Settings
from producers.extractors.base import make_page
from producers.extractors.chain import EXTRACTORS, Extraction, extract
from producers.extractors.dom import main_text

from .pages import BenchPage, build_pages, fixture_pages
from .report import BenchResult, Figure, Row

EXTRACT_NAME = "scraper_extract"
E2E_NAME = "scraper_e2e"
AIM_PAGES_PER_CORE_SECOND = 200.0


# --- extraction -------------------------------------------------------------------------


def extract_candidate(page: BenchPage) -> Extraction:
    return extract(page.body.decode("utf-8"), page.url)


def extract_baseline(page: BenchPage) -> Extraction | None:
    """Every extractor on its own fresh parse, no early exit, then the text fallback."""
    html = page.body.decode("utf-8")
    found = [extractor(make_page(html, page.url)) for extractor in EXTRACTORS]
    main_text(make_page(html, page.url).tree)
    return next((f for f in found if f is not None and f.price is not None), None)


def _cpu_rate(
    fn: Callable[[BenchPage], object], pages: list[BenchPage], repeats: int
) -> tuple[Figure, list[float]]:
    per_cpu: list[float] = []
    per_wall: list[float] = []
    for _ in range(repeats):
        gc.collect()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for page in pages:
            fn(page)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        per_cpu.append(len(pages) / cpu)
        per_wall.append(len(pages) / wall)
    return Figure(per_cpu, unit="pages/core-s"), per_wall


def run_extract(
    pages: int, repeats: int, baseline_repeats: int, log: Callable[[str], None] = print
) -> BenchResult:
    started = time.perf_counter()
    log(f"[{EXTRACT_NAME}] building {pages} pages of 100-300 KB from the fixture corpus")
    corpus = build_pages(pages)
    sizes = sorted(len(p.body) for p in corpus)
    # Padding must not change what is read: compare with the unpadded fixtures.
    plain = {name: extract(html, url) for name, url, html in fixture_pages()}
    mismatches = [p.name for p in corpus if extract_candidate(p) != plain[p.name]]
    if mismatches:
        log(f"[{EXTRACT_NAME}] WARNING: padding changed the extraction of {set(mismatches)}")
    log(f"[{EXTRACT_NAME}] candidate: {repeats} passes")
    candidate, candidate_wall = _cpu_rate(extract_candidate, corpus, repeats)
    log(f"[{EXTRACT_NAME}] baseline: {baseline_repeats} passes")
    baseline, baseline_wall = _cpu_rate(extract_baseline, corpus, baseline_repeats)
    result = BenchResult(
        name=EXTRACT_NAME,
        description="extraction chain on realistic 100-300 KB product pages, one core",
        candidate="producers.extractors.chain.extract: one parse, chain stops at the first price",
        baseline="every extractor and the text fallback, each on a fresh parse",
        params={"pages": pages, "repeats": repeats, "baseline_repeats": baseline_repeats},
        rows=[
            Row(
                case=f"{pages} pages, median {sizes[len(sizes) // 2] // 1000} KB",
                candidate=candidate,
                baseline=baseline,
                aim=AIM_PAGES_PER_CORE_SECOND,
                details={
                    "candidate_wall_pages_per_second": candidate_wall,
                    "baseline_wall_pages_per_second": baseline_wall,
                    "page_bytes_min_median_max": [sizes[0], sizes[len(sizes) // 2], sizes[-1]],
                    "padding_mismatches": mismatches,
                },
            )
        ],
    )
    result.elapsed_seconds = time.perf_counter() - started
    return result


# --- end to end -------------------------------------------------------------------------


def _e2e_settings(bootstrap: str, prefix: str, server_port: int, data_dir: Path) -> Settings:
    return Settings(
        kafka_bootstrap_servers=bootstrap,
        kafka_embedded=True,
        app_id=f"{prefix}pw",
        topic_prefix=prefix,
        topic_partitions=4,
        data_dir=data_dir,
        allowed_private_hosts=f"127.0.0.1:{server_port}",
        host_min_request_interval_seconds=0.0,
        host_max_concurrent_requests=16,
        scraper_concurrency=32,
        scraper_queue_limit=128,
        log_level="WARNING",
    )


async def _produce_requests(settings: Settings, urls: list[str]) -> None:
    producer = make_producer(settings, linger_ms=20)
    await producer.start()
    try:
        now = datetime.now(UTC)
        for url in urls:
            request = ScrapeRequest(product_id=product_id_for(url), url=url, requested_at=now)
            await producer.send(
                settings.topic(SCRAPE_REQUESTS),
                request.model_dump_json().encode(),
                key=b"127.0.0.1",
            )
        await producer.flush()
    finally:
        await producer.stop()


def _published() -> float:
    return REGISTRY.get_sample_value("pricewatch_scraper_observations_published_total") or 0.0


async def _poll(done: Callable[[], bool], deadline: float) -> None:
    """Until ``done()`` or the deadline: the scraper's counter is polled, not awaited."""
    while not done() and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.005)


async def _candidate_run(settings: Settings, requests: int, deadline_seconds: float) -> float:
    from producers.scraper import run_scraper

    await create_topics(settings)
    urls = [f"http://127.0.0.1:{_port(settings)}/p/{n}" for n in range(requests)]
    await _produce_requests(settings, urls)
    stop = asyncio.Event()
    before = _published()
    task = asyncio.create_task(run_scraper(settings, stop))
    deadline = time.monotonic() + deadline_seconds
    # From the first acknowledged observation (group join excluded) to the last.
    await _poll(lambda: _published() > before or task.done(), deadline)
    first_at, first_count = time.perf_counter(), _published()
    await _poll(lambda: _published() - before >= requests or task.done(), deadline)
    elapsed = time.perf_counter() - first_at
    done = _published() - first_count
    stop.set()
    await task
    return done / elapsed if elapsed > 0 and done > 0 else 0.0


def _port(settings: Settings) -> int:
    return int(settings.allowed_private_hosts.rsplit(":", 1)[1])


async def _baseline_run(settings: Settings, requests: int) -> float:
    """One request at a time: fetch, extract, publish, wait for the acknowledgement."""
    from producers.fetch import PageFetcher

    await create_topics(settings)
    producer = make_producer(settings)
    await producer.start()
    try:
        async with PageFetcher(settings) as fetcher:
            await fetcher.fetch(
                product_id_for("warm-up"), f"http://127.0.0.1:{_port(settings)}/p/0"
            )
            started = time.perf_counter()
            for n in range(requests):
                url = f"http://127.0.0.1:{_port(settings)}/p/{n}"
                observation = await fetcher.fetch(product_id_for(url), url)
                await producer.send_and_wait(
                    settings.topic(PRICE_OBSERVATIONS),
                    observation.model_dump_json().encode(),
                    key=observation.product_id.encode(),
                )
            return requests / (time.perf_counter() - started)
    finally:
        await producer.stop()


def run_e2e(
    requests: int,
    baseline_requests: int,
    repeats: int,
    results_dir: Path,
    log: Callable[[str], None] = print,
) -> BenchResult:
    started = time.perf_counter()
    # One page in 13 of the corpus has no price: its warning per fetch is noise here.
    logging.getLogger("producers").setLevel(logging.ERROR)
    work = results_dir / "work" / E2E_NAME
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = Process(
        "pages",
        [sys.executable, "-m", "bench.pages", "--port", str(port)],
        cwd=Path(__file__).resolve().parents[1],
    ).start()
    candidate: list[float] = []
    baseline: list[float] = []
    try:
        server.wait_for_port("127.0.0.1", port, 30)
        with EmbeddedBroker(log_path=work / "broker.log") as broker:
            for n in range(repeats):
                settings = _e2e_settings(broker.bootstrap_servers, f"c{n}-", port, work)
                rate = asyncio.run(_candidate_run(settings, requests, deadline_seconds=300))
                log(f"[{E2E_NAME}] candidate run {n + 1}: {rate:,.0f} obs/s")
                candidate.append(rate)
            for n in range(repeats):
                settings = _e2e_settings(broker.bootstrap_servers, f"b{n}-", port, work)
                rate = asyncio.run(_baseline_run(settings, baseline_requests))
                log(f"[{E2E_NAME}] baseline run {n + 1}: {rate:,.0f} obs/s")
                baseline.append(rate)
    finally:
        server.stop(10)
    params: dict[str, Any] = {
        "requests": requests,
        "baseline_requests": baseline_requests,
        "repeats": repeats,
    }
    result = BenchResult(
        name=E2E_NAME,
        description="scrape requests -> fetch (local server) -> extract -> publish (tansu)",
        candidate="producers.scraper.run_scraper, politeness wide open, 32 fetches at once",
        baseline="one request at a time: fetch, extract, send and wait",
        params=params,
        rows=[
            Row(
                case=f"{requests} requests, 100-300 KB pages, 1 host",
                candidate=Figure([r for r in candidate if r > 0]),
                baseline=Figure([r for r in baseline if r > 0]),
                notes="page server in its own process; scraper, server and broker share the cores",
            )
        ],
    )
    result.elapsed_seconds = time.perf_counter() - started
    return result
