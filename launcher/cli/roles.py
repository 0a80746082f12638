"""The processes of a deployment: ``worker``, ``scraper``, ``sink KIND`` and ``api``."""

from __future__ import annotations

import argparse
from functools import partial
from typing import Any

from launcher.cli.common import run_service
from pricewatch.settings import Settings
from sinks.registry import KINDS


def cmd_worker(settings: Settings, args: argparse.Namespace) -> None:
    from streams.app import run_worker

    run_worker(settings, worker_id=args.worker_id, metrics_port=args.metrics_port)


def cmd_scraper(settings: Settings, args: argparse.Namespace) -> None:
    from producers.scraper import run_scraper

    run_service(settings, run_scraper, args.metrics_port)


def cmd_sink(settings: Settings, args: argparse.Namespace) -> None:
    from sinks.base import run_sink

    run_service(settings, partial(run_sink, args.kind), args.metrics_port)


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
    p = sub.add_parser("sink", help="a sink process")
    p.add_argument("kind", choices=KINDS)
    p.add_argument("--metrics-port", type=int, default=None)
    p.set_defaults(func=cmd_sink)


def add_api(sub: Any) -> None:
    p = sub.add_parser("api", help="the subscription HTTP API")
    # Metrics on a port of their own: the API's port is public, its metrics are not.
    p.add_argument("--metrics-port", type=int, default=None)
    p.set_defaults(func=cmd_api)
