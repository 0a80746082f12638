"""A ``CheckPlan`` driven the way the tests drive it: told the whole tracked set each time,
as the scheduler's periodic rescan does, and every check coming back at once."""

from __future__ import annotations

from collections.abc import Callable, Collection

from streams.domain.schedule import CheckPlan


class TrackedSetPlan(CheckPlan):
    def due(
        self,
        tracked: Collection[str],
        now: float,
        is_near_target: Callable[[str], bool] | None = None,
    ) -> list[str]:
        """``pop_due`` after making ``tracked`` the tracked set (forgets the others); the
        checks it returns come back at ``now``."""
        wanted = set(tracked)
        for gone in self.next_due.keys() - wanted:
            self.untrack(gone)
        for product_id in wanted:
            self.track(product_id)
        due = self.pop_due(now)
        self.completed(due, now, is_near_target)
        return due
