"""Realistic product pages of 100-300 KB, built from the extraction fixture corpus.

Each fixture page (``tests/fixtures/pages``) keeps its product markup and gets what real shop
pages carry around it: a mega-menu, a grid of product cards with their own prices, inline
scripts (a framework's state blob, minified code, analytics), and a long footer. None of the
padding carries schema.org markup or an out-of-stock phrase, so every page must extract
exactly as its unpadded fixture does (the benchmark checks this).

Also ``python -m bench.pages --port N``: a page server for the end-to-end benchmark.
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "pages"
MIN_BYTES = 100_000
MAX_BYTES = 300_000


@dataclass(frozen=True)
class BenchPage:
    name: str
    url: str
    html: str
    body: bytes  # UTF-8, as a server sends it


def fixture_pages() -> list[tuple[str, str, str]]:
    expected = json.loads((FIXTURES / "expected.json").read_text())
    out = []
    for name, facts in sorted(expected.items()):
        path = FIXTURES / name
        if path.suffix == ".html" and path.exists():
            out.append((name, str(facts["url"]), path.read_text(encoding="utf-8")))
    return out


def _mega_menu(rng: random.Random) -> str:
    sections = []
    for s in range(12):
        links = "".join(
            f'<li><a href="/c/{s}/{i}" data-track="nav-{s}-{i}">Category {s}.{i}</a></li>'
            for i in range(rng.randint(12, 24))
        )
        sections.append(f'<div class="mega-col"><h3>Section {s}</h3><ul>{links}</ul></div>')
    return f'<nav class="mega-menu" aria-label="Main">{"".join(sections)}</nav>'


def _card(rng: random.Random, i: int) -> str:
    price = f"{rng.randint(5, 2500)},{rng.randint(0, 99):02d}"
    stars = rng.randint(1, 5)
    return (
        f'<div class="product-card" data-sku="SKU-{i:05d}" data-position="{i}">'
        f'<a class="card-link" href="/p/item-{i}"><picture>'
        f'<source srcset="https://cdn.shop.example/img/{i}-320.webp 320w, '
        f'https://cdn.shop.example/img/{i}-640.webp 640w" type="image/webp">'
        f'<img src="https://cdn.shop.example/img/{i}-320.jpg" alt="Item {i}" loading="lazy" '
        f'width="320" height="320"></picture>'
        f'<span class="card-title">Item {i} with a fairly long marketing title</span></a>'
        f'<div class="card-rating" aria-label="{stars} of 5">{"★" * stars}{"☆" * (5 - stars)}'
        f"<span>({rng.randint(0, 900)})</span></div>"
        f'<div class="card-price"><span class="amount">{price} €</span>'
        f'<span class="unit">inkl. MwSt.</span></div>'
        f'<button class="add" data-action="cart#add" data-sku="SKU-{i:05d}">Add to cart</button>'
        "</div>"
    )


def _state_blob(rng: random.Random, size: int) -> str:
    # A framework's hydration state: JSON, but not JSON-LD.
    items = []
    while sum(len(x) for x in items) < size:
        n = len(items)
        items.append(
            json.dumps(
                {
                    "id": n,
                    "slug": f"item-{n}",
                    "flags": ["new", "promo"][: rng.randint(0, 2)],
                    "price": {"value": rng.randint(500, 250000), "fraction": 100},
                    "copy": "x" * rng.randint(40, 160),
                }
            )
        )
    return f'<script id="__STATE__" type="application/json">[{",".join(items)}]</script>'


def _minified_js(rng: random.Random, size: int) -> str:
    parts = []
    while sum(len(p) for p in parts) < size:
        n = len(parts)
        parts.append(
            f"function f{n}(a,b){{var c=a*{rng.randint(1, 99)}+b;"
            f"return c>{n}?f{max(0, n - 1)}(c,b-1):c}}"
        )
    return f"<script>{';'.join(parts)}</script>"


def _footer(rng: random.Random) -> str:
    links = "".join(f'<li><a href="/info/{i}">Service page {i}</a></li>' for i in range(80))
    return (
        f'<footer class="site-footer"><ul class="footer-links">{links}</ul>'
        "<p>Prices include VAT. Delivery 1-3 working days. © Shop Example GmbH</p></footer>"
    )


def pad(html: str, target_bytes: int, rng: random.Random) -> str:
    """``html`` with realistic markup added until it is about ``target_bytes`` long."""
    head_extra = _minified_js(rng, 15_000) + '<link rel="stylesheet" href="/static/app.css">'
    top = _mega_menu(rng)
    bottom_fixed = _state_blob(rng, 30_000) + _footer(rng)
    base = len(html) + len(head_extra) + len(top) + len(bottom_fixed)
    cards = []
    i = 0
    while base + sum(len(c) for c in cards) < target_bytes:
        cards.append(_card(rng, i))
        i += 1
    grid = f'<section class="product-grid"><h2>You may also like</h2>{"".join(cards)}</section>'
    padded = html.replace("</head>", head_extra + "</head>", 1)
    if "<body" in padded:
        start = padded.index(">", padded.index("<body")) + 1
        padded = padded[:start] + top + padded[start:]
    return padded.replace("</body>", grid + bottom_fixed + "</body>", 1)


def build_pages(count: int, seed: int = 1) -> list[BenchPage]:
    """``count`` pages, cycling through the fixture corpus, sizes spread over 100-300 KB."""
    rng = random.Random(seed)
    fixtures = fixture_pages()
    pages = []
    for n in range(count):
        name, url, html = fixtures[n % len(fixtures)]
        target = rng.randint(MIN_BYTES, MAX_BYTES)
        padded = pad(html, target, rng)
        pages.append(BenchPage(name, url, padded, padded.encode("utf-8")))
    return pages


def serve(port: int, count: int) -> None:
    """Serve ``build_pages(count)`` at ``/p/<n>`` (for the end-to-end benchmark)."""
    from aiohttp import web

    bodies = [page.body for page in build_pages(count)]

    async def product(request: web.Request) -> web.Response:
        n = int(request.match_info["n"]) % len(bodies)
        return web.Response(body=bodies[n], content_type="text/html", charset="utf-8")

    app = web.Application()
    app.router.add_get("/p/{n}", product)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="serve benchmark product pages")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pages", type=int, default=40)
    args = parser.parse_args()
    serve(args.port, args.pages)
