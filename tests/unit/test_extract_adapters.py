"""Site adapters: configuration, pure extraction, and the fetcher reading a JSON API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import ValidationError

from pricewatch.contract.records import Availability, Outcome
from pricewatch.ids import product_id_for
from pricewatch.settings import Settings
from producers.extractors.adapters import json_path
from producers.extractors.chain import (
    NO_PRICE_FOUND,
    Extraction,
    HtmlAdapter,
    JsonApiAdapter,
    adapter_for,
    extract,
    extract_with_adapter,
    load_site_adapters,
    parse_site_adapters,
)
from producers.fetch import PageFetcher

PAGE = """<!DOCTYPE html><html><head>
<meta property="product:price:amount" content="9.99"></head><body>
<div id="p"><h2 class="t">Pan 28 cm</h2><img class="i" src="/img/pan.jpg">
<span class="now">1.226,00 €</span><span class="cur">EUR</span>
<span class="stock">Lieferbar</span></div></body></html>"""
URL = "https://www.shop.example/p/pan-28"

CSS = HtmlAdapter(
    price="#p .now::text",
    currency="#p .cur",
    availability="#p .stock",
    title="#p h2.t",
    image="#p img.i::attr(src)",
    availability_values={"lieferbar": Availability.IN_STOCK},
)
API = JsonApiAdapter(
    kind="json_api",
    product_url_pattern=r"/p/(?P<sku>[a-z0-9-]+)$",
    api_url="https://api.shop.example/v1/products/{sku}.json",
    price="data.offers[0].price",
    currency="data.offers[0].currency",
    availability="data.offers[0].stock",
    title="$.data.name",
    image="data.images.0",
)
API_BODY = {
    "data": {
        "name": "Pan 28 cm",
        "images": ["https://cdn.shop.example/pan.jpg"],
        "offers": [{"price": 1226.5, "currency": "EUR", "stock": "OutOfStock"}],
    }
}


def test_html_adapter_with_css_selectors() -> None:
    assert extract_with_adapter(CSS, PAGE, URL) == Extraction(
        price=Decimal("1226.00"),
        currency="EUR",
        availability=Availability.IN_STOCK,
        title="Pan 28 cm",
        extractor="adapter",
        image="https://www.shop.example/img/pan.jpg",
    )


def test_html_adapter_with_xpath_selectors() -> None:
    adapter = HtmlAdapter(
        selector_type="xpath",
        price="//span[@class='now']/text()",
        title="//div[@id='p']/h2",
        currency_default="EUR",
    )

    result = extract_with_adapter(adapter, PAGE.replace('<span class="cur">EUR</span>', ""), URL)

    assert (result.price, result.currency, result.title) == (
        Decimal("1226.00"),
        "EUR",
        "Pan 28 cm",
    )


def test_html_adapter_goes_first_in_the_chain_and_falls_through_without_a_price() -> None:
    assert extract(PAGE, URL, adapter=CSS).extractor == "adapter"
    assert extract(PAGE, URL).extractor == "opengraph"
    missing = HtmlAdapter(price=".no-such-thing")
    assert extract(PAGE, URL, adapter=missing).extractor == "opengraph"


def test_html_adapter_availability_from_the_sites_own_words_or_a_phrase() -> None:
    adapter = HtmlAdapter(price=".now", availability=".stock")

    assert extract_with_adapter(adapter, PAGE, URL).availability is Availability.UNKNOWN
    sold_out = PAGE.replace("Lieferbar", "Leider ausverkauft")
    assert extract_with_adapter(adapter, sold_out, URL).availability is Availability.OUT_OF_STOCK


def test_malformed_selector_is_refused_when_configured() -> None:
    with pytest.raises(ValidationError, match="invalid css selector"):
        HtmlAdapter(price="div[[[")
    with pytest.raises(ValidationError, match="invalid xpath selector"):
        HtmlAdapter(price="//div[", selector_type="xpath")


def test_json_api_url_for_a_product_url() -> None:
    assert API.api_url_for(URL) == "https://api.shop.example/v1/products/pan-28.json"
    assert API.api_url_for("https://www.shop.example/category/pans") is None
    assert CSS.api_url_for(URL) is None


def test_json_api_extraction() -> None:
    result = extract_with_adapter(API, json.dumps(API_BODY), URL)

    assert result == Extraction(
        price=Decimal("1226.5"),
        currency="EUR",
        availability=Availability.OUT_OF_STOCK,
        title="Pan 28 cm",
        extractor="adapter",
        image="https://cdn.shop.example/pan.jpg",
    )


def test_json_api_price_in_minor_units() -> None:
    adapter = API.model_copy(update={"price": "cents", "price_minor_units": True})

    assert extract_with_adapter(adapter, '{"cents": 129900}', URL).price == Decimal("1299")
    assert extract_with_adapter(adapter, '{"cents": "1299"}', URL).price is None


@pytest.mark.parametrize(
    ("body", "error"),
    [("not json", "invalid_json"), ('{"data": {}}', NO_PRICE_FOUND), ("[]", NO_PRICE_FOUND)],
)
def test_json_api_without_a_price(body: str, error: str) -> None:
    result = extract_with_adapter(API, body, URL)

    assert (result.price, result.error) == (None, error)


def test_json_path() -> None:
    document = {"a": [{"b": 1}, {"b": [2, 3]}]}

    assert json_path(document, "a[1].b[1]") == 3
    assert json_path(document, "$.a.0.b") == 1
    assert json_path(document, "a[5].b") is None
    assert json_path(document, "a.b") is None


def test_adapters_file_and_host_lookup(tmp_path: Path) -> None:
    path = tmp_path / "adapters.json"
    path.write_text(
        json.dumps(
            {
                "Shop.Example": CSS.model_dump(mode="json"),
                "127.0.0.1:8081": API.model_dump(mode="json"),
            }
        )
    )

    adapters = load_site_adapters(path)

    assert adapters["shop.example"] == CSS
    assert adapter_for(adapters, URL) == CSS  # "www." is optional
    assert adapter_for(adapters, "http://127.0.0.1:8081/p/x") == API
    assert adapter_for(adapters, "http://127.0.0.1:9999/p/x") is None
    assert adapter_for(adapters, "http://[::1/") is None


@pytest.mark.parametrize(
    "document",
    [
        {"h": {"kind": "html"}},
        {"h": {"kind": "soap", "price": "x"}},
        {"h": {"kind": "html", "price": "x", "colour": "blue"}},
        {"h": {"kind": "html", "price": "x", "currency_default": "euro"}},
        {"h": {"kind": "json_api", "price": "x", "api_url": "u", "product_url_pattern": "("}},
    ],
)
def test_invalid_adapter_configuration_is_refused(document: object) -> None:
    with pytest.raises(ValidationError):
        parse_site_adapters(document)


# --- The fetcher with adapters, against a real loopback server --------------------------------


async def product_page(request: web.Request) -> web.Response:
    return web.Response(text=PAGE, content_type="text/html")


async def product_api(request: web.Request) -> web.Response:
    if request.match_info["sku"] != "pan-28":
        raise web.HTTPNotFound()
    assert request.headers["Accept"] == "application/json"
    return web.json_response(API_BODY)


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    app = web.Application()
    app.router.add_get("/p/{sku}", product_page)
    app.router.add_get("/api/{sku}.json", product_api)
    test_server = TestServer(app, host="127.0.0.1")
    await test_server.start_server()
    yield test_server
    await test_server.close()


def settings_for(server: TestServer) -> Settings:
    return Settings(allowed_private_hosts=f"127.0.0.1:{server.port}", fetch_timeout_seconds=5)


async def test_fetcher_reads_the_json_api_of_a_json_api_adapter(server: TestServer) -> None:
    base = f"http://127.0.0.1:{server.port}"
    adapter = API.model_copy(update={"api_url": base + "/api/{sku}.json"})
    url = f"{base}/p/pan-28"

    async with PageFetcher(settings_for(server), {f"127.0.0.1:{server.port}": adapter}) as fetcher:
        observation = await fetcher.fetch(product_id_for(url), url)
        gone = await fetcher.fetch(product_id_for(url), f"{base}/p/pan-99")

    assert observation.outcome is Outcome.OK
    assert (observation.price, observation.currency) == (Decimal("1226.5"), "EUR")
    assert observation.availability is Availability.OUT_OF_STOCK
    assert observation.extractor == "adapter"
    assert observation.url == url
    assert observation.final_url == f"{base}/api/pan-28.json"
    assert (gone.outcome, gone.error) == (Outcome.GONE, "http_404")


async def test_fetcher_loads_html_adapters_from_the_settings_file(
    server: TestServer, tmp_path: Path
) -> None:
    path = tmp_path / "adapters.json"
    path.write_text(json.dumps({"127.0.0.1": CSS.model_dump(mode="json")}))
    settings = settings_for(server).model_copy(update={"site_adapters_file": path})
    url = f"http://127.0.0.1:{server.port}/p/pan-28"

    async with PageFetcher(settings) as fetcher:
        observation = await fetcher.fetch(product_id_for(url), url)
    async with PageFetcher(settings_for(server)) as plain:
        generic = await plain.fetch(product_id_for(url), url)

    assert (observation.price, observation.extractor) == (Decimal("1226.00"), "adapter")
    assert (generic.price, generic.extractor) == (Decimal("9.99"), "opengraph")
