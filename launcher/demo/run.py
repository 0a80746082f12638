"""``pricewatch demo``: the whole pipeline on embedded defaults, with a demo shop."""

from __future__ import annotations

import signal
import sys
import time
from decimal import Decimal
from types import FrameType

from launcher.stack import Stack
from pricewatch.settings import Settings

DEMO_CHECK_INTERVAL_SECONDS = 5.0
# Every demo product lives on one local host: 1 request/s would queue their 5 s checks.
DEMO_HOST_MIN_REQUEST_INTERVAL_SECONDS = 0.1


def demo_settings(settings: Settings) -> Settings:
    """Demo-friendly values for whatever the user did not set: quick checks, a short
    per-host request interval (the demo shop is the only host), and the demo shop (a
    loopback address) allowed past the scrapers' URL guard."""
    updates: dict[str, object] = {}
    if "default_check_interval_seconds" not in settings.model_fields_set:
        updates["default_check_interval_seconds"] = DEMO_CHECK_INTERVAL_SECONDS
    if "host_min_request_interval_seconds" not in settings.model_fields_set:
        updates["host_min_request_interval_seconds"] = DEMO_HOST_MIN_REQUEST_INTERVAL_SECONDS
    shop = f"{settings.api_host}:{settings.demo_shop_port}"
    allowed = {h for h in settings.allowed_private_hosts.split(",") if h} | {
        shop,
        f"localhost:{settings.demo_shop_port}",
    }
    updates["allowed_private_hosts"] = ",".join(sorted(allowed))
    updates["demo"] = True  # a laptop run: a public key of the user's is let through
    return settings.model_copy(update=updates)


def instructions(settings: Settings) -> str:
    from launcher.demo.shop import DEFAULT_PRODUCTS

    product = DEFAULT_PRODUCTS[0]
    shop = f"http://{settings.api_host}:{settings.demo_shop_port}"
    api = settings.api_base_url
    target = (product.price * Decimal("0.9")).quantize(Decimal("0.01"))
    lower = (product.price * Decimal("0.8")).quantize(Decimal("0.01"))
    url = f"{shop}/products/{product.slug}"
    database = settings.database_url or "(embedded)"
    wait = settings.default_check_interval_seconds
    return f"""
Pricewatch demo is running.
  API        {api}
  Demo shop  {shop}   (a product: {url}, {product.price} {product.currency})
  Emails     {settings.outbox_path.resolve()}/   (one .eml file per email)
  Database   {database}
  Logs       {(settings.data_dir / "logs").resolve()}/

1. Subscribe to the product with a target price below its current price, in the form at
   {api}/  or with:
   curl -s -X POST {api}/api/subscriptions -H 'content-type: application/json' \\
     -d '{{"email": "you@example.com", "url": "{url}", "target_price": "{target}"}}'
   Then confirm the address: open the link in the verification email,
   {settings.outbox_path.resolve()}/verify-*.eml, and press "Confirm my address"
   (no alert is sent before). Later products for the same address are confirmed the
   same way, from confirm-subscription-*.eml.

2. Wait ~{wait:.0f} s for the first check, then drop the price below your target:
   curl -s -X POST {shop}/admin/products/{product.slug} -H 'content-type: application/json' \\
     -d '{{"price": "{lower}"}}'

3. Within seconds the alert lands in {settings.outbox_path.resolve()}/ and the new price
   is in PostgreSQL:  psql "{database}" -c 'select * from prices'
   The email's links manage your subscriptions (with a price chart) or stop them.

Ctrl-C stops everything.
"""


def run_demo(settings: Settings) -> int:
    settings = demo_settings(settings)
    stack = Stack(settings, together=True)
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    print("starting Pricewatch (broker, database, workers, scrapers, sinks, API, demo shop)...")
    try:
        stack.start()
        print(instructions(stack.settings), flush=True)
        while not stopping:
            dead = stack.dead_children()
            if dead:
                names = ", ".join(c.name for c in dead)
                print(f"{names} stopped unexpectedly; see {stack.logs_dir}/", file=sys.stderr)
                return 1
            time.sleep(0.5)
        print("\nstopping...", flush=True)
        return 0
    finally:
        stack.stop()
        print("stopped.")
