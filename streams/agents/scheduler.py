"""The scheduler timer: publishes a scrape request for every tracked product when it is due.

It runs on every worker and schedules only the products of that worker's partitions
(the keys of its local ``product_subscriptions_table``), so adding workers spreads the
scheduling too. When-is-it-due is kept in memory: after a restart every product is simply
due again, spread by jitter.

A product whose last known price is just above the lowest target price of its active
subscriptions (within ``near_target_fraction``) is checked ``near_target_interval_factor``
times the usual interval: that is when a crossing is likely and a late alert costs most.
The decision is taken each time the product is checked, from the price the detector knows
then (its ``product_state_table``, same partitions), so it follows the price one check late.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from pricewatch.contract.records import ScrapeRequest
from streams import metrics
from streams.codec import decode_alert_states
from streams.topology import Topology

log = logging.getLogger(__name__)


def near_target(price: Decimal | None, lowest_target: Decimal | None, fraction: float) -> bool:
    """True when ``price`` is above ``lowest_target`` by at most ``fraction`` of it.

    At or below the target the subscriber has been told already; far above it, a crossing
    is unlikely before the next ordinary check.
    """
    if price is None or lowest_target is None:
        return False
    ceiling = lowest_target * (1 + Decimal(str(fraction)))
    return lowest_target < price <= ceiling


class CheckPlan:
    """Next-due times per product; pure bookkeeping, unit-testable with a fake clock.

    ``near_target_factor`` scales the interval of the products ``due`` is told are near
    their target (1.0: no difference).
    """

    def __init__(
        self,
        interval: float,
        jitter_fraction: float,
        rng: random.Random,
        near_target_factor: float = 1.0,
    ) -> None:
        self.interval = interval
        self.jitter_fraction = jitter_fraction
        self.rng = rng
        self.near_target_factor = near_target_factor
        self.next_due: dict[str, float] = {}

    def _delay(self, near: bool) -> float:
        interval = self.interval * (self.near_target_factor if near else 1.0)
        spread = interval * self.jitter_fraction
        return interval + self.rng.uniform(-spread, spread)

    def due(
        self,
        tracked: Collection[str],
        now: float,
        is_near_target: Callable[[str], bool] | None = None,
    ) -> list[str]:
        """Products to check now; forgets products no longer tracked.

        ``is_near_target`` is asked only about the products due now, to pick their next
        interval (it may read a store: keep the calls few).
        """
        for gone in self.next_due.keys() - set(tracked):
            del self.next_due[gone]
        due: list[str] = []
        for product_id in tracked:
            next_due = self.next_due.get(product_id)
            if next_due is None or next_due <= now:
                due.append(product_id)
                near = is_near_target is not None and is_near_target(product_id)
                self.next_due[product_id] = now + self._delay(near)
        return sorted(due)


def last_price(raw_state: bytes | None) -> Decimal | None:
    """The price in a stored detector state, without decoding the rest of it."""
    if not raw_state:
        return None
    try:
        price = json.loads(raw_state).get("price")
        return None if price is None else Decimal(price)
    except (ValueError, TypeError, AttributeError, InvalidOperation):
        return None


def register(topology: Topology) -> Any:
    settings = topology.settings
    table = topology.product_subscriptions_table
    states = topology.product_state_table
    plan = CheckPlan(
        settings.default_check_interval_seconds,
        settings.check_jitter_fraction,
        random.Random(),
        near_target_factor=settings.near_target_interval_factor,
    )

    # Per product: the stored bytes last decoded, the URL to check (None: no active
    # subscription) and the lowest active target price. Subscriptions rarely change;
    # decoding them all every tick would not be cheap.
    decoded: dict[bytes, tuple[bytes, str | None, Decimal | None]] = {}

    def what_to_check(
        raw: bytes, known: tuple[bytes, str | None, Decimal | None] | None
    ) -> tuple[bytes, str | None, Decimal | None]:
        if known is not None and known[0] == raw:
            return known
        active = [
            s.subscription for s in decode_alert_states(raw).values() if s.subscription.active
        ]
        targets = [s.target_price for s in active if s.target_price is not None]
        return raw, (active[0].url if active else None), (min(targets) if targets else None)

    def is_near_target(product_id: str) -> bool:
        known = decoded.get(product_id.encode())
        lowest_target = None if known is None else known[2]
        if lowest_target is None:
            return False  # no read of the state table for products without a target
        price = last_price(states.get(product_id.encode()))
        return near_target(price, lowest_target, settings.near_target_fraction)

    @topology.app.timer(interval=settings.scheduler_tick_seconds, name="scheduler")
    async def schedule_checks() -> None:
        seen: dict[bytes, tuple[bytes, str | None, Decimal | None]] = {}
        for key, raw in list(table.items()):
            seen[key] = what_to_check(raw, decoded.get(key))
        decoded.clear()
        decoded.update(seen)  # products no longer in the table are forgotten
        urls = {key.decode(): url for key, (_, url, _) in seen.items() if url is not None}
        metrics.tracked_products.set(len(urls))
        now = datetime.now(UTC)
        for product_id in plan.due(urls.keys(), time.monotonic(), is_near_target):
            url = urls[product_id]
            request = ScrapeRequest(product_id=product_id, url=url, requested_at=now)
            await topology.scrape_requests_topic.send(
                key=(urlsplit(url).hostname or "").encode(),
                value=request.model_dump_json().encode(),
            )
            metrics.scrape_requests_published.inc()

    return schedule_checks
