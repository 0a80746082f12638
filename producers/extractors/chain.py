"""Price extraction from a product page: pure functions, ``html -> Extraction``.

Every source of the page is read, then a decision is made with rules that can be explained:

1. a site adapter for the page's host: the user's (``Settings.site_adapters_file``), else the
   one shipped with Pricewatch (``producers.extractors.sites``); a price it finds wins;
2. structured data, most specific first: schema.org JSON-LD, microdata / RDFa, OpenGraph and
   product meta tags. The first price wins, except that
   * when structured sources disagree, the one the buy box shows as its current price wins;
   * a structured price the buy box shows struck through (the list price) gives way to the
     buy box's current price;
3. without structured prices: the visible buy box's price (``visible``) when it is anchored to
   the product (near its title or add-to-cart button), else the inline state's
   (``embedded``), else the buy box's best guess only if it is the page's only price;
4. none: ``error="no_price_found"``, keeping what was found (title, availability).

Availability comes from the main product's offer (over its variants: in stock when any variant
is). Without one, an out-of-stock phrase in the buy box (not in a size picker, a variant list
or a carousel) says sold out. When sources conflict (a sold-out signal beside an enabled
add-to-cart button), the answer is ``unknown``: a false "sold out" alert is worse than a late
one.

Nothing here does I/O: fetching lives in ``producers.fetch``; the ``pricewatch extract``
command in ``producers.extract_command``.
"""

from __future__ import annotations

from dataclasses import replace

from pricewatch.contract.records import Availability
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
from producers.extractors.base import (
    NO_PRICE_FOUND,
    Extraction,
    Extractor,
    Page,
    PriceCandidate,
    StockSignal,
    make_page,
)
from producers.extractors.dom import collapse, main_text, visible_text
from producers.extractors.embedded import extract_embedded
from producers.extractors.jsonld import extract_jsonld
from producers.extractors.microdata import extract_microdata
from producers.extractors.opengraph import extract_opengraph
from producers.extractors.sites import site_extractor_for
from producers.extractors.values import (
    MAX_DECIMAL_PLACES,
    MAX_INTEGER_DIGITS,
    MAX_TITLE_CHARS,
    availability_from_text,
    clean_title,
    currency_in_text,
    parse_availability,
    parse_currency,
    parse_price,
    parse_price_text,
)
from producers.extractors.visible import BuyBox, read_buy_box

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
"""Structured data, most specific first."""

_OUT = (Availability.OUT_OF_STOCK, Availability.DISCONTINUED)


def extract(
    html: str,
    url: str,
    extractors: list[Extractor] | None = None,
    adapter: HtmlAdapter | JsonApiAdapter | None = None,
) -> Extraction:
    """What the page at ``url`` says about its product's price, currency and availability.

    ``adapter`` is the user's site adapter for ``url``'s host, if any; without one, the site
    adapter shipped for that host (if any) is used. A JSON-API adapter reads an API response,
    not this page, so ``extract_with_adapter`` is for that. Never raises for a malformed page:
    no price gives ``error="no_price_found"``, keeping whatever else was found.
    """
    page = make_page(html, url)
    site: Extractor | None = None
    if isinstance(adapter, HtmlAdapter):
        site = html_adapter_extractor(adapter)
    elif adapter is None:
        site = site_extractor_for(url)
    return decide(page, site, EXTRACTORS if extractors is None else extractors)


def decide(page: Page, site: Extractor | None, extractors: list[Extractor]) -> Extraction:
    site_found = site(page) if site is not None else None
    structured = [found for extractor in extractors if (found := extractor(page)) is not None]
    sources = ([site_found] if site_found is not None else []) + structured
    title = next((s.title for s in sources if s.title), None)
    declared = next((s.currency for s in sources if s.currency), None)
    has_price = any(s.price is not None for s in sources)
    box = read_buy_box(page.tree, title, declared, whole_page=not has_price)

    result, decision = _price(page, site_found, structured, box, title, declared)
    candidates = [c for s in sources for c in _candidates_of(s)] + box.candidates
    availability, signals = _availability(page, result, site_found, sources, box)
    heading = clean_title(collapse(box.title.text(deep=True))) if box.title is not None else None
    return replace(
        result,
        title=result.title or title or heading,
        availability=availability,
        candidates=tuple(candidates),
        signals=tuple(signals),
        decision=decision,
    )


