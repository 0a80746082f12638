"""The scheduler timer: publishes a scrape request for every tracked product when it is due.

It runs on every worker and schedules only the products of that worker's partitions
(the keys of its local ``product_subscriptions_table``), so adding workers spreads the
scheduling too. When-is-it-due is kept in memory: after a restart every product is simply
due again, spread by jitter.

A product is not asked for again before its last check came back: the detector (same
process, same partitions: observations are keyed by product) reports every observation it
stored in ``topology.checks_completed``. So when the scrapers fall behind, checks slow
down to what they manage instead of queueing a second request for a page still waiting
(see ``CheckPlan``).

A product whose last known price is just above the lowest target price of its active
subscriptions (within ``near_target_fraction``) is checked ``near_target_interval_factor``
times the usual interval: that is when a crossing is likely and a late alert costs most.
The decision is taken each time the product is checked, from the price the detector knows
then (its ``product_state_table``, same partitions), so it follows the price one check late.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from pricewatch.contract.records import ScrapeRequest
from streams import metrics
from streams.codec import decode_alert_states, last_price
from streams.domain.schedule import CheckPlan, near_target
from streams.topology import Topology

log = logging.getLogger(__name__)


FULL_RESCAN_SECONDS = 60.0


@dataclass
class _Rescan:
    at: float = -math.inf
    assignment: frozenset[Any] = frozenset()


def register(topology: Topology) -> Any:
    settings = topology.settings
    table = topology.product_subscriptions_table
    states = topology.product_state_table
    plan = CheckPlan(
        settings.default_check_interval_seconds,
        settings.check_jitter_fraction,
        random.Random(),
        near_target_factor=settings.near_target_interval_factor,
        result_timeout=max(
            settings.check_result_timeout_seconds, settings.default_check_interval_seconds
        ),
    )
    completed: set[str] = set()
    topology.checks_completed = completed
    timed_out_reported = 0

    # Per product: the stored bytes last decoded, the URL to check (None: no active,
    # verified subscription) and the lowest target price of those subscriptions.
    # Subscriptions rarely change: a tick decodes only what the matcher changed
    # (topology.subscriptions_changed), and rescans the table when this worker's partitions
    # change, and once a minute in case anything was missed.
    decoded: dict[bytes, tuple[bytes, str | None, Decimal | None]] = {}
    urls: dict[str, str] = {}
    last_rescan = _Rescan()

    def what_to_check(
        raw: bytes, known: tuple[bytes, str | None, Decimal | None] | None
    ) -> tuple[bytes, str | None, Decimal | None]:
        if known is not None and known[0] == raw:
            return known
        # Only verified, active subscriptions make Pricewatch fetch a page: an address
        # nobody confirmed cannot make it crawl arbitrary URLs.
        watching = [
            s.subscription
            for s in decode_alert_states(raw).values()
            if s.subscription.active and s.subscription.verified
        ]
        targets = [s.target_price for s in watching if s.target_price is not None]
        return raw, (watching[0].url if watching else None), (min(targets) if targets else None)

    def update(key: bytes, raw: bytes | None) -> None:
        product_id = key.decode()
        if raw is None:
            decoded.pop(key, None)
            url = None
        else:
            decoded[key] = entry = what_to_check(raw, decoded.get(key))
            url = entry[1]
        if url is None:
            urls.pop(product_id, None)
            plan.untrack(product_id)
        else:
            urls[product_id] = url
            plan.track(product_id)

    def assignment() -> frozenset[Any]:
        try:
            return frozenset(topology.app.consumer.assignment())
        except Exception:  # not started yet, or rebalancing: rescan next time
            return frozenset()

    def refresh() -> None:
        now, assigned = time.monotonic(), assignment()
        changed = topology.subscriptions_changed
        if assigned != last_rescan.assignment or now - last_rescan.at >= FULL_RESCAN_SECONDS:
            changed.clear()
            seen = dict(table.items())
            for key in decoded.keys() - seen.keys():
                update(key, None)  # products no longer in the table are forgotten
            for key, raw in seen.items():
                update(key, raw)
            last_rescan.at, last_rescan.assignment = now, assigned
            return
        while changed:
            key = changed.pop()
            update(key, table.get(key))

    def is_near_target(product_id: str) -> bool:
        known = decoded.get(product_id.encode())
        lowest_target = None if known is None else known[2]
        if lowest_target is None:
            return False  # no read of the state table for products without a target
        price = last_price(states.get(product_id.encode()))
        return near_target(price, lowest_target, settings.near_target_fraction)

    @topology.app.timer(interval=settings.scheduler_tick_seconds, name="scheduler")
    async def schedule_checks() -> None:
        nonlocal timed_out_reported
        refresh()
        metrics.tracked_products.set(len(urls))
        if completed:
            came_back = list(completed)
            completed.clear()
            plan.completed(came_back, time.monotonic(), is_near_target)
        now = datetime.now(UTC)
        due = plan.pop_due(time.monotonic())
        metrics.check_result_timeouts.inc(plan.timed_out - timed_out_reported)
        timed_out_reported = plan.timed_out
        metrics.checks_awaiting_result.set(len(plan.awaiting))
        for product_id in due:
            url = urls[product_id]
            request = ScrapeRequest(product_id=product_id, url=url, requested_at=now)
            await topology.scrape_requests_topic.send(
                key=(urlsplit(url).hostname or "").encode(),
                value=request.model_dump_json().encode(),
            )
            metrics.scrape_requests_published.inc()

    return schedule_checks
