"""The scheduler's pure parts: check intervals, and products near a subscriber's target."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from streams.codec import last_price
from streams.domain.schedule import CheckPlan, near_target
from tests.unit.streams.check_plans import TrackedSetPlan


@pytest.mark.parametrize(
    ("price", "target", "near"),
    [
        ("104.99", "100", True),
        ("105.00", "100", True),  # exactly the fraction above: still near
        ("105.01", "100", False),
        ("100.01", "100", True),
        ("100.00", "100", False),  # at the target: the subscriber was told already
        ("80.00", "100", False),
        (None, "100", False),
        ("101", None, False),
    ],
)
def test_near_target_is_just_above_the_lowest_target(
    price: str | None, target: str | None, near: bool
) -> None:
    assert (
        near_target(
            None if price is None else Decimal(price),
            None if target is None else Decimal(target),
            0.05,
        )
        is near
    )


def test_near_products_are_checked_at_the_shorter_interval() -> None:
    plan = TrackedSetPlan(
        interval=100, jitter_fraction=0.0, rng=random.Random(1), near_target_factor=0.25
    )
    near = {"close"}

    assert plan.due({"close", "far"}, now=0, is_near_target=near.__contains__) == ["close", "far"]
    assert plan.next_due == {"close": 25.0, "far": 100.0}
    assert plan.due({"close", "far"}, now=25, is_near_target=near.__contains__) == ["close"]
    assert plan.due({"close", "far"}, now=50, is_near_target=near.__contains__) == ["close"]
    assert plan.due({"close", "far"}, now=100, is_near_target=near.__contains__) == [
        "close",
        "far",
    ]


def test_a_product_that_moves_away_from_its_target_goes_back_to_the_usual_interval() -> None:
    plan = TrackedSetPlan(
        interval=100, jitter_fraction=0.0, rng=random.Random(1), near_target_factor=0.5
    )
    near = {"p"}
    plan.due({"p"}, now=0, is_near_target=near.__contains__)
    near.clear()

    assert plan.due({"p"}, now=50, is_near_target=near.__contains__) == ["p"]
    assert plan.next_due["p"] == 150.0


def test_only_due_products_are_asked_whether_they_are_near() -> None:
    asked: list[str] = []

    def is_near(product_id: str) -> bool:
        asked.append(product_id)
        return False

    plan = TrackedSetPlan(
        interval=10, jitter_fraction=0.0, rng=random.Random(1), near_target_factor=0.5
    )
    plan.due({"a", "b"}, now=0, is_near_target=is_near)
    plan.due({"a", "b"}, now=5, is_near_target=is_near)

    assert sorted(asked) == ["a", "b"]


def test_near_interval_keeps_its_jitter() -> None:
    plan = TrackedSetPlan(
        interval=100, jitter_fraction=0.2, rng=random.Random(3), near_target_factor=0.25
    )
    plan.due({str(i) for i in range(200)}, now=0, is_near_target=lambda _: True)

    delays = sorted(plan.next_due.values())
    assert 20 <= delays[0] < delays[-1] <= 30
    assert delays[-1] - delays[0] > 5


def test_last_price_reads_only_the_price_of_a_stored_state() -> None:
    assert last_price(b'{"v":1,"price":"19.990000","currency":"EUR"}') == Decimal("19.99")
    assert last_price(b'{"v":1,"price":null}') is None
    assert last_price(None) is None
    assert last_price(b"not json") is None


def test_tracking_one_product_at_a_time_checks_only_what_is_due() -> None:
    plan = CheckPlan(interval=100, jitter_fraction=0.0, rng=random.Random(1))
    plan.track("a")
    assert plan.pop_due(now=0) == ["a"]
    plan.track("b")
    plan.track("a")  # already tracked: keeps its schedule
    assert plan.pop_due(now=10) == ["b"]
    assert plan.pop_due(now=99) == []
    assert plan.pop_due(now=100) == ["a"]
    assert plan.pop_due(now=110) == ["b"]


def test_an_untracked_product_is_never_due_and_retracking_checks_it_once() -> None:
    plan = CheckPlan(interval=100, jitter_fraction=0.0, rng=random.Random(1))
    plan.track("a")
    plan.untrack("a")
    plan.track("a")  # two heap entries for "a" now; one check
    assert plan.pop_due(now=0) == ["a"]
    plan.untrack("a")
    assert plan.pop_due(now=1_000) == []
    assert plan.next_due == {}


def test_untracking_many_products_does_not_grow_the_plan_without_bound() -> None:
    plan = CheckPlan(interval=100, jitter_fraction=0.1, rng=random.Random(1))
    for round_ in range(20):
        for i in range(500):
            plan.track(f"p{round_}-{i}")
        plan.pop_due(now=round_)
        for i in range(500):
            plan.untrack(f"p{round_}-{i}")
    assert plan.next_due == {}
    assert len(plan._heap) <= 2 * 500 + 1024


def test_the_next_check_is_an_interval_after_the_request_when_the_result_is_back() -> None:
    plan = CheckPlan(interval=100, jitter_fraction=0.0, rng=random.Random(1), result_timeout=600)
    plan.track("a")
    assert plan.pop_due(now=0) == ["a"]
    assert plan.completed(["a"], now=3) == ["a"]
    assert plan.pop_due(now=99) == []
    assert plan.pop_due(now=100) == ["a"]


def test_a_product_is_not_asked_for_again_until_its_check_came_back() -> None:
    plan = CheckPlan(interval=100, jitter_fraction=0.0, rng=random.Random(1), result_timeout=600)
    plan.track("a")
    assert plan.pop_due(now=0) == ["a"]
    # The scrapers are behind: the result comes back 150 s after the request. Counting
    # from the request, "a" would have been requested again at 100 while still queued.
    assert plan.pop_due(now=100) == []
    assert plan.pop_due(now=149) == []
    assert plan.completed(["a"], now=150) == ["a"]
    assert plan.pop_due(now=150) == ["a"]  # overdue: at once, one request in flight
    assert plan.timed_out == 0


def test_a_request_whose_result_never_comes_is_made_again_after_the_timeout() -> None:
    plan = CheckPlan(interval=100, jitter_fraction=0.0, rng=random.Random(1), result_timeout=600)
    plan.track("a")
    plan.pop_due(now=0)
    assert plan.pop_due(now=599) == []
    assert plan.pop_due(now=600) == ["a"]
    assert plan.timed_out == 1
    # The late answer to the first request and the answer to the second are one result.
    assert plan.completed(["a"], now=610) == ["a"]
    assert plan.completed(["a"], now=620) == []
    assert plan.next_due["a"] == 700


def test_results_nobody_waits_for_change_nothing() -> None:
    plan = CheckPlan(interval=100, jitter_fraction=0.0, rng=random.Random(1))
    plan.track("a")
    assert plan.completed(["a", "unknown"], now=0) == []  # "a" was never requested
    assert plan.pop_due(now=0) == ["a"]
    plan.untrack("a")
    assert plan.completed(["a"], now=5) == []
    assert plan.next_due == {}
    assert plan.awaiting == {}


def test_near_target_is_decided_when_the_check_comes_back() -> None:
    plan = CheckPlan(
        interval=100,
        jitter_fraction=0.0,
        rng=random.Random(1),
        near_target_factor=0.25,
        result_timeout=600,
    )
    plan.track("a")
    plan.track("b")
    plan.pop_due(now=0)
    asked: list[str] = []

    def is_near(product_id: str) -> bool:
        asked.append(product_id)
        return product_id == "a"

    plan.completed(["a"], now=10, is_near_target=is_near)
    assert asked == ["a"]  # "b" has not come back: nothing to decide yet
    assert plan.next_due["a"] == 25
    assert plan.next_due["b"] == 600
