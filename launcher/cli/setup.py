"""Setting up what the processes need: ``topics create``, ``db upgrade``, and the published
JSON Schemas of the wire contract (``contract schemas``)."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from pricewatch.settings import Settings


def cmd_topics_create(settings: Settings, args: argparse.Namespace) -> None:
    from pricewatch.kafka import create_topics, wait_for_broker

    async def main() -> None:
        await wait_for_broker(settings.bootstrap())
        created = await create_topics(settings)
        print("created: " + (", ".join(created) if created else "nothing (all exist)"))

    asyncio.run(main())


def cmd_db_upgrade(settings: Settings, args: argparse.Namespace) -> None:
    from pricewatch.db.engine import upgrade

    upgrade(settings.database())
    print("database is at the latest revision")


def cmd_contract_schemas(settings: Settings, args: argparse.Namespace) -> None:
    from pricewatch.contract.jsonschema import write_schemas

    for path in write_schemas():
        print(path)


def add_topics(sub: Any) -> None:
    p = sub.add_parser("topics", help="Kafka topics")
    tsub = p.add_subparsers(dest="topics_command", required=True)
    tp = tsub.add_parser("create", help="create every topic with its partition count")
    tp.set_defaults(func=cmd_topics_create)


def add_db(sub: Any) -> None:
    p = sub.add_parser("db", help="the PostgreSQL schema")
    dsub = p.add_subparsers(dest="db_command", required=True)
    dp = dsub.add_parser("upgrade", help="create or upgrade the database schema")
    dp.set_defaults(func=cmd_db_upgrade)


def add_contract(sub: Any) -> None:
    p = sub.add_parser("contract", help="the public wire contract")
    csub = p.add_subparsers(dest="contract_command", required=True)
    cp = csub.add_parser("schemas", help="write the topics' JSON Schemas into the package")
    cp.set_defaults(func=cmd_contract_schemas)
