"""The scheduler timer: publishes a scrape request for every tracked product when it is due.

It runs on every worker and schedules only the products of that worker's partitions
(the keys of its local ``product_subscriptions_table``), so adding workers spreads the
scheduling too. When-is-it-due is kept in memory: after a restart every product is simply
due again, spread by jitter.
"""

from __future__ import annotations

import logging
import random
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from pricewatch.contract.records import ScrapeRequest
from streams import metrics
from streams.codec import decode_alert_states
from streams.topology import Topology

log = logging.getLogger(__name__)


class CheckPlan:
    """Next-due times per product; pure bookkeeping, unit-testable with a fake clock."""

    def __init__(self, interval: float, jitter_fraction: float, rng: random.Random) -> None:
        self.interval = interval
        self.jitter_fraction = jitter_fraction
        self.rng = rng
        self.next_due: dict[str, float] = {}

    def _delay(self) -> float:
        spread = self.interval * self.jitter_fraction
        return self.interval + self.rng.uniform(-spread, spread)

    def due(self, tracked: set[str], now: float) -> list[str]:
        """Products to check now; forgets products no longer tracked."""
        for gone in self.next_due.keys() - tracked:
            del self.next_due[gone]
        due: list[str] = []
        for product_id in tracked:
            next_due = self.next_due.get(product_id)
            if next_due is None or next_due <= now:
                due.append(product_id)
                self.next_due[product_id] = now + self._delay()
        return sorted(due)


def register(topology: Topology) -> Any:
    settings = topology.settings
    table = topology.product_subscriptions_table
    plan = CheckPlan(
        settings.default_check_interval_seconds, settings.check_jitter_fraction, random.Random()
    )

    # Per product: the stored bytes last decoded and the URL to check (None: no active
    # subscription). Subscriptions rarely change; decoding them all every tick would not.
    decoded: dict[bytes, tuple[bytes, str | None]] = {}

    def url_to_check(raw: bytes, known: tuple[bytes, str | None] | None) -> str | None:
        if known is not None and known[0] == raw:
            return known[1]
        active = [
            s.subscription for s in decode_alert_states(raw).values() if s.subscription.active
        ]
        return active[0].url if active else None

    @topology.app.timer(interval=settings.scheduler_tick_seconds, name="scheduler")
    async def schedule_checks() -> None:
        seen: dict[bytes, tuple[bytes, str | None]] = {}
        for key, raw in list(table.items()):
            seen[key] = (raw, url_to_check(raw, decoded.get(key)))
        decoded.clear()
        decoded.update(seen)  # products no longer in the table are forgotten
        urls = {key.decode(): url for key, (_, url) in seen.items() if url is not None}
        metrics.tracked_products.set(len(urls))
        now = datetime.now(UTC)
        for product_id in plan.due(set(urls), time.monotonic()):
            url = urls[product_id]
            request = ScrapeRequest(product_id=product_id, url=url, requested_at=now)
            await topology.scrape_requests_topic.send(
                key=(urlsplit(url).hostname or "").encode(),
                value=request.model_dump_json().encode(),
            )
            metrics.scrape_requests_published.inc()

    return schedule_checks
