"""schema.org microdata (``itemscope itemtype=".../Product"`` with ``itemprop`` properties) and
RDFa (``typeof="Product"`` with ``property="price"``), on any element.

Quirks real pages show: an Offer nested in another Offer (the outer one the page's whole buy
box), a ``content`` attribute holding visible text ("71,91 € 79,90 €") instead of a number,
price properties written straight on the product, bare Offer items without a product.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from selectolax.lexbor import LexborNode

from pricewatch.contract.records import Availability
from producers.extractors.base import NO_PRICE_FOUND, Extraction, Page, PriceCandidate
from producers.extractors.dom import (
    MAX_DEPTH,
    attr,
    is_item,
    item_properties,
    item_scopes,
    item_types,
    property_value,
)
from producers.extractors.values import (
    clean_title,
    parse_availability,
    parse_currency,
    parse_price,
    single_price_text,
)
from producers.extractors.visible import current_price_in

_PRODUCT_TYPES = frozenset({"Product", "ProductModel", "IndividualProduct", "Vehicle", "Book"})
_OFFER_TYPES = frozenset({"Offer", "AggregateOffer"})
_SECONDARY_CONDITIONS = {"UsedCondition", "RefurbishedCondition", "DamagedCondition"}


@dataclass(frozen=True)
class _Offer:
    price: Decimal | None
    currency: str | None
    availability: Availability | None
    secondary: bool


def _price_of(element: LexborNode, declared: str | None) -> tuple[Decimal | None, str | None]:
    """``content`` is machine-readable (schema.org notation); text is what a shopper reads."""
    content = element.attributes.get("content")
    if isinstance(content, str):
        price = parse_price(content)
        if price is not None:
            return price, declared
    text = property_value(element) if content is None else " ".join(content.split())
    price, currency = single_price_text(text, declared)
    if price is None:
        # Several prices in one property (a current and a struck-through one): the current
        # one as the element shows it.
        found = current_price_in(element, declared)
        if found is not None:
            return found.amount, found.currency
    return price, currency


def _read_offer(scope: LexborNode, depth: int = 0) -> list[_Offer]:
    """The offer ``scope`` states, then the offers nested in it."""
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
            if name == "priceSpecification" and is_item(element) and depth < MAX_DEPTH:
                spec = _read_offer(element, depth + 1)[0]
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
    offers = [_Offer(price, currency or text_currency, availability, secondary)]
    if depth < 4:
        for name, element in props:
            if name == "offers" and _is_offer(element):
                offers.extend(_read_offer(element, depth + 1))
    return offers


def _is_offer(element: LexborNode) -> bool:
    """An item (not a plain value) typed Offer / AggregateOffer, or untyped."""
    if not is_item(element):
        return False
    return not (attr(element, "itemtype") or attr(element, "typeof")) or bool(
        item_types(element) & _OFFER_TYPES
    )


def _merged(offers: list[_Offer]) -> list[_Offer]:
    """An outer offer without a price lends its availability and currency to nested ones."""
    merged: list[_Offer] = []
    outer: _Offer | None = None
    for offer in offers:
        if outer is not None and offer.price is not None:
            offer = _Offer(
                offer.price,
                offer.currency or outer.currency,
                offer.availability or outer.availability,
                offer.secondary or outer.secondary,
            )
        if offer.price is None and outer is None:
            outer = offer
        merged.append(offer)
    return merged


def extract_microdata(page: Page) -> Extraction | None:
    """The first top-level Product item's first-hand offer; a bare Offer item otherwise."""
    partial: Extraction | None = None
    for product in item_scopes(page.tree, _PRODUCT_TYPES):
        props = list(item_properties(product))
        title = next(
            (clean_title(property_value(el)) for name, el in props if name == "name"), None
        )
        offers: list[_Offer] = []
        for name, element in props:
            if name == "offers" and _is_offer(element):
                offers.extend(_merged(_read_offer(element)))
        # Price properties written straight on the product (no Offer item) count too.
        if any(name == "price" for name, _ in props):
            offers.extend(_read_offer(product)[:1])
        offers.sort(key=lambda o: o.secondary)
        found = _extraction(offers, title)
        if found.price is not None:
            return found
        partial = partial or found
    if partial is None:
        for offer_scope in item_scopes(page.tree, _OFFER_TYPES):
            found = _extraction(_merged(_read_offer(offer_scope)), None)
            if found.price is not None:
                return found
    return partial


def _extraction(offers: list[_Offer], title: str | None) -> Extraction:
    for offer in offers:
        if offer.price is not None:
            availability = offer.availability or next(
                (o.availability for o in offers if o.availability is not None), None
            )
            return Extraction(
                price=offer.price,
                currency=offer.currency,
                availability=availability,
                title=title,
                extractor="microdata",
                candidates=tuple(
                    PriceCandidate(o.price, o.currency, "microdata", 1.0 if o is offer else 0.5)
                    for o in offers
                    if o.price is not None
                ),
            )
    availability = next((o.availability for o in offers if o.availability is not None), None)
    return Extraction(
        title=title, availability=availability, extractor="microdata", error=NO_PRICE_FOUND
    )
