"""PageFetcher against the demo shop on a real loopback HTTP server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC
from decimal import Decimal

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from launcher.demo.shop import create_shop_app
from pricewatch.contract.records import Availability, Outcome, PriceObservation
from pricewatch.ids import observation_id_for, product_id_for
from pricewatch.settings import Settings
from producers.fetch import PageFetcher

MAX_RESPONSE_BYTES = 200_000
FETCH_TIMEOUT_SECONDS = 1.0


async def oversize_page(request: web.Request) -> web.Response:
    return web.Response(text="<html>" + "x" * (MAX_RESPONSE_BYTES * 2), content_type="text/html")


async def oversize_stream(request: web.Request) -> web.StreamResponse:
    # Chunked, no Content-Length: the cap must hold while reading, not just on the header.
    response = web.StreamResponse(headers={"Content-Type": "text/html"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    for _ in range(40):
        await response.write(b"y" * 10_000)
    await response.write_eof()
    return response


async def slow_page(request: web.Request) -> web.Response:
    await asyncio.sleep(FETCH_TIMEOUT_SECONDS * 5)
    return web.Response(text="too late")


async def to_metadata(request: web.Request) -> web.Response:
    raise web.HTTPFound("http://169.254.169.254/latest/meta-data/")


async def json_body(request: web.Request) -> web.Response:
    # A product URL that answers JSON (an API, an error document): not a page, no price.
    return web.json_response({"error": "not found"} if "object" in request.path else [1, 2])


@pytest.fixture
async def shop() -> AsyncIterator[TestServer]:
    app = create_shop_app()
    app.router.add_get("/test/oversize", oversize_page)
    app.router.add_get("/test/oversize-stream", oversize_stream)
    app.router.add_get("/test/slow", slow_page)
    app.router.add_get("/test/to-metadata", to_metadata)
    app.router.add_get("/test/json-object", json_body)
    app.router.add_get("/test/json-array", json_body)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


@pytest.fixture
async def admin(shop: TestServer) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    client: TestClient[web.Request, web.Application] = TestClient(shop)
    await client.start_server()
    yield client
    await client.close()


def settings_for(shop: TestServer, allowed: str | None = None) -> Settings:
    return Settings(
        allowed_private_hosts=f"127.0.0.1:{shop.port}" if allowed is None else allowed,
        max_response_bytes=MAX_RESPONSE_BYTES,
        fetch_timeout_seconds=FETCH_TIMEOUT_SECONDS,
        scraper_concurrency=4,
        # Politeness is tested in test_politeness.py; here it would only slow things down.
        host_min_request_interval_seconds=0,
        retry_backoff_base_seconds=0.01,
    )


@pytest.fixture
async def fetcher(shop: TestServer) -> AsyncIterator[PageFetcher]:
    async with PageFetcher(settings_for(shop)) as page_fetcher:
        yield page_fetcher


def url_of(shop: TestServer, path: str, host: str = "127.0.0.1") -> str:
    return f"http://{host}:{shop.port}{path}"


async def fetch(fetcher: PageFetcher, url: str) -> PriceObservation:
    return await fetcher.fetch(product_id_for(url), url)


async def change(
    admin: TestClient[web.Request, web.Application], slug: str, **body: object
) -> None:
    response = await admin.post(f"/admin/products/{slug}", json=body)
    assert response.status == 200, await response.text()


async def test_product_page_is_an_ok_observation(shop: TestServer, fetcher: PageFetcher) -> None:
    url = url_of(shop, "/products/espresso-machine")

    observation = await fetch(fetcher, url)

    assert observation.outcome is Outcome.OK
    assert (observation.price, observation.currency) == (Decimal("1226.00"), "EUR")
    assert observation.availability is Availability.IN_STOCK
    assert observation.title == "Lumio Barista Pro Espresso Machine"
    assert observation.http_status == 200
    assert observation.extractor == "jsonld"
    assert observation.error is None
    assert observation.product_id == product_id_for(url)
    assert observation.url == url
    assert observation.observed_at.utcoffset() == UTC.utcoffset(None)
    assert observation.observation_id == observation_id_for(
        observation.product_id, observation.observed_at
    )
    # It travels: the wire form round-trips with the price intact.
    wire = PriceObservation.model_validate_json(observation.model_dump_json())
    assert wire == observation


async def test_price_change_is_seen_on_the_next_fetch(
    shop: TestServer, fetcher: PageFetcher, admin: TestClient[web.Request, web.Application]
) -> None:
    await change(admin, "wireless-headphones", price="59.49")

    observation = await fetch(fetcher, url_of(shop, "/products/wireless-headphones"))

    assert (observation.price, observation.currency) == (Decimal("59.49"), "USD")


async def test_out_of_stock_still_carries_the_price(shop: TestServer, fetcher: PageFetcher) -> None:
    observation = await fetch(fetcher, url_of(shop, "/products/trail-running-shoes"))

    assert observation.outcome is Outcome.OK
    assert observation.availability is Availability.OUT_OF_STOCK
    assert observation.price == Decimal("129.95")


async def test_removed_product_is_gone(
    shop: TestServer, fetcher: PageFetcher, admin: TestClient[web.Request, web.Application]
) -> None:
    await change(admin, "mechanical-keyboard", removed=True)

    observation = await fetch(fetcher, url_of(shop, "/products/mechanical-keyboard"))

    assert observation.outcome is Outcome.GONE
    assert observation.error == "http_404"
    assert observation.http_status == 404
    assert observation.price is None


async def test_server_error_is_an_error_that_says_nothing_about_the_product(
    shop: TestServer, fetcher: PageFetcher, admin: TestClient[web.Request, web.Application]
) -> None:
    await change(admin, "espresso-machine", http_status=500)

    observation = await fetch(fetcher, url_of(shop, "/products/espresso-machine"))

    assert observation.outcome is Outcome.ERROR
    assert observation.error == "http_500"
    assert observation.price is None


async def test_rate_limit_is_an_error(
    shop: TestServer, fetcher: PageFetcher, admin: TestClient[web.Request, web.Application]
) -> None:
    await change(admin, "espresso-machine", http_status=429)

    observation = await fetch(fetcher, url_of(shop, "/products/espresso-machine"))

    assert (observation.outcome, observation.error) == (Outcome.ERROR, "http_429")


async def test_redirect_to_home_is_gone(
    shop: TestServer, fetcher: PageFetcher, admin: TestClient[web.Request, web.Application]
) -> None:
    await change(admin, "wireless-headphones", redirect_to="/")

    observation = await fetch(fetcher, url_of(shop, "/products/wireless-headphones"))

    assert observation.outcome is Outcome.GONE
    assert observation.error == "redirected_away"
    assert observation.final_url == url_of(shop, "/")


async def test_redirect_to_another_product_path_is_gone(
    shop: TestServer, fetcher: PageFetcher, admin: TestClient[web.Request, web.Application]
) -> None:
    # Even though the target is a product page: it is not *this* product.
    await change(admin, "wireless-headphones", redirect_to="/products/espresso-machine")

    observation = await fetch(fetcher, url_of(shop, "/products/wireless-headphones"))

    assert (observation.outcome, observation.error) == (Outcome.GONE, "redirected_away")
    assert observation.price is None


async def test_redirect_loop_is_an_error(
    shop: TestServer, fetcher: PageFetcher, admin: TestClient[web.Request, web.Application]
) -> None:
    await change(admin, "espresso-machine", redirect_to="/products/espresso-machine")

    observation = await fetch(fetcher, url_of(shop, "/products/espresso-machine"))

    assert (observation.outcome, observation.error) == (Outcome.ERROR, "too_many_redirects")


@pytest.mark.parametrize("path", ["/test/oversize", "/test/oversize-stream"])
async def test_oversize_response_is_an_error(
    shop: TestServer, fetcher: PageFetcher, path: str
) -> None:
    observation = await fetch(fetcher, url_of(shop, path))

    assert (observation.outcome, observation.error) == (Outcome.ERROR, "response_too_large")


async def test_slow_page_times_out(shop: TestServer, fetcher: PageFetcher) -> None:
    observation = await fetch(fetcher, url_of(shop, "/test/slow"))

    assert (observation.outcome, observation.error) == (Outcome.ERROR, "timeout")


async def test_page_without_a_price_is_an_error(shop: TestServer, fetcher: PageFetcher) -> None:
    observation = await fetch(fetcher, url_of(shop, "/"))

    assert (observation.outcome, observation.error) == (Outcome.ERROR, "no_price_found")
    assert observation.http_status == 200


async def test_a_json_body_is_a_page_without_a_price(
    shop: TestServer, fetcher: PageFetcher
) -> None:
    # parsel reads text that looks like JSON as JSON, where every XPath raised ValueError.
    for path in ("/test/json-object", "/test/json-array"):
        observation = await fetch(fetcher, url_of(shop, path))
        assert (observation.outcome, observation.error) == (Outcome.ERROR, "no_price_found")


async def test_an_extractor_bug_is_an_error_observation(
    shop: TestServer, fetcher: PageFetcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    import producers.fetch.client

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("an extractor bug")

    monkeypatch.setattr(producers.fetch.client, "extract", broken)
    observation = await fetch(fetcher, url_of(shop, "/products/espresso-machine"))
    assert (observation.outcome, observation.error) == (
        Outcome.ERROR,
        "extract_failed: RuntimeError",
    )
    assert observation.http_status == 200


async def test_loopback_literal_not_allow_listed_is_refused(shop: TestServer) -> None:
    async with PageFetcher(settings_for(shop, allowed="")) as fetcher:
        observation = await fetch(fetcher, url_of(shop, "/products/espresso-machine"))

    assert observation.outcome is Outcome.ERROR
    assert observation.error is not None
    assert observation.error.startswith("url_refused: ")
    assert observation.http_status is None


async def test_host_name_resolving_to_loopback_is_refused(
    shop: TestServer, fetcher: PageFetcher
) -> None:
    # Only 127.0.0.1:<port> is allow-listed; "localhost" reaches the same server via DNS.
    observation = await fetch(fetcher, url_of(shop, "/products/espresso-machine", "localhost"))

    assert observation.outcome is Outcome.ERROR
    assert observation.error == "url_refused: localhost resolves to loopback address 127.0.0.1"


async def test_redirect_to_cloud_metadata_is_refused(
    shop: TestServer, fetcher: PageFetcher
) -> None:
    observation = await fetch(fetcher, url_of(shop, "/test/to-metadata"))

    assert observation.outcome is Outcome.ERROR
    assert observation.error is not None
    assert "cloud metadata" in observation.error


async def test_non_http_url_is_refused(fetcher: PageFetcher) -> None:
    observation = await fetch(fetcher, "file:///etc/passwd")

    assert observation.outcome is Outcome.ERROR
    assert observation.error is not None
    assert observation.error.startswith("url_refused: ")


async def test_concurrent_fetches_share_the_session(shop: TestServer, fetcher: PageFetcher) -> None:
    urls = [url_of(shop, "/products/espresso-machine")] * 10 + [url_of(shop, "/products/nope")]

    observations = await asyncio.gather(*(fetch(fetcher, url) for url in urls))

    assert [o.outcome for o in observations] == [Outcome.OK] * 10 + [Outcome.GONE]
