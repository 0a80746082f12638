"""eBay item pages, every country site: the listing's price (machine-readable ``content`` of
``#prcIsum`` / the bid price in the classic layout, ``.x-price-primary`` in the current one),
never the converted price shown beside it, and the quantity / ended-listing messages."""

from __future__ import annotations

import re

from producers.extractors.sites import COUNTRY_CURRENCIES, ShopAdapter, country_currency

ADAPTER = ShopAdapter(
    name="ebay",
    host=re.compile(
        r"(?:[a-z0-9-]+\.)*ebay\.(?:com|ca|co\.uk|de|fr|it|es|at|ch|nl|be|ie|pl|com\.au)"
    ),
    price=(
        "#prcIsum@content",
        "#prcIsum_bidPrice@content",
        "#mm-saleDscPrc",
        ".x-price-primary .ux-textspans",
        ".x-bin-price__content .ux-textspans",
    ),
    currency=("#mainContent [itemprop=priceCurrency]@content",),
    title=("h1.x-item-title__mainTitle", "#itemTitle"),
    availability=(
        "#qtySubTxt",
        ".x-quantity__availability",
        ".d-quantity__availability",
        ".d-statusmessage",
    ),
    out_of_stock_words=re.compile(
        r"out of stock|no longer available|this listing (?:was|has) ended|ausverkauft|"
        r"épuisé|agotado|esaurit|non più disponibile",
        re.IGNORECASE,
    ),
    in_stock_words=re.compile(
        r"available|verfügbar|disponibl|more than|last one|\d+\s*(?:sold|verkauft|venduti)",
        re.IGNORECASE,
    ),
    add_to_cart=("#binBtn_btn", "#atcBtn_btn", "#isCartBtn_btn", "[data-testid=ux-call-to-action]"),
    currency_by_host=country_currency(COUNTRY_CURRENCIES),
)
