"""``extract PATH_OR_URL``: what Pricewatch sees on one page (``producers.extract_command``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pricewatch.settings import Settings


def cmd_extract(settings: Settings, args: argparse.Namespace) -> None:
    from producers.extract_command import run_extract

    sys.exit(
        run_extract(
            settings,
            args.target,
            allow_private=args.allow_private,
            url=args.url,
            explain=args.explain,
            render=args.render,
        )
    )


def add_extract(sub: Any) -> None:
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
    p.add_argument(
        "--render",
        action="store_true",
        help="for a URL: render the page in the browser (the render tier) and read the "
        "page its scripts leave",
    )
    p.set_defaults(func=cmd_extract)
