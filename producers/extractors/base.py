"""The types every extractor shares: what a page says (``Extraction``) and the page itself."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from parsel import Selector

from pricewatch.contract.records import Availability

NO_PRICE_FOUND = "no_price_found"


@dataclass(frozen=True)
class Extraction:
    """What one page says about its product. ``error`` is set when no price was found.

    ``image`` is filled by site adapters only (an absolute URL); observations do not carry it.
    """

    price: Decimal | None = None
    currency: str | None = None
    availability: Availability | None = None
    title: str | None = None
    extractor: str | None = None
    error: str | None = None
    image: str | None = None


@dataclass(frozen=True)
class Page:
    """The page handed to each extractor; the selector is parsed once for the whole chain."""

    html: str
    url: str
    selector: Selector


Extractor = Callable[[Page], Extraction | None]
"""Returns None when the page carries nothing this extractor understands."""


def make_page(html: str, url: str) -> Page:
    # type="html": parsel would otherwise read a body that looks like JSON ("{}", "[1]") as
    # JSON, and every XPath on it raises. A page is parsed as HTML, whatever it holds.
    return Page(html=html, url=url, selector=Selector(text=html or "<html></html>", type="html"))
