"""The ``pricewatch`` command. Settings are read from the environment here, once, and
passed down to every process role.

One module per group of commands: ``roles`` (worker, scraper, sink, api, together), ``local`` (demo,
demo-shop, broker), ``archive``, ``setup`` (topics, db, contract), ``dashboards`` (grafana)
and ``extract``. Each imports what its command runs only when it runs.
"""

from __future__ import annotations

import argparse

from launcher.cli.archive import add_archive, cmd_archive_replay
from launcher.cli.common import setup_logging
from launcher.cli.dashboards import add_grafana, cmd_grafana_export, cmd_grafana_push
from launcher.cli.extract import add_extract, cmd_extract
from launcher.cli.local import (
    add_broker,
    add_demo,
    add_demo_shop,
    cmd_broker,
    cmd_demo,
    cmd_demo_shop,
)
from launcher.cli.roles import (
    add_api,
    add_scraper,
    add_sink,
    add_together,
    add_worker,
    cmd_api,
    cmd_scraper,
    cmd_sink,
    cmd_together,
    cmd_worker,
)
from launcher.cli.setup import (
    add_contract,
    add_db,
    add_topics,
    cmd_contract_schemas,
    cmd_db_upgrade,
    cmd_topics_create,
)
from pricewatch.settings import Settings

__all__ = [
    "build_parser",
    "cmd_api",
    "cmd_archive_replay",
    "cmd_broker",
    "cmd_contract_schemas",
    "cmd_db_upgrade",
    "cmd_demo",
    "cmd_demo_shop",
    "cmd_extract",
    "cmd_grafana_export",
    "cmd_grafana_push",
    "cmd_scraper",
    "cmd_sink",
    "cmd_together",
    "cmd_topics_create",
    "cmd_worker",
    "main",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pricewatch", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    # In the order `pricewatch --help` lists them.
    for add in (
        add_demo,
        add_worker,
        add_scraper,
        add_sink,
        add_together,
        add_archive,
        add_api,
        add_demo_shop,
        add_topics,
        add_db,
        add_contract,
        add_grafana,
        add_broker,
        add_extract,
    ):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    settings = Settings()
    setup_logging(settings)
    args.func(settings, args)
