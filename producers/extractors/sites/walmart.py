"""Walmart: the page is built from Next.js state (``__NEXT_DATA__``): the product's
``priceInfo.currentPrice`` and ``availabilityStatus``; the visible ``itemprop=price`` when the
state is missing."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

from pricewatch.contract.records import Availability
from producers.extractors.base import Extraction, Page
from producers.extractors.sites import COUNTRY_CURRENCIES, ShopAdapter, country_currency
from producers.extractors.values import clean_title, parse_currency, parse_price

_STATUS = {
    "IN_STOCK": Availability.IN_STOCK,
    "OUT_OF_STOCK": Availability.OUT_OF_STOCK,
    "LIMITED_STOCK": Availability.IN_STOCK,
    "PREORDER": Availability.PREORDER,
}


def _at(node: Any, *path: str) -> Any:
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def read_state(page: Page) -> Extraction | None:
    script = page.tree.css_first("script#__NEXT_DATA__")
    if script is None:
        return None
    try:
        state = json.loads(script.text(deep=True), parse_float=Decimal)
    except ValueError:
        return None
    product = _at(state, "props", "pageProps", "initialData", "data", "product")
    if not isinstance(product, dict):
        return None
    current = _at(product, "priceInfo", "currentPrice")
    price = parse_price(_at(current, "price"))
    status = product.get("availabilityStatus")
    return Extraction(
        price=price,
        currency=parse_currency(_at(current, "currencyUnit")),
        availability=_STATUS.get(status) if isinstance(status, str) else None,
        title=clean_title(product.get("name")),
        extractor="site:walmart",
    )


ADAPTER = ShopAdapter(
    name="walmart",
    host=re.compile(r"(?:www\.)?walmart\.(?:com|ca)"),
    state=read_state,
    price=(
        "[data-testid=price-wrap] [itemprop=price]",
        "[itemprop=price]@content",
        "span[itemprop=price]",
    ),
    title=("h1#main-title", "h1[itemprop=name]"),
    add_to_cart=("[data-automation-id=atc]", "button[data-dca-name=ItemBuyBoxAddToCartButton]"),
    currency_by_host=country_currency(COUNTRY_CURRENCIES),
)
