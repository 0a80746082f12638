"""The shop of the capacity benchmark: N product pages of ~100 KB whose prices drop at
random times, each drop's exact moment recorded by the shop itself.

``python -m bench.capacity_shop --port P --products N --metrics-port M`` serves
``/products/item-<n>``: a realistic page (``bench.pages.pad``: mega-menu, a grid of
product cards with prices of their own, inline scripts, footer) around one product with
schema.org JSON-LD (price, currency, availability) and its visible price. The padding
carries no structured data, so the product's own offer is the only one any extractor finds.
No ``ETag``/``Last-Modified``: every check gets the whole page, as on most shops' dynamic
product pages.

Admin API (loopback only, no authentication):

    POST /admin/arm      {"start": epoch s, "window": s, "fraction": 0..1, "seed": int,
                          "min_changes": int}: schedule the drops (``change_schedule``)
    GET  /admin/changes  every drop made so far: product, scheduled and applied time, prices
    GET  /admin/stats    product page fetches so far (total, and products fetched at least once)

The drops are applied by the shop's own event loop at their scheduled times; the time
recorded is taken right after the new price is in place, before any later request can see
it, so time-to-alert = alert received - ``applied_at``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from decimal import ROUND_HALF_UP, Decimal

from prometheus_client import start_http_server

from .pages import pad

PAGE_BYTES = 100_000
# "full": the offer carries price and availability; "price-only": availability only in
# the page's text (changedetection.io then parses the page again with extruct, in a
# subprocess per check: a sensitivity check of its cost).
MARKUPS = ("full", "price-only")
VARIANTS = 8  # distinct paddings; product n uses variant n % VARIANTS
CENT = Decimal("0.01")


def product_slug(n: int) -> str:
    return f"item-{n}"


def product_url(port: int, n: int) -> str:
    return f"http://127.0.0.1:{port}/products/{product_slug(n)}"


def product_number(text: str) -> int | None:
    """The n of the first ``/products/item-<n>`` in ``text`` (an alert's body or URL)."""
    marker = "/products/item-"
    start = text.find(marker)
    if start < 0:
        return None
    digits = ""
    for char in text[start + len(marker) :]:
        if not char.isdigit():
            break
        digits += char
    return int(digits) if digits else None


def original_price(n: int) -> Decimal:
    return Decimal(2000 + (n * 37) % 48000) / 100  # 20.00 .. 499.99


@dataclass(frozen=True)
class Change:
    """One scheduled price drop of product ``n`` at ``at`` (epoch seconds)."""

    n: int
    at: float
    old: Decimal
    new: Decimal


def change_schedule(
    products: int,
    start: float,
    window: float,
    fraction: float,
    seed: int,
    min_changes: int = 100,
) -> list[Change]:
    """Which products drop and when: ``max(fraction * products, min(min_changes,
    products))`` distinct products picked at random, each dropping once by 5-20 % at a
    uniformly random moment of ``[start, start + window)``; sorted by time.

    Once per product, so every change must give exactly one alert whatever the check
    interval (two drops between two checks would be one alert); the floor keeps p95
    meaningful at small N."""
    if products <= 0:
        return []
    rng = random.Random(seed)
    count = min(products, max(round(fraction * products), min(min_changes, products)))
    changes = []
    for n in sorted(rng.sample(range(products), count)):
        old = original_price(n)
        cut = Decimal(str(rng.uniform(0.05, 0.20)))
        new = (old * (1 - cut)).quantize(CENT, rounding=ROUND_HALF_UP)
        changes.append(Change(n, start + rng.uniform(0.0, window), old, min(new, old - CENT)))
    return sorted(changes, key=lambda c: c.at)


def _base_page(variant: int, markup: str = "full") -> str:
    """A product page with placeholders @@N@@, @@PRICE@@ and @@SHOWN@@ (filled per request)."""
    availability = '"availability": "https://schema.org/InStock",' if markup == "full" else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Bench product @@N@@ | Example Shop</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="canonical" href="/products/item-@@N@@">
<script type="application/ld+json">{{"@context": "https://schema.org", "@type": "Product",
"name": "Bench product @@N@@", "sku": "BENCH-@@N@@", "brand": {{"@type": "Brand",
"name": "Example"}}, "description": "A product page as a real shop serves it.",
"offers": {{"@type": "Offer", "url": "/products/item-@@N@@", "price": "@@PRICE@@",
"priceCurrency": "EUR", {availability}
"itemCondition": "https://schema.org/NewCondition"}}}}</script>
</head><body class="product-page variant-{variant}">
<ol class="breadcrumbs"><li><a href="/">Home</a></li><li><a href="/c/bench">Bench</a></li>
<li>Bench product @@N@@</li></ol>
<main id="product"><h1 class="product-title">Bench product @@N@@</h1>
<div class="buy-box"><p class="price-now"><span class="price">@@SHOWN@@</span>
<span class="vat">incl. VAT</span></p><p class="stock">In stock, ships in 1-2 days</p>
<button class="add-to-cart" type="submit">Add to cart</button></div>
<section class="description"><h2>Description</h2><p>Variant {variant} of the bench page:
solid, well made and reasonably priced.</p></section></main>
</body></html>"""


@dataclass(frozen=True)
class PageTemplate:
    """A padded page cut at its placeholders: joining the parts with the values is all a
    request costs, so the shop stays cheap next to the systems it serves."""

    parts: tuple[bytes, ...]
    slots: tuple[str, ...]  # which value goes after parts[i]

    @classmethod
    def build(
        cls, variant: int, target_bytes: int = PAGE_BYTES, markup: str = "full"
    ) -> PageTemplate:
        if markup not in MARKUPS:
            raise ValueError(f"markup must be one of {MARKUPS}, not {markup!r}")
        html = pad(_base_page(variant, markup), target_bytes, random.Random(1000 + variant))
        parts: list[bytes] = []
        slots: list[str] = []
        rest = html
        while True:
            found = [(rest.find(f"@@{s}@@"), s) for s in ("N", "PRICE", "SHOWN")]
            hits = [(i, s) for i, s in found if i >= 0]
            if not hits:
                parts.append(rest.encode())
                break
            i, slot = min(hits)
            parts.append(rest[:i].encode())
            slots.append(slot)
            rest = rest[i + len(slot) + 4 :]
        return cls(tuple(parts), tuple(slots))

    def render(self, n: int, price: Decimal) -> bytes:
        values = {
            "N": str(n).encode(),
            "PRICE": format(price, "f").encode(),
            "SHOWN": f"€{price:,.2f}".encode(),
        }
        out = [self.parts[0]]
        for slot, part in zip(self.slots, self.parts[1:], strict=True):
            out.append(values[slot])
            out.append(part)
        return b"".join(out)


@dataclass
class AppliedChange:
    n: int
    scheduled_at: float
    applied_at: float
    old: str
    new: str


class Shop:
    def __init__(self, products: int, markup: str = "full") -> None:
        self.prices = [original_price(n) for n in range(products)]
        self.templates = [PageTemplate.build(v, markup=markup) for v in range(VARIANTS)]
        self.fetches = [0] * products
        self.total_fetches = 0
        self.applied: list[AppliedChange] = []
        self.armed: asyncio.Task[None] | None = None

    def page(self, n: int) -> bytes:
        self.fetches[n] += 1
        self.total_fetches += 1
        return self.templates[n % VARIANTS].render(n, self.prices[n])

    async def apply(self, changes: list[Change]) -> None:
        for change in changes:
            delay = change.at - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self.prices[change.n] = change.new
            self.applied.append(
                AppliedChange(change.n, change.at, time.time(), str(change.old), str(change.new))
            )


async def run(
    host: str,
    port: int,
    shop: Shop,
    stop: asyncio.Event,
    on_ready: Callable[[], object] = lambda: None,
) -> None:
    from aiohttp import web

    products = len(shop.prices)

    async def product(request: web.Request) -> web.Response:
        n = product_number(request.path)
        if n is None or not 0 <= n < products:
            raise web.HTTPNotFound()
        return web.Response(body=shop.page(n), content_type="text/html", charset="utf-8")

    async def arm(request: web.Request) -> web.Response:
        if shop.armed is not None:
            return web.json_response({"error": "already armed"}, status=409)
        spec = await request.json()
        changes = change_schedule(
            products,
            float(spec["start"]),
            float(spec["window"]),
            float(spec["fraction"]),
            int(spec["seed"]),
            int(spec.get("min_changes", 100)),
        )
        shop.armed = asyncio.create_task(shop.apply(changes))
        return web.json_response({"changes": len(changes)})

    async def changes(_request: web.Request) -> web.Response:
        return web.json_response([asdict(c) for c in shop.applied])

    async def stats(_request: web.Request) -> web.Response:
        return web.json_response(
            {
                "fetches": shop.total_fetches,
                "fetched_products": sum(1 for f in shop.fetches if f),
                "time": time.time(),
            }
        )

    app = web.Application()
    app.router.add_get("/products/{slug}", product)
    app.router.add_post("/admin/arm", arm)
    app.router.add_get("/admin/changes", changes)
    app.router.add_get("/admin/stats", stats)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    on_ready()
    try:
        await stop.wait()
    finally:
        if shop.armed is not None:
            shop.armed.cancel()
        await runner.cleanup()


# --- The harness's side ---------------------------------------------------------------


def _admin(port: int, path: str, body: dict[str, object] | None = None) -> object:
    import urllib.request

    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/admin/{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="GET" if body is None else "POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def arm(
    port: int, start: float, window: float, fraction: float, seed: int, min_changes: int
) -> int:
    """Schedule the drops; how many there will be."""
    answer = _admin(
        port,
        "arm",
        {
            "start": start,
            "window": window,
            "fraction": fraction,
            "seed": seed,
            "min_changes": min_changes,
        },
    )
    assert isinstance(answer, dict)
    return int(answer["changes"])


def applied_changes(port: int) -> list[AppliedChange]:
    answer = _admin(port, "changes")
    assert isinstance(answer, list)
    return [AppliedChange(**c) for c in answer]


def stats(port: int) -> dict[str, float]:
    answer = _admin(port, "stats")
    assert isinstance(answer, dict)
    return {k: float(v) for k, v in answer.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.capacity_shop", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--products", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--markup", choices=MARKUPS, default="full")
    args = parser.parse_args(argv)

    shop = Shop(args.products, args.markup)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        # /metrics once the pages are served: the harness takes it answering as "ready".
        await run(
            "127.0.0.1",
            args.port,
            shop,
            stop,
            lambda: start_http_server(args.metrics_port, addr="127.0.0.1"),
        )

    asyncio.run(serve())


if __name__ == "__main__":
    main()
