"""The site adapters shipped for the biggest shops, on saved pages (``tests/fixtures/sites``)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from producers.extractors.chain import HtmlAdapter, extract
from producers.extractors.sites import adapter_for_host, shop_adapters

SITES = Path(__file__).parent.parent / "fixtures" / "sites"
EXPECTED: dict[str, dict[str, Any]] = json.loads((SITES / "expected.json").read_text())


def page(name: str) -> str:
    return (SITES / name).read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shipped_adapter_reads_the_saved_page(name: str) -> None:
    facts = EXPECTED[name]
    result = extract(page(name), facts["url"])

    assert result.price == Decimal(facts["price"])
    assert result.currency == facts["currency"]
    assert (result.availability.value if result.availability else None) == facts["availability"]
    assert result.extractor == facts["extractor"]


def test_every_shipped_adapter_has_a_saved_page() -> None:
    covered = {facts["extractor"].removeprefix("site:") for facts in EXPECTED.values()}
    assert {adapter.name for adapter in shop_adapters()} == covered
    assert {p.name for p in SITES.glob("*.html")} == set(EXPECTED)


@pytest.mark.parametrize(
    ("host", "shop"),
    [
        ("www.amazon.com", "amazon"),
        ("www.amazon.co.jp", "amazon"),
        ("smile.amazon.de", "amazon"),
        ("www.ebay.co.uk", "ebay"),
        ("www2.hm.com", "hm"),
        ("www.zalando.fr", "zalando"),
        ("WWW.IKEA.COM", "ikea"),
        ("www.amazon.example", None),
        ("notamazon.com", None),
        ("amazon.com.evil.example", None),
        ("shop.example", None),
    ],
)
def test_adapters_are_chosen_by_the_shops_own_hosts(host: str, shop: str | None) -> None:
    adapter = adapter_for_host(host)
    assert (adapter.name if adapter else None) == shop


def test_without_the_url_no_shipped_adapter_applies() -> None:
    result = extract(page("amazon_deal_with_list_price.html"), "file:///saved-page.html")

    assert not (result.extractor or "").startswith("site:")


def test_a_users_own_adapter_for_the_host_replaces_the_shipped_one() -> None:
    mine = HtmlAdapter(price="#corePriceDisplay_desktop_feature_div .basisPrice .a-offscreen::text")

    result = extract(
        page("amazon_deal_with_list_price.html"),
        EXPECTED["amazon_deal_with_list_price.html"]["url"],
        adapter=mine,
    )

    assert (result.price, result.extractor) == (Decimal("49.99"), "adapter")


def test_the_generic_chain_fills_in_what_an_adapter_does_not_find() -> None:
    # The eBay adapter finds no stock message on this listing: availability stays the
    # generic chain's (none stated) and the currency is the listing's own.
    result = extract(
        page("ebay_classic_listing.html"), EXPECTED["ebay_classic_listing.html"]["url"]
    )

    assert (result.price, result.currency) == (Decimal("12.99"), "GBP")


def test_amazons_list_price_and_carousel_are_not_the_price() -> None:
    result = extract(page("amazon_deal_with_list_price.html"), "https://www.amazon.de/dp/B0")

    assert result.price == Decimal("34.99")
    assert all(c.amount != Decimal("19.99") or c.source != "site:amazon" for c in result.candidates)
