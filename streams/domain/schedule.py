"""When to check a product: pure bookkeeping of next-due times, and what makes a product
"near its target" (checked more often). No clock and no I/O: time is passed in, tested with
a fake one."""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable, Iterable
from decimal import Decimal


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

    A product's next check is one interval after it was last requested, but never before
    that check *came back* (``completed``): when the scrapers' queue is longer than an
    interval, asking again while the last request still waits would have every such page
    fetched twice (seen at 3,000 products a minute: 70 pages/s fetched where 50 were
    needed, which made the queue longer still). So each product has at most one check in
    flight: with scrapers to spare the cadence is the interval; without, every product is
    checked as often as the scrapers manage, in turn. A request whose result does not come
    back within ``result_timeout`` (a paused website drops it; a lost request) is made
    again then.

    A heap of due times makes a tick cost the products due now, not every tracked product
    (at 100k tracked products a full walk took longer than the one-second tick).
    ``near_target_factor`` scales the interval of the products ``completed`` is told are
    near their target (1.0: no difference).
    """

    def __init__(
        self,
        interval: float,
        jitter_fraction: float,
        rng: random.Random,
        near_target_factor: float = 1.0,
        result_timeout: float | None = None,
    ) -> None:
        self.interval = interval
        self.jitter_fraction = jitter_fraction
        self.rng = rng
        self.near_target_factor = near_target_factor
        self.result_timeout = interval if result_timeout is None else result_timeout
        self.next_due: dict[str, float] = {}
        # Requested and not come back yet (when requested): due again only after
        # result_timeout.
        self.awaiting: dict[str, float] = {}
        # Requests made again because the last one's result did not come back in time.
        self.timed_out = 0
        # (due time, product); an entry whose time is not next_due[product] is stale.
        self._heap: list[tuple[float, str]] = []

    def _delay(self, near: bool) -> float:
        interval = self.interval * (self.near_target_factor if near else 1.0)
        spread = interval * self.jitter_fraction
        return interval + self.rng.uniform(-spread, spread)

    def track(self, product_id: str) -> None:
        """Start checking a product: due at once. Already tracked: nothing changes."""
        if product_id not in self.next_due:
            self._schedule(product_id, -math.inf)

    def untrack(self, product_id: str) -> None:
        self.awaiting.pop(product_id, None)
        if (
            self.next_due.pop(product_id, None) is not None
            and len(self._heap) > 2 * len(self.next_due) + 1024
        ):
            # Drop stale entries now and then, so untracked products do not pile up.
            self._heap = [(t, p) for t, p in self._heap if self.next_due.get(p) == t]
            heapq.heapify(self._heap)

    def _schedule(self, product_id: str, at: float) -> None:
        self.next_due[product_id] = at
        heapq.heappush(self._heap, (at, product_id))

    def pop_due(self, now: float) -> list[str]:
        """Products to check now; each waits for its result (``completed``) or the timeout."""
        due: list[str] = []
        while self._heap and self._heap[0][0] <= now:
            at, product_id = heapq.heappop(self._heap)
            if self.next_due.get(product_id) == at:
                self.next_due[product_id] = math.nan  # popped: a second entry is stale
                due.append(product_id)
        for product_id in due:
            if product_id in self.awaiting:
                self.timed_out += 1
            self.awaiting[product_id] = now
            self._schedule(product_id, now + self.result_timeout)
        return sorted(due)

    def completed(
        self,
        product_ids: Iterable[str],
        now: float,
        is_near_target: Callable[[str], bool] | None = None,
    ) -> list[str]:
        """The checks of ``product_ids`` came back at ``now``: each is due one interval
        after it was requested, or now if that has passed.

        Results of products not waiting for one (a second answer to a repeated request, an
        untracked product) change nothing. ``is_near_target`` is asked only about the
        products rescheduled, to pick their next interval (it may read a store: keep the
        calls few).
        """
        rescheduled: list[str] = []
        for product_id in product_ids:
            requested_at = self.awaiting.pop(product_id, None)
            if requested_at is None:
                continue
            near = is_near_target is not None and is_near_target(product_id)
            self._schedule(product_id, max(requested_at + self._delay(near), now))
            rescheduled.append(product_id)
        return rescheduled