def _candidates_of(found: Extraction) -> list[PriceCandidate]:
    if found.candidates:
        return list(found.candidates)
    if found.price is None:
        return []
    return [PriceCandidate(found.price, found.currency, found.extractor or "?")]


def _price(
    page: Page,
    site: Extraction | None,
    structured: list[Extraction],
    box: BuyBox,
    title: str | None,
    declared: str | None,
) -> tuple[Extraction, str]:
    if site is not None and site.price is not None:
        return replace(site, currency=site.currency or declared), "site adapter"
    priced = [s for s in structured if s.price is not None]
    seen = box.best if box.strong else None
    if priced:
        chosen = priced[0]
        decision = f"structured data ({chosen.extractor})"
        if seen is not None and len({s.price for s in priced}) > 1:
            agreeing = [s for s in priced if s.price == seen.amount]
            if agreeing and agreeing[0] is not chosen:
                chosen = agreeing[0]
                decision = (
                    f"structured sources disagree; {chosen.extractor} agrees with the buy box"
                )
        if (
            seen is not None
            and chosen.price in box.list_prices
            and chosen.price is not None
            and seen.amount < chosen.price
        ):
            return (
                _from_candidate(seen, chosen.currency or declared, chosen.title),
                f"{chosen.extractor}'s price is the buy box's struck-through list price; "
                "the buy box's current price",
            )
        return chosen, decision
    partial = next(iter(structured), None)
    if seen is not None:
        return _from_candidate(seen, declared, title), "the visible buy box's price"
    embedded = extract_embedded(page, title)
    if embedded:
        return _from_candidate(embedded[0], declared, title), "the page's inline state"
    return (
        Extraction(
            title=partial.title if partial else None,
            extractor=partial.extractor if partial else None,
            error=NO_PRICE_FOUND,
        ),
        "no price found",
    )


def _from_candidate(
    candidate: PriceCandidate, declared: str | None, title: str | None
) -> Extraction:
    return Extraction(
        price=candidate.amount,
        currency=declared or candidate.currency,
        title=title,
        extractor=candidate.source,
    )


def _availability(
    page: Page,
    result: Extraction,
    site: Extraction | None,
    sources: list[Extraction],
    box: BuyBox,
) -> tuple[Availability | None, list[StockSignal]]:
    signals: list[StockSignal] = []
    if site is not None and site.availability is not None:
        # The shop's own adapter knows where that shop states stock.
        signals.append(StockSignal(site.availability, site.extractor or "?", "site adapter"))
        return site.availability, signals
    stated = result.availability
    if stated is not None:
        signals.append(StockSignal(stated, result.extractor or "?", "the chosen offer"))
    for source in sources:
        if source.availability is not None and source is not result:
            signals.append(StockSignal(source.availability, source.extractor or "?"))
            stated = stated or source.availability
    sells = box.sells
    if sells:
        signals.append(StockSignal(Availability.IN_STOCK, "visible", "enabled add-to-cart button"))
    if box.region is not None:
        said = availability_from_text(visible_text(box.region, without_links=True))
        where = "the buy box"
    else:
        # No title, price or button to anchor a buy box: the page's main text, the only
        # place left, and only when nothing structured states availability.
        said = availability_from_text(main_text(page.tree)) if stated is None else None
        where = "the page's main text"
    if said is not None:
        signals.append(StockSignal(said, "visible", f"out-of-stock phrase in {where}"))
    if stated is not None:
        if stated in _OUT and sells and said is None:
            return Availability.UNKNOWN, signals  # conflict: never a false "sold out"
        return stated, signals
    if said is not None:
        return (Availability.UNKNOWN if sells else said), signals
    return None, signals
