"""Blocked is not sold out, through the real fetcher and a real scraper process: a loopback
shop answers with a captcha page, a JavaScript challenge (429 and 403, with and without
``cf-mitigated``) and a redirect to its captcha path; each becomes an error observation
``blocked`` with ``blocked_by``, is asked once (no retries), and is counted per website
and reason."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestServer

from pricewatch.contract.records import Outcome, PriceObservation
from pricewatch.contract.topics import PRICE_OBSERVATIONS
from pricewatch.ids import product_id_for
from pricewatch.kafka import create_topics
from producers.fetch import PageFetcher
from tests.conftest import Broker
from tests.integration.producers.test_politeness import (
    PAGE,
    Site,
    fetch,
    metric,
    page,
    settings_for,
    site,
)
from tests.integration.producers.test_two_scrapers import (
    ScraperProcess,
    produce_requests,
    samples,
    wait_for_group,
)
from tests.unit.producers.test_blocked import CAPTCHA_PAGE, CHALLENGE_PAGE, HCAPTCHA_PAGE
from tests.workers import TopicReader, keep_logs, worker_settings

__all__ = ["site"]  # the fixture, imported for pytest

BLOCKED = "pricewatch_scraper_blocked_total"


def html(body: str, status: int = 200, **headers: str) -> web.Response:
    return web.Response(text=body, status=status, content_type="text/html", headers=headers)


async def test_a_captcha_page_is_an_error_blocked_not_a_missing_price(site: Site) -> None:
    @site.route("/p/captcha")
    async def captcha(request: web.Request, n: int) -> web.Response:
        return html(CAPTCHA_PAGE)

    labels = {"website": "127.0.0.1", "reason": "captcha"}
    before = metric(BLOCKED, **labels)
    async with PageFetcher(settings_for(site)) as fetcher:
        observation = await fetch(fetcher, site.url("/p/captcha"))

    assert (observation.outcome, observation.error) == (Outcome.ERROR, "blocked")
    assert observation.blocked_by == "captcha"
    assert (observation.price, observation.availability) == (None, None)
    assert observation.http_status == 200
    assert metric(BLOCKED, **labels) - before == 1


async def test_a_challenge_is_asked_once_whatever_its_status(site: Site) -> None:
    @site.route("/p/busy")
    async def busy(request: web.Request, n: int) -> web.Response:
        # A 429 and a Retry-After would be retried; with a challenge body it is final.
        return html(CHALLENGE_PAGE, 429, **{"Retry-After": "1"})

    @site.route("/p/hcaptcha")
    async def hcaptcha(request: web.Request, n: int) -> web.Response:
        return html(HCAPTCHA_PAGE, 503)

    @site.route("/p/mitigated")
    async def mitigated(request: web.Request, n: int) -> web.Response:
        return html("<html></html>", 403, **{"cf-mitigated": "challenge"})

    async with PageFetcher(settings_for(site, fetch_max_attempts=3)) as fetcher:
        answers = {
            path: await fetch(fetcher, site.url(path))
            for path in ("/p/busy", "/p/hcaptcha", "/p/mitigated")
        }

    assert {path: (o.error, o.blocked_by) for path, o in answers.items()} == {
        "/p/busy": ("blocked", "cloudflare"),
        "/p/hcaptcha": ("blocked", "captcha"),
        "/p/mitigated": ("blocked", "cloudflare"),
    }
    assert [o.http_status for o in answers.values()] == [429, 503, 403]
    for path in answers:
        assert len(site.requests_to(path)) == 1, f"{path} was retried"


async def test_a_redirect_to_the_captcha_path_is_blocked_not_removed(site: Site) -> None:
    @site.route("/p/kettle")
    async def kettle(request: web.Request, n: int) -> web.Response:
        raise web.HTTPFound("/errors/validateCaptcha?return=/p/kettle")

    @site.route("/errors/validateCaptcha")
    async def wall(request: web.Request, n: int) -> web.Response:
        return html("<html><body><p>Checking your browser</p></body></html>")

    async with PageFetcher(settings_for(site)) as fetcher:
        observation = await fetch(fetcher, site.url("/p/kettle"))

    assert observation.outcome is Outcome.ERROR, "a wall must not read as a removed product"
    assert (observation.error, observation.blocked_by) == ("blocked", "captcha")


async def test_the_page_behind_works_again_once_the_wall_is_gone(site: Site) -> None:
    @site.route("/p/kettle")
    async def kettle(request: web.Request, n: int) -> web.Response:
        return html(CAPTCHA_PAGE) if n == 1 else page("49.90")

    async with PageFetcher(settings_for(site)) as fetcher:
        first = await fetch(fetcher, site.url("/p/kettle"))
        second = await fetch(fetcher, site.url("/p/kettle"))

    assert first.error == "blocked"
    assert (second.outcome, str(second.price)) == (Outcome.OK, "49.90")


async def test_a_scraper_process_publishes_blocked_observations_and_counts_them(
    broker: Broker, unique_prefix: str, tmp_path: Path
) -> None:
    async def product(request: web.Request) -> web.Response:
        if request.match_info["name"] == "walled":
            return html(CAPTCHA_PAGE)
        return html(PAGE % "19.90")

    app = web.Application()
    app.router.add_get("/p/{name}", product)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    settings = worker_settings(
        broker.bootstrap_servers,
        broker.embedded,
        unique_prefix,
        tmp_path,
        topic_partitions=1,
        allowed_private_hosts=f"127.0.0.1:{server.port}",
        host_min_request_interval_seconds=0.0,
    )
    await create_topics(settings)
    logs = tmp_path / "logs"
    scraper = ScraperProcess(settings, "scraper", logs / "scraper.log")
    try:
        await wait_for_group(settings, 1)
        urls = {name: f"http://127.0.0.1:{server.port}/p/{name}" for name in ("open", "walled")}
        await produce_requests(settings, list(urls.values()))
        async with TopicReader(settings, settings.topic(PRICE_OBSERVATIONS)) as reader:
            assert await reader.wait_until(lambda records: len(records) >= 2, 90)
            observations = {
                o.product_id: o
                for o in (PriceObservation.model_validate_json(r.value) for r in reader.records)
            }
        walled = observations[product_id_for(urls["walled"])]
        opened = observations[product_id_for(urls["open"])]
        assert (walled.outcome, walled.error, walled.blocked_by) == (
            Outcome.ERROR,
            "blocked",
            "captcha",
        )
        assert walled.price is None and walled.availability is None
        assert (opened.outcome, str(opened.price)) == (Outcome.OK, "19.90")
        assert samples(scraper.metrics_port, BLOCKED) == {
            '{reason="captcha",website="127.0.0.1"}': 1.0
        }
    finally:
        code = scraper.stop()
        keep_logs(logs, "blocked-scraper")
        await server.close()
    assert code == 0
