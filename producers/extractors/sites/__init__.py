"""Site adapters shipped with Pricewatch for the biggest shops, on by default.

Each shop's adapter (one module per shop) states where that shop's layout keeps the product's
price, title and availability: CSS selectors tried in order, the shop's own availability
wording, and for shops that render from inline state, a reader of that state. They are built
after each shop's general layout conventions (its stable ids, ``data-test`` attributes and
BEM class prefixes), never after one page's text, and tested on saved pages
(``tests/fixtures/sites``).

An adapter's price wins over the generic chain; what it does not find (availability, title)
the generic chain fills in. A user's own adapter for a host (``Settings.site_adapters_file``)
replaces the shipped one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from urllib.parse import urlsplit

from selectolax.lexbor import LexborNode

from pricewatch.contract.records import Availability
from producers.extractors.base import NO_PRICE_FOUND, Extraction, Extractor, Page, PriceCandidate
from producers.extractors.dom import collapse
from producers.extractors.values import (
    availability_from_text,
    clean_title,
    parse_availability,
    parse_currency,
    parse_price,
    single_price_text,
)

StateReader = Callable[[Page], Extraction | None]


@dataclass(frozen=True)
class ShopAdapter:
    """Where one shop's product pages keep what we read.

    Selectors are CSS; ``"selector@attribute"`` reads an attribute (a machine-readable
    value) instead of the element's text. The first selector that yields a value wins.
    """

    name: str
    host: re.Pattern[str]  # matched against the whole host name
    price: tuple[str, ...]
    title: tuple[str, ...] = ()
    currency: tuple[str, ...] = ()
    availability: tuple[str, ...] = ()
    in_stock_words: re.Pattern[str] | None = None
    out_of_stock_words: re.Pattern[str] | None = None
    # An add-to-cart button: present and enabled says in stock (when nothing else does).
    add_to_cart: tuple[str, ...] = ()
    state: StateReader | None = None
    currency_by_host: Callable[[str], str | None] = field(default=lambda host: None)
    # The shop's product pages show their price only after their scripts run: the fetcher
    # renders them (producers.render).
    render: bool = False


def _select(page: Page, selectors: tuple[str, ...]) -> tuple[str, str] | None:
    """(value, selector) of the first selector that yields a non-empty value."""
    for spec in selectors:
        css, _, attribute = spec.partition("@")
        for node in page.tree.css(css):
            value = _value(node, attribute)
            if value:
                return value, spec
    return None


def _value(node: LexborNode, attribute: str) -> str:
    if attribute:
        raw = node.attributes.get(attribute)
        return raw.strip() if isinstance(raw, str) else ""
    return collapse(node.text(deep=True, separator=""))


def read_with(adapter: ShopAdapter, page: Page) -> Extraction | None:
    """What ``adapter`` reads from ``page``; None when it recognises nothing there."""
    from_state = adapter.state(page) if adapter.state is not None else None
    host = (urlsplit(page.url).hostname or "").lower()
    declared = _select(page, adapter.currency)
    currency = parse_currency(declared[0]) if declared else None
    price: Decimal | None = None
    note = ""
    if from_state is not None and from_state.price is not None:
        price, currency, note = from_state.price, from_state.currency or currency, "inline state"
    else:
        found = _select(page, adapter.price)
        if found is not None:
            value, selector = found
            if "@" in selector:
                price = parse_price(value)
            else:
                price, text_currency = single_price_text(value, currency)
                currency = currency or text_currency
            note = selector
    currency = currency or adapter.currency_by_host(host)
    title_found = _select(page, adapter.title)
    title = clean_title(title_found[0]) if title_found else None
    availability = _availability(adapter, page)
    if from_state is not None:
        title = title or from_state.title
        availability = from_state.availability or availability
    if price is None and availability is None and title is None:
        return None
    name = f"site:{adapter.name}"
    return Extraction(
        price=price,
        currency=currency if price is not None else None,
        availability=availability,
        title=title,
        extractor=name,
        error=None if price is not None else NO_PRICE_FOUND,
        candidates=(PriceCandidate(price, currency, name, 5.0, note=note),)
        if price is not None
        else (),
    )


def _availability(adapter: ShopAdapter, page: Page) -> Availability | None:
    found = _select(page, adapter.availability)
    if found is not None:
        text = found[0]
        if adapter.out_of_stock_words is not None and adapter.out_of_stock_words.search(text):
            return Availability.OUT_OF_STOCK
        if adapter.in_stock_words is not None and adapter.in_stock_words.search(text):
            return Availability.IN_STOCK
        stated = parse_availability(text)
        if stated is not None and stated is not Availability.UNKNOWN:
            return stated
        said = availability_from_text(text)
        if said is not None:
            return said
    for selector in adapter.add_to_cart:
        for button in page.tree.css(selector):
            attributes = button.attributes
            if "disabled" not in attributes and attributes.get("aria-disabled") != "true":
                return Availability.IN_STOCK
    return None


def _registry() -> list[ShopAdapter]:
    from producers.extractors.sites import (
        amazon,
        argos,
        bestbuy,
        ebay,
        hm,
        ikea,
        johnlewis,
        target,
        walmart,
        zalando,
        zara,
    )

    return [
        m.ADAPTER
        for m in (amazon, ebay, walmart, target, bestbuy, zalando, ikea, zara, hm, johnlewis, argos)
    ]


_ADAPTERS: list[ShopAdapter] | None = None


def shop_adapters() -> list[ShopAdapter]:
    global _ADAPTERS
    if _ADAPTERS is None:
        _ADAPTERS = _registry()
    return _ADAPTERS


def adapter_for_host(host: str) -> ShopAdapter | None:
    host = host.lower().rstrip(".")
    return next((a for a in shop_adapters() if a.host.fullmatch(host)), None)


def site_extractor_for(url: str) -> Extractor | None:
    """The shipped adapter for ``url``'s shop, as a link of the chain; None for other shops."""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return None
    adapter = adapter_for_host(host)
    if adapter is None:
        return None

    def extractor(page: Page) -> Extraction | None:
        return read_with(adapter, page)

    return extractor


def country_currency(table: dict[str, str]) -> Callable[[str], str | None]:
    """A currency by the host's last labels ("co.uk" -> GBP), for shops with a site per
    country; the page's own currency always wins."""

    def currency(host: str) -> str | None:
        for suffix, code in sorted(table.items(), key=lambda kv: -len(kv[0])):
            if host == suffix or host.endswith("." + suffix):
                return code
        return None

    return currency


# Top-level domains of shops with a site per country, and their currencies.
COUNTRY_CURRENCIES = {
    "com": "USD",
    "ca": "CAD",
    "com.mx": "MXN",
    "com.br": "BRL",
    "co.uk": "GBP",
    "uk": "GBP",
    "ie": "EUR",
    "de": "EUR",
    "at": "EUR",
    "fr": "EUR",
    "be": "EUR",
    "nl": "EUR",
    "es": "EUR",
    "it": "EUR",
    "pt": "EUR",
    "fi": "EUR",
    "sk": "EUR",
    "ch": "CHF",
    "pl": "PLN",
    "cz": "CZK",
    "se": "SEK",
    "dk": "DKK",
    "no": "NOK",
    "com.tr": "TRY",
    "ae": "AED",
    "sa": "SAR",
    "eg": "EGP",
    "in": "INR",
    "co.jp": "JPY",
    "jp": "JPY",
    "com.au": "AUD",
    "au": "AUD",
    "sg": "SGD",
    "com.sg": "SGD",
}
