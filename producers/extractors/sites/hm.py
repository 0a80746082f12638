"""H&M, every country site: the product's price block (``#product-price``; the red sale price
before the regular white one) and its title."""

from __future__ import annotations

import re

from producers.extractors.sites import ShopAdapter

ADAPTER = ShopAdapter(
    name="hm",
    host=re.compile(r"(?:www2?\.)?hm\.com"),
    price=(
        "#product-price .price-value.is-reduced",
        "#product-price .price-value",
        "[data-testid=red-price]",
        "[data-testid=white-price]",
    ),
    title=("h1.product-item-headline", "h1.primary.product-item-headline", "h1"),
    add_to_cart=("button.button-buy", "[data-testid=add-to-cart-button]"),
)
