"""The waits of the fault and end-to-end tests follow progress: on a loaded machine they
wait as long as work keeps moving, and give up when it stops (tests.helpers.wait_for)."""

from __future__ import annotations

import pytest

from tests.helpers import OVERALL_WINDOWS, wait_for


class FakeTime:
    """A clock that moves only when the wait sleeps: no real time passes in these tests."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_slow_but_moving_pipeline_is_waited_for_past_the_window() -> None:
    time = FakeTime()
    # One unit of work every 50 s; done after 400 s: far past a 60 s window.
    done_at, every = 400.0, 50.0
    result = wait_for(
        lambda: time.now >= done_at,
        timeout=60,
        interval=1,
        progress=lambda: int(time.now // every),
        clock=time.clock,
        sleep=time.sleep,
        what="the end markers",
    )
    assert result is True and time.now >= done_at


def test_a_stalled_pipeline_fails_one_window_after_its_last_progress() -> None:
    time = FakeTime()
    with pytest.raises(AssertionError, match="no progress for 60s"):
        wait_for(
            lambda: False,
            timeout=60,
            interval=1,
            progress=lambda: min(time.now, 100.0) // 10,  # moves until 100 s, then stops
            clock=time.clock,
            sleep=time.sleep,
            what="the end markers",
        )
    assert 160 <= time.now <= 162


def test_progress_forever_still_ends_at_the_overall_deadline() -> None:
    time = FakeTime()
    with pytest.raises(AssertionError, match="still moving at the overall deadline"):
        wait_for(
            lambda: False,
            timeout=60,
            interval=1,
            progress=lambda: time.now,
            clock=time.clock,
            sleep=time.sleep,
        )
    assert time.now <= 60 * OVERALL_WINDOWS + 2


def test_without_progress_the_timeout_is_the_deadline() -> None:
    time = FakeTime()
    with pytest.raises(AssertionError, match="no progress for 30s"):
        wait_for(lambda: False, timeout=30, interval=1, clock=time.clock, sleep=time.sleep)
    assert 30 <= time.now <= 32
