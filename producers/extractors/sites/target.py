"""Target: its pages name their parts with ``data-test`` attributes: ``product-price``,
``product-title``, and the fulfilment buttons (ship it, pick up)."""

from __future__ import annotations

import re

from producers.extractors.sites import ShopAdapter

ADAPTER = ShopAdapter(
    name="target",
    host=re.compile(r"(?:www\.)?target\.com"),
    price=("[data-test=product-price]",),
    title=("h1[data-test=product-title]", "[data-test=product-title]"),
    availability=("[data-test=outOfStockMessage]", "[data-test=soldOutBlock]"),
    out_of_stock_words=re.compile(r"out of stock|sold out|unavailable", re.IGNORECASE),
    add_to_cart=(
        "[data-test=shippingButton]",
        "[data-test=shipItButton]",
        "[data-test=orderPickupButton]",
    ),
    currency_by_host=lambda host: "USD",
)
