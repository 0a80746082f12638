"""The processes of a deployment: ``worker``, ``scraper``, ``sink KIND...``, ``api``, and
``together ROLE...`` (several of them in one process, for small deployments)."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from functools import partial
from typing import Any

from launcher.cli.common import Service, run_service
from pricewatch.settings import Settings
from sinks.registry import ALL, KINDS, expand_kinds

# What ``pricewatch together`` can host in one process: everything but the stream worker,
# whose Faust app owns its event loop (and the worker is the part that scales out).
TOGETHER_ROLES = ("scraper", "sinks", "api", "demo-shop")


def cmd_worker(settings: Settings, args: argparse.Namespace) -> None:
    from streams.app import run_worker

    run_worker(settings, worker_id=args.worker_id, metrics_port=args.metrics_port)


def cmd_scraper(settings: Settings, args: argparse.Namespace) -> None:
    from producers.scraper import run_scraper

    run_service(settings, run_scraper, args.metrics_port)


def cmd_sink(settings: Settings, args: argparse.Namespace) -> None:
    from sinks.base import run_sinks

    kinds = expand_kinds(args.kinds, settings)
    run_service(settings, partial(run_sinks, kinds), args.metrics_port)


def together(roles: Sequence[str]) -> Service:
    """One asyncio service running ``roles`` (``TOGETHER_ROLES``) side by side; if one
    fails, the others stop and the process exits with the failure."""
    services: list[Service] = []
    for role in dict.fromkeys(roles):
        if role == "scraper":
            from producers.scraper import run_scraper

            services.append(run_scraper)
        elif role == "sinks":
            from sinks.base import run_sinks

            services.append(lambda s, stop: run_sinks(expand_kinds([ALL], s), s, stop))
        elif role == "api":
            from api.app import run_api

            services.append(run_api)
        elif role == "demo-shop":
            from launcher.demo.shop import run_shop

            services.append(lambda s, stop: run_shop(s.api_host, s.demo_shop_port, stop))
        else:
            raise ValueError(f"pricewatch together cannot run {role!r}")

    async def run_one(service: Service, settings: Settings, stop: asyncio.Event) -> None:
        await service(settings, stop)

    async def run_together(settings: Settings, stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as running:
            for service in services:
                running.create_task(run_one(service, settings, stop))

    return run_together


def cmd_together(settings: Settings, args: argparse.Namespace) -> None:
    run_service(settings, together(args.roles), args.metrics_port)


def cmd_api(settings: Settings, args: argparse.Namespace) -> None:
    from api.app import run_api

    run_service(settings, run_api, args.metrics_port)


def add_worker(sub: Any) -> None:
    p = sub.add_parser("worker", help="a Faust stream worker (detector, matcher, scheduler)")
    p.add_argument("--worker-id", default="w0", help="names this worker's local table store")
    p.add_argument("--metrics-port", type=int, default=None)
    p.set_defaults(func=cmd_worker)


def add_scraper(sub: Any) -> None:
    p = sub.add_parser("scraper", help="a scraper process (one of the scrapers group)")
    p.add_argument("--metrics-port", type=int, default=None)
    p.set_defaults(func=cmd_scraper)


def add_sink(sub: Any) -> None:
    p = sub.add_parser("sink", help="a sink process: one kind, several, or all")
    p.add_argument(
        "kinds",
        nargs="+",
        choices=(*KINDS, ALL),
        metavar="KIND",
        help=f"any of {', '.join(KINDS)}, or {ALL} (every kind; archive only with an S3 bucket)",
    )
    p.add_argument("--metrics-port", type=int, default=None)
    p.set_defaults(func=cmd_sink)


def add_api(sub: Any) -> None:
    p = sub.add_parser("api", help="the subscription HTTP API")
    # Metrics on a port of their own: the API's port is public, its metrics are not.
    p.add_argument("--metrics-port", type=int, default=None)
    p.set_defaults(func=cmd_api)


def add_together(sub: Any) -> None:
    p = sub.add_parser(
        "together",
        help="several roles in one process (small deployments, the demo): any of "
        + ", ".join(TOGETHER_ROLES),
    )
    p.add_argument(
        "roles",
        nargs="+",
        choices=TOGETHER_ROLES,
        metavar="ROLE",
        help="scraper, sinks (every sink kind), api, demo-shop",
    )
    p.add_argument("--metrics-port", type=int, default=None)
    p.set_defaults(func=cmd_together)
