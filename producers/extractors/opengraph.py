"""OpenGraph and product meta tags: ``product:price:amount``, ``og:price:amount`` and friends."""

from __future__ import annotations

from producers.extractors.base import NO_PRICE_FOUND, Extraction, Page
from producers.extractors.values import (
    clean_title,
    parse_availability,
    parse_currency,
    parse_price,
)

_PRICE = ("product:price:amount", "og:price:amount", "product:sale_price:amount")
_CURRENCY = ("product:price:currency", "og:price:currency", "product:sale_price:currency")
_AVAILABILITY = ("product:availability", "og:availability")


def _meta(page: Page, names: tuple[str, ...]) -> str | None:
    """The first non-empty ``content`` of a meta tag with one of ``names`` (property or name),
    in the order of ``names``."""
    for name in names:
        for attribute in ("property", "name"):
            value = page.selector.xpath(
                f"//meta[translate(@{attribute}, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', "
                f"'abcdefghijklmnopqrstuvwxyz')=$name]/@content",
                name=name,
            ).get()
            if value and value.strip():
                return str(value).strip()
    return None


def extract_opengraph(page: Page) -> Extraction | None:
    amount = _meta(page, _PRICE)
    availability = parse_availability(_meta(page, _AVAILABILITY))
    if amount is None and availability is None:
        return None
    title = clean_title(_meta(page, ("og:title",)))
    price = parse_price(amount)
    return Extraction(
        price=price,
        currency=parse_currency(_meta(page, _CURRENCY)) if price is not None else None,
        availability=availability,
        title=title,
        extractor="opengraph",
        error=None if price is not None else NO_PRICE_FOUND,
    )
