"""John Lewis: the product header's large price, its title, and the add-to-basket section's
stock message ("Currently in stock online")."""

from __future__ import annotations

import re

from producers.extractors.sites import ShopAdapter

ADAPTER = ShopAdapter(
    name="johnlewis",
    host=re.compile(r"(?:www\.)?johnlewis\.com"),
    price=(
        ".product-header .price--large",
        "[data-test=product-price]",
        ".add-to-basket-summary-and-cta .price",
    ),
    title=("h1.product-header__title", "[data-test=product-title]"),
    availability=(".add-to-basket-summary-and-cta", "[data-test=stock-message]"),
    out_of_stock_words=re.compile(
        r"out of stock|sold out|currently unavailable|no longer available", re.IGNORECASE
    ),
    in_stock_words=re.compile(r"in stock", re.IGNORECASE),
    currency_by_host=lambda host: "GBP",
)
