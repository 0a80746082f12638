"""``archive replay``: archived observations back into PostgreSQL or the topic."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import date
from typing import Any

from pricewatch.settings import Settings


def cmd_archive_replay(settings: Settings, args: argparse.Namespace) -> None:
    from sinks.archive.replay import replay_archive

    if args.start > args.end:
        sys.exit("--from must not be after --to")
    result = asyncio.run(replay_archive(settings, args.start, args.end, target=args.target))
    print(f"replayed {result.observations} observations from {result.objects} objects")


def add_archive(sub: Any) -> None:
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
