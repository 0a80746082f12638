"""The types every extractor shares: what a page says (``Extraction``), the evidence behind it
(``PriceCandidate``, ``StockSignal``) and the page itself (``Page``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property

from parsel import Selector
from selectolax.lexbor import LexborHTMLParser

from pricewatch.contract.records import Availability

NO_PRICE_FOUND = "no_price_found"


@dataclass(frozen=True)
class PriceCandidate:
    """A price some part of the page states, with where it was read and how much it counts.

    ``role`` is what the page shows it as: ``current`` (what a shopper pays now) or one of
    the prices that are not: ``list`` (struck through, "was", RRP), ``unit`` (per kg / per
    m²), ``instalment``, ``shipping``, ``saving``.
    """

    amount: Decimal
    currency: str | None
    source: str  # "jsonld", "microdata", "opengraph", "embedded", "visible", "adapter"
    score: float = 1.0
    role: str = "current"
    note: str = ""


@dataclass(frozen=True)
class StockSignal:
    """Something the page says about availability, and where."""

    availability: Availability
    source: str
    note: str = ""


@dataclass(frozen=True)
class Extraction:
    """What one page says about its product. ``error`` is set when no price was found.

    ``image`` is filled by site adapters only (an absolute URL); observations do not carry it.
    ``candidates`` and ``signals`` are the evidence the decision weighed (``pricewatch
    extract --explain`` prints them); they do not take part in equality.
    """

    price: Decimal | None = None
    currency: str | None = None
    availability: Availability | None = None
    title: str | None = None
    extractor: str | None = None
    error: str | None = None
    image: str | None = None
    candidates: tuple[PriceCandidate, ...] = field(default=(), compare=False, repr=False)
    signals: tuple[StockSignal, ...] = field(default=(), compare=False, repr=False)
    decision: str = field(default="", compare=False, repr=False)


@dataclass(frozen=True)
class Page:
    """The page handed to each extractor, parsed once for the whole chain.

    ``tree`` is lexbor's (selectolax): the generic extractors read it. ``selector`` (parsel,
    lxml) is built only when asked for: user-configured site adapters hold parsel selectors.
    """

    html: str
    url: str
    tree: LexborHTMLParser

    @cached_property
    def selector(self) -> Selector:
        # type="html": parsel would otherwise read a body that looks like JSON ("{}", "[1]")
        # as JSON, and every XPath on it raises. A page is parsed as HTML, whatever it holds.
        return Selector(text=self.html or "<html></html>", type="html")


Extractor = Callable[[Page], Extraction | None]
"""Returns None when the page carries nothing this extractor understands."""


def make_page(html: str, url: str) -> Page:
    # NUL characters end lexbor's input early in some versions; no page needs them.
    text = html.replace("\x00", "") if "\x00" in html else html
    return Page(html=html, url=url, tree=LexborHTMLParser(text or "<html></html>"))
