"""Best Buy: the customer price (``.priceView-customer-price``, the visible span), the SKU
title, and the add-to-cart button, whose state attribute says sold out."""

from __future__ import annotations

import re

from producers.extractors.sites import ShopAdapter

ADAPTER = ShopAdapter(
    name="bestbuy",
    host=re.compile(r"(?:www\.)?bestbuy\.(?:com|ca)"),
    price=(
        ".priceView-customer-price span[aria-hidden=true]",
        ".priceView-customer-price > span",
        "[data-testid=customer-price] span",
    ),
    title=(".sku-title h1", "h1.heading-5"),
    availability=(
        ".fulfillment-add-to-cart-button button@data-button-state",
        "button.add-to-cart-button@data-button-state",
        "button.add-to-cart-button",
    ),
    out_of_stock_words=re.compile(r"sold.?out|unavailable", re.IGNORECASE),
    in_stock_words=re.compile(r"add.?to.?cart", re.IGNORECASE),
    currency_by_host=lambda host: "CAD" if host.endswith(".ca") else "USD",
)
