"""schema.org Product / Offer in ``<script type="application/ld+json">`` blocks."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pricewatch.contract.records import Availability
from producers.extractors.base import NO_PRICE_FOUND, Extraction, Page
from producers.extractors.values import (
    clean_title,
    parse_availability,
    parse_currency,
    parse_price,
)

_JSONLD_SCRIPTS = (
    "//script[contains(translate(@type, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', "
    "'abcdefghijklmnopqrstuvwxyz'), 'ld+json')]/text()"
)
_HTML_COMMENT_OR_CDATA = re.compile(r"^\s*(<!--|<!\[CDATA\[)|(-->|\]\]>)\s*$")
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")
SCHEMA_PREFIXES = ("https://schema.org/", "http://schema.org/", "schema:", "schema.org/")


def load_jsonld(text: str) -> Any:
    """Parse one JSON-LD block, tolerating what CMSs commonly emit; None if hopeless."""
    # Decimal for every non-integer number: a price never passes through a float.
    for candidate in (text, _repair_jsonld(text)):
        try:
            return json.loads(candidate, parse_float=Decimal, strict=False)
        except ValueError:
            continue
    return None


def _repair_jsonld(text: str) -> str:
    text = _HTML_COMMENT_OR_CDATA.sub("", text.strip())
    text = _TRAILING_COMMA.sub(r"\1", text)
    return text.strip().rstrip(";")


def schema_name(value: str) -> str:
    for prefix in SCHEMA_PREFIXES:
        if value.lower().startswith(prefix):
            return value[len(prefix) :]
    return value


def _types(node: dict[str, Any]) -> set[str]:
    raw = node.get("@type")
    names = raw if isinstance(raw, list) else [raw]
    return {schema_name(name) for name in names if isinstance(name, str)}


# Where the page's own product can sit. Not "isRelatedTo", "isSimilarTo" and the like: a
# recommended product's price is not this product's price.
_CONTAINER_KEYS = ("@graph", "mainEntity", "hasVariant")


def _walk(node: Any, depth: int = 0) -> Iterator[dict[str, Any]]:
    """The JSON objects that may describe the page's product, outermost first."""
    if depth > 20:  # hostile nesting must not cost us the stack
        return
    if isinstance(node, dict):
        yield node
        for key in _CONTAINER_KEYS:
            if key in node:
                yield from _walk(node[key], depth + 1)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item, depth + 1)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


@dataclass(frozen=True)
class _Offer:
    price: Decimal | None
    currency: str | None
    availability: Availability | None
    secondary: bool  # used, refurbished, open-box, members only: not "the" price


_SECONDARY_CONDITIONS = {"UsedCondition", "RefurbishedCondition", "DamagedCondition"}
# A price specification of one of these types is not what the shopper pays today.
_NOT_THE_PRICE = {
    "ListPrice",
    "StrikethroughPrice",
    "SRP",
    "MSRP",
    "InvoicePrice",
    "MinimumAdvertisedPrice",
}


def _offers(product: dict[str, Any]) -> list[_Offer]:
    """The product's offers, the ones a new shopper pays first (stable otherwise)."""
    found: list[_Offer] = []
    for offer in _as_list(product.get("offers")):
        if not isinstance(offer, dict):
            continue
        found.append(_offer_price(offer))
        # An AggregateOffer may nest its individual offers.
        for inner in _as_list(offer.get("offers")):
            if isinstance(inner, dict):
                found.append(_offer_price(inner, fallback=offer))
    return sorted(found, key=lambda o: o.secondary)


def _offer_price(offer: dict[str, Any], fallback: dict[str, Any] | None = None) -> _Offer:
    def field(name: str) -> Any:
        value = offer.get(name)
        if value is None and fallback is not None:
            value = fallback.get(name)
        return value

    availability = parse_availability(field("availability"))
    currency = parse_currency(field("priceCurrency"))
    price = parse_price(offer.get("price"))
    if price is None and "AggregateOffer" in _types(offer):
        price = parse_price(offer.get("lowPrice"))
    if price is None:
        for spec in _as_list(offer.get("priceSpecification")):
            if not isinstance(spec, dict) or _secondary_spec(spec):
                continue
            price = parse_price(spec.get("price"))
            currency = currency or parse_currency(spec.get("priceCurrency"))
            if price is not None:
                break
    condition = field("itemCondition")
    secondary = (
        isinstance(condition, str) and schema_name(condition) in _SECONDARY_CONDITIONS
    ) or any(key in offer for key in ("eligibleCustomerType", "validForMemberTier"))
    return _Offer(price=price, currency=currency, availability=availability, secondary=secondary)


def _secondary_spec(spec: dict[str, Any]) -> bool:
    price_type = spec.get("priceType")
    if isinstance(price_type, str) and schema_name(price_type) in _NOT_THE_PRICE:
        return True
    return "validForMemberTier" in spec or "eligibleCustomerType" in spec


_PRODUCT_TYPES = {"Product", "ProductModel", "IndividualProduct", "Vehicle", "Book"}


def _products(document: Any) -> Iterator[dict[str, Any]]:
    for node in _walk(document):
        if _types(node) & _PRODUCT_TYPES:
            yield node


def extract_jsonld(page: Page) -> Extraction | None:
    """schema.org Product / Offer in ``<script type="application/ld+json">`` blocks."""
    partial: Extraction | None = None
    for block in page.selector.xpath(_JSONLD_SCRIPTS).getall():
        document = load_jsonld(block)
        if document is None:
            continue
        for product in _products(document):
            title = clean_title(product.get("name"))
            offers = _offers(product)
            for offer in offers:
                if offer.price is not None:
                    return Extraction(
                        price=offer.price,
                        currency=offer.currency,
                        availability=offer.availability,
                        title=title,
                        extractor="jsonld",
                    )
            if partial is None:
                availability = next(
                    (o.availability for o in offers if o.availability is not None), None
                )
                partial = Extraction(
                    title=title,
                    availability=availability,
                    extractor="jsonld",
                    error=NO_PRICE_FOUND,
                )
    return partial
