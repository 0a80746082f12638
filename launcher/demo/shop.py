"""The demo shop: realistic product pages with schema.org JSON-LD, and an admin JSON API.

Product pages look like a small real shop (navigation, breadcrumbs, a visible localised
price, a cart button) and carry a schema.org ``Product`` with an ``Offer``, which is what
Pricewatch's extractor reads. State is in memory; the admin API changes it:

    GET  /admin/products             every product's state
    POST /admin/products/{slug}      {"price": "79.00", "currency": "EUR",
                                      "availability": "in_stock" | "out_of_stock" | ...,
                                      "removed": bool, "http_status": 500 | null,
                                      "redirect_to": "/" | null}

``http_status`` and ``redirect_to`` let the demo and tests make a product page fail or
redirect away without a second server. The admin API has no authentication: bind the shop
to loopback only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import asdict, dataclass, replace
from decimal import Decimal, InvalidOperation
from html import escape
from typing import Any

from aiohttp import web
from yarl import URL

from pricewatch.contract.records import Availability

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoProduct:
    slug: str
    title: str
    price: Decimal
    currency: str
    availability: Availability = Availability.IN_STOCK
    description: str = ""
    category: str = "Products"
    brand: str = "Pricewatch Demo"
    removed: bool = False
    # Failure modes for demos and tests: a forced HTTP status, or a redirect off the page.
    http_status: int | None = None
    redirect_to: str | None = None

    @property
    def path(self) -> str:
        return f"/products/{self.slug}"

    @property
    def image_path(self) -> str:
        return f"/images/{self.slug}.svg"

    @property
    def sku(self) -> str:
        return "PW-" + self.slug.upper().replace("-", "")[:12]

    def state(self) -> dict[str, Any]:
        """The admin API's view: JSON-safe, money as a decimal string."""
        data = asdict(self)
        data["price"] = format(self.price, "f")
        data["availability"] = self.availability.value
        data["path"] = self.path
        return data


DEFAULT_PRODUCTS: tuple[DemoProduct, ...] = (
    DemoProduct(
        slug="espresso-machine",
        title="Lumio Barista Pro Espresso Machine",
        price=Decimal("1226.00"),
        currency="EUR",
        category="Kitchen",
        brand="Lumio",
        description="Dual-boiler espresso machine with PID temperature control, a 58 mm "
        "portafilter and a commercial-grade steam wand. 2.5 l water tank.",
    ),
    DemoProduct(
        slug="wireless-headphones",
        title="Northwind ANC Wireless Headphones",
        price=Decimal("79.99"),
        currency="USD",
        category="Audio",
        brand="Northwind",
        description="Over-ear headphones with hybrid active noise cancelling, 40 hours of "
        "battery life and multipoint Bluetooth 5.3.",
    ),
    DemoProduct(
        slug="trail-running-shoes",
        title="Ridgeline Trail Running Shoes",
        price=Decimal("129.95"),
        currency="EUR",
        availability=Availability.OUT_OF_STOCK,
        category="Sports",
        brand="Ridgeline",
        description="Lightweight trail shoes with a 5 mm lug outsole, rock plate and a "
        "waterproof breathable membrane.",
    ),
    DemoProduct(
        slug="mechanical-keyboard",
        title="Keystone 75% Mechanical Keyboard",
        price=Decimal("149.00"),
        currency="GBP",
        category="Computing",
        brand="Keystone",
        description="Hot-swappable 75% keyboard with gasket mount, PBT keycaps and "
        "tactile switches. USB-C and 2.4 GHz wireless.",
    ),
)

PRODUCTS_KEY: web.AppKey[dict[str, DemoProduct]] = web.AppKey("pricewatch_demo_products")

