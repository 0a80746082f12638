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

    A product's next check is one interval after its last check *came back*
    (``completed``), not after it was requested: when the scrapers' queue is longer than
    an interval, counting from the request would ask for a product again while its last
    request still waits, and every such product would be fetched twice (seen at 3,000
    products a minute: 70 pages/s fetched where 50 were needed, which made the queue
    longer still). A request whose result does not come back within ``result_timeout``
    (a paused website drops it; a lost request) is made again then.

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
        # Requested and not come back yet: due again only after result_timeout.
        self.awaiting: set[str] = set()
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
            self.next_due[product_id] = -math.inf
            heapq.heappush(self._heap, (-math.inf, product_id))

    def untrack(self, product_id: str) -> None:
        self.awaiting.discard(product_id)
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
            self.awaiting.add(product_id)
            self._schedule(product_id, now + self.result_timeout)
        return sorted(due)

    def completed(
        self,
        product_ids: Iterable[str],
        now: float,
        is_near_target: Callable[[str], bool] | None = None,
    ) -> list[str]:
        """The checks of ``product_ids`` came back at ``now``: each is due one interval later.

        Results of products not waiting for one (a second answer to a repeated request, an
        untracked product) change nothing. ``is_near_target`` is asked only about the
        products rescheduled, to pick their next interval (it may read a store: keep the
        calls few).
        """
        rescheduled: list[str] = []
        for product_id in product_ids:
            if product_id not in self.awaiting:
                continue
            self.awaiting.discard(product_id)
            near = is_near_target is not None and is_near_target(product_id)
            self._schedule(product_id, now + self._delay(near))
            rescheduled.append(product_id)
        return rescheduled
