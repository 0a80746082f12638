"""OpenGraph and product meta tags: ``product:price:amount``, ``og:price:amount`` and friends.

Machine-readable amounts (``…:amount``) are read as schema.org numbers; the older ``og:price``
/ ``product:price`` tags often hold the visible text ("30,000원~") and are read as such. A
sale price below the regular one is what the shopper pays.
"""

from __future__ import annotations

from decimal import Decimal

from producers.extractors.base import NO_PRICE_FOUND, Extraction, Page, PriceCandidate
from producers.extractors.values import (
    clean_title,
    parse_availability,
    parse_currency,
    parse_price,
    parse_price_text,
)

_AMOUNT = ("product:price:amount", "og:price:amount")
_SALE_AMOUNT = ("product:sale_price:amount", "og:sale_price:amount")
_TEXT = ("og:price", "product:price")
_CURRENCY = ("product:price:currency", "og:price:currency", "product:sale_price:currency")
_AVAILABILITY = ("product:availability", "og:availability")


def meta_tags(page: Page) -> dict[str, str]:
    """Each meta tag's first non-empty ``content`` by its ``property`` or ``name``, lower-cased."""
    found: dict[str, str] = {}
    for node in page.tree.css("meta[property], meta[name]"):
        attributes = node.attributes
        content = attributes.get("content")
        if not isinstance(content, str) or not content.strip():
            continue
        for key in ("property", "name"):
            name = attributes.get(key)
            if isinstance(name, str):
                found.setdefault(name.strip().lower(), content.strip())
    return found


def _first(tags: dict[str, str], names: tuple[str, ...]) -> str | None:
    return next((tags[name] for name in names if name in tags), None)


def extract_opengraph(page: Page) -> Extraction | None:
    tags = meta_tags(page)
    declared = parse_currency(_first(tags, _CURRENCY))
    availability = parse_availability(_first(tags, _AVAILABILITY))
    candidates: list[PriceCandidate] = []
    regular = parse_price(_first(tags, _AMOUNT))
    if regular is not None:
        candidates.append(PriceCandidate(regular, declared, "opengraph", note="price:amount"))
    sale = parse_price(_first(tags, _SALE_AMOUNT))
    if sale is not None and (regular is None or sale < regular):
        candidates.insert(0, PriceCandidate(sale, declared, "opengraph", note="sale_price:amount"))
    text = _first(tags, _TEXT)
    if text is not None:
        amount, currency = parse_price_text(text, declared)
        if amount is not None:
            candidates.append(
                PriceCandidate(amount, currency, "opengraph", score=0.8, note="og:price text")
            )
    if not candidates and availability is None:
        return None
    title = clean_title(_first(tags, ("og:title",)))
    price: Decimal | None = candidates[0].amount if candidates else None
    return Extraction(
        price=price,
        currency=candidates[0].currency if candidates else None,
        availability=availability,
        title=title,
        extractor="opengraph",
        error=None if price is not None else NO_PRICE_FOUND,
        candidates=tuple(candidates),
    )