_SCHEMA_AVAILABILITY: dict[Availability, str] = {
    Availability.IN_STOCK: "InStock",
    Availability.OUT_OF_STOCK: "OutOfStock",
    Availability.PREORDER: "PreOrder",
    Availability.BACKORDER: "BackOrder",
    Availability.DISCONTINUED: "Discontinued",
}
_CART_LABEL: dict[Availability, str] = {
    Availability.IN_STOCK: "Add to cart",
    Availability.OUT_OF_STOCK: "Out of stock",
    Availability.PREORDER: "Pre-order",
    Availability.BACKORDER: "Add to cart (ships in 2-3 weeks)",
    Availability.DISCONTINUED: "No longer available",
}
_CURRENCY_SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£", "JPY": "¥"}
_ZERO_DECIMAL_CURRENCIES = {"JPY", "KRW"}


def display_price(price: Decimal, currency: str) -> str:
    """The price as a shopper in that currency reads it: "€1.226,00", "$79.99", "CHF 12.50"."""
    places = Decimal(1) if currency in _ZERO_DECIMAL_CURRENCIES else Decimal("0.01")
    amount = f"{price.quantize(places):,}"
    if currency == "EUR":  # continental notation: dot groups thousands, comma decimals
        amount = amount.translate(str.maketrans(",.", ".,"))
    symbol = _CURRENCY_SYMBOLS.get(currency)
    return f"{symbol}{amount}" if symbol else f"{currency} {amount}"


