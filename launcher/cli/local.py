"""Running Pricewatch on one machine: ``demo`` (everything, embedded), ``demo-shop`` and
the embedded ``broker``."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from launcher.cli.common import run_service
from pricewatch.settings import Settings


def cmd_demo(settings: Settings, args: argparse.Namespace) -> None:
    from launcher.demo.run import run_demo

    sys.exit(run_demo(settings))


def cmd_demo_shop(settings: Settings, args: argparse.Namespace) -> None:
    from launcher.demo.shop import run_shop

    async def shop(settings: Settings, stop: asyncio.Event) -> None:
        await run_shop(settings.api_host, settings.demo_shop_port, stop)

    run_service(settings, shop)


def cmd_broker(settings: Settings, args: argparse.Namespace) -> None:
    from launcher.embedded.broker import EmbeddedBroker

    with EmbeddedBroker(port=args.port) as broker:
        print(f"embedded broker on {broker.bootstrap_servers}; Ctrl-C stops it", flush=True)
        try:
            while broker.process is not None and broker.process.running:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass


def add_demo(sub: Any) -> None:
    p = sub.add_parser("demo", help="run everything on embedded defaults with a demo shop")
    p.set_defaults(func=cmd_demo)


def add_demo_shop(sub: Any) -> None:
    p = sub.add_parser("demo-shop", help="the demo shop web site")
    p.set_defaults(func=cmd_demo_shop)


def add_broker(sub: Any) -> None:
    p = sub.add_parser("broker", help="run the embedded tansu broker in the foreground")
    p.add_argument("--port", type=int, default=None)
    p.set_defaults(func=cmd_broker)
