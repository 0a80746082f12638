"""Amazon, every country site: the buy box's "price to pay" (not the struck-through list
price, ``.a-text-price``), ``#productTitle`` and the ``#availability`` message."""

from __future__ import annotations

import re

from producers.extractors.sites import COUNTRY_CURRENCIES, ShopAdapter, country_currency

ADAPTER = ShopAdapter(
    name="amazon",
    host=re.compile(
        r"(?:[a-z0-9-]+\.)*amazon\.(?:com|ca|com\.mx|com\.br|co\.uk|de|fr|it|es|nl|be|se|pl|"
        r"com\.tr|ae|sa|eg|in|co\.jp|com\.au|sg)"
    ),
    price=(
        "#corePrice_feature_div .priceToPay .a-offscreen",
        "#corePriceDisplay_desktop_feature_div .priceToPay .a-offscreen",
        ".apexPriceToPay .a-offscreen",
        "#corePrice_feature_div .a-price:not(.a-text-price) .a-offscreen",
        "#corePrice_desktop .a-price:not(.a-text-price) .a-offscreen",
        "#priceblock_dealprice",
        "#priceblock_ourprice",
        "#priceblock_saleprice",
        "#price_inside_buybox",
        "#newBuyBoxPrice",
        "#kindle-price",
    ),
    title=("#productTitle", "#title"),
    availability=("#availability", "#outOfStock"),
    out_of_stock_words=re.compile(
        r"currently unavailable|out of stock|derzeit nicht verfügbar|actuellement indisponible|"
        r"no disponible|non disponibile|niet beschikbaar|不可|在庫切れ",
        re.IGNORECASE,
    ),
    in_stock_words=re.compile(
        r"in stock|auf lager|en stock|disponible|disponibile|op voorraad|在庫あり|left in stock",
        re.IGNORECASE,
    ),
    add_to_cart=("#add-to-cart-button", "#buy-now-button"),
    currency_by_host=country_currency(COUNTRY_CURRENCIES),
)
