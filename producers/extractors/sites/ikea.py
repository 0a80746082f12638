"""IKEA, every country site: the buy module's main price (BEM classes under the ``pip-``
prefix, ``range-revamp-`` in its earlier layout), its header title and the online stock check
message ("Currently unavailable online")."""

from __future__ import annotations

import re

from producers.extractors.sites import ShopAdapter

ADAPTER = ShopAdapter(
    name="ikea",
    host=re.compile(r"(?:www\.)?ikea\.(?:com|cn)"),
    price=(
        ".pip-temp-price-module__current-price .pip-temp-price",
        ".pip-price-module__current-price .pip-price",
        ".pip-pip-price-package__main-price",
        ".pip-price-package__main-price",
        ".range-revamp-pip-price-package__main-price",
    ),
    title=(".pip-header-section", ".range-revamp-header-section"),
    availability=(
        ".pip-product-availability",
        ".range-revamp-product-availability",
        ".pip-stockcheck__text",
        ".range-revamp-stockcheck__text",
    ),
    out_of_stock_words=re.compile(
        r"currently unavailable|out of stock|not available|nicht verfügbar|indisponible|"
        r"no disponible|non disponibile|niet beschikbaar|slutsåld|ej tillgänglig",
        re.IGNORECASE,
    ),
    in_stock_words=re.compile(
        r"available for delivery|in stock|available|lieferbar|disponible|disponibile",
        re.IGNORECASE,
    ),
)
