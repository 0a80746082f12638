"""Price extraction from a product page: pure functions, ``html -> Extraction``.

Extraction is a chain of extractors tried most specific first; the first one that finds a
price wins:

1. the site adapter configured for the page's host, if any (``producers.extractors.adapters``);
2. schema.org JSON-LD;
3. schema.org microdata;
4. OpenGraph / product meta tags;
5. none: ``error="no_price_found"``, keeping what was found (title, availability).

When the winner states no availability, an earlier extractor's (one that found the product
but no price) is taken; failing that, the page's main visible text is searched for an
out-of-stock phrase ("sold out", "ausverkauft", "rupture de stock", ...).

Nothing here does I/O: fetching lives in ``producers.fetch``; the ``pricewatch extract``
command in ``producers.extract_command``.
"""

from __future__ import annotations

from dataclasses import replace

from producers.extractors.adapters import (
    HtmlAdapter,
    JsonApiAdapter,
    SiteAdapter,
    adapter_for,
    extract_with_adapter,
    html_adapter_extractor,
    load_site_adapters,
    parse_site_adapters,
)
from producers.extractors.base import NO_PRICE_FOUND, Extraction, Extractor, Page, make_page
from producers.extractors.dom import main_text
from producers.extractors.jsonld import extract_jsonld
from producers.extractors.microdata import extract_microdata
from producers.extractors.opengraph import extract_opengraph
from producers.extractors.values import (
    MAX_DECIMAL_PLACES,
    MAX_INTEGER_DIGITS,
    MAX_TITLE_CHARS,
    availability_from_text,
    currency_in_text,
    parse_availability,
    parse_currency,
    parse_price,
    parse_price_text,
)

__all__ = [
    "EXTRACTORS",
    "MAX_DECIMAL_PLACES",
    "MAX_INTEGER_DIGITS",
    "MAX_TITLE_CHARS",
    "NO_PRICE_FOUND",
    "Extraction",
    "Extractor",
    "HtmlAdapter",
    "JsonApiAdapter",
    "Page",
    "SiteAdapter",
    "adapter_for",
    "availability_from_text",
    "currency_in_text",
    "extract",
    "extract_jsonld",
    "extract_microdata",
    "extract_opengraph",
    "extract_with_adapter",
    "load_site_adapters",
    "parse_availability",
    "parse_currency",
    "parse_price",
    "parse_price_text",
    "parse_site_adapters",
]

EXTRACTORS: list[Extractor] = [extract_jsonld, extract_microdata, extract_opengraph]
"""Most specific first. The first extraction carrying a price wins."""


def extract(
    html: str,
    url: str,
    extractors: list[Extractor] | None = None,
    adapter: HtmlAdapter | JsonApiAdapter | None = None,
) -> Extraction:
    """What the page at ``url`` says about its product's price, currency and availability.

    ``adapter``, the site adapter for ``url``'s host, goes first in the chain; a JSON-API
    adapter reads an API response, not this page, so ``extract_with_adapter`` is for that.
    Never raises for a malformed page: no price gives ``error="no_price_found"``, keeping
    whatever else an extractor did find (title, availability).
    """
    chain = list(EXTRACTORS if extractors is None else extractors)
    if isinstance(adapter, HtmlAdapter):
        chain.insert(0, html_adapter_extractor(adapter))
    page = make_page(html, url)
    partial: Extraction | None = None
    result: Extraction | None = None
    for extractor in chain:
        found = extractor(page)
        if found is None:
            continue
        if found.price is not None:
            result = found
            break
        partial = partial or found
    if result is None:
        result = Extraction(
            title=partial.title if partial else None,
            availability=partial.availability if partial else None,
            extractor=partial.extractor if partial else None,
            error=NO_PRICE_FOUND,
        )
    if partial is not None and (result.availability is None or result.title is None):
        result = replace(
            result,
            availability=result.availability or partial.availability,
            title=result.title or partial.title,
        )
    if result.availability is None:
        visible = availability_from_text(main_text(page.selector))
        if visible is not None:
            result = replace(result, availability=visible)
    return result
