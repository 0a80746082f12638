"""Zara, every country site: the product detail's current price (``money-amount`` in its
current layout, ``main-price`` in the earlier one), never the crossed-out one; availability
from its per-size schema.org offers (in stock when any size is)."""

from __future__ import annotations

import re

from pricewatch.contract.records import Availability
from producers.extractors.base import Extraction, Page
from producers.extractors.jsonld import extract_jsonld
from producers.extractors.sites import ShopAdapter


def sizes_state(page: Page) -> Extraction | None:
    """Availability over the sizes' offers, without their price (the visible one wins)."""
    found = extract_jsonld(page)
    if found is None or found.availability is None:
        return None
    availability = found.availability
    if availability is Availability.UNKNOWN:
        return None
    return Extraction(availability=availability, title=found.title, extractor="site:zara")


ADAPTER = ShopAdapter(
    name="zara",
    host=re.compile(r"(?:www\.)?zara\.(?:com|cn)"),
    state=sizes_state,
    price=(
        ".product-detail-info .price__amount--on-sale .money-amount__main",
        ".product-detail-info .price-current .money-amount__main",
        ".product-detail-info .money-amount__main",
        "._product-price .main-price",
        ".product-detail-info__price .main-price",
    ),
    title=(".product-detail-info__header-name", ".product-detail-info__name", "h1.product-name"),
    add_to_cart=("[data-qa-action=add-to-cart]",),
)
