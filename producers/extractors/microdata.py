"""schema.org microdata: ``itemscope itemtype=".../Product"`` with ``itemprop`` properties."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pricewatch.contract.records import Availability
from producers.extractors.base import NO_PRICE_FOUND, Extraction, Page
from producers.extractors.dom import item_properties, item_scopes, item_types, property_value
from producers.extractors.values import (
    clean_title,
    parse_availability,
    parse_currency,
    parse_price,
    parse_price_text,
)

_PRODUCT_TYPES = frozenset({"Product", "ProductModel", "IndividualProduct", "Vehicle", "Book"})
_OFFER_TYPES = frozenset({"Offer", "AggregateOffer"})
_SECONDARY_CONDITIONS = {"UsedCondition", "RefurbishedCondition", "DamagedCondition"}


@dataclass(frozen=True)
class _Offer:
    price: Decimal | None
    currency: str | None
    availability: Availability | None
    secondary: bool


def _price_of(element: Any, declared_currency: str | None) -> tuple[Decimal | None, str | None]:
    """``content`` is machine-readable (schema.org notation); text is what a shopper reads."""
    content = element.get("content")
    if content is not None:
        return parse_price(str(content)), declared_currency
    return parse_price_text(property_value(element), declared_currency)


def _read_offer(scope: Any) -> _Offer:
    props = list(item_properties(scope))
    currency = next(
        (
            code
            for name, el in props
            if name == "priceCurrency" and (code := parse_currency(property_value(el)))
        ),
        None,
    )
    price: Decimal | None = None
    text_currency: str | None = None
    for wanted in ("price", "lowPrice"):
        for name, element in props:
            if name == wanted and price is None:
                price, text_currency = _price_of(element, currency)
    if price is None:
        for name, element in props:
            if name == "priceSpecification" and element.get("itemscope") is not None:
                spec = _read_offer(element)
                if spec.price is not None and not spec.secondary:
                    price, text_currency = spec.price, spec.currency
                    break
    availability = next(
        (parse_availability(property_value(el)) for name, el in props if name == "availability"),
        None,
    )
    condition = next((property_value(el) for name, el in props if name == "itemCondition"), "")
    secondary = condition.rstrip("/").rsplit("/", 1)[-1] in _SECONDARY_CONDITIONS or any(
        name in ("eligibleCustomerType", "validForMemberTier") for name, _ in props
    )
    return _Offer(
        price=price,
        currency=currency or text_currency,
        availability=availability,
        secondary=secondary,
    )


def _is_offer(element: Any) -> bool:
    """An item (not a plain value) typed Offer / AggregateOffer, or untyped."""
    if element.get("itemscope") is None:
        return False
    return not element.get("itemtype") or bool(item_types(element) & _OFFER_TYPES)


def extract_microdata(page: Page) -> Extraction | None:
    """The first top-level Product item's first-hand offer; a bare Offer item otherwise."""
    partial: Extraction | None = None
    for product in item_scopes(page.selector, _PRODUCT_TYPES):
        props = list(item_properties(product))
        title = next(
            (clean_title(property_value(el)) for name, el in props if name == "name"), None
        )
        offers = [_read_offer(el) for name, el in props if name == "offers" and _is_offer(el)]
        # Price properties written straight on the product (no Offer item) count too.
        if any(name == "price" for name, _ in props):
            offers.append(_read_offer(product))
        offers.sort(key=lambda o: o.secondary)
        found = _extraction(offers, title)
        if found.price is not None:
            return found
        partial = partial or found
    if partial is None:
        for offer_scope in item_scopes(page.selector, _OFFER_TYPES):
            found = _extraction([_read_offer(offer_scope)], None)
            if found.price is not None:
                return found
    return partial


def _extraction(offers: list[_Offer], title: str | None) -> Extraction:
    for offer in offers:
        if offer.price is not None:
            return Extraction(
                price=offer.price,
                currency=offer.currency,
                availability=offer.availability,
                title=title,
                extractor="microdata",
            )
    availability = next((o.availability for o in offers if o.availability is not None), None)
    return Extraction(
        title=title, availability=availability, extractor="microdata", error=NO_PRICE_FOUND
    )
