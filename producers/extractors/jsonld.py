"""schema.org Product / Offer in ``<script type="application/ld+json">`` blocks.

Real pages' quirks this reads: keys in any case (``Offers``), blocks wrapped in HTML
comments or ``//<![CDATA[ … //]]>``, trailing commas, several blocks or an array of
documents, ``@graph``, ``mainEntity``, ``ProductGroup.hasVariant``, offers as a list or an
``AggregateOffer`` (``lowPrice``, nested ``offers``), ``priceSpecification``, prices as
numbers or strings with symbols, and several Product blocks: the page's main product is the
first with a price; products of the same name are its variants (sizes, colours), and the
product is available when any variant is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pricewatch.contract.records import Availability
from producers.extractors.base import NO_PRICE_FOUND, Extraction, Page, PriceCandidate
from producers.extractors.values import (
    clean_title,
    parse_availability,
    parse_currency,
    parse_price,
)

_JSONLD_SCRIPTS = 'script[type*="ld+json" i]'
_WRAPPERS = re.compile(
    r"^\s*(?://\s*)?(?:<!--|<!\[CDATA\[)|(?://\s*)?(?:-->|\]\]>)\s*$", re.MULTILINE
)
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")
SCHEMA_PREFIXES = ("https://schema.org/", "http://schema.org/", "schema:", "schema.org/")
MAX_NESTING = 20

# Keys read here, by their lower-case spelling: pages write "Offers", "PriceCurrency", ...
_KEYS = (
    "@type @graph @id mainEntity hasVariant offers price priceCurrency availability name "
    "lowPrice highPrice priceSpecification itemCondition eligibleCustomerType "
    "validForMemberTier priceType url sku isVariantOf productGroupID"
)
_CANONICAL_KEYS = {key.lower(): key for key in _KEYS.split()}


def load_jsonld(text: str) -> Any:
    """Parse one JSON-LD block, tolerating what CMSs commonly emit; None if hopeless."""
    # Decimal for every non-integer number: a price never passes through a float.
    for candidate in (text, _repair_jsonld(text)):
        try:
            return _canonical(json.loads(candidate, parse_float=Decimal, strict=False), 0)
        except (ValueError, RecursionError):
            continue
    return None


def _repair_jsonld(text: str) -> str:
    text = _WRAPPERS.sub("", text.strip())
    text = _TRAILING_COMMA.sub(r"\1", text)
    return text.strip().rstrip(";")


def _canonical(node: Any, depth: int) -> Any:
    """The document with the keys read here in schema.org's spelling, whatever their case."""
    if depth > MAX_NESTING:
        return None
    if isinstance(node, dict):
        return {
            _CANONICAL_KEYS.get(key.lower(), key) if isinstance(key, str) else key: _canonical(
                value, depth + 1
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_canonical(item, depth + 1) for item in node]
    return node


def schema_name(value: str) -> str:
    for prefix in SCHEMA_PREFIXES:
        if value.lower().startswith(prefix):
            return value[len(prefix) :]
    return value


def _words(text: str) -> list[str]:
    return text.split()


_TYPE_NAMES = {
    name.lower(): name
    for name in _words(
        "Product ProductModel IndividualProduct ProductGroup Vehicle Book Offer AggregateOffer "
        "ListPrice StrikethroughPrice SRP MSRP InvoicePrice MinimumAdvertisedPrice "
        "UsedCondition RefurbishedCondition DamagedCondition"
    )
}


def _type_name(value: str) -> str:
    name = schema_name(value.strip())
    return _TYPE_NAMES.get(name.lower(), name)


def _types(node: dict[str, Any]) -> set[str]:
    raw = node.get("@type")
    names = raw if isinstance(raw, list) else [raw]
    return {_type_name(name) for name in names if isinstance(name, str)}


# Where the page's own product can sit. Not "isRelatedTo", "isSimilarTo" and the like: a
# recommended product's price is not this product's price.
_CONTAINER_KEYS = ("@graph", "mainEntity", "hasVariant")


def _walk(node: Any, depth: int = 0) -> Iterator[dict[str, Any]]:
    """The JSON objects that may describe the page's product, outermost first."""
    if depth > MAX_NESTING:  # hostile nesting must not cost us the stack
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
    note: str


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
    note = "offers.price"
    if price is None and "lowPrice" in offer:
        price, note = parse_price(offer.get("lowPrice")), "offers.lowPrice"
    if price is None:
        for spec in _as_list(offer.get("priceSpecification")):
            if not isinstance(spec, dict) or _secondary_spec(spec):
                continue
            price = parse_price(spec.get("price"))
            currency = currency or parse_currency(spec.get("priceCurrency"))
            if price is not None:
                note = "offers.priceSpecification.price"
                break
    condition = field("itemCondition")
    secondary = (
        isinstance(condition, str) and _type_name(condition) in _SECONDARY_CONDITIONS
    ) or any(key in offer for key in ("eligibleCustomerType", "validForMemberTier"))
    return _Offer(price, currency, availability, secondary, note)


def _secondary_spec(spec: dict[str, Any]) -> bool:
    price_type = spec.get("priceType")
    if isinstance(price_type, str) and _type_name(price_type) in _NOT_THE_PRICE:
        return True
    return "validForMemberTier" in spec or "eligibleCustomerType" in spec


_PRODUCT_TYPES = {"Product", "ProductModel", "IndividualProduct", "Vehicle", "Book"}


def _products(document: Any) -> Iterator[tuple[dict[str, Any], str | None]]:
    """Each product with the name of the group it is a variant of (``ProductGroup``), if any."""
    variant_of: dict[int, str] = {}
    for node in _walk(document):
        if "ProductGroup" in _types(node):
            group = clean_title(node.get("name")) or f"group {id(node)}"
            for variant in _as_list(node.get("hasVariant")):
                variant_of[id(variant)] = group
        if _types(node) & _PRODUCT_TYPES:
            yield node, variant_of.get(id(node))


def documents(page: Page) -> list[Any]:
    """Every JSON-LD block of the page that parses, in document order."""
    found = []
    for script in page.tree.css(_JSONLD_SCRIPTS):
        document = load_jsonld(script.text(deep=True))
        if document is not None:
            found.append(document)
    return found


@dataclass(frozen=True)
class _Reading:
    title: str | None
    group: str  # products of one name are variants of one product
    offers: list[_Offer]


def _group_availability(readings: list[_Reading], group: str) -> Availability | None:
    """A product's availability over its variants: in stock when any variant is, sold out
    only when every variant that says anything says so."""
    said = [
        o.availability
        for r in readings
        if r.group == group
        for o in r.offers
        if o.availability is not None and not o.secondary
    ]
    if not said:
        return None
    in_stock = [a for a in said if a is Availability.IN_STOCK]
    if in_stock:
        return Availability.IN_STOCK
    return said[0]


def extract_jsonld(page: Page) -> Extraction | None:
    """schema.org Product / Offer in ``<script type="application/ld+json">`` blocks."""
    readings: list[_Reading] = []
    for document in documents(page):
        for product, group_name in _products(document):
            title = clean_title(product.get("name"))
            group = (group_name or title or "").casefold() or f"#{len(readings)}"
            readings.append(_Reading(title, group, _offers(product)))
    if not readings:
        return None
    candidates: list[PriceCandidate] = []
    chosen: tuple[_Reading, _Offer] | None = None
    for reading in readings:
        for offer in reading.offers:
            if offer.price is None:
                continue
            score = 0.5 if offer.secondary or chosen is not None else 1.0
            note = offer.note + (
                " (used, refurbished or members' offer)" if offer.secondary else ""
            )
            candidates.append(
                PriceCandidate(offer.price, offer.currency, "jsonld", score, note=note)
            )
            if chosen is None:
                chosen = (reading, offer)
    if chosen is None:
        main = readings[0]
        return Extraction(
            title=main.title,
            availability=_group_availability(readings, main.group),
            extractor="jsonld",
            error=NO_PRICE_FOUND,
        )
    reading, offer = chosen
    availability = _group_availability(readings, reading.group)
    if offer.availability is not None and availability is not offer.availability:
        # The chosen offer speaks for itself unless a variant of the same product is in stock.
        availability = availability if availability is Availability.IN_STOCK else offer.availability
    return Extraction(
        price=offer.price,
        currency=offer.currency,
        availability=availability,
        title=reading.title,
        extractor="jsonld",
        candidates=tuple(candidates),
    )
