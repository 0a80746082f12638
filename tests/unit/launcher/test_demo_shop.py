"""The demo shop's pages and admin API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from launcher.demo.shop import DEFAULT_PRODUCTS, DemoProduct, create_shop_app, display_price
from pricewatch.contract.records import Availability

Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    async with TestClient(TestServer(create_shop_app())) as test_client:
        yield test_client


@pytest.mark.parametrize(
    ("price", "currency", "shown"),
    [
        ("1226.00", "EUR", "€1.226,00"),
        ("79.99", "USD", "$79.99"),
        ("1049.5", "GBP", "£1,049.50"),
        ("12800", "JPY", "¥12,800"),
        ("12.5", "CHF", "CHF 12.50"),
    ],
)
def test_display_price(price: str, currency: str, shown: str) -> None:
    assert display_price(Decimal(price), currency) == shown


def test_default_products_are_distinct_and_realistic() -> None:
    assert 3 <= len(DEFAULT_PRODUCTS) <= 5
    assert len({p.slug for p in DEFAULT_PRODUCTS}) == len(DEFAULT_PRODUCTS)
    assert {p.availability for p in DEFAULT_PRODUCTS} >= {
        Availability.IN_STOCK,
        Availability.OUT_OF_STOCK,
    }


async def test_index_links_every_product(client: Client) -> None:
    html = await (await client.get("/")).text()

    for product in DEFAULT_PRODUCTS:
        assert f'href="/products/{product.slug}"' in html


async def test_product_page_shows_price_label_and_json_ld(client: Client) -> None:
    response = await client.get("/products/espresso-machine")
    html = await response.text()

    assert response.status == 200
    assert "€1.226,00" in html
    assert "Add to cart" in html
    assert '<script type="application/ld+json">' in html
    assert '"availability": "https://schema.org/InStock"' in html


async def test_custom_products_and_unknown_slug(client: Client) -> None:
    only = DemoProduct(slug="mug", title="Mug", price=Decimal("9.00"), currency="EUR")
    async with TestClient(TestServer(create_shop_app([only]))) as custom:
        assert (await custom.get("/products/mug")).status == 200
        assert (await custom.get("/products/espresso-machine")).status == 404


async def test_admin_lists_states(client: Client) -> None:
    states = await (await client.get("/admin/products")).json()

    assert [s["slug"] for s in states] == [p.slug for p in DEFAULT_PRODUCTS]
    assert states[0]["price"] == "1226.00"


async def test_admin_update_returns_the_new_state(client: Client) -> None:
    response = await client.post(
        "/admin/products/espresso-machine",
        json={"price": "999.00", "currency": "usd", "availability": "out_of_stock"},
    )

    state = await response.json()
    assert response.status == 200
    assert (state["price"], state["currency"], state["availability"]) == (
        "999.00",
        "USD",
        "out_of_stock",
    )
    html = await (await client.get("/products/espresso-machine")).text()
    assert "$999.00" in html and "Out of stock" in html


async def test_admin_remove_and_restore(client: Client) -> None:
    await client.post("/admin/products/espresso-machine", json={"removed": True})
    gone = await client.get("/products/espresso-machine")
    assert gone.status == 404
    assert "couldn't find" in await gone.text()
    assert "espresso-machine" not in await (await client.get("/")).text()

    await client.post("/admin/products/espresso-machine", json={"removed": False})
    assert (await client.get("/products/espresso-machine")).status == 200


async def test_admin_unknown_slug_is_404(client: Client) -> None:
    response = await client.post("/admin/products/nope", json={"price": "1.00"})

    assert response.status == 404
    assert "nope" in (await response.json())["error"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"prize": "1.00"}', "unknown field"),
        ('{"price": "abc"}', "not a decimal"),
        ('{"price": "-1"}', "positive"),
        ('{"price": true}', "decimal string"),
        ('{"price": "1e20"}', "below"),
        ('{"currency": "EURO"}', "ISO 4217"),
        ('{"availability": "maybe"}', "availability must be one of"),
        ('{"removed": "yes"}', "true or false"),
        ('{"http_status": 99}', "http_status"),
        ('{"redirect_to": "javascript:x"}', "redirect_to"),
    ],
)
async def test_admin_invalid_body_is_422_with_a_clear_message(
    client: Client, body: str, message: str
) -> None:
    response = await client.post("/admin/products/espresso-machine", data=body)

    assert response.status == 422
    assert message in (await response.json())["error"]
    # Nothing changed.
    states = await (await client.get("/admin/products")).json()
    assert states[0]["price"] == "1226.00"


async def test_admin_accepts_a_json_number_price_without_float_rounding(client: Client) -> None:
    response = await client.post("/admin/products/espresso-machine", data='{"price": 0.1}')

    assert (await response.json())["price"] == "0.1"
