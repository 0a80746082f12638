"""PageFetcher's politeness against a real loopback HTTP server that records what it saw:
retries, Retry-After, conditional GETs, robots.txt, per-host concurrency and spacing."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import REGISTRY

from pricewatch.contract.records import Outcome, PriceObservation
from pricewatch.ids import product_id_for
from pricewatch.settings import Settings
from producers.extractors.chain import parse_site_adapters
from producers.fetch import PageFetcher

TOLERANCE_SECONDS = 0.1  # timer and scheduling slack on a loaded 2-core machine

PAGE = """<!doctype html><html><head><title>Kettle</title>
<script type="application/ld+json">{"@context": "https://schema.org", "@type": "Product",
"name": "Steel Kettle", "offers": {"@type": "Offer", "price": "%s", "priceCurrency": "EUR",
"availability": "https://schema.org/InStock"}}</script></head><body><h1>Kettle</h1></body></html>"""


@dataclass
class Seen:
    """One request as the server saw it."""

    path: str
    at: float  # time.monotonic() when the handler started
    headers: dict[str, str]


@dataclass
class Site:
    """A test website: per-path handlers, a robots.txt, and a log of every request."""

    server: TestServer
    seen: list[Seen] = field(default_factory=list)
    robots: str | None = None  # None: /robots.txt is a 404
    robots_status: int = 200
    in_flight: int = 0
    max_in_flight: int = 0
    handlers: dict[str, Callable[[web.Request, int], Awaitable[web.StreamResponse]]] = field(
        default_factory=dict
    )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.port}{path}"

    def requests_to(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]

    def route(
        self, path: str
    ) -> Callable[
        [Callable[[web.Request, int], Awaitable[web.StreamResponse]]],
        Callable[[web.Request, int], Awaitable[web.StreamResponse]],
    ]:
        """Register a handler for ``path``; it gets the request and its 1-based count."""

        def register(
            handler: Callable[[web.Request, int], Awaitable[web.StreamResponse]],
        ) -> Callable[[web.Request, int], Awaitable[web.StreamResponse]]:
            self.handlers[path] = handler
            return handler

        return register


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    holder: list[Site] = []

    async def dispatch(request: web.Request) -> web.StreamResponse:
        current = holder[0]
        current.seen.append(Seen(request.path, time.monotonic(), dict(request.headers)))
        if request.path == "/robots.txt":
            if current.robots_status != 200:
                return web.Response(status=current.robots_status)
            if current.robots is None:
                raise web.HTTPNotFound()
            return web.Response(text=current.robots, content_type="text/plain")
        handler = current.handlers.get(request.path)
        if handler is None:
            raise web.HTTPNotFound()
        current.in_flight += 1
        current.max_in_flight = max(current.max_in_flight, current.in_flight)
        try:
            return await handler(request, len(current.requests_to(request.path)))
        finally:
            current.in_flight -= 1

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", dispatch)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    holder.append(Site(server))
    yield holder[0]
    await server.close()


def settings_for(site: Site, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "allowed_private_hosts": f"127.0.0.1:{site.server.port}",
        "fetch_timeout_seconds": 2.0,
        "host_max_concurrent_requests": 2,
        "host_min_request_interval_seconds": 0.0,
        "fetch_max_attempts": 3,
        "retry_backoff_base_seconds": 0.05,
        "retry_backoff_max_seconds": 0.2,
        "retry_after_max_seconds": 5.0,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
async def fetcher(site: Site) -> AsyncIterator[PageFetcher]:
    async with PageFetcher(settings_for(site)) as page_fetcher:
        yield page_fetcher


async def fetch(fetcher: PageFetcher, url: str) -> PriceObservation:
    return await fetcher.fetch(product_id_for(url), url)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def page(price: str = "49.90", **headers: str) -> web.Response:
    return web.Response(text=PAGE % price, content_type="text/html", headers=headers)


# --- retries ------------------------------------------------------------------------------


async def test_server_errors_are_retried_until_the_page_answers(
    site: Site, fetcher: PageFetcher
) -> None:
    @site.route("/flaky")
    async def flaky(request: web.Request, n: int) -> web.Response:
        if n <= 2:
            raise web.HTTPServiceUnavailable()  # no Retry-After: our own backoff
        return page()

    retries_before = metric("pricewatch_scraper_retries_total", reason="http_503")

    observation = await fetch(fetcher, site.url("/flaky"))

    assert observation.outcome is Outcome.OK
    assert observation.price == Decimal("49.90")
    assert len(site.requests_to("/flaky")) == 3
    assert metric("pricewatch_scraper_retries_total", reason="http_503") - retries_before == 2


async def test_a_timeout_is_retried(site: Site) -> None:
    @site.route("/slow-once")
    async def slow_once(request: web.Request, n: int) -> web.Response:
        if n == 1:
            await asyncio.sleep(3)
        return page("12.00")

    async with PageFetcher(settings_for(site, fetch_timeout_seconds=0.5)) as fetcher:
        observation = await fetch(fetcher, site.url("/slow-once"))

    assert (observation.outcome, observation.price) == (Outcome.OK, Decimal("12.00"))
    assert len(site.requests_to("/slow-once")) == 2


async def test_attempts_run_out_on_a_persistent_server_error(site: Site) -> None:
    @site.route("/down")
    async def down(request: web.Request, n: int) -> web.Response:
        raise web.HTTPBadGateway()

    async with PageFetcher(settings_for(site, fetch_max_attempts=4)) as fetcher:
        observation = await fetch(fetcher, site.url("/down"))

    assert (observation.outcome, observation.error) == (Outcome.ERROR, "http_502")
    assert len(site.requests_to("/down")) == 4


async def test_a_client_error_is_not_retried(site: Site, fetcher: PageFetcher) -> None:
    @site.route("/forbidden")
    async def forbidden(request: web.Request, n: int) -> web.Response:
        raise web.HTTPForbidden()

    labels = {"website": "127.0.0.1", "reason": "http_403"}
    blocked_before = metric("pricewatch_scraper_blocked_total", **labels)

    observation = await fetch(fetcher, site.url("/forbidden"))

    assert (observation.outcome, observation.error) == (Outcome.ERROR, "http_403")
    assert observation.blocked_by is None  # a plain refusal, not a bot check
    assert len(site.requests_to("/forbidden")) == 1
    assert metric("pricewatch_scraper_blocked_total", **labels) - blocked_before == 1


# --- Retry-After --------------------------------------------------------------------------


def _gap(site: Site, path: str) -> float:
    first, second = site.requests_to(path)
    return second.at - first.at


async def test_retry_after_seconds_is_honoured(site: Site, fetcher: PageFetcher) -> None:
    @site.route("/busy")
    async def busy(request: web.Request, n: int) -> web.Response:
        if n == 1:
            raise web.HTTPTooManyRequests(headers={"Retry-After": "1"})
        return page()

    observation = await fetch(fetcher, site.url("/busy"))

    assert observation.outcome is Outcome.OK
    assert 1.0 - TOLERANCE_SECONDS <= _gap(site, "/busy") <= 2.0


async def test_retry_after_http_date_is_honoured(site: Site, fetcher: PageFetcher) -> None:
    @site.route("/busy-date")
    async def busy_date(request: web.Request, n: int) -> web.Response:
        if n == 1:
            # HTTP-dates have whole seconds: 3 s ahead means 2 to 3 s from now.
            when = datetime.now(UTC) + timedelta(seconds=3)
            raise web.HTTPServiceUnavailable(
                headers={"Retry-After": format_datetime(when, usegmt=True)}
            )
        return page()

    observation = await fetch(fetcher, site.url("/busy-date"))

    assert observation.outcome is Outcome.OK
    assert 2.0 - TOLERANCE_SECONDS <= _gap(site, "/busy-date") <= 3.5


async def test_retry_after_holds_back_every_request_to_the_host(
    site: Site, fetcher: PageFetcher
) -> None:
    told = asyncio.Event()

    @site.route("/busy")
    async def busy(request: web.Request, n: int) -> web.Response:
        if n == 1:
            told.set()
            raise web.HTTPTooManyRequests(headers={"Retry-After": "1"})
        return page()

    @site.route("/other")
    async def other(request: web.Request, n: int) -> web.Response:
        return page()

    first = asyncio.create_task(fetch(fetcher, site.url("/busy")))
    await told.wait()
    await asyncio.sleep(0.2)  # the 429 has arrived
    told_at = site.requests_to("/busy")[0].at
    await fetch(fetcher, site.url("/other"))
    await first

    assert site.requests_to("/other")[0].at - told_at >= 1.0 - TOLERANCE_SECONDS


async def test_retry_after_beyond_the_cap_gives_up_as_rate_limited(
    site: Site, fetcher: PageFetcher
) -> None:
    @site.route("/closed")
    async def closed(request: web.Request, n: int) -> web.Response:
        raise web.HTTPTooManyRequests(headers={"Retry-After": "3600"})

    labels = {"website": "127.0.0.1", "reason": "rate_limited"}
    blocked_before = metric("pricewatch_scraper_blocked_total", **labels)

    observation = await fetch(fetcher, site.url("/closed"))

    assert (observation.outcome, observation.error) == (Outcome.ERROR, "rate_limited")
    assert observation.price is None  # an error, never a price change
    assert observation.http_status is None
    assert len(site.requests_to("/closed")) == 1
    assert metric("pricewatch_scraper_blocked_total", **labels) - blocked_before == 1


# --- conditional GET ----------------------------------------------------------------------


async def test_etag_makes_the_second_fetch_a_304_that_keeps_the_price(
    site: Site, fetcher: PageFetcher
) -> None:
    @site.route("/etag")
    async def etag(request: web.Request, n: int) -> web.Response:
        if request.headers.get("If-None-Match") == '"v1"':
            return web.Response(status=304, headers={"ETag": '"v1"'})
        return page("899.00", ETag='"v1"')

    not_modified_before = metric("pricewatch_scraper_not_modified_total")
    extracted_before = metric("pricewatch_scraper_extractions_total", extractor="jsonld")

    first = await fetch(fetcher, site.url("/etag"))
    second = await fetch(fetcher, site.url("/etag"))

    sent = [s.headers.get("If-None-Match") for s in site.requests_to("/etag")]
    assert sent == [None, '"v1"']
    assert (first.outcome, first.price, first.http_status) == (Outcome.OK, Decimal("899.00"), 200)
    assert second.outcome is Outcome.OK
    assert (second.price, second.currency, second.title) == (
        first.price,
        first.currency,
        first.title,
    )
    assert (second.availability, second.extractor) == (first.availability, first.extractor)
    assert second.http_status == 304
    assert second.observed_at > first.observed_at
    assert metric("pricewatch_scraper_not_modified_total") - not_modified_before == 1
    # The 304 republished the remembered reading: the page was parsed once.
    assert (
        metric("pricewatch_scraper_extractions_total", extractor="jsonld") - extracted_before == 1
    )


async def test_last_modified_is_sent_back_as_if_modified_since(
    site: Site, fetcher: PageFetcher
) -> None:
    stamp = "Wed, 25 Nov 2026 10:00:00 GMT"

    @site.route("/dated")
    async def dated(request: web.Request, n: int) -> web.Response:
        if request.headers.get("If-Modified-Since") == stamp:
            return web.Response(status=304)
        return page("5.00", **{"Last-Modified": stamp})

    await fetch(fetcher, site.url("/dated"))
    second = await fetch(fetcher, site.url("/dated"))

    assert [s.headers.get("If-Modified-Since") for s in site.requests_to("/dated")] == [
        None,
        stamp,
    ]
    assert (second.outcome, second.price, second.http_status) == (
        Outcome.OK,
        Decimal("5.00"),
        304,
    )


async def test_a_changed_page_replaces_what_was_remembered(
    site: Site, fetcher: PageFetcher
) -> None:
    @site.route("/changing")
    async def changing(request: web.Request, n: int) -> web.Response:
        version = '"v2"' if n >= 2 else '"v1"'
        if request.headers.get("If-None-Match") == version:
            return web.Response(status=304)
        return page("20.00" if n >= 2 else "25.00", ETag=version)

    prices = [(await fetch(fetcher, site.url("/changing"))).price for _ in range(3)]

    assert prices == [Decimal("25.00"), Decimal("20.00"), Decimal("20.00")]
    assert [s.headers.get("If-None-Match") for s in site.requests_to("/changing")] == [
        None,
        '"v1"',
        '"v2"',
    ]


async def test_no_conditional_get_when_the_cache_is_off(site: Site) -> None:
    @site.route("/etag")
    async def etag(request: web.Request, n: int) -> web.Response:
        return page(ETag='"v1"')

    async with PageFetcher(settings_for(site, conditional_cache_entries=0)) as fetcher:
        await fetch(fetcher, site.url("/etag"))
        await fetch(fetcher, site.url("/etag"))

    assert [s.headers.get("If-None-Match") for s in site.requests_to("/etag")] == [None, None]


# --- redirects ----------------------------------------------------------------------------


async def test_a_redirect_that_keeps_the_product_path_is_followed_and_recorded(
    site: Site, fetcher: PageFetcher
) -> None:
    @site.route("/item")
    async def item(request: web.Request, n: int) -> web.Response:
        if "v" not in request.query:
            raise web.HTTPMovedPermanently("/item?v=2")
        return page("7.00")

    observation = await fetch(fetcher, site.url("/item"))

    assert (observation.outcome, observation.price) == (Outcome.OK, Decimal("7.00"))
    assert observation.final_url == site.url("/item?v=2")
    assert observation.url == site.url("/item")


async def test_a_redirect_to_the_home_page_is_gone(site: Site, fetcher: PageFetcher) -> None:
    @site.route("/discontinued")
    async def discontinued(request: web.Request, n: int) -> web.Response:
        raise web.HTTPFound("/")

    @site.route("/")
    async def home(request: web.Request, n: int) -> web.Response:
        return page("1.00")  # a home page with a price must not pass for the product

    observation = await fetch(fetcher, site.url("/discontinued"))

    assert (observation.outcome, observation.error) == (Outcome.GONE, "redirected_away")
    assert observation.price is None
    assert observation.final_url == site.url("/")


async def test_validators_go_to_the_url_that_answered_after_a_redirect(
    site: Site, fetcher: PageFetcher
) -> None:
    seen_validators: list[str | None] = []

    @site.route("/old")
    async def old_or_canonical(request: web.Request, n: int) -> web.Response:
        if "canonical" not in request.query:
            seen_validators.append(request.headers.get("If-None-Match"))
            raise web.HTTPMovedPermanently("/old?canonical=1")
        if request.headers.get("If-None-Match") == '"c1"':
            return web.Response(status=304)
        return page("3.00", ETag='"c1"')

    await fetch(fetcher, site.url("/old"))
    second = await fetch(fetcher, site.url("/old"))

    assert seen_validators == [None, None]  # not sent to the redirecting URL
    assert (second.outcome, second.price, second.http_status) == (Outcome.OK, Decimal("3.00"), 304)
    assert second.final_url == site.url("/old?canonical=1")


# --- robots.txt ---------------------------------------------------------------------------


async def test_robots_disallow_refuses_without_requesting_the_page(
    site: Site, fetcher: PageFetcher
) -> None:
    site.robots = "User-agent: *\nAllow: /\n\nUser-agent: Pricewatch\nDisallow: /private/\n"

    @site.route("/private/item")
    async def private(request: web.Request, n: int) -> web.Response:
        return page()

    @site.route("/public/item")
    async def public(request: web.Request, n: int) -> web.Response:
        return page()

    refusals_before = metric("pricewatch_scraper_robots_refusals_total")

    refused = await fetch(fetcher, site.url("/private/item"))
    allowed = await fetch(fetcher, site.url("/public/item"))
    await fetch(fetcher, site.url("/private/item"))

    assert (refused.outcome, refused.error) == (Outcome.ERROR, "robots_disallowed")
    assert refused.price is None and refused.http_status is None
    assert allowed.outcome is Outcome.OK
    assert site.requests_to("/private/item") == []
    assert len(site.requests_to("/robots.txt")) == 1  # cached for the host
    assert site.seen[0].path == "/robots.txt"
    assert site.seen[0].headers["User-Agent"] == Settings().user_agent
    assert metric("pricewatch_scraper_robots_refusals_total") - refusals_before == 2


async def test_robots_can_be_ignored_by_setting(site: Site) -> None:
    site.robots = "User-agent: *\nDisallow: /\n"

    @site.route("/item")
    async def item(request: web.Request, n: int) -> web.Response:
        return page()

    async with PageFetcher(settings_for(site, respect_robots_txt=False)) as fetcher:
        observation = await fetch(fetcher, site.url("/item"))

    assert observation.outcome is Outcome.OK
    assert site.requests_to("/robots.txt") == []


async def test_robots_txt_is_refetched_after_its_ttl(site: Site) -> None:
    site.robots = "User-agent: *\nDisallow: /item\n"

    @site.route("/item")
    async def item(request: web.Request, n: int) -> web.Response:
        return page()

    async with PageFetcher(settings_for(site, robots_cache_seconds=0.5)) as fetcher:
        first = await fetch(fetcher, site.url("/item"))
        site.robots = "User-agent: *\nAllow: /\n"
        still_cached = await fetch(fetcher, site.url("/item"))
        await asyncio.sleep(0.6)
        after_ttl = await fetch(fetcher, site.url("/item"))

    assert [o.error for o in (first, still_cached)] == ["robots_disallowed"] * 2
    assert after_ttl.outcome is Outcome.OK
    assert len(site.requests_to("/robots.txt")) == 2


async def test_robots_txt_server_error_means_no_fetch_for_now(site: Site) -> None:
    # RFC 9309: an unreachable robots.txt (5xx) means "assume complete disallow".
    site.robots_status = 503

    @site.route("/item")
    async def item(request: web.Request, n: int) -> web.Response:
        return page()

    async with PageFetcher(settings_for(site)) as fetcher:
        observation = await fetch(fetcher, site.url("/item"))

    assert (observation.outcome, observation.error) == (Outcome.ERROR, "robots_unavailable")
    assert site.requests_to("/item") == []


async def test_robots_txt_missing_allows_everything(site: Site, fetcher: PageFetcher) -> None:
    @site.route("/item")
    async def item(request: web.Request, n: int) -> web.Response:
        return page()

    observation = await fetch(fetcher, site.url("/item"))

    assert observation.outcome is Outcome.OK
    assert [s.path for s in site.seen] == ["/robots.txt", "/item"]


# --- per-host concurrency and spacing -----------------------------------------------------


async def test_per_host_concurrency_is_never_exceeded(site: Site, fetcher: PageFetcher) -> None:
    @site.route("/slow")
    async def slow(request: web.Request, n: int) -> web.Response:
        await asyncio.sleep(0.2)
        return page()

    observations = await asyncio.gather(*(fetch(fetcher, site.url("/slow")) for _ in range(8)))

    assert all(o.outcome is Outcome.OK for o in observations)
    assert site.max_in_flight == 2  # the setting, reached but never passed


async def test_a_site_adapter_overrides_the_host_limits(site: Site) -> None:
    @site.route("/slow")
    async def slow(request: web.Request, n: int) -> web.Response:
        await asyncio.sleep(0.1)
        return page()

    adapters = parse_site_adapters(
        {
            "127.0.0.1": {
                "kind": "html",
                "price": "h1::text",  # never matches a price: the chain goes on to JSON-LD
                "max_concurrent_requests": 1,
                "min_request_interval_seconds": 0.25,
            }
        }
    )
    async with PageFetcher(settings_for(site), adapters=adapters) as fetcher:
        await asyncio.gather(*(fetch(fetcher, site.url("/slow")) for _ in range(4)))

    starts = [s.at for s in site.requests_to("/slow")]
    assert site.max_in_flight == 1
    assert min(b - a for a, b in itertools.pairwise(starts)) >= 0.25 - TOLERANCE_SECONDS


async def test_requests_to_one_host_are_spaced_by_the_interval(site: Site) -> None:
    @site.route("/item")
    async def item(request: web.Request, n: int) -> web.Response:
        return page()

    interval = 0.3
    settings = settings_for(
        site, host_max_concurrent_requests=4, host_min_request_interval_seconds=interval
    )
    async with PageFetcher(settings) as fetcher:
        await asyncio.gather(*(fetch(fetcher, site.url("/item")) for _ in range(5)))

    # robots.txt counts as a request to the host too.
    starts = [s.at for s in site.seen]
    assert [s.path for s in site.seen] == ["/robots.txt"] + ["/item"] * 5
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= interval - TOLERANCE_SECONDS, gaps
    assert starts[-1] - starts[0] >= 5 * interval - TOLERANCE_SECONDS


async def test_hosts_do_not_wait_for_each_other(site: Site) -> None:
    """Spacing is per host: 'localhost' (allow-listed here) and 127.0.0.1 are two hosts."""

    @site.route("/item")
    async def item(request: web.Request, n: int) -> web.Response:
        return page()

    settings = settings_for(
        site,
        allowed_private_hosts=f"127.0.0.1:{site.server.port},localhost:{site.server.port}",
        host_min_request_interval_seconds=1.0,
        respect_robots_txt=False,
    )
    other = f"http://localhost:{site.server.port}/item"
    async with PageFetcher(settings) as fetcher:
        started = time.monotonic()
        await asyncio.gather(fetch(fetcher, site.url("/item")), fetch(fetcher, other))
        elapsed = time.monotonic() - started

    assert len(site.requests_to("/item")) == 2
    assert elapsed < 1.0
