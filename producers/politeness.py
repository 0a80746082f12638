"""Being a good guest on other people's servers: per-host limits, backoff and Retry-After.

No HTTP here: the fetcher (``producers.fetch``) asks these when it may send a request and
how long to wait before a retry. Clocks and random generators are injectable for tests.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

Clock = Callable[[], float]

# Forget idle hosts once this many are known: a long-running scraper sees many websites.
MAX_IDLE_HOSTS = 10_000


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP-date.

    None when absent or unreadable; a date in the past is 0.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # HTTP-dates are GMT; "-0000" parses as naive
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def backoff_seconds(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Wait before retrying after failed attempt ``attempt`` (1-based): "full jitter",
    uniform in [0, min(cap, base * 2^(attempt-1))], so retries of many clients spread out
    instead of arriving together."""
    ceiling = min(cap, base * 2.0 ** max(0, attempt - 1))
    return rng.uniform(0.0, ceiling)


@dataclass(frozen=True, slots=True)
class HostPolicy:
    """How one host may be fetched: requests in flight, and the gap between their starts."""

    max_concurrent: int
    min_interval: float


@dataclass(slots=True)
class _HostState:
    policy: HostPolicy
    slots: asyncio.Semaphore
    next_start: float = 0.0
    users: int = 0  # waiting or in flight
    active: int = 0  # in flight


class HostLimiter:
    """Per-host concurrency and request spacing for one process.

    ``slot(host)`` waits until fewer than ``max_concurrent`` requests to ``host`` are in
    flight *and* ``min_interval`` has passed since the previous request to it started;
    ``defer(host, seconds)`` pushes the next start back (a 429/503 with Retry-After), for
    every request to that host, not only the one that was told.
    """

    def __init__(self, policy_for: Callable[[str], HostPolicy], clock: Clock = time.monotonic):
        self._policy_for = policy_for
        self._clock = clock
        self._hosts: dict[str, _HostState] = {}

    def _state(self, host: str) -> _HostState:
        state = self._hosts.get(host)
        if state is None:
            if len(self._hosts) >= MAX_IDLE_HOSTS:
                self._forget_idle()
            policy = self._policy_for(host)
            state = _HostState(policy, asyncio.Semaphore(policy.max_concurrent))
            self._hosts[host] = state
        return state

    def _forget_idle(self) -> None:
        now = self._clock()
        for host, state in list(self._hosts.items()):
            if state.users == 0 and state.next_start <= now:
                del self._hosts[host]

    @asynccontextmanager
    async def slot(self, host: str) -> AsyncIterator[None]:
        state = self._state(host)
        state.users += 1
        try:
            async with state.slots:
                # Re-checked after every sleep: a defer() or another waiter may have
                # moved the next start while this one slept.
                while (wait := state.next_start - self._clock()) > 0:  # noqa: ASYNC110
                    await asyncio.sleep(wait)  # a deadline to wait for, not an event
                state.next_start = self._clock() + state.policy.min_interval
                state.active += 1
                try:
                    yield
                finally:
                    state.active -= 1
        finally:
            state.users -= 1

    def defer(self, host: str, seconds: float) -> None:
        state = self._state(host)
        state.next_start = max(state.next_start, self._clock() + seconds)

    def slow_down(self, host: str, min_interval: float) -> None:
        """Raise the host's request spacing (robots.txt Crawl-delay); never lowers it."""
        state = self._state(host)
        if min_interval > state.policy.min_interval:
            state.policy = HostPolicy(state.policy.max_concurrent, min_interval)

    def in_flight(self, host: str) -> int:
        state = self._hosts.get(host)
        return 0 if state is None else state.active
