"""``pricewatch extract PATH_OR_URL``: what Pricewatch sees on one page, as JSON.

A saved page is read from disk and run through the extractor chain; a URL is fetched with
the scraper's own ``PageFetcher`` (URL guard, size cap and timeout included), so the answer
is what a scraper would publish.

``--render`` (URLs) renders the page in the browser first (the render tier), as a scraper
does for a website whose adapter says ``render: true``.

``--explain`` (saved pages) adds every candidate price and stock signal the chain weighed,
with its source, score and role, and the rule that decided: why a page read the way it did.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pricewatch.contract.records import Availability, PriceObservation
from pricewatch.ids import product_id_for
from pricewatch.settings import Settings
from producers.extractors.adapters import JsonApiAdapter
from producers.extractors.chain import (
    Extraction,
    adapter_for,
    extract,
    extract_with_adapter,
    load_site_adapters,
)
from producers.fetch.blocked import BLOCKED_ERROR, detect_block


def is_url(target: str) -> bool:
    return target.lower().startswith(("http://", "https://"))


def report(
    price: object,
    currency: str | None,
    availability: Availability | None,
    title: str | None,
    extractor: str | None,
    error: str | None,
) -> dict[str, str | None]:
    """The printed form: the price as a decimal string, "error" only when there is one."""
    shown: dict[str, str | None] = {
        "price": None if price is None else format(price, "f"),
        "currency": currency,
        "availability": None if availability is None else availability.value,
        "title": title,
        "extractor": extractor,
    }
    if error is not None:
        shown["error"] = error
    return shown


def extract_text(settings: Settings, text: str, page_url: str) -> Extraction:
    """What Pricewatch reads from a saved page (or, for a JSON-API adapter's host, a saved API
    response); ``page_url`` picks the site adapter."""
    adapters = (
        load_site_adapters(settings.site_adapters_file) if settings.site_adapters_file else {}
    )
    adapter = adapter_for(adapters, page_url)
    if isinstance(adapter, JsonApiAdapter):
        return extract_with_adapter(adapter, text, page_url)  # a saved API response
    return extract(text, page_url, adapter=adapter)


def extract_file(
    settings: Settings, path: Path, url: str | None, explain: bool = False
) -> dict[str, Any]:
    """A saved page; ``url`` (the product URL it came from) picks the site adapter, if one
    is configured. For a JSON-API adapter the file is the saved API response."""
    html = path.read_bytes().decode("utf-8", errors="replace")
    found = extract_text(settings, html, url or path.resolve().as_uri())
    shown: dict[str, Any] = report(
        found.price, found.currency, found.availability, found.title, found.extractor, found.error
    )
    # A saved captcha or consent wall: say so, as a scraper would (a page with a price
    # is never one).
    blocked = detect_block(200, {}, html, price_found=found.price is not None)
    if blocked is not None:
        shown |= {"error": BLOCKED_ERROR, "blocked_by": blocked.by, "blocked_rule": blocked.rule}
    if explain:
        shown["explain"] = explanation(found)
    return shown


def explanation(found: Extraction) -> dict[str, Any]:
    """The evidence behind ``found``: every candidate price and stock signal, and the rule
    that decided."""
    return {
        "decision": found.decision,
        "price_candidates": [
            {
                "amount": format(c.amount, "f"),
                "currency": c.currency,
                "source": c.source,
                "score": c.score,
                "role": c.role,
                "note": c.note,
            }
            for c in found.candidates
        ],
        "stock_signals": [
            {"availability": s.availability.value, "source": s.source, "note": s.note}
            for s in found.signals
        ],
    }


def with_host_allowed(settings: Settings, url: str) -> Settings:
    """``settings`` with ``url``'s host:port added to the private-address allow-list."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    entry = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    allowed = ",".join(h for h in (settings.allowed_private_hosts, entry) if h)
    return settings.model_copy(update={"allowed_private_hosts": allowed})


async def fetch_url(settings: Settings, url: str, render: bool = False) -> dict[str, str | None]:
    """``url`` fetched as a scraper would (with ``render``: rendered in the browser, as for
    a website whose adapter says ``render: true``)."""
    from producers.fetch import PageFetcher
    from producers.render import Renderer

    async with PageFetcher(settings, renderer=Renderer(settings), render_all=render) as fetcher:
        observation: PriceObservation = await fetcher.fetch(product_id_for(url), url)
    return report(
        observation.price,
        observation.currency,
        observation.availability,
        observation.title,
        observation.extractor,
        observation.error,
    )


def run_extract(
    settings: Settings,
    target: str,
    *,
    allow_private: bool = False,
    url: str | None = None,
    explain: bool = False,
    render: bool = False,
) -> int:
    """Print what Pricewatch sees at ``target`` (a file or an http(s) URL); 0 on a price."""
    shown: dict[str, Any]
    if is_url(target):
        if allow_private:
            settings = with_host_allowed(settings, target)
        shown = dict(asyncio.run(fetch_url(settings, target, render)))
        if explain:
            shown["explain"] = (
                "--explain reads saved pages: save this page and run "
                "'pricewatch extract FILE --url URL --explain'"
            )
    else:
        if render:
            raise SystemExit("--render renders a URL; a saved file is read as it is")
        shown = extract_file(settings, Path(target), url, explain)
    print(json.dumps(shown, ensure_ascii=False, indent=2))
    return 0 if shown["price"] is not None else 1
