"""Zalando, every country site: its product pages state one schema.org offer per size; the
article is in stock when any size is, at the offers' price. Its visible markup uses generated
class names that change with every release, so the adapter reads only the structured offers.
"""

from __future__ import annotations

import re

from producers.extractors.jsonld import extract_jsonld
from producers.extractors.sites import COUNTRY_CURRENCIES, ShopAdapter, country_currency

ADAPTER = ShopAdapter(
    name="zalando",
    host=re.compile(
        r"(?:www\.|en\.)?zalando\.(?:de|co\.uk|fr|it|es|nl|be|at|ch|pl|cz|se|dk|no|fi|ie|pt|sk)"
    ),
    state=extract_jsonld,
    price=(),
    title=("h1 span", "h1"),
    currency_by_host=country_currency(COUNTRY_CURRENCIES),
)
