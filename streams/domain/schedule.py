"""When to check a product: pure bookkeeping of next-due times, and what makes a product
"near its target" (checked more often). No clock and no I/O: time is passed in, tested with
a fake one."""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable
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

    A heap of due times makes a tick cost the products due now, not every tracked product
    (at 100k tracked products a full walk took longer than the one-second tick).
    ``near_target_factor`` scales the interval of the products ``pop_due`` is told are near
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
        if (
            self.next_due.pop(product_id, None) is not None
            and len(self._heap) > 2 * len(self.next_due) + 1024
        ):
            # Drop stale entries now and then, so untracked products do not pile up.
            self._heap = [(t, p) for t, p in self._heap if self.next_due.get(p) == t]
            heapq.heapify(self._heap)

    def pop_due(self, now: float, is_near_target: Callable[[str], bool] | None = None) -> list[str]:
        """Products to check now, each scheduled for its next check.

        ``is_near_target`` is asked only about the products due now, to pick their next
        interval (it may read a store: keep the calls few).
        """
        due: list[str] = []
        while self._heap and self._heap[0][0] <= now:
            at, product_id = heapq.heappop(self._heap)
            if self.next_due.get(product_id) == at:
                self.next_due[product_id] = math.nan  # popped: a second entry is stale
                due.append(product_id)
        for product_id in due:
            near = is_near_target is not None and is_near_target(product_id)
            at = now + self._delay(near)
            self.next_due[product_id] = at
            heapq.heappush(self._heap, (at, product_id))
        return sorted(due)