# --- Pages -----------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 0; color: #222; }
header { background: #1f3a5f; color: #fff; padding: .8rem 2rem; display: flex; gap: 2rem; }
header a { color: #fff; text-decoration: none; }
main { max-width: 60rem; margin: 1.5rem auto; padding: 0 1rem; }
.breadcrumbs { font-size: .9rem; color: #666; }
.product { display: flex; gap: 2rem; }
.price { font-size: 1.8rem; font-weight: 700; }
button { font-size: 1rem; padding: .6rem 1.4rem; }
button[disabled] { background: #ccc; }
footer { color: #888; font-size: .8rem; text-align: center; margin: 3rem 0 1rem; }
"""


def _layout(title: str, body: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} | Pricewatch Demo Shop</title>
<style>{_STYLE}</style>
</head>
<body>
<header>
  <a href="/"><strong>Pricewatch Demo Shop</strong></a>
  <nav><a href="/">All products</a> · <a href="/?category=Kitchen">Kitchen</a> ·
  <a href="/?category=Audio">Audio</a> · <a href="/?category=Sports">Sports</a> ·
  <a href="/?category=Computing">Computing</a></nav>
  <span>Cart (0)</span>
</header>
<main>
{body}
</main>
<footer>Prices include VAT. This shop sells nothing: it exists to be watched.</footer>
</body>
</html>
"""


def _json_ld(data: dict[str, Any]) -> str:
    # "</" inside a string would end the <script> element early.
    text = json.dumps(data, indent=2, ensure_ascii=False).replace("</", "<\\/")
    return f'<script type="application/ld+json">\n{text}\n</script>'


def _visible(products: dict[str, DemoProduct]) -> list[DemoProduct]:
    return [product for product in products.values() if not product.removed]


async def index(request: web.Request) -> web.Response:
    category = request.query.get("category")
    products = [
        product
        for product in _visible(request.app[PRODUCTS_KEY])
        if category is None or product.category == category
    ]
    items = "\n".join(
        f'<li><a href="{escape(p.path)}">{escape(p.title)}</a> '
        f"<span>{escape(display_price(p.price, p.currency))}</span> "
        f"<small>{escape(_CART_LABEL[p.availability])}</small></li>"
        for p in products
    )
    heading = escape(category) if category else "All products"
    body = f'<h1>{heading}</h1>\n<ul class="products">\n{items}\n</ul>'
    return web.Response(text=_layout(heading, body), content_type="text/html")


def _not_found_page() -> web.Response:
    body = (
        "<h1>Sorry, we couldn't find that product</h1>"
        '<p>It may have been removed. <a href="/">Continue shopping</a></p>'
    )
    return web.Response(status=404, text=_layout("Page not found", body), content_type="text/html")


async def product_page(request: web.Request) -> web.StreamResponse:
    product = request.app[PRODUCTS_KEY].get(request.match_info["slug"])
    if product is None or product.removed:
        return _not_found_page()
    if product.redirect_to is not None:
        raise web.HTTPFound(product.redirect_to)
    if product.http_status is not None and product.http_status != 200:
        body = f"<h1>Something went wrong</h1><p>Error {product.http_status}.</p>"
        return web.Response(
            status=product.http_status, text=_layout("Error", body), content_type="text/html"
        )

    origin = request.url.origin()
    page_url = str(origin.join(URL(product.path)))
    price_text = display_price(product.price, product.currency)
    in_stock = product.availability in (
        Availability.IN_STOCK,
        Availability.PREORDER,
        Availability.BACKORDER,
    )
    button = (
        f"<button>{escape(_CART_LABEL[product.availability])}</button>"
        if in_stock
        else f"<button disabled>{escape(_CART_LABEL[product.availability])}</button>"
    )
    product_ld = _json_ld(
        {
            "@context": "https://schema.org/",
            "@type": "Product",
            "name": product.title,
            "image": [str(origin.join(URL(product.image_path)))],
            "description": product.description,
            "sku": product.sku,
            "brand": {"@type": "Brand", "name": product.brand},
            "offers": {
                "@type": "Offer",
                "url": page_url,
                "priceCurrency": product.currency,
                "price": format(product.price, "f"),
                "availability": "https://schema.org/" + _SCHEMA_AVAILABILITY[product.availability],
                "itemCondition": "https://schema.org/NewCondition",
            },
        }
    )
    breadcrumbs_ld = _json_ld(
        {
            "@context": "https://schema.org/",
            "@type": "BreadcrumbList",
            "itemListElement": [
                {"@type": "ListItem", "position": 1, "name": "Home", "item": str(origin)},
                {
                    "@type": "ListItem",
                    "position": 2,
                    "name": product.category,
                    "item": str(origin.join(URL("/")).with_query(category=product.category)),
                },
                {"@type": "ListItem", "position": 3, "name": product.title},
            ],
        }
    )
    category_link = escape(str(URL("/").with_query(category=product.category)))
    body = f"""<nav class="breadcrumbs"><a href="/">Home</a> &rsaquo;
<a href="{category_link}">{escape(product.category)}</a> &rsaquo; {escape(product.title)}</nav>
<article class="product">
  <img src="{escape(product.image_path)}" alt="{escape(product.title)}" width="320" height="320">
  <div>
    <h1>{escape(product.title)}</h1>
    <p>by {escape(product.brand)} · SKU {escape(product.sku)}</p>
    <p class="price">{escape(price_text)}</p>
    <p class="stock">{escape(_CART_LABEL[product.availability])}</p>
    {button}
    <h2>Description</h2>
    <p>{escape(product.description)}</p>
  </div>
</article>
{product_ld}
{breadcrumbs_ld}"""
    return web.Response(text=_layout(product.title, body), content_type="text/html")


async def product_image(request: web.Request) -> web.Response:
    slug = request.match_info["slug"]
    product = request.app[PRODUCTS_KEY].get(slug)
    if product is None:
        raise web.HTTPNotFound()
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="320" height="320">'
        '<rect width="100%" height="100%" fill="#dde4ee"/>'
        '<text x="50%" y="50%" text-anchor="middle" font-family="sans-serif" font-size="16">'
        f"{escape(product.title)}</text></svg>"
    )
    return web.Response(text=svg, content_type="image/svg+xml")


# --- Admin API -------------------------------------------------------------------------


class InvalidChange(ValueError):
    """An admin request body that cannot be applied; the message says why."""


_CURRENCY = re.compile(r"^[A-Z]{3}$")
# What a price observation can carry (18 digits, 6 of them decimals).
MAX_PRICE = Decimal(10) ** 12
_FIELDS = ("price", "currency", "availability", "removed", "http_status", "redirect_to")


def apply_change(product: DemoProduct, body: object) -> DemoProduct:
    """The product with the admin request ``body`` applied; InvalidChange if it is invalid."""
    if not isinstance(body, dict):
        raise InvalidChange("body must be a JSON object")
    unknown = sorted(set(body) - set(_FIELDS))
    if unknown:
        raise InvalidChange(f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(_FIELDS)}")
    changes: dict[str, Any] = {}
    if "price" in body:
        changes["price"] = _parse_price(body["price"])
    if "currency" in body:
        currency = body["currency"]
        if not isinstance(currency, str) or not _CURRENCY.match(currency.upper()):
            raise InvalidChange("currency must be a 3-letter ISO 4217 code such as 'EUR'")
        changes["currency"] = currency.upper()
    if "availability" in body:
        choices = [a.value for a in _SCHEMA_AVAILABILITY]
        if body["availability"] not in choices:
            raise InvalidChange(f"availability must be one of {', '.join(choices)}")
        changes["availability"] = Availability(body["availability"])
    if "removed" in body:
        if not isinstance(body["removed"], bool):
            raise InvalidChange("removed must be true or false")
        changes["removed"] = body["removed"]
    if "http_status" in body:
        status = body["http_status"]
        valid = status is None or (
            isinstance(status, int) and not isinstance(status, bool) and 200 <= status <= 599
        )
        if not valid:
            raise InvalidChange("http_status must be null or an integer from 200 to 599")
        changes["http_status"] = status
    if "redirect_to" in body:
        target = body["redirect_to"]
        if target is not None and (
            not isinstance(target, str) or not target.startswith(("/", "http://", "https://"))
        ):
            raise InvalidChange("redirect_to must be null, a path or an http(s) URL")
        changes["redirect_to"] = target
    return replace(product, **changes)


def _parse_price(value: object) -> Decimal:
    # Strings are the documented form; JSON numbers arrive as int or Decimal (never float).
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise InvalidChange('price must be a decimal string such as "79.00"')
    try:
        price = Decimal(value)
    except InvalidOperation:
        raise InvalidChange(f"price {value!r} is not a decimal number") from None
    if not price.is_finite() or price <= 0:
        raise InvalidChange("price must be a positive decimal number")
    if price >= MAX_PRICE:
        raise InvalidChange(f"price must be below {MAX_PRICE}")
    exponent = price.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -6:
        raise InvalidChange("price may have at most 6 decimal places")
    return price


def _json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def admin_list(request: web.Request) -> web.Response:
    return web.json_response([p.state() for p in request.app[PRODUCTS_KEY].values()])


async def admin_update(request: web.Request) -> web.Response:
    products = request.app[PRODUCTS_KEY]
    slug = request.match_info["slug"]
    product = products.get(slug)
    if product is None:
        return _json_error(404, f"no product with slug {slug!r}")
    try:
        body = json.loads(await request.text(), parse_float=Decimal)
    except ValueError as exc:
        return _json_error(422, f"body is not valid JSON: {exc}")
    try:
        updated = apply_change(product, body)
    except InvalidChange as exc:
        return _json_error(422, str(exc))
    products[slug] = updated
    log.info("demo shop: %s is now %s", slug, updated.state())
    return web.json_response(updated.state())


# --- App -------------------------------------------------------------------------------


def create_shop_app(products: list[DemoProduct] | None = None) -> web.Application:
    """A demo shop holding ``products`` (default: ``DEFAULT_PRODUCTS``) in memory."""
    app = web.Application()
    chosen = DEFAULT_PRODUCTS if products is None else products
    app[PRODUCTS_KEY] = {product.slug: product for product in chosen}
    app.router.add_get("/", index)
    app.router.add_get("/products/{slug}", product_page)
    app.router.add_get("/images/{slug}.svg", product_image)
    app.router.add_get("/admin/products", admin_list)
    app.router.add_post("/admin/products/{slug}", admin_update)
    return app


async def run_shop(
    host: str, port: int, stop: asyncio.Event, products: list[DemoProduct] | None = None
) -> None:
    """Serve the demo shop on ``host:port`` until ``stop`` is set."""
    runner = web.AppRunner(create_shop_app(products), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        log.info("demo shop on http://%s:%d/", host, port)
        await stop.wait()
    finally:
        await runner.cleanup()
