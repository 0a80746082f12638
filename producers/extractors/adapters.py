"""Site adapters: per-website extraction rules, the most specific extractor of the chain.

Two kinds, configured per host in a JSON file (``Settings.site_adapters_file``)::

    {
      "shop.example": {
        "kind": "html", "price": "span.price-now", "title": "h1::text",
        "currency": "meta[itemprop=priceCurrency]::attr(content)"
      },
      "api-shop.example": {
        "kind": "json_api",
        "product_url_pattern": "/p/(?P<sku>[A-Z0-9-]+)",
        "api_url": "https://api-shop.example/api/products/{sku}.json",
        "price": "data.price.amount", "currency": "data.price.currency",
        "max_concurrent_requests": 1, "min_request_interval_seconds": 5
      }
    }

HTML adapters hold CSS (default) or XPath selectors; JSON-API adapters name a second URL,
built from the product URL, and dotted JSON paths (``data.offers[0].price``) into its
response. ``extract_with_adapter`` is pure; fetching the API URL is the fetcher's job
(``api_url_for`` tells it which URL). Either kind may also set the fetcher's politeness for
its host: ``max_concurrent_requests`` and ``min_request_interval_seconds``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote, urljoin, urlsplit

from parsel import Selector
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

from pricewatch.contract.records import Availability
from producers.extractors.base import NO_PRICE_FOUND, Extraction, Extractor, Page, make_page
from producers.extractors.values import (
    availability_from_text,
    checked_amount,
    clean_title,
    parse_availability,
    parse_currency,
    parse_price,
    parse_price_text,
)


class _Adapter(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    currency_default: str | None = Field(
        default=None, description="ISO code when the site never states one (a one-currency shop)."
    )
    availability_values: dict[str, Availability] = Field(
        default_factory=dict,
        description="The site's own availability wording, e.g. {'Lieferbar': 'in_stock'}; "
        "matched case-insensitively before schema.org names and out-of-stock phrases.",
    )

    # Politeness per website: read by the fetcher, not by extraction.
    max_concurrent_requests: int | None = Field(
        default=None, ge=1, description="Overrides host_max_concurrent_requests for this host."
    )
    min_request_interval_seconds: float | None = Field(
        default=None,
        ge=0,
        description="Overrides host_min_request_interval_seconds for this host.",
    )

    @field_validator("currency_default")
    @classmethod
    def _iso_code(cls, value: str | None) -> str | None:
        if value is not None and parse_currency(value) is None:
            raise ValueError(f"{value!r} is not an ISO 4217 code")
        return parse_currency(value)

    def api_url_for(self, product_url: str) -> str | None:
        """The URL whose response this adapter reads, when it is not the product page."""
        return None

    def availability_of(self, value: str | None) -> Availability | None:
        if value is None or not value.strip():
            return None
        wanted = " ".join(value.split()).lower()
        for key, availability in self.availability_values.items():
            if " ".join(key.split()).lower() == wanted:
                return availability
        found = parse_availability(value)
        if found is Availability.UNKNOWN:
            return availability_from_text(value) or Availability.UNKNOWN
        return found


class HtmlAdapter(_Adapter):
    """Selectors into the product page. CSS by default (parsel: ``::text``, ``::attr(x)``)."""

    kind: Literal["html"] = "html"
    selector_type: Literal["css", "xpath"] = "css"
    price: str | None = Field(
        default=None,
        description="Unset (only with render: true): the generic chain reads the price of "
        "the rendered page.",
    )
    render: bool = Field(
        default=False,
        description="Read this website's pages rendered in the browser (the render tier): "
        "for shops whose price only appears after their scripts run.",
    )
    currency: str | None = None
    availability: str | None = None
    title: str | None = None
    image: str | None = None

    @model_validator(mode="after")
    def _selectors_compile(self) -> HtmlAdapter:
        if self.price is None and not self.render:
            raise ValueError("an html adapter needs a price selector (or render: true)")
        probe = Selector(text="<html></html>")
        for query in (self.price, self.currency, self.availability, self.title, self.image):
            if query is None:
                continue
            try:
                probe.css(query) if self.selector_type == "css" else probe.xpath(query)
            except (ValueError, SyntaxError) as exc:
                raise ValueError(f"invalid {self.selector_type} selector {query!r}: {exc}") from exc
        return self


class JsonApiAdapter(_Adapter):
    """A JSON endpoint per product: ``api_url`` with ``{name}`` fields filled from the named
    groups of ``product_url_pattern`` (searched in the product URL); dotted paths into the
    response, ``[n]`` for list items, an optional leading ``$.``."""

    kind: Literal["json_api"]
    product_url_pattern: str
    api_url: str
    price: str
    price_minor_units: bool = Field(
        default=False, description="The price is in cents (an integer): divide by 100."
    )
    currency: str | None = None
    availability: str | None = None
    title: str | None = None
    image: str | None = None

    @field_validator("product_url_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from exc
        return value

    def api_url_for(self, product_url: str) -> str | None:
        match = re.search(self.product_url_pattern, product_url)
        if match is None:
            return None
        fields = {k: quote(v, safe="") for k, v in match.groupdict().items() if v is not None}
        try:
            return self.api_url.format(**fields)
        except (KeyError, IndexError):
            return None


SiteAdapter = Annotated[HtmlAdapter | JsonApiAdapter, Field(discriminator="kind")]
_ADAPTERS: TypeAdapter[dict[str, SiteAdapter]] = TypeAdapter(dict[str, SiteAdapter])


def parse_site_adapters(document: object) -> dict[str, HtmlAdapter | JsonApiAdapter]:
    """Validate a ``{host: adapter}`` mapping; hosts are lower-cased."""
    adapters = _ADAPTERS.validate_python(document)
    return {host.strip().lower(): adapter for host, adapter in adapters.items()}


def load_site_adapters(path: Path) -> dict[str, HtmlAdapter | JsonApiAdapter]:
    """The adapters file (JSON); raises ``ValueError`` (pydantic's) when it is invalid."""
    return parse_site_adapters(json.loads(path.read_text(encoding="utf-8")))


def adapter_for(
    adapters: Mapping[str, HtmlAdapter | JsonApiAdapter], url: str
) -> HtmlAdapter | JsonApiAdapter | None:
    """The adapter for ``url``'s host: "host:port", then "host", then without "www."."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    candidates = [f"{host}:{port}"] if port is not None else []
    candidates += [host, host.removeprefix("www.")]
    return next((adapters[c] for c in candidates if c in adapters), None)


# --- Extraction ------------------------------------------------------------------------------


def extract_with_adapter(adapter: HtmlAdapter | JsonApiAdapter, text: str, url: str) -> Extraction:
    """What ``adapter`` reads from ``text``: the product page (HTML kind) or the API response
    (JSON-API kind) fetched for the product at ``url``. Pure; never raises for bad input."""
    if isinstance(adapter, HtmlAdapter):
        return _from_html(adapter, make_page(text, url))
    return _from_json(adapter, text, url)


def html_adapter_extractor(adapter: HtmlAdapter) -> Extractor:
    """``adapter`` as a link of the extractor chain (``Page -> Extraction``)."""

    def extractor(page: Page) -> Extraction:
        return _from_html(adapter, page)

    return extractor


def _select(adapter: HtmlAdapter, selector: Selector, query: str | None) -> str | None:
    if not query:
        return None
    try:
        found = selector.css(query) if adapter.selector_type == "css" else selector.xpath(query)
    except (ValueError, SyntaxError):  # refused when configured; never crash on a page
        return None
    for item in found:
        # An element: its text; a text node, an attribute or an XPath value: itself.
        value = item.xpath("string(.)").get() if hasattr(item.root, "tag") else item.root
        text = " ".join(str(value if value is not None else "").split())
        if text:
            return text
    return None


def _from_html(adapter: HtmlAdapter, page: Page) -> Extraction:
    selector = page.selector
    declared = parse_currency(_select(adapter, selector, adapter.currency))
    price_text = _select(adapter, selector, adapter.price)
    price, currency = (
        parse_price_text(price_text, declared) if price_text is not None else (None, declared)
    )
    image = _select(adapter, selector, adapter.image)
    return _result(
        adapter,
        price=price,
        currency=currency,
        availability=adapter.availability_of(_select(adapter, selector, adapter.availability)),
        title=clean_title(_select(adapter, selector, adapter.title)),
        image=urljoin(page.url, image) if image else None,
        extractor="adapter",
    )


_PATH_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def json_path(document: Any, path: str) -> Any:
    """``document`` at a dotted path: "data.offers[0].price"; None when anything is missing."""
    node = document
    for key, index in _PATH_STEP.findall(path.removeprefix("$").lstrip(".")):
        if index:
            if not isinstance(node, list) or int(index) >= len(node):
                return None
            node = node[int(index)]
        elif isinstance(node, dict):
            node = node.get(key)
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return None
    return node


def _from_json(adapter: JsonApiAdapter, text: str, url: str) -> Extraction:
    try:
        document = json.loads(text, parse_float=Decimal)
    except ValueError:
        return Extraction(extractor="adapter", error="invalid_json")

    def string(path: str | None) -> str | None:
        value = json_path(document, path) if path else None
        if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
            return None
        return str(value) or None

    declared = parse_currency(string(adapter.currency))
    raw = json_path(document, adapter.price)
    price: Decimal | None
    if adapter.price_minor_units:
        price = (
            checked_amount(Decimal(raw) / 100)
            if isinstance(raw, int) and not isinstance(raw, bool)
            else None
        )
    else:
        price = parse_price(raw)
    image = string(adapter.image)
    return _result(
        adapter,
        price=price,
        currency=declared,
        availability=adapter.availability_of(string(adapter.availability)),
        title=clean_title(string(adapter.title)),
        image=urljoin(url, image) if image else None,
        extractor="adapter",
    )


def _result(
    adapter: _Adapter,
    *,
    price: Decimal | None,
    currency: str | None,
    availability: Availability | None,
    title: str | None,
    image: str | None,
    extractor: str,
) -> Extraction:
    return Extraction(
        price=price,
        currency=(currency or adapter.currency_default) if price is not None else None,
        availability=availability,
        title=title,
        extractor=extractor,
        error=None if price is not None else NO_PRICE_FOUND,
        image=image,
    )
