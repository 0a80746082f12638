"""Argos: its pages name their parts with ``data-test`` attributes: the primary price (with a
machine-readable ``content``), the product title, and the add-to-trolley button."""

from __future__ import annotations

import re

from producers.extractors.sites import ShopAdapter

ADAPTER = ShopAdapter(
    name="argos",
    host=re.compile(r"(?:www\.)?argos\.co\.uk"),
    price=("[data-test=product-price-primary]@content", "[data-test=product-price-primary]"),
    currency=("[itemprop=priceCurrency]@content",),
    title=("[data-test=product-title]",),
    availability=("[data-test=component-att-out-of-stock]", "[data-test=out-of-stock]"),
    out_of_stock_words=re.compile(r"out of stock|not available|unavailable", re.IGNORECASE),
    add_to_cart=("[data-test=add-to-trolley-button-button]",),
    currency_by_host=lambda host: "GBP",
)
