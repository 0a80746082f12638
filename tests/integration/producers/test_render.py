"""The render tier end to end, in the system's Chromium: loopback pages whose price only
appears after their JavaScript runs are read through the real fetcher and a real scraper
process; every request the browser makes goes through the URL guard (a subrequest or a
redirect to a private address is refused and never arrives); images, fonts and styles are
not fetched; renders keep to their concurrency limit and timeout.

Without Chromium these tests skip (``make browser-deps`` installs it); with
``REQUIRE_SERVICES=1`` they fail instead, like the other tests that need a service."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections import Counter as Tally
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import REGISTRY

from pricewatch.contract.records import Outcome, PriceObservation
from pricewatch.contract.topics import PRICE_OBSERVATIONS
from pricewatch.ids import product_id_for
from pricewatch.kafka import create_topics
from pricewatch.settings import Settings
from producers.extractors.chain import parse_site_adapters
from producers.fetch import PageFetcher
from producers.render import Renderer
from tests.conftest import REQUIRE_SERVICES, Broker
from tests.integration.producers.test_two_scrapers import (
    ScraperProcess,
    produce_requests,
    samples,
    wait_for_group,
)
from tests.workers import TopicReader, keep_logs, worker_settings

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(autouse=True)
def chromium_installed() -> None:
    if not CHROMIUM.exists():
        message = "chromium missing: run `make browser-deps`"
        if REQUIRE_SERVICES:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


# The price is nowhere in the HTML the server sends: a script asks the shop's API for it and
# writes it into the buy box and into a JSON-LD block, as single-page shops do.
JS_PRICE_PAGE = """<!doctype html><html><head><title>Steel Kettle</title>
<link rel="stylesheet" href="/static/shop.css"></head>
<body><h1>Steel Kettle</h1><img src="/static/kettle.jpg" alt="">
<div class="buy-box"><span class="price" id="price"></span>
<button class="add-to-cart">Add to cart</button></div>
<script>
fetch('/api/price/%(sku)s').then(r => r.json()).then(d => {
  document.getElementById('price').textContent = d.price + ' EUR';
  const s = document.createElement('script');
  s.type = 'application/ld+json';
  s.textContent = JSON.stringify({"@type": "Product", "name": "Steel Kettle",
    "offers": {"price": d.price, "priceCurrency": "EUR",
               "availability": "https://schema.org/InStock"}});
  document.head.appendChild(s);
});
</script></body></html>"""

# The price computed by an inline script alone (no request at all).
INLINE_SCRIPT_PAGE = """<!doctype html><html><head><title>Toaster</title></head><body>
<h1>Toaster</h1><div class="buy-box"><span class="price" id="price"></span>
<button class="add-to-cart">Add to cart</button></div>
<script>document.getElementById('price').textContent = (35 + 4.5).toFixed(2) + ' EUR';
</script></body></html>"""

# Its script tries to reach a private address directly, through a redirect, and the cloud
# metadata service; whatever it gets would become the price.
LEAKY_PAGE = """<!doctype html><html><head><title>Lamp</title></head><body><h1>Lamp</h1>
<div class="buy-box"><span class="price" id="price"></span>
<button class="add-to-cart">Add to cart</button></div>
<script>
const show = t => { document.getElementById('price').textContent = t; };
fetch('%(private)s/secret').then(r => r.text()).then(show).catch(() => {});
fetch('/hop').then(r => r.text()).then(show).catch(() => {});
fetch('http://169.254.169.254/latest/meta-data/').then(r => r.text()).then(show)
  .catch(() => {});
window.open('%(private)s/popup');
const frame = document.createElement('iframe');
frame.src = '%(private)s/frame';
document.body.appendChild(frame);
new Worker(URL.createObjectURL(new Blob(["fetch('%(private)s/worker')"])));
const socket = new WebSocket('%(private_ws)s/socket');
socket.onmessage = event => show(event.data);
</script></body></html>"""

# The price comes from a POST with a JSON body, as GraphQL shops ask for it.
POST_PAGE = """<!doctype html><html><head><title>Grinder</title></head><body>
<h1>Grinder</h1><div class="buy-box"><span class="price" id="price"></span>
<button class="add-to-cart">Add to cart</button></div>
<script>fetch('/graphql', {method: 'POST', headers: {'content-type': 'application/json'},
  body: JSON.stringify({query: 'price', sku: 'grinder-7'})})
  .then(r => r.json()).then(d => {
    document.getElementById('price').textContent = d.data.price + ' EUR'; });
