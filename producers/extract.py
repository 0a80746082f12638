"""Price extraction from a product page: pure functions, ``html -> Extraction``.

Extraction is a chain of extractors tried most specific first; the first one that finds a
price wins. Today the chain holds schema.org JSON-LD only; site adapters, microdata and
OpenGraph extractors slot into ``EXTRACTORS`` ahead of or behind it without touching callers.

Nothing here does I/O: fetching lives in ``producers.fetch``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from parsel import Selector

from pricewatch.contract.records import Availability

NO_PRICE_FOUND = "no_price_found"

# The wire format allows 6 decimal places and 18 digits; anything bigger is not a real price.
MAX_DECIMAL_PLACES = 6
MAX_INTEGER_DIGITS = 12
MAX_TITLE_CHARS = 500


@dataclass(frozen=True)
class Extraction:
    """What one page says about its product. ``error`` is set when no price was found."""

    price: Decimal | None = None
    currency: str | None = None
    availability: Availability | None = None
    title: str | None = None
    extractor: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Page:
    """The page handed to each extractor; the selector is parsed once for the whole chain."""

    html: str
    url: str
    selector: Selector


Extractor = Callable[[Page], Extraction | None]
"""Returns None when the page carries nothing this extractor understands."""


# --- Value parsing ---------------------------------------------------------------------

_NUMERIC_LABEL = re.compile(r"^\d+$")
_NUMBER = re.compile(r"\d(?:[\d.,'\s\u00a0\u202f\u2009]*\d)?")
_SPACES = re.compile(r"[\s\u00a0\u202f\u2009]+")


def parse_price(value: object) -> Decimal | None:
    """A non-negative Decimal from a JSON-LD price: number, or string in US or EU notation.

    Strings: "79.99", "1,299.00", "1.226,00", "1'299.00", "€ 1.226,00", "12,-". A single
    dot is always a decimal point (schema.org's own rule); a single comma followed by
    exactly three digits is a thousands separator ("1,299"), otherwise a decimal comma.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return _checked(Decimal(value))
    if isinstance(value, Decimal):
        return _checked(value)
    if isinstance(value, float):
        # Only reachable if a caller parsed JSON with floats; repr keeps what was written.
        return _checked(Decimal(repr(value)))
    if not isinstance(value, str):
        return None
    # Exactly one number, e.g. "EUR 79.99"; "10 - 20" or "2 for 5.00" is not one price.
    numbers = _NUMBER.findall(value)
    if len(numbers) != 1 or re.search(r"-\s*" + re.escape(numbers[0]), value):
        return None
    text = _SPACES.sub("", numbers[0]).replace("'", "")
    last_dot, last_comma = text.rfind("."), text.rfind(",")
    if last_dot >= 0 and last_comma >= 0:
        decimal_mark = "." if last_dot > last_comma else ","
        thousands_mark = "," if decimal_mark == "." else "."
        text = text.replace(thousands_mark, "")
        if text.count(decimal_mark) > 1:
            return None
        text = text.replace(decimal_mark, ".")
    elif last_comma >= 0:
        parts = text.split(",")
        if len(parts) > 2 or len(parts[1]) == 3:
            if not all(_NUMERIC_LABEL.match(p) for p in parts[1:]) or any(
                len(p) != 3 for p in parts[1:]
            ):
                return None
            text = "".join(parts)
        else:
            text = ".".join(parts)
    elif text.count(".") > 1:
        parts = text.split(".")
        if any(len(p) != 3 for p in parts[1:]):
            return None
        text = "".join(parts)
    try:
        amount = Decimal(text)
    except InvalidOperation:
        return None
    return _checked(amount)


def _checked(amount: Decimal) -> Decimal | None:
    if not amount.is_finite() or amount <= 0:
        # Zero is what many shops print for "price on request" or a sold-out placeholder;
        # publishing it would look like a 100 % price drop.
        return None
    amount = Decimal(format(amount, "f"))  # no exponent notation on the wire
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > MAX_DECIMAL_PLACES:
        amount = amount.normalize()
        exponent = amount.as_tuple().exponent
        if isinstance(exponent, int) and -exponent > MAX_DECIMAL_PLACES:
            return None
        amount = Decimal(format(amount, "f"))
    if amount >= Decimal(10) ** MAX_INTEGER_DIGITS:
        return None
    return amount


_CURRENCY_CODE = re.compile(r"^[A-Z]{3}$")
# Symbols that name exactly one currency; "$" or "kr" do not, so they stay unknown.
_UNAMBIGUOUS_SYMBOLS = {"€": "EUR", "£": "GBP", "₹": "INR", "₩": "KRW", "₺": "TRY", "₽": "RUB"}


def parse_currency(value: object) -> str | None:
    """An ISO 4217 code, upper-case; None when the value is not one."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text in _UNAMBIGUOUS_SYMBOLS:
        return _UNAMBIGUOUS_SYMBOLS[text]
    code = text.upper()
    return code if _CURRENCY_CODE.match(code) else None


_SCHEMA_PREFIXES = ("https://schema.org/", "http://schema.org/", "schema:", "schema.org/")
_AVAILABILITY_BY_NAME: dict[str, Availability] = {
    "instock": Availability.IN_STOCK,
    "limitedavailability": Availability.IN_STOCK,
    "instoreonly": Availability.IN_STOCK,
    "onlineonly": Availability.IN_STOCK,
    "outofstock": Availability.OUT_OF_STOCK,
    "soldout": Availability.OUT_OF_STOCK,
    "discontinued": Availability.DISCONTINUED,
    "preorder": Availability.PREORDER,
    "presale": Availability.PREORDER,
    "backorder": Availability.BACKORDER,
    "madetoorder": Availability.BACKORDER,
}


def parse_availability(value: object) -> Availability | None:
    """Map a schema.org ItemAvailability (full URL or bare name) onto ``Availability``.

    None when the page says nothing; UNKNOWN when it says something we do not recognise.
    """
    if not isinstance(value, str) or not value.strip():
        return None
    name = value.strip()
    for prefix in _SCHEMA_PREFIXES:
        if name.lower().startswith(prefix):
            name = name[len(prefix) :]
            break
    key = re.sub(r"[^a-z]", "", name.lower())
    return _AVAILABILITY_BY_NAME.get(key, Availability.UNKNOWN)


def _clean_title(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    title = " ".join(value.split())
    return title[:MAX_TITLE_CHARS] or None


# --- JSON-LD ---------------------------------------------------------------------------

_JSONLD_SCRIPTS = (
    "//script[contains(translate(@type, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', "
    "'abcdefghijklmnopqrstuvwxyz'), 'ld+json')]/text()"
)
_HTML_COMMENT_OR_CDATA = re.compile(r"^\s*(<!--|<!\[CDATA\[)|(-->|\]\]>)\s*$")
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")


def _load_jsonld(text: str) -> Any:
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


def _types(node: dict[str, Any]) -> set[str]:
    raw = node.get("@type")
    names = raw if isinstance(raw, list) else [raw]
    result: set[str] = set()
    for name in names:
        if isinstance(name, str):
            for prefix in _SCHEMA_PREFIXES:
                if name.lower().startswith(prefix):
                    name = name[len(prefix) :]
                    break
            result.add(name)
    return result


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


def _offers(product: dict[str, Any]) -> Iterator[_Offer]:
    for offer in _as_list(product.get("offers")):
        if not isinstance(offer, dict):
            continue
        yield from _offer_prices(offer)
        # An AggregateOffer may nest its individual offers.
        for inner in _as_list(offer.get("offers")):
            if isinstance(inner, dict):
                yield from _offer_prices(inner, fallback=offer)


def _offer_prices(
    offer: dict[str, Any], fallback: dict[str, Any] | None = None
) -> Iterator[_Offer]:
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
            if isinstance(spec, dict):
                price = parse_price(spec.get("price"))
                currency = currency or parse_currency(spec.get("priceCurrency"))
                if price is not None:
                    break
    yield _Offer(price=price, currency=currency, availability=availability)


def _products(document: Any) -> Iterator[dict[str, Any]]:
    for node in _walk(document):
        types = _types(node)
        if types & {"Product", "ProductModel", "IndividualProduct", "Vehicle", "Book"}:
            yield node


def extract_jsonld(page: Page) -> Extraction | None:
    """schema.org Product / Offer in ``<script type="application/ld+json">`` blocks."""
    partial: Extraction | None = None
    for block in page.selector.xpath(_JSONLD_SCRIPTS).getall():
        document = _load_jsonld(block)
        if document is None:
            continue
        for product in _products(document):
            title = _clean_title(product.get("name"))
            offers = list(_offers(product))
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


EXTRACTORS: list[Extractor] = [extract_jsonld]
"""Most specific first. The first extraction carrying a price wins."""


def extract(html: str, url: str, extractors: list[Extractor] | None = None) -> Extraction:
    """What the page at ``url`` says about its product's price, currency and availability.

    Never raises for a malformed page: no price gives ``error="no_price_found"``, keeping
    whatever else an extractor did find (title, availability).
    """
    chain = EXTRACTORS if extractors is None else extractors
    page = Page(html=html, url=url, selector=Selector(text=html or "<html></html>"))
    partial: Extraction | None = None
    for extractor in chain:
        found = extractor(page)
        if found is None:
            continue
        if found.price is not None:
            return found
        partial = partial or found
    if partial is not None:
        return Extraction(
            title=partial.title,
            availability=partial.availability,
            extractor=partial.extractor,
            error=NO_PRICE_FOUND,
        )
    return Extraction(error=NO_PRICE_FOUND)
