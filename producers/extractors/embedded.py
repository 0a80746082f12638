"""Prices in the page's inline state: the JSON / JavaScript objects a shop's front end is built
from (``__NEXT_DATA__``, ``window.__INITIAL_STATE__``, ``dataLayer``, Shopify's product JSON).

State blobs hold many products (menus, recommendations, the basket), so a price is taken only
where the state says which product is the page's:

* analytics' product-detail events: Universal Analytics' ``ecommerce.detail.products[0]``
  and GA4's ``view_item`` ``items[0]`` name the product being viewed;
* a product object (one with a price and a name) whose name is the page's product title.

JavaScript object literals (unquoted keys, single quotes) are read with ``chompjs``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import chompjs

from producers.extractors.base import Page, PriceCandidate
from producers.extractors.values import clean_title, parse_currency, parse_price

_STATE_MARKERS = (
    "__NEXT_DATA__",
    "__INITIAL_STATE__",
    "__PRELOADED_STATE__",
    "__NUXT__",
    "__APOLLO_STATE__",
    "dataLayer",
    "ShopifyAnalytics",
    '"product"',
    "'product'",
)
MAX_SCRIPT_CHARS = 2_000_000
MAX_SCRIPTS = 12
MAX_NESTING = 40
_PRICE_KEYS = ("price", "salePrice", "currentPrice", "finalPrice", "sellingPrice", "offerPrice")
_NAME_KEYS = ("name", "title", "productName")
_CURRENCY_KEYS = ("currency", "currencyCode", "priceCurrency")


def _state_objects(page: Page) -> Iterator[Any]:
    scripts = 0
    for script in page.tree.css("script:not([src])"):
        kind = (script.attributes.get("type") or "").lower()
        if "ld+json" in kind:
            continue
        text = script.text(deep=True)
        if not text or len(text) > MAX_SCRIPT_CHARS:
            continue
        script_id = script.attributes.get("id") or ""
        if script_id != "__NEXT_DATA__" and not any(m in text for m in _STATE_MARKERS):
            continue
        scripts += 1
        if scripts > MAX_SCRIPTS:
            return
        try:
            if kind.endswith("json"):
                yield json.loads(text, parse_float=Decimal)
            else:
                yield from chompjs.parse_js_objects(text, json_params={"parse_float": Decimal})
        except (ValueError, RecursionError, TypeError, OverflowError):
            continue


def _walk(node: Any, depth: int = 0) -> Iterator[dict[str, Any]]:
    if depth > MAX_NESTING:
        return
    if isinstance(node, dict):
        yield node
        for value in node.values():
            if isinstance(value, dict | list):
                yield from _walk(value, depth + 1)
    elif isinstance(node, list):
        for item in node[:500]:
            if isinstance(item, dict | list):
                yield from _walk(item, depth + 1)


def _price_of(item: dict[str, Any]) -> tuple[Decimal | None, str | None, str]:
    currency = next(
        (c for key in _CURRENCY_KEYS if (c := parse_currency(item.get(key))) is not None), None
    )
    for key in _PRICE_KEYS:
        value = item.get(key)
        if isinstance(value, dict):  # {"value": 12.5, "currency": "EUR"}, {"amount": ...}
            nested = next((value[k] for k in ("value", "amount", "current") if k in value), None)
            currency = currency or parse_currency(value.get("currency"))
            value = nested
        price = parse_price(value)
        if price is not None:
            return price, currency, key
    return None, currency, ""


def _words(text: str) -> set[str]:
    return set("".join(c if c.isalnum() else " " for c in text.casefold()).split())


def _same_name(name: object, title: str) -> bool:
    cleaned = clean_title(name)
    if cleaned is None:
        return False
    wanted, have = _words(title), _words(cleaned)
    if not wanted or not have:
        return False
    return len(wanted & have) / len(wanted | have) >= 0.8


def extract_embedded(page: Page, title: str | None) -> list[PriceCandidate]:
    """Prices the inline state gives the page's product, most telling first."""
    found: list[PriceCandidate] = []
    for document in _state_objects(page):
        for node in _walk(document):
            ecommerce = node.get("ecommerce")
            if isinstance(ecommerce, dict):
                detail = ecommerce.get("detail")
                products = detail.get("products") if isinstance(detail, dict) else None
                if node.get("event") == "view_item" or "items" in ecommerce:
                    products = products or ecommerce.get("items")
                if isinstance(products, list) and products and isinstance(products[0], dict):
                    price, currency, key = _price_of(products[0])
                    currency = currency or parse_currency(ecommerce.get("currencyCode"))
                    if price is not None:
                        found.append(
                            PriceCandidate(
                                price, currency, "embedded", 2.0, note=f"analytics detail {key}"
                            )
                        )
            if title and any(k in node for k in _PRICE_KEYS):
                name = next((node[k] for k in _NAME_KEYS if k in node), None)
                if _same_name(name, title):
                    price, currency, key = _price_of(node)
                    if price is not None:
                        found.append(
                            PriceCandidate(
                                price,
                                currency,
                                "embedded",
                                1.5,
                                note=f"state object named as the page ({key})",
                            )
                        )
            if len(found) >= 8:
                break
    found.sort(key=lambda c: -c.score)
    return found