</script></body></html>"""

# One page leaves a cookie and storage behind; the next (same shop) shows 1.00 if it finds
# any of them, 2.00 if it starts clean.
MARKING_PAGE = """<!doctype html><html><head><title>Mug</title></head><body><h1>Mug</h1>
<div class="buy-box"><span class="price">5.00 EUR</span>
<button class="add-to-cart">Add to cart</button></div>
<script>document.cookie = 'seen=1; path=/'; localStorage.setItem('seen', '1');
sessionStorage.setItem('seen', '1');</script></body></html>"""
CHECKING_PAGE = """<!doctype html><html><head><title>Cup</title></head><body><h1>Cup</h1>
<div class="buy-box"><span class="price" id="price"></span>
<button class="add-to-cart">Add to cart</button></div>
<script>const seen = document.cookie.includes('seen') || localStorage.getItem('seen')
  || sessionStorage.getItem('seen');
document.getElementById('price').textContent = (seen ? '1.00' : '2.00') + ' EUR';</script>
</body></html>"""

# A script that never arrives: the page never reaches its load event.
NEVER_LOADS_PAGE = """<!doctype html><html><head><title>Fan</title>
<script src="/slow.js"></script></head><body><h1>Fan</h1></body></html>"""


@dataclass
class Shop:
    server: TestServer
    private: TestServer  # loopback, but not allow-listed: stands for an internal service
    seen: Tally[str] = field(default_factory=Tally)
    private_seen: list[str] = field(default_factory=list)
    api_delay: float = 0.0
    api_in_flight: int = 0
    api_max_in_flight: int = 0
    cookies_sent: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.port}{path}"

    @property
    def private_url(self) -> str:
        return f"http://127.0.0.1:{self.private.port}"


@pytest.fixture
async def shop() -> AsyncIterator[Shop]:
    holder: list[Shop] = []

    async def page(request: web.Request) -> web.Response:
        current = holder[0]
        name = request.match_info["name"]
        current.seen[request.path] += 1
        body = {
            "js-kettle": JS_PRICE_PAGE % {"sku": "kettle"},
            "inline": INLINE_SCRIPT_PAGE,
            "leaky": LEAKY_PAGE
            % {
                "private": current.private_url,
                "private_ws": current.private_url.replace("http://", "ws://"),
            },
            "post": POST_PAGE,
            "never-loads": NEVER_LOADS_PAGE,
            "marking": MARKING_PAGE,
            "checking": CHECKING_PAGE,
        }.get(name)
        if "Cookie" in request.headers:
            current.cookies_sent.append(request.path)
        if body is None:
            raise web.HTTPNotFound()
        return web.Response(text=body, content_type="text/html")

    async def price(request: web.Request) -> web.Response:
        current = holder[0]
        current.seen[request.path] += 1
        current.api_in_flight += 1
        current.api_max_in_flight = max(current.api_max_in_flight, current.api_in_flight)
        try:
            if current.api_delay:
                await asyncio.sleep(current.api_delay)
            return web.json_response({"price": "49.90"})
        finally:
            current.api_in_flight -= 1

    async def anything(request: web.Request) -> web.StreamResponse:
        current = holder[0]
        current.seen[request.path] += 1
        if request.path == "/graphql" and request.method == "POST":
            asked = await request.json()
            price = "61.00" if asked == {"query": "price", "sku": "grinder-7"} else "0.00"
            return web.json_response({"data": {"price": price}})
        if request.path == "/hop":
            raise web.HTTPFound(f"{current.private_url}/secret")
        if request.path == "/slow.js":
            await asyncio.sleep(60)
        return web.Response(text="", content_type="text/plain")

    async def private(request: web.Request) -> web.Response:
        holder[0].private_seen.append(request.path)
        return web.Response(text="0.01 EUR", headers={"Access-Control-Allow-Origin": "*"})

    app = web.Application()
    app.router.add_get("/p/{name}", page)
    app.router.add_get("/api/price/{sku}", price)
    app.router.add_route("*", "/{tail:.*}", anything)
    private_app = web.Application()
    private_app.router.add_route("*", "/{tail:.*}", private)
    server = TestServer(app, host="127.0.0.1")
    private_server = TestServer(private_app, host="127.0.0.1")
    await server.start_server()
    await private_server.start_server()
    holder.append(Shop(server, private_server))
    yield holder[0]
    await server.close()
    await private_server.close()


def settings_for(shop: Shop, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        # The shop only: the "private" server on another port is refused like any
        # loopback address.
        "allowed_private_hosts": f"127.0.0.1:{shop.server.port}",
        "render_chromium_path": CHROMIUM,
        "respect_robots_txt": False,
        "host_min_request_interval_seconds": 0.0,
        "render_timeout_seconds": 30.0,
        "render_settle_seconds": 2.0,
    }
    values.update(overrides)
    return Settings(**values)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def fetch(fetcher: PageFetcher, url: str) -> PriceObservation:
    return await fetcher.fetch(product_id_for(url), url)


async def test_the_pages_need_javascript_a_static_fetch_finds_no_price(shop: Shop) -> None:
    async with PageFetcher(settings_for(shop)) as fetcher:
        for name in ("js-kettle", "inline"):
            observation = await fetch(fetcher, shop.url(f"/p/{name}"))
            assert (observation.outcome, observation.error) == (Outcome.ERROR, "no_price_found")


async def test_a_website_whose_adapter_says_render_is_read_rendered(shop: Shop) -> None:
    settings = settings_for(shop)
    adapters = parse_site_adapters(
        {f"127.0.0.1:{shop.server.port}": {"kind": "html", "render": True}}
    )
    ok_before = metric("pricewatch_scraper_renders_total", outcome="ok")
    async with PageFetcher(settings, adapters=adapters, renderer=Renderer(settings)) as fetcher:
        kettle = await fetch(fetcher, shop.url("/p/js-kettle"))
        toaster = await fetch(fetcher, shop.url("/p/inline"))

    assert (kettle.outcome, str(kettle.price), kettle.currency) == (Outcome.OK, "49.90", "EUR")
    assert kettle.availability is not None and kettle.availability.value == "in_stock"
    assert kettle.http_status == 200 and kettle.final_url == shop.url("/p/js-kettle")
    assert (toaster.outcome, str(toaster.price)) == (Outcome.OK, "39.50")
    # The document was asked for once per render: the browser got the copy we fetched.
    assert shop.seen["/p/js-kettle"] == 1 and shop.seen["/api/price/kettle"] == 1
    assert metric("pricewatch_scraper_renders_total", outcome="ok") - ok_before == 2


async def test_images_fonts_and_styles_are_never_requested(shop: Shop) -> None:
    settings = settings_for(shop)
    skipped_before = metric(
        "pricewatch_scraper_render_requests_blocked_total", reason="resource_type"
    )
    async with PageFetcher(settings, renderer=Renderer(settings), render_all=True) as fetcher:
        kettle = await fetch(fetcher, shop.url("/p/js-kettle"))

    assert kettle.outcome is Outcome.OK
    assert shop.seen["/static/kettle.jpg"] == 0 and shop.seen["/static/shop.css"] == 0
    skipped = metric("pricewatch_scraper_render_requests_blocked_total", reason="resource_type")
    assert skipped - skipped_before >= 2


async def test_the_guard_refuses_the_browsers_requests_to_private_addresses(shop: Shop) -> None:
    settings = settings_for(shop)
    refused_before = metric("pricewatch_scraper_render_requests_blocked_total", reason="url_guard")
    sockets_before = metric("pricewatch_scraper_render_requests_blocked_total", reason="websocket")
    async with PageFetcher(settings, renderer=Renderer(settings), render_all=True) as fetcher:
        lamp = await fetch(fetcher, shop.url("/p/leaky"))

    # Nothing reached the private service, directly or by the shop's redirect, and nothing
    # it would have said became a price.
    assert shop.private_seen == []
    assert shop.seen["/hop"] == 1  # the shop itself was asked; its redirect was not followed
    assert (lamp.outcome, lamp.error) == (Outcome.ERROR, "no_price_found")
    refused = metric("pricewatch_scraper_render_requests_blocked_total", reason="url_guard")
    # The private URL, the redirect hop, the metadata service, a popup, an iframe, a worker.
    assert refused - refused_before == 6
    sockets = metric("pricewatch_scraper_render_requests_blocked_total", reason="websocket")
    assert sockets - sockets_before == 1


async def test_a_scripts_post_request_is_forwarded_with_its_body(shop: Shop) -> None:
    settings = settings_for(shop)
    async with PageFetcher(settings, renderer=Renderer(settings), render_all=True) as fetcher:
        grinder = await fetch(fetcher, shop.url("/p/post"))

    assert (grinder.outcome, str(grinder.price)) == (Outcome.OK, "61.00")


async def test_the_document_itself_is_guarded_like_a_static_fetch(shop: Shop) -> None:
    settings = settings_for(shop)
    async with PageFetcher(settings, renderer=Renderer(settings), render_all=True) as fetcher:
        observation = await fetch(fetcher, f"{shop.private_url}/p/js-kettle")

    assert observation.outcome is Outcome.ERROR
    assert observation.error is not None and observation.error.startswith("url_refused")
    assert shop.private_seen == []


async def test_fallback_renders_only_a_page_without_a_static_price(shop: Shop) -> None:
    settings = settings_for(shop, render_fallback=True)
    async with PageFetcher(settings, renderer=Renderer(settings)) as fetcher:
        kettle = await fetch(fetcher, shop.url("/p/js-kettle"))
        missing = await fetch(fetcher, shop.url("/p/nothing-here"))

    assert (kettle.outcome, str(kettle.price)) == (Outcome.OK, "49.90")
    assert shop.seen["/p/js-kettle"] == 2  # the static fetch, then the render's
    assert (missing.outcome, missing.error) == (Outcome.GONE, "http_404")
    assert shop.seen["/p/nothing-here"] == 1  # a 404 is not worth a browser


async def test_nothing_of_one_render_reaches_the_next(shop: Shop) -> None:
    # One slot: both renders run in the same (reused) tab.
    settings = settings_for(shop, render_concurrency=1)
    async with PageFetcher(settings, renderer=Renderer(settings), render_all=True) as fetcher:
        marking = await fetch(fetcher, shop.url("/p/marking"))
        checking = await fetch(fetcher, shop.url("/p/checking"))
        again = await fetch(fetcher, shop.url("/p/checking"))

    assert str(marking.price) == "5.00"
    assert [str(checking.price), str(again.price)] == ["2.00", "2.00"]
    assert shop.cookies_sent == []


async def test_a_page_that_never_loads_ends_as_a_render_timeout(shop: Shop) -> None:
    settings = settings_for(shop, render_timeout_seconds=3.0)
    timeouts_before = metric("pricewatch_scraper_renders_total", outcome="timeout")
    async with PageFetcher(settings, renderer=Renderer(settings), render_all=True) as fetcher:
        started = time.monotonic()
        fan = await fetch(fetcher, shop.url("/p/never-loads"))
        took = time.monotonic() - started

    assert (fan.outcome, fan.error) == (Outcome.ERROR, "render_timeout")
    assert took < 30, "the render timeout did not hold"
    assert metric("pricewatch_scraper_renders_total", outcome="timeout") - timeouts_before == 1


async def test_renders_keep_to_their_concurrency_limit(shop: Shop) -> None:
    shop.api_delay = 0.5
    settings = settings_for(shop, render_concurrency=1, host_max_concurrent_requests=4)
    renderer = Renderer(settings)
    async with PageFetcher(settings, renderer=renderer, render_all=True) as fetcher:
        pages = await asyncio.gather(*(fetch(fetcher, shop.url("/p/js-kettle")) for _ in range(3)))

    assert [str(p.price) for p in pages] == ["49.90"] * 3
    assert shop.api_max_in_flight == 1
    assert metric("pricewatch_scraper_renders_in_flight") == 0


async def test_extract_render_reads_a_javascript_page(shop: Shop) -> None:
    url = shop.url("/p/js-kettle")
    env = {
        **os.environ,
        "PRICEWATCH_RENDER_CHROMIUM_PATH": str(CHROMIUM),
        "PRICEWATCH_RESPECT_ROBOTS_TXT": "false",
    }
    command = ["pricewatch", "extract", url, "--allow-private"]
    static, rendered = await asyncio.gather(
        asyncio.to_thread(_run, command, env), asyncio.to_thread(_run, [*command, "--render"], env)
    )
    assert static.returncode == 1 and json.loads(static.stdout)["price"] is None
    assert rendered.returncode == 0, rendered.stderr
    assert json.loads(rendered.stdout)["price"] == "49.90"


def _run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    executable = Path(os.environ.get("VIRTUAL_ENV", ".venv")) / "bin" / command[0]
    if not executable.exists():
        executable = Path(shutil.which(command[0]) or command[0])
    return subprocess.run(
        [str(executable), *command[1:]], env=env, capture_output=True, text=True, timeout=120
    )


async def test_a_scraper_process_publishes_the_rendered_price(
    broker: Broker, unique_prefix: str, tmp_path: Path, shop: Shop
) -> None:
    settings = worker_settings(
        broker.bootstrap_servers,
        broker.embedded,
        unique_prefix,
        tmp_path,
        topic_partitions=1,
        allowed_private_hosts=f"127.0.0.1:{shop.server.port}",
        host_min_request_interval_seconds=0.0,
        respect_robots_txt=False,
        render_fallback=True,
        render_chromium_path=CHROMIUM,
    )
    await create_topics(settings)
    logs = tmp_path / "logs"
    scraper = ScraperProcess(settings, "scraper", logs / "scraper.log")
    try:
        await wait_for_group(settings, 1)
        urls = [shop.url("/p/js-kettle"), shop.url("/p/inline")]
        await produce_requests(settings, urls)
        async with TopicReader(settings, settings.topic(PRICE_OBSERVATIONS)) as reader:
            assert await reader.wait_until(lambda records: len(records) >= 2, 120)
            observations = {
                o.product_id: o
                for o in (PriceObservation.model_validate_json(r.value) for r in reader.records)
            }
        kettle = observations[product_id_for(urls[0])]
        toaster = observations[product_id_for(urls[1])]
        assert (kettle.outcome, str(kettle.price), kettle.currency) == (Outcome.OK, "49.90", "EUR")
        assert (toaster.outcome, str(toaster.price)) == (Outcome.OK, "39.50")
        assert (
            samples(scraper.metrics_port, "pricewatch_scraper_renders_total")['{outcome="ok"}']
            == 2.0
        )
        assert samples(scraper.metrics_port, "pricewatch_scraper_render_seconds_count") == {"": 2.0}
    finally:
        code = scraper.stop()
        keep_logs(logs, "render-scraper")
    assert code == 0


@pytest.fixture
def cdp_browser(tmp_path: Path) -> Iterator[str]:
    """A long-running headless Chromium with its DevTools port open, as docker-compose's
    ``chromium`` service runs; its CDP URL."""
    from launcher.processes import free_port

    port = free_port()
    process = subprocess.Popen(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--remote-debugging-address=127.0.0.1",
            f"--remote-debugging-port={port}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/json/version", timeout=2):
                    break
            except OSError:
                assert process.poll() is None, "chromium exited"
                assert time.monotonic() < deadline, "chromium's DevTools port never opened"
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def test_over_cdp_a_long_running_browser_renders_and_stays_guarded(
    shop: Shop, cdp_browser: str
) -> None:
    settings = settings_for(shop, render_cdp_url=cdp_browser)
    renderer = Renderer(settings)
    async with PageFetcher(settings, renderer=renderer, render_all=True) as fetcher:
        kettle = await fetch(fetcher, shop.url("/p/js-kettle"))
        lamp = await fetch(fetcher, shop.url("/p/leaky"))

    assert (kettle.outcome, str(kettle.price)) == (Outcome.OK, "49.90")
    assert (lamp.outcome, lamp.error) == (Outcome.ERROR, "no_price_found")
    assert shop.private_seen == []
    # The browser is still there for the next scraper (close() left it running).
    assert b"webSocketDebuggerUrl" in await asyncio.to_thread(_get, f"{cdp_browser}/json/version")


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as answer:
        body: bytes = answer.read()
        return body


async def test_a_cdp_url_by_host_name_is_turned_into_an_address() -> None:
    from producers.render.browser import cdp_endpoint

    assert await cdp_endpoint("http://localhost:9222") == "http://localhost:9222"
    assert await cdp_endpoint("http://10.0.0.7:9222/") == "http://10.0.0.7:9222/"
    resolved = await cdp_endpoint(f"http://{socket.gethostname()}:9222")
    host = urlsplit(resolved).hostname or ""
    assert ipaddress.ip_address(host) and urlsplit(resolved).port == 9222


async def test_a_crashed_browser_is_started_again_for_the_next_render(shop: Shop) -> None:
    import psutil

    settings = settings_for(shop)
    async with PageFetcher(settings, renderer=Renderer(settings), render_all=True) as fetcher:
        first = await fetch(fetcher, shop.url("/p/inline"))
        browsers = [p for p in psutil.Process().children(recursive=True) if p.name() == "chromium"]
        assert browsers, "no Chromium process under this one"
        for process in browsers:
            process.kill()
        psutil.wait_procs(browsers, timeout=10)
        # The render that meets the dead browser may fail; the scraper goes on, and the
        # next ones are read again.
        observations = [await fetch(fetcher, shop.url("/p/inline")) for _ in range(3)]

    assert first.outcome is Outcome.OK
    assert observations[-1].outcome is Outcome.OK and str(observations[-1].price) == "39.50"
    failed = [o.error for o in observations if o.outcome is not Outcome.OK]
    assert len(failed) <= 1 and all(e and e.startswith("render_failed") for e in failed)
