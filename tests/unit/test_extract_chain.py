"""Microdata, OpenGraph, JSON-LD offer choice and the chain's order and fallbacks."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from pricewatch.contract.records import Availability
from producers.extractors.chain import NO_PRICE_FOUND, Extraction, extract

URL = "https://shop.example/products/widget"


def html(head: str = "", body: str = "") -> str:
    return f"<!DOCTYPE html><html><head>{head}</head><body>{body}</body></html>"


def jsonld(document: Any) -> str:
    return f'<script type="application/ld+json">{json.dumps(document)}</script>'


def microdata(offer: str, name: str = "Widget", extra: str = "") -> str:
    return (
        '<div itemscope itemtype="https://schema.org/Product">'
        f'<h1 itemprop="name">{name}</h1>'
        f'<div itemprop="offers" itemscope itemtype="https://schema.org/Offer">{offer}</div>'
        f"{extra}</div>"
    )


# --- Microdata -----------------------------------------------------------------------------


def test_microdata_price_content_attribute_wins_over_its_text() -> None:
    page = html(
        body=microdata(
            '<span itemprop="price" content="1226.00">1.226,00 €</span>'
            '<meta itemprop="priceCurrency" content="EUR">'
            '<link itemprop="availability" href="https://schema.org/OutOfStock">'
        )
    )

    assert extract(page, URL) == Extraction(
        price=Decimal("1226.00"),
        currency="EUR",
        availability=Availability.OUT_OF_STOCK,
        title="Widget",
        extractor="microdata",
    )


def test_microdata_text_price_is_read_by_locale() -> None:
    page = html(body=microdata('<span itemprop="price">1 234,56 zł</span>'))

    result = extract(page, URL)

    assert (result.price, result.currency) == (Decimal("1234.56"), "PLN")


def test_microdata_declared_currency_wins_over_the_symbol() -> None:
    page = html(
        body=microdata(
            '<span itemprop="price">$1,299.00</span><meta itemprop="priceCurrency" content="CAD">'
        )
    )

    assert extract(page, URL).currency == "CAD"


@pytest.mark.parametrize(
    ("markup", "expected"),
    [
        ('<link itemprop="availability" href="https://schema.org/InStock">', "in_stock"),
        ('<meta itemprop="availability" content="PreOrder">', "preorder"),
        (
            '<span itemprop="availability" content="http://schema.org/SoldOut">Gone</span>',
            "out_of_stock",
        ),
        (
            '<a itemprop="availability" href="http://schema.org/BackOrder">Backorder</a>',
            "backorder",
        ),
    ],
)
def test_microdata_availability_as_href_or_content(markup: str, expected: str) -> None:
    page = html(body=microdata('<span itemprop="price" content="5.00">5</span>' + markup))

    assert extract(page, URL).availability == Availability(expected)


def test_microdata_related_product_price_is_not_the_price() -> None:
    related = (
        '<div itemprop="isRelatedTo" itemscope itemtype="https://schema.org/Product">'
        '<div itemprop="offers" itemscope itemtype="https://schema.org/Offer">'
        '<span itemprop="price" content="9.00"></span></div></div>'
    )
    page = html(body=microdata('<meta itemprop="availability" content="InStock">', extra=related))

    result = extract(page, URL)

    assert (result.price, result.error, result.availability) == (
        None,
        NO_PRICE_FOUND,
        Availability.IN_STOCK,
    )


def test_microdata_used_offer_gives_way_to_the_new_one() -> None:
    page = html(
        body=(
            '<div itemscope itemtype="https://schema.org/Product"><h1 itemprop="name">TV</h1>'
            '<div itemprop="offers" itemscope itemtype="https://schema.org/Offer">'
            '<link itemprop="itemCondition" href="https://schema.org/RefurbishedCondition">'
            '<span itemprop="price" content="700"></span></div>'
            '<div itemprop="offers" itemscope itemtype="https://schema.org/Offer">'
            '<span itemprop="price" content="900"></span></div></div>'
        )
    )

    assert extract(page, URL).price == Decimal("900")


def test_microdata_bare_offer_without_product() -> None:
    page = html(
        body='<div itemscope itemtype="http://schema.org/Offer">'
        '<span itemprop="price" content="3.50"></span>'
        '<meta itemprop="priceCurrency" content="GBP"></div>'
    )

    result = extract(page, URL)

    assert (result.price, result.currency, result.extractor) == (
        Decimal("3.50"),
        "GBP",
        "microdata",
    )


# --- OpenGraph -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "attribute"),
    [("product", "property"), ("og", "property"), ("product", "name"), ("og", "name")],
)
def test_opengraph_price_tags(prefix: str, attribute: str) -> None:
    head = (
        f'<meta {attribute}="og:title" content="Widget">'
        f'<meta {attribute}="{prefix}:price:amount" content="19.90">'
        f'<meta {attribute}="{prefix}:price:currency" content="EUR">'
        f'<meta {attribute}="{prefix}:availability" content="out of stock">'
    )

    assert extract(html(head=head), URL) == Extraction(
        price=Decimal("19.90"),
        currency="EUR",
        availability=Availability.OUT_OF_STOCK,
        title="Widget",
        extractor="opengraph",
    )


def test_opengraph_availability_without_price_is_kept_on_the_error() -> None:
    head = (
        '<meta property="og:title" content="Widget"><meta property="og:availability" content="oos">'
    )

    result = extract(html(head=head), URL)

    assert (result.error, result.availability, result.title, result.extractor) == (
        NO_PRICE_FOUND,
        Availability.OUT_OF_STOCK,
        "Widget",
        "opengraph",
    )


# --- JSON-LD offer choice -------------------------------------------------------------------


def test_jsonld_open_box_and_member_offers_give_way_to_the_regular_offer() -> None:
    document = {
        "@type": "Product",
        "name": "TV",
        "offers": [
            {"@type": "Offer", "price": "800", "priceCurrency": "USD",
             "itemCondition": "https://schema.org/UsedCondition"},
            {"@type": "Offer", "price": "900", "priceCurrency": "USD",
             "eligibleCustomerType": "Member"},
            {"@type": "Offer", "price": "1000", "priceCurrency": "USD"},
        ],
    }  # fmt: skip

    assert extract(html(head=jsonld(document)), URL).price == Decimal("1000")


def test_jsonld_only_secondary_offers_still_give_a_price() -> None:
    document = {
        "@type": "Product",
        "offers": {"price": "800", "itemCondition": "https://schema.org/RefurbishedCondition"},
    }

    assert extract(html(head=jsonld(document)), URL).price == Decimal("800")


def test_jsonld_price_specification_skips_list_and_member_prices() -> None:
    specs = [
        {"@type": "UnitPriceSpecification", "priceType": "https://schema.org/ListPrice",
         "price": "120.00", "priceCurrency": "EUR"},
        {"@type": "UnitPriceSpecification", "validForMemberTier": {"name": "Gold"},
         "price": "90.00", "priceCurrency": "EUR"},
        {"@type": "UnitPriceSpecification", "price": "99.00", "priceCurrency": "EUR"},
    ]  # fmt: skip
    document = {"@type": "Product", "offers": {"@type": "Offer", "priceSpecification": specs}}

    result = extract(html(head=jsonld(document)), URL)

    assert (result.price, result.currency) == (Decimal("99.00"), "EUR")


# --- The chain -------------------------------------------------------------------------------


def test_jsonld_beats_microdata_beats_opengraph() -> None:
    ld = jsonld({"@type": "Product", "offers": {"price": "1.00", "priceCurrency": "EUR"}})
    og = '<meta property="product:price:amount" content="3.00">'
    md = microdata('<span itemprop="price" content="2.00"></span>')

    assert extract(html(head=ld + og, body=md), URL).extractor == "jsonld"
    assert extract(html(head=og, body=md), URL).extractor == "microdata"
    assert extract(html(head=og), URL).extractor == "opengraph"


def test_a_partial_jsonld_falls_through_to_microdata() -> None:
    ld = jsonld({"@type": "Product", "name": "Widget", "offers": {"price": "on request"}})
    md = microdata('<span itemprop="price" content="2.00"></span>')

    assert extract(html(head=ld, body=md), URL).extractor == "microdata"


def test_visible_out_of_stock_phrase_only_when_nothing_structured_says_otherwise() -> None:
    ld_without = jsonld({"@type": "Product", "offers": {"price": "5.00"}})
    ld_in_stock = jsonld(
        {"@type": "Product", "offers": {"price": "5.00", "availability": "InStock"}}
    )
    body = "<main><h1>Widget</h1><p>Sold out</p></main>"

    assert extract(html(ld_without, body), URL).availability is Availability.OUT_OF_STOCK
    assert extract(html(ld_in_stock, body), URL).availability is Availability.IN_STOCK


@pytest.mark.parametrize(
    "noise",
    [
        "<nav>Sold out</nav>",
        "<footer>Out of stock items ship later</footer>",
        "<aside>Sold out</aside>",
        '<section class="related-products">Sold out</section>',
        '<div class="product-carousel">Ausverkauft</div>',
        "<select><option>XL - sold out</option></select>",
        '<p style="display: none">Sold out</p>',
        "<p hidden>Sold out</p>",
        '<p aria-hidden="true">Sold out</p>',
        "<script>var label = 'Sold out';</script>",
    ],
)
def test_out_of_stock_phrase_outside_the_product_is_ignored(noise: str) -> None:
    ld = jsonld({"@type": "Product", "offers": {"price": "5.00"}})

    assert extract(html(ld, f"<main><h1>Widget</h1>{noise}</main>"), URL).availability is None


def test_no_price_keeps_a_visible_out_of_stock() -> None:
    result = extract(html(body="<main><h1>Widget</h1><p>Épuisé</p></main>"), URL)

    assert (result.price, result.error, result.availability) == (
        None,
        NO_PRICE_FOUND,
        Availability.OUT_OF_STOCK,
    )


def test_a_partial_extractions_availability_and_title_complete_the_winner() -> None:
    ld = jsonld({"@type": "Product", "name": "Widget", "offers": {"availability": "PreOrder"}})
    og = '<meta property="product:price:amount" content="3.00">'

    result = extract(html(head=ld + og, body="<p>Sold out</p>"), URL)

    assert (result.price, result.extractor, result.availability, result.title) == (
        Decimal("3.00"),
        "opengraph",
        Availability.PREORDER,
        "Widget",
    )
