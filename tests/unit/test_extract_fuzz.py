"""Fuzzing the extractors: garbled copies of the fixture pages, generated JSON-LD (nested,
mistyped, cyclic-looking), random JSON for the JSON-API adapter and random selectors'
targets. The extractors read pages written by strangers; whatever a page holds, they must
return a well-typed ``Extraction`` (a price is a finite Decimal >= 0, a currency three
capital letters, an availability a known value) quickly, and never raise.

Example counts and the per-example bound keep the whole file well under a minute.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pricewatch.contract.records import Availability
from producers.extractors.chain import (
    MAX_TITLE_CHARS,
    Extraction,
    HtmlAdapter,
    JsonApiAdapter,
    extract,
    extract_with_adapter,
    parse_price_text,
)
from producers.extractors.values import read_price_text, single_price_text

PAGES_DIR = Path(__file__).parent.parent / "fixtures" / "pages"
PAGES = {p.name: p.read_text(encoding="utf-8") for p in sorted(PAGES_DIR.glob("*.html"))}
URL = "https://shop.example/products/kettle"
# Generous: parsing a mutated 20 kB page takes milliseconds; a hang takes forever.
PER_EXAMPLE_SECONDS = 5.0

FUZZ = settings(
    max_examples=150,
    deadline=None,  # timed by ``well_typed`` instead: a loaded CI machine is not a hang
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=False,
)


def well_typed(result: object) -> None:
    assert isinstance(result, Extraction)
    if result.price is not None:
        assert isinstance(result.price, Decimal)
        assert result.price.is_finite() and result.price >= 0, result.price
    if result.currency is not None:
        assert isinstance(result.currency, str)
        assert len(result.currency) == 3 and result.currency.isascii()
        assert result.currency.isalpha() and result.currency.isupper(), result.currency
    if result.availability is not None:
        assert isinstance(result.availability, Availability)
    if result.title is not None:
        assert isinstance(result.title, str) and 0 < len(result.title) <= MAX_TITLE_CHARS
    assert result.price is not None or result.error is not None


def timed(run: Callable[[], Extraction]) -> Extraction:
    began = time.monotonic()
    result = run()
    took = time.monotonic() - began
    assert took < PER_EXAMPLE_SECONDS, f"one extraction took {took:.1f}s"
    well_typed(result)
    return result


# --- Strategies -----------------------------------------------------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(
        [
            "12.99",
            "1,299.00",
            "1.299,00",
            "€ 79",
            "-5",
            "0",
            "1e400",
            "NaN",
            "Infinity",
            "sNaN",
            "1E-7",
            "99999999999999999999999",
            "EUR",
            "eur",
            "€",
            "US$",
            "XXXX",
            "https://schema.org/InStock",
            "http://schema.org/OutOfStock",
            "SoldOut",
            "PreOrder",
            "",
            " ",
            "\x00",
            "\u202e",
        ]
    ),
)
JSONLD_KEYS = st.sampled_from(
    [
        "@context",
        "@type",
        "@graph",
        "@id",
        "name",
        "offers",
        "price",
        "lowPrice",
        "highPrice",
        "priceCurrency",
        "availability",
        "priceSpecification",
        "itemOffered",
        "mainEntity",
        "hasVariant",
        "url",
        "sku",
    ]
)
TYPES = st.sampled_from(
    ["Product", "Offer", "AggregateOffer", "ProductGroup", "UnitPriceSpecification", "Thing"]
)


def jsonld_values() -> st.SearchStrategy[Any]:
    return st.recursive(
        SCALARS | TYPES,
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(JSONLD_KEYS | st.text(max_size=8), children, max_size=6)
        ),
        max_leaves=40,
    )


def jsonld_documents() -> st.SearchStrategy[Any]:
    product = st.fixed_dictionaries(
        {"@context": st.just("https://schema.org"), "@type": TYPES},
        optional={key: jsonld_values() for key in ("name", "offers", "@graph", "price")},
    )
    return st.one_of(product, st.lists(product, max_size=3), jsonld_values())


def _json_text(document: Any) -> str:
    return json.dumps(document, allow_nan=True)


@st.composite
def jsonld_pages(draw: st.DrawFn) -> str:
    """A page with a few JSON-LD blocks: valid, truncated, or not JSON at all."""
    blocks = []
    for document in draw(st.lists(jsonld_documents(), min_size=1, max_size=3)):
        text = _json_text(document)
        garble = draw(st.sampled_from(["none", "truncate", "close_script", "comment"]))
        if garble == "truncate":
            text = text[: draw(st.integers(0, len(text)))]
        elif garble == "close_script":
            text = text.replace(",", "</script><script>", 1)
        elif garble == "comment":
            text = "<!--" + text
        blocks.append(f'<script type="application/ld+json">{text}</script>')
    body = draw(st.text(max_size=200))
    return f"<html><head>{''.join(blocks)}</head><body>{body}</body></html>"


GARBAGE = st.one_of(
    st.text(max_size=80),
    st.sampled_from(
        [
            "<",
            ">",
            "</div>",
            "<script>",
            "</script>",
            '<script type="application/ld+json">',
            '<meta property="product:price:amount" content="',
            '<span itemprop="price" content="-1">',
            '<div itemscope itemtype="https://schema.org/Offer">',
            "&#xFFFFFF;",
            "&#0;",
            "&amp",
            "<![CDATA[",
            "\x00",
            "\ud7ff",
            "<" * 50,
            "<div>" * 300,  # deep nesting
        ]
    ),
)


@st.composite
def mutated_pages(draw: st.DrawFn) -> str:
    """A fixture page with slices deleted, duplicated, or replaced by garbage."""
    html = PAGES[draw(st.sampled_from(sorted(PAGES)))]
    for _ in range(draw(st.integers(1, 6))):
        if not html:
            break
        start = draw(st.integers(0, len(html) - 1))
        end = min(len(html), start + draw(st.integers(0, 400)))
        operation = draw(st.sampled_from(["delete", "duplicate", "insert", "truncate"]))
        if operation == "delete":
            html = html[:start] + html[end:]
        elif operation == "duplicate":
            html = html[:end] + html[start:end] + html[end:]
        elif operation == "insert":
            html = html[:start] + draw(GARBAGE) + html[start:]
        else:
            html = html[:start]
    return html


# --- The properties -------------------------------------------------------------------


@FUZZ
@given(html=mutated_pages())
def test_mutated_fixture_pages(html: str) -> None:
    timed(lambda: extract(html, URL))


@settings(FUZZ, max_examples=100)
@given(html=jsonld_pages())
def test_generated_jsonld(html: str) -> None:
    timed(lambda: extract(html, URL))


@settings(FUZZ, max_examples=60)
@given(html=st.text(max_size=2000) | st.binary(max_size=2000).map(lambda b: b.decode("latin-1")))
# Found by this test in CI: text that looks like JSON made parsel build a JSON selector.
@example(html="{}")
@example(html=' [{"price": "9.99"}]')
def test_random_text(html: str) -> None:
    timed(lambda: extract(html, URL))


ADAPTER = HtmlAdapter(
    price="#ficha .ficha-precio .ahora::text",
    currency_default="EUR",
    availability="#ficha .ficha-stock",
    title="#ficha h2.ficha-titulo",
    image="#ficha img.ficha-foto::attr(src)",
    availability_values={"Disponible": Availability.IN_STOCK},
)


@settings(FUZZ, max_examples=80)
@given(html=mutated_pages(), inner=st.text(max_size=60) | SCALARS.map(str))
def test_html_adapter_on_mutated_pages(html: str, inner: str) -> None:
    # The adapter's target slots filled with random text as well as the mutated pages.
    slotted = (
        '<div id="ficha"><h2 class="ficha-titulo">' + inner + '</h2><p class="ficha-precio">'
        '<span class="ahora">' + inner + '</span></p><p class="ficha-stock">' + inner + "</p>"
        '<img class="ficha-foto" src="' + inner + '"></div>'
    )
    timed(lambda: extract(html, URL, adapter=ADAPTER))
    timed(lambda: extract(slotted, URL, adapter=ADAPTER))


JSON_ADAPTER = JsonApiAdapter(
    kind="json_api",
    product_url_pattern=r"/products/(?P<sku>[a-z]+)",
    api_url="https://api.shop.example/p/{sku}.json",
    price="data.offers[0].price",
    price_minor_units=True,
    currency="data.offers[0].currency",
    availability="$.data.stock",
    title="data.name",
    image="data.images[1]",
)


def api_documents() -> st.SearchStrategy[Any]:
    offer = st.dictionaries(st.sampled_from(["price", "currency", "x"]), SCALARS, max_size=3)
    data = st.fixed_dictionaries(
        {},
        optional={
            "offers": st.lists(offer | SCALARS, max_size=3) | offer | SCALARS,
            "stock": SCALARS,
            "name": SCALARS | jsonld_values(),
            "images": st.lists(SCALARS, max_size=3) | SCALARS,
        },
    )
    return st.one_of(st.fixed_dictionaries({"data": data | SCALARS}), jsonld_values())


@settings(FUZZ, max_examples=150)
@given(
    document=api_documents(),
    garble=st.sampled_from(["none", "truncate", "bytes"]),
    cut=st.integers(0, 10_000),
)
def test_json_api_adapter(document: Any, garble: str, cut: int) -> None:
    text = _json_text(document)
    if garble == "truncate":
        text = text[: cut % (len(text) + 1)]
    elif garble == "bytes":
        text = text.encode("utf-8").decode("latin-1")
    timed(lambda: extract_with_adapter(JSON_ADAPTER, text, URL))


def test_the_oracle_sees_prices_where_there_are_some() -> None:
    """The properties above are not vacuous: unmutated pages and a plain JSON-LD offer
    come through ``timed`` with their prices."""
    priced = [name for name, html in PAGES.items() if timed(partial(extract, html, URL)).price]
    assert len(priced) >= len(PAGES) // 2, priced
    offer = {"@type": "Offer", "price": "12.99", "priceCurrency": "EUR"}
    page = (
        '<html><head><script type="application/ld+json">'
        + _json_text({"@context": "https://schema.org", "@type": "Product", "offers": offer})
        + "</script></head><body></body></html>"
    )
    result = timed(lambda: extract(page, URL))
    assert (result.price, result.currency) == (Decimal("12.99"), "EUR")
    api = _json_text({"data": {"offers": [{"price": 1299, "currency": "EUR"}], "name": "K"}})
    result = timed(lambda: extract_with_adapter(JSON_ADAPTER, api, URL))
    assert (result.price, result.currency, result.title) == (Decimal("12.99"), "EUR", "K")


# --- The buy box, inline state, shipped site adapters and price text ------------------------

SITES_DIR = Path(__file__).parent.parent / "fixtures" / "sites"
SITE_PAGES = {p.name: p.read_text(encoding="utf-8") for p in sorted(SITES_DIR.glob("*.html"))}
SITE_URLS = {
    name: facts["url"]
    for name, facts in json.loads((SITES_DIR / "expected.json").read_text()).items()
}
CLASS_WORDS = st.sampled_from(
    ["price", "old", "was", "now", "sale", "card", "related", "unit", "price--old", "cart", ""]
)
PRICE_TEXTS = st.one_of(
    SCALARS.map(str),
    st.sampled_from(["£34.99", "Was £49.99", "1 234,56 zł", "£3.50/kg", "-30%", "Free!"]),
)


@st.composite
def buy_box_pages(draw: st.DrawFn) -> str:
    """Nested elements with price-like classes and texts, titles and buttons, unclosed tags."""

    def element(depth: int) -> str:
        tag = draw(st.sampled_from(["div", "span", "s", "del", "a", "li", "p", "h1", "button"]))
        classes = " ".join(draw(st.lists(CLASS_WORDS, max_size=3)))
        inner = draw(PRICE_TEXTS) if depth > 3 or draw(st.booleans()) else ""
        children = "".join(
            element(depth + 1) for _ in range(draw(st.integers(0, 3 if depth < 4 else 0)))
        )
        closing = "" if draw(st.integers(0, 9)) == 0 else f"</{tag}>"
        href = ' href="/x"' if tag == "a" else ""
        return f'<{tag} class="{classes}"{href}>{inner}{children}{closing}'

    return f"<html><body>{element(0)}{element(0)}</body></html>"


@settings(FUZZ, max_examples=120)
@given(html=buy_box_pages())
def test_generated_buy_boxes(html: str) -> None:
    timed(lambda: extract(html, URL))


JS_STATE = st.one_of(
    st.text(max_size=300),
    st.recursive(
        SCALARS,
        lambda c: (
            st.lists(c, max_size=4)
            | st.dictionaries(
                st.sampled_from(["price", "name", "ecommerce", "detail", "products", "items", "x"]),
                c,
                max_size=5,
            )
        ),
    ).map(json.dumps),
)


@settings(FUZZ, max_examples=100)
@given(
    state=JS_STATE,
    wrapper=st.sampled_from(
        [
            "<script>dataLayer.push({0});</script>",
            "<script>window.__INITIAL_STATE__ = {0}</script>",
            '<script id="__NEXT_DATA__" type="application/json">{0}</script>',
            "<script>var product = {0}; ShopifyAnalytics.meta = {0</script>",
        ]
    ),
)
def test_inline_state_of_any_shape(state: str, wrapper: str) -> None:
    html = f"<html><body><h1>Kettle</h1>{wrapper.replace('{0}', state)}</body></html>"
    timed(lambda: extract(html, URL))


@st.composite
def mutated_site_pages(draw: st.DrawFn) -> tuple[str, str]:
    name = draw(st.sampled_from(sorted(SITE_PAGES)))
    html = SITE_PAGES[name]
    for _ in range(draw(st.integers(1, 4))):
        if not html:
            break
        start = draw(st.integers(0, len(html) - 1))
        end = min(len(html), start + draw(st.integers(0, 400)))
        html = html[:start] + draw(GARBAGE) + html[end:]
    return html, SITE_URLS[name]


@settings(FUZZ, max_examples=80)
@given(page=mutated_site_pages())
def test_shipped_site_adapters_on_mutated_pages(page: tuple[str, str]) -> None:
    html, url = page
    timed(lambda: extract(html, url))


@settings(FUZZ, max_examples=300)
@given(
    text=st.text(max_size=60) | PRICE_TEXTS,
    declared=st.none() | st.sampled_from(["JPY", "KWD", "EUR", "xx"]),
)
def test_price_text_never_raises_and_reads_a_finite_amount(text: str, declared: str | None) -> None:
    amount, currency = read_price_text(text, declared)
    if amount is not None:
        assert amount.is_finite() and amount >= 0
    published, _ = parse_price_text(text, declared)
    if published is not None:
        assert published > 0
    single, _ = single_price_text(text, declared)
    assert single is None or single > 0
    assert currency is None or (len(currency) == 3 and currency.isupper())
