"""The local shop the scraper stage and the time-to-alert benchmark fetch from.

``python -m bench.shop --port P --products N --metrics-port M``: the demo shop
(``launcher.demo.shop``: the same pages with schema.org JSON-LD, the same admin API to
change a price) holding N generated products ``/products/item-<n>``, in its own process so
its CPU is not the harness's. ``/metrics`` (M) only says it is up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import urllib.request
from decimal import Decimal

from prometheus_client import start_http_server

from launcher.demo.shop import DemoProduct, run_shop


def product_slug(n: int) -> str:
    return f"item-{n}"


def product_price(n: int) -> Decimal:
    return Decimal(1000 + n % 9000) / 10


def product_url(port: int, n: int) -> str:
    return f"http://127.0.0.1:{port}/products/{product_slug(n)}"


def catalogue(count: int) -> list[DemoProduct]:
    return [
        DemoProduct(
            slug=product_slug(n),
            title=f"Bench product {n}",
            price=product_price(n),
            currency="EUR",
            category="Bench",
            description="A product page as a small shop serves it.",
        )
        for n in range(count)
    ]


def set_price(port: int, n: int, price: Decimal) -> None:
    """Change product ``n``'s price through the shop's admin API."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/admin/products/{product_slug(n)}",
        data=json.dumps({"price": format(price, "f")}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.shop", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--products", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    args = parser.parse_args(argv)
    start_http_server(args.metrics_port, addr="127.0.0.1")

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_shop("127.0.0.1", args.port, stop, catalogue(args.products))

    asyncio.run(serve())


if __name__ == "__main__":
    main()
