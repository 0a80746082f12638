"""Each extraction rule on pages written for it: the visible buy box, the decision between
sources, inline state, structured-data quirks, and stock from the right place."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from pricewatch.contract.records import Availability
from producers.extractors.chain import NO_PRICE_FOUND, extract

URL = "https://shop.example/p/kettle"


def html(head: str = "", body: str = "") -> str:
    return f"<!DOCTYPE html><html><head>{head}</head><body>{body}</body></html>"


def jsonld(document: Any) -> str:
    return f'<script type="application/ld+json">{json.dumps(document)}</script>'


def product(offers: Any, name: str = "Kettle 1.7 l") -> dict[str, Any]:
    return {"@context": "https://schema.org", "@type": "Product", "name": name, "offers": offers}


def buy_box(prices: str, *, button: str = "<button>Add to basket</button>") -> str:
    return (
        '<main><div class="product-main"><h1 class="product-title">Kettle 1.7 l</h1>'
        f'<div class="product-info">{prices}</div>{button}</div></main>'
    )


# --- The visible buy box ---------------------------------------------------------------------


def test_a_price_only_in_the_buy_box_is_read() -> None:
    result = extract(html(body=buy_box('<span class="price">£34.99</span>')), URL)

    assert (result.price, result.currency, result.extractor) == (Decimal("34.99"), "GBP", "visible")


@pytest.mark.parametrize(
    "former",
    [
        '<s class="price">£49.99</s>',
        '<del><span class="price">£49.99</span></del>',
        '<span class="price" style="text-decoration: line-through">£49.99</span>',
        '<span class="price price--old">£49.99</span>',
        '<span class="wasPrice">£49.99</span>',
        '<span class="price">Was £49.99</span>',
        '<span class="price" data-a-strike="true">£49.99</span>',
        '<span class="rrp">RRP <span class="price">£49.99</span></span>',
    ],
)
def test_a_struck_through_or_former_price_is_the_list_price_not_the_price(former: str) -> None:
    page = html(body=buy_box(f'{former} <span class="price price--now">£34.99</span>'))

    assert extract(page, URL).price == Decimal("34.99")


@pytest.mark.parametrize(
    "other",
    [
        '<span class="price">£3.50/kg</span>',  # per unit
        '<span class="price">£5.83 per month</span>',  # instalment
        '<span class="price-monthly">£5.83</span>',
        '<span class="shipping-price">+ £4.95 shipping</span>',
        '<span class="price-saving">Save £15.00</span>',
        '<span class="price">-30%</span>',
    ],
)
def test_unit_instalment_shipping_and_saving_prices_are_not_the_price(other: str) -> None:
    page = html(body=buy_box(f'{other} <span class="price">£34.99</span>'))

    assert extract(page, URL).price == Decimal("34.99")


@pytest.mark.parametrize(
    "elsewhere",
    [
        '<section class="related-products"><span class="price">£9.99</span></section>',
        '<div class="product-carousel"><span class="price">£9.99</span></div>',
        '<ul><li class="product-card"><span class="price">£9.99</span></li></ul>',
        '<a href="/p/other"><span class="price">£9.99</span></a>',
    ],
)
def test_another_products_price_is_not_the_price(elsewhere: str) -> None:
    page = html(body=elsewhere + buy_box('<span class="price">£34.99</span>'))

    assert extract(page, URL).price == Decimal("34.99")


def test_the_price_near_the_title_wins_over_an_earlier_one_far_away() -> None:
    far = '<div class="banner"><div><div><div><p class="price">£1.00</p></div></div></div></div>'
    page = html(
        body=far
        + "<div><div><div><div><div>"
        + buy_box('<span class="price">£34.99</span>')
        + "</div></div></div></div></div>"
    )

    assert extract(page, URL).price == Decimal("34.99")


def test_several_unanchored_prices_give_no_price_rather_than_a_guess() -> None:
    cells = "".join(
        f'<div><div><div><div><div><span class="price">£{n}.00</span></div></div></div></div></div>'
        for n in (10, 20, 30)
    )

    result = extract(html(body=f"<main>{cells}</main>"), URL)

    assert (result.price, result.error) == (None, NO_PRICE_FOUND)


def test_the_only_price_of_a_page_is_read_without_a_title() -> None:
    result = extract(html(body='<main><p class="price">1 234,56 zł</p></main>'), URL)

    assert (result.price, result.currency) == (Decimal("1234.56"), "PLN")


# --- Deciding between sources ----------------------------------------------------------------


def test_structured_sources_that_disagree_are_settled_by_the_buy_box() -> None:
    # An auction: the JSON-LD states the starting price, the meta tag and the page the bid.
    head = jsonld(product({"price": 150, "priceCurrency": "USD"})) + (
        '<meta property="product:price:amount" content="200">'
    )
    page = html(head, buy_box('<span class="price">$200</span>'))

    result = extract(page, URL)

    assert (result.price, result.extractor) == (Decimal("200"), "opengraph")
    assert "disagree" in result.decision


def test_a_structured_price_the_buy_box_shows_struck_through_gives_way() -> None:
    head = jsonld(product({"price": "49.99", "priceCurrency": "GBP"}))
    page = html(head, buy_box('<s class="price">£49.99</s> <span class="price">£34.99</span>'))

    result = extract(page, URL)

    assert (result.price, result.currency) == (Decimal("34.99"), "GBP")
    assert "list price" in result.decision


def test_structured_data_wins_when_the_buy_box_agrees_or_says_nothing() -> None:
    head = jsonld(product({"price": "34.99", "priceCurrency": "GBP"}))

    assert extract(html(head, buy_box("")), URL).extractor == "jsonld"
    assert extract(html(head, buy_box('<b class="price">£34.99</b>')), URL).extractor == "jsonld"


# --- Inline state --------------------------------------------------------------------------


def test_analytics_product_detail_event_gives_the_price() -> None:
    state = (
        "<script>window.dataLayer = window.dataLayer || [];"
        "dataLayer.push({ecommerce: {currencyCode: 'EUR', detail: {products: "
        "[{name: 'Kettle 1.7 l', id: 'K17', price: '54.50'}]}}});</script>"
    )

    result = extract(html(body="<h1>Kettle 1.7 l</h1>" + state), URL)

    assert (result.price, result.currency, result.extractor) == (
        Decimal("54.50"),
        "EUR",
        "embedded",
    )


def test_a_state_object_named_as_the_product_gives_the_price() -> None:
    state = {
        "props": {
            "recommendations": [{"name": "Toaster", "price": 19.99}],
            "product": {"name": "Kettle 1.7 l", "price": {"value": 39.5, "currency": "EUR"}},
        }
    }
    script = f'<script id="__NEXT_DATA__" type="application/json">{json.dumps(state)}</script>'
    head = jsonld(product({"availability": "InStock"}))

    result = extract(html(head, "<h1>Kettle 1.7 l</h1>" + script), URL)

    assert (result.price, result.currency) == (Decimal("39.5"), "EUR")


def test_state_about_other_products_gives_no_price() -> None:
    state = {"items": [{"name": "Toaster", "price": 19.99}, {"name": "Mixer", "price": 49}]}
    script = f"<script>window.__INITIAL_STATE__ = {json.dumps(state)};</script>"

    result = extract(html(body="<h1>Kettle 1.7 l</h1>" + script), URL)

    assert result.price is None


# --- Structured-data quirks ------------------------------------------------------------------


@pytest.mark.parametrize(
    "block",
    [
        '{"@type": "Product", "name": "K", "Offers": {"Price": "12.99", "PriceCurrency": "EUR"}}',
        '//<![CDATA[\n{"@type": "Product", "offers": {"price": "12.99", '
        '"priceCurrency": "EUR"}}\n//]]>',
        '<!-- {"@type": "Product", "offers": {"price": "12.99", "priceCurrency": "EUR"}} -->',
        '{"@type": "product", "offers": {"price": "€ 12,99"}}',
        '{"@type": "Product", "offers": {"@type": "AggregateOffer", "lowPrice": 12.99, '
        '"highPrice": 20, "priceCurrency": "EUR"}}',
        '{"@type": "Product", "offers": {"priceSpecification": [{"priceType": '
        '"https://schema.org/ListPrice", "price": 20}, '
        '{"price": "12.99", "priceCurrency": "EUR"}]}}',
        '{"@graph": [{"@type": "WebPage"}, {"@type": "Product", "offers": [{"price": 12.99, '
        '"priceCurrency": "EUR"}]}]}',
    ],
)
def test_jsonld_quirks_real_pages_show(block: str) -> None:
    page = html(f'<script type="application/ld+json">{block}</script>')

    assert extract(page, URL).price == Decimal("12.99")


def test_several_product_blocks_the_first_with_a_price_is_the_pages() -> None:
    head = jsonld(product({"availability": "InStock"}, name="Bundle")) + jsonld(
        product({"price": "12.99"}, name="Kettle")
    )

    assert extract(html(head), URL).price == Decimal("12.99")


def test_variants_of_one_product_are_in_stock_when_any_is() -> None:
    sizes = [
        product({"price": "69.95", "availability": "OutOfStock"}, name="Boots"),
        product({"price": "69.95", "availability": "InStock"}, name="Boots"),
    ]

    result = extract(html(jsonld(sizes)), URL)

    assert (result.price, result.availability) == (Decimal("69.95"), Availability.IN_STOCK)


def test_microdata_offer_nested_in_an_offer_and_on_any_element() -> None:
    body = (
        '<div itemscope itemtype="https://schema.org/Product"><h1 itemprop="name">Kettle</h1>'
        '<div itemprop="offers" itemscope itemtype="https://schema.org/Offer">'
        '<table><tr><td itemprop="offers" itemscope itemtype="https://schema.org/Offer">'
        '<span itemprop="price" content="12.99">GBP 12,99</span>'
        '<span itemprop="priceCurrency" content="GBP"></span></td></tr></table></div></div>'
    )

    result = extract(html(body=body), URL)

    assert (result.price, result.currency, result.extractor) == (
        Decimal("12.99"),
        "GBP",
        "microdata",
    )


def test_rdfa_product_and_price() -> None:
    body = (
        '<div vocab="https://schema.org/" typeof="Product"><h1 property="name">Kettle</h1>'
        '<div property="offers" typeof="Offer"><span property="price" content="12.99">12,99 €'
        '</span><meta property="priceCurrency" content="EUR"></div></div>'
    )

    result = extract(html(body=body), URL)

    assert (result.price, result.currency) == (Decimal("12.99"), "EUR")


def test_a_price_property_holding_two_visible_prices_reads_the_current_one() -> None:
    body = (
        '<div itemscope itemtype="https://schema.org/Product"><h2 itemprop="name">Book</h2>'
        '<div itemprop="offers" itemscope itemtype="https://schema.org/Offer">'
        '<meta itemprop="priceCurrency" content="EUR">'
        '<span itemprop="price" content="71,91 € 79,90 €">'
        '<span class="special-price">71,91 €</span><span class="old-price">79,90 €</span>'
        "</span></div></div>"
    )

    assert extract(html(body=body), URL).price == Decimal("71.91")


def test_meta_price_text_and_sale_price() -> None:
    text = '<meta property="og:price" content="30,000원~">'
    sale = (
        '<meta property="product:price:amount" content="40.00">'
        '<meta property="product:sale_price:amount" content="32.00">'
        '<meta property="product:price:currency" content="EUR">'
    )

    assert extract(html(text), URL).price == Decimal("30000")
    assert extract(html(sale), URL).price == Decimal("32.00")


# --- Stock from the right place --------------------------------------------------------------


@pytest.mark.parametrize(
    "noise",
    [
        '<select class="size"><option>38 - sold out</option><option>39</option></select>',
        '<ul class="size-variants"><li>XL sold out</li><li>M</li></ul>',
        '<div class="swatches"><span>Red: out of stock</span></div>',
        '<section class="recommendations"><p>Sold out</p></section>',
    ],
)
def test_a_sold_out_size_or_another_product_does_not_sell_out_the_product(noise: str) -> None:
    page = html(body=buy_box(f'<span class="price">£34.99</span>{noise}'))

    assert extract(page, URL).availability is None


def test_an_out_of_stock_phrase_in_the_buy_box_is_sold_out() -> None:
    page = html(body=buy_box('<span class="price">£34.99</span><p>Out of stock</p>', button=""))

    assert extract(page, URL).availability is Availability.OUT_OF_STOCK


def test_sold_out_beside_an_enabled_add_to_cart_button_is_unknown_not_sold_out() -> None:
    head = jsonld(product({"price": "34.99", "availability": "OutOfStock"}))
    page = html(head, buy_box('<span class="price">£34.99</span>'))

    assert extract(page, URL).availability is Availability.UNKNOWN


def test_sold_out_beside_a_disabled_button_stays_sold_out() -> None:
    head = jsonld(product({"price": "34.99", "availability": "OutOfStock"}))
    page = html(
        head,
        buy_box(
            '<span class="price">£34.99</span>', button="<button disabled>Add to basket</button>"
        ),
    )

    assert extract(page, URL).availability is Availability.OUT_OF_STOCK


def test_without_a_price_the_buy_box_is_the_titles_surroundings() -> None:
    far = "".join(
        f"<div><div><div><div><p>Item {n}: sold out</p></div></div></div></div>" for n in range(3)
    )
    page = html(
        jsonld(product({"price": "34.99"})),
        f'<div class="pdp"><h1>Kettle 1.7 l</h1><p>Ships tomorrow</p></div>{far}',
    )

    assert extract(page, URL).availability is None


def test_a_sold_out_phrase_in_a_link_names_another_page() -> None:
    page = html(
        body=buy_box(
            '<span class="price">£34.99</span><a href="/outlet">Browse sold out bargains</a>',
            button="",
        )
    )

    assert extract(page, URL).availability is None


def test_other_products_add_to_cart_buttons_do_not_anchor_the_buy_box() -> None:
    cards = "".join(
        f'<div class="product-card"><span class="card-price">{n},00 €</span>'
        "<button>Add to cart</button></div>"
        for n in (5, 6, 7)
    )
    page = html(
        jsonld(product({"price": "9.99", "priceCurrency": "EUR"})),
        f'<div class="ficha"><h2>Pan 28 cm</h2><p>Agotado</p></div><section>{cards}</section>',
    )

    assert extract(page, URL).availability is Availability.OUT_OF_STOCK
