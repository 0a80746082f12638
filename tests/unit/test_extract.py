"""Price extraction from schema.org JSON-LD, and from the demo shop's own pages."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from launcher.demo.shop import DEFAULT_PRODUCTS, create_shop_app
from pricewatch.contract.records import Availability
from producers.extractors.chain import (
    NO_PRICE_FOUND,
    Extraction,
    Page,
    extract,
    parse_availability,
    parse_currency,
    parse_price,
)

URL = "https://shop.example/products/widget"


def page_with(*blocks: str, body: str = "<h1>Widget</h1>") -> str:
    scripts = "\n".join(f'<script type="application/ld+json">{block}</script>' for block in blocks)
    return f"<!DOCTYPE html><html><head>{scripts}</head><body>{body}</body></html>"


def product(offers: Any, **extra: Any) -> str:
    return json.dumps(
        {"@context": "https://schema.org", "@type": "Product", "name": "Widget", "offers": offers}
        | extra
    )


# --- JSON-LD shapes ----------------------------------------------------------------------


def test_single_offer() -> None:
    html = page_with(
        product(
            {
                "@type": "Offer",
                "price": "79.99",
                "priceCurrency": "USD",
                "availability": "https://schema.org/InStock",
            }
        )
    )

    assert extract(html, URL) == Extraction(
        price=Decimal("79.99"),
        currency="USD",
        availability=Availability.IN_STOCK,
        title="Widget",
        extractor="jsonld",
    )


def test_offers_as_list_takes_the_first_offer_with_a_price() -> None:
    html = page_with(
        product(
            [
                {"@type": "Offer", "availability": "https://schema.org/OutOfStock"},
                {"@type": "Offer", "price": "12.50", "priceCurrency": "EUR"},
                {"@type": "Offer", "price": "99.00", "priceCurrency": "EUR"},
            ]
        )
    )

    result = extract(html, URL)

    assert (result.price, result.currency) == (Decimal("12.50"), "EUR")


def test_product_inside_graph() -> None:
    document = {
        "@context": "https://schema.org",
        "@graph": [
            {"@type": "WebSite", "name": "Example shop"},
            {"@type": "BreadcrumbList", "itemListElement": []},
            {
                "@type": ["Product", "Thing"],
                "name": "Graph widget",
                "offers": {"@type": "Offer", "price": "5.00", "priceCurrency": "GBP"},
            },
        ],
    }

    result = extract(page_with(json.dumps(document)), URL)

    assert (result.price, result.currency, result.title) == (Decimal("5.00"), "GBP", "Graph widget")


def test_related_products_prices_are_not_this_products_price() -> None:
    document = {
        "@type": "Product",
        "name": "Widget",
        "offers": {"@type": "Offer", "availability": "https://schema.org/OutOfStock"},
        "isRelatedTo": {
            "@type": "Product",
            "name": "Other widget",
            "offers": {"@type": "Offer", "price": "1.00", "priceCurrency": "EUR"},
        },
    }

    result = extract(page_with(json.dumps(document)), URL)

    assert (result.price, result.title, result.error) == (None, "Widget", NO_PRICE_FOUND)


def test_product_group_variant_price() -> None:
    document = {
        "@type": "ProductGroup",
        "name": "Widget",
        "hasVariant": [
            {
                "@type": "Product",
                "name": "Widget, blue",
                "offers": {"@type": "Offer", "price": "8.00", "priceCurrency": "EUR"},
            }
        ],
    }

    assert extract(page_with(json.dumps(document)), URL).price == Decimal("8.00")


def test_aggregate_offer_uses_low_price() -> None:
    html = page_with(
        product(
            {
                "@type": "AggregateOffer",
                "lowPrice": "19.90",
                "highPrice": "39.90",
                "offerCount": 4,
                "priceCurrency": "EUR",
            }
        )
    )

    assert extract(html, URL).price == Decimal("19.90")


def test_price_in_price_specification() -> None:
    html = page_with(
        product(
            {
                "@type": "Offer",
                "priceSpecification": {
                    "@type": "UnitPriceSpecification",
                    "price": 24.5,
                    "priceCurrency": "CHF",
                },
            }
        )
    )

    result = extract(html, URL)

    assert (result.price, result.currency) == (Decimal("24.5"), "CHF")


def test_malformed_block_is_skipped_and_a_later_valid_block_is_read() -> None:
    broken = '{"@type": "Product", "name": "Widget", "offers": {"price": '
    html = page_with(broken, product({"@type": "Offer", "price": "7.00", "priceCurrency": "EUR"}))

    assert extract(html, URL).price == Decimal("7.00")


def test_trailing_commas_and_html_comment_wrappers_are_tolerated() -> None:
    sloppy = """<!--
    {"@type": "Product", "name": "Widget",
     "offers": {"@type": "Offer", "price": "3.30", "priceCurrency": "EUR",},}
    -->"""

    assert extract(page_with(sloppy), URL).price == Decimal("3.30")


def test_number_price_is_read_exactly_without_float_rounding() -> None:
    html = page_with('{"@type": "Product", "offers": {"price": 0.1, "priceCurrency": "USD"}}')

    price = extract(html, URL).price

    assert price == Decimal("0.1")
    assert isinstance(price, Decimal)


def test_integer_price() -> None:
    html = page_with(product({"@type": "Offer", "price": 1299, "priceCurrency": "SEK"}))

    assert extract(html, URL).price == Decimal("1299")


def test_comma_decimal_price() -> None:
    html = page_with(product({"@type": "Offer", "price": "1.226,00", "priceCurrency": "eur"}))

    result = extract(html, URL)

    assert (result.price, result.currency) == (Decimal("1226.00"), "EUR")


def test_no_price_is_an_error_not_a_price_and_keeps_what_was_found() -> None:
    html = page_with(product({"@type": "Offer", "availability": "https://schema.org/SoldOut"}))

    result = extract(html, URL)

    assert result.price is None
    assert result.error == NO_PRICE_FOUND
    assert result.title == "Widget"
    assert result.availability is Availability.OUT_OF_STOCK


@pytest.mark.parametrize(
    "html",
    [
        "",
        "<html><body><p>Price: $79.99</p></body></html>",
        page_with('{"@type": "BreadcrumbList", "itemListElement": []}'),
        page_with("not json at all"),
        page_with(product({"@type": "Offer", "price": "0.00", "priceCurrency": "EUR"})),
        page_with(product({"@type": "Offer", "price": "call us", "priceCurrency": "EUR"})),
    ],
    ids=["empty", "no-jsonld", "no-product", "garbage", "zero-price", "text-price"],
)
def test_pages_without_a_usable_price(html: str) -> None:
    result = extract(html, URL)

    assert result.price is None
    assert result.error == NO_PRICE_FOUND


def test_extractor_chain_first_price_wins_and_partial_results_fall_through() -> None:
    def titles_only(page: Page) -> Extraction:
        return Extraction(title="From adapter", extractor="adapter", error=NO_PRICE_FOUND)

    def fixed_price(page: Page) -> Extraction:
        return Extraction(price=Decimal("1.00"), currency="EUR", extractor="fixed")

    assert extract("<html></html>", URL, [titles_only, fixed_price]).extractor == "fixed"
    fallback = extract("<html></html>", URL, [titles_only])
    assert (fallback.title, fallback.error) == ("From adapter", NO_PRICE_FOUND)


# --- Value parsing -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("79.99", "79.99"),
        ("1,299.00", "1299.00"),
        ("1.226,00", "1226.00"),
        ("€1.226,00", "1226.00"),
        ("1 226,00 €", "1226.00"),
        ("1'299.00", "1299.00"),
        ("USD 79.99", "79.99"),
        ("12,-", "12"),
        ("1,5", "1.5"),
        ("1,299", "1299"),
        ("1.226.000", "1226000"),
        (79, "79"),
        (Decimal("79.90"), "79.90"),
    ],
)
def test_parse_price(raw: object, expected: str) -> None:
    assert parse_price(raw) == Decimal(expected)


@pytest.mark.parametrize(
    "raw", ["", "free", "-5.00", "0", "10 - 20", "NaN", "Infinity", True, None, [], "1.2.3,4,5"]
)
def test_parse_price_refuses_non_prices(raw: object) -> None:
    assert parse_price(raw) is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://schema.org/InStock", Availability.IN_STOCK),
        ("http://schema.org/InStock", Availability.IN_STOCK),
        ("InStock", Availability.IN_STOCK),
        ("schema:InStock", Availability.IN_STOCK),
        ("LimitedAvailability", Availability.IN_STOCK),
        ("InStoreOnly", Availability.IN_STOCK),
        ("OnlineOnly", Availability.IN_STOCK),
        ("https://schema.org/OutOfStock", Availability.OUT_OF_STOCK),
        ("SoldOut", Availability.OUT_OF_STOCK),
        ("Discontinued", Availability.DISCONTINUED),
        ("PreOrder", Availability.PREORDER),
        ("PreSale", Availability.PREORDER),
        ("BackOrder", Availability.BACKORDER),
        ("in stock", Availability.IN_STOCK),
        ("https://schema.org/SomethingNew", Availability.UNKNOWN),
        ("", None),
        (None, None),
    ],
)
def test_parse_availability(raw: object, expected: Availability | None) -> None:
    assert parse_availability(raw) is expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("EUR", "EUR"), ("usd", "USD"), (" gbp ", "GBP"), ("€", "EUR"), ("$", None), ("EURO", None)],
)
def test_parse_currency(raw: str, expected: str | None) -> None:
    assert parse_currency(raw) == expected


# --- The demo shop's own pages -----------------------------------------------------------


async def test_every_demo_shop_page_parses_to_exactly_its_product() -> None:
    async with TestClient(TestServer(create_shop_app())) as client:
        for expected in DEFAULT_PRODUCTS:
            response = await client.get(f"/products/{expected.slug}")
            assert response.status == 200
            result = extract(await response.text(), str(response.url))

            assert result == Extraction(
                price=expected.price,
                currency=expected.currency,
                availability=expected.availability,
                title=expected.title,
                extractor="jsonld",
            )


async def test_demo_shop_page_follows_admin_changes() -> None:
    async with TestClient(TestServer(create_shop_app())) as client:
        change = {"price": "1049.50", "currency": "USD", "availability": "out_of_stock"}
        response = await client.post("/admin/products/espresso-machine", json=change)
        assert response.status == 200

        page = await client.get("/products/espresso-machine")
        html = await page.text()
        result = extract(html, str(page.url))

    assert (result.price, result.currency, result.availability) == (
        Decimal("1049.50"),
        "USD",
        Availability.OUT_OF_STOCK,
    )
    assert "$1,049.50" in html
    assert "Out of stock" in html
