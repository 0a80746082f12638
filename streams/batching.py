"""Processing a Faust stream in batches, safely.

The agents detect in memory, publish what they found, wait until the broker has it, and
only then write the new state to their table. A crash in between replays the batch: the
state has not moved on, so the same (deterministically keyed) messages are produced again
and downstream deduplication absorbs them. Written the other way round, a crash after the
state write but before delivery loses them for good (the replay looks like a duplicate).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Coroutine, Sequence
from contextlib import AbstractContextManager
from typing import Any

from streams import metrics
from streams.faust_compat import current_event, take_events_when_due

BATCH_MAX = 1000
BATCH_WITHIN_SECONDS = 0.01  # at most 10 ms added latency when the stream is quiet


def batches(stream: Any) -> AsyncGenerator[Sequence[Any], None]:
    """The stream's events in batches of up to ``BATCH_MAX``, each handed out at most
    ``BATCH_WITHIN_SECONDS`` after its first event; an idle stream costs no wake-ups."""
    return take_events_when_due(stream, BATCH_MAX, BATCH_WITHIN_SECONDS)


class BatchTimer:
    """Per-batch timings of one agent (``pricewatch_stream_batch_seconds``): where a batch's
    time goes, which is where a worker that falls behind while half idle is waiting."""

    def __init__(self, agent: str) -> None:
        self.agent = agent
        self.sizes = metrics.batch_size.labels(agent=agent)
        self.phases: dict[str, Any] = {}
        self.last = 0.0

    def begin(self, size: int) -> None:
        self.sizes.observe(size)
        self.last = time.perf_counter()

    def phase(self, name: str) -> None:
        """The phase ``name`` ended now (it began when the previous one ended)."""
        now = time.perf_counter()
        histogram = self.phases.get(name)
        if histogram is None:
            histogram = self.phases[name] = metrics.batch_seconds.labels(self.agent, name)
        histogram.observe(now - self.last)
        self.last = now


def processing(event: Any) -> AbstractContextManager[None]:
    """Make ``event`` the current event, so table writes land in its partition: Faust routes
    a table write to the partitions of the event being processed, and inside a batch which
    event that is is our choice, not Faust's."""
    return current_event(event)


class InFlightBatches:
    """Batches being processed, so that a stop or a rebalance can wait for them.

    Faust waits for unacknowledged messages before it revokes partitions or closes the
    table stores, but batching (``take_events``) turns that tracking off: without this, a batch in
    flight would write into a closed or revoked store and its writes would be lost.
    """

    def __init__(self) -> None:
        self.count = 0
        self.idle = asyncio.Event()
        self.idle.set()

    async def complete(self, batch: Coroutine[Any, Any, None]) -> None:
        """Run one batch to its end, even if the agent is cancelled meanwhile.

        ``take_events`` acknowledges every event of the batch when the agent leaves it,
        done or not: a batch cut short would lose its unprocessed messages for good.
        """
        self.count += 1
        self.idle.clear()
        task = asyncio.ensure_future(batch)
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            await task
            raise
        finally:
            self.count -= 1
            if self.count == 0:
                self.idle.set()

    async def wait_idle(self, deadline_seconds: float) -> bool:
        """Wait until no batch is in flight; False if that took longer than the deadline."""
        try:
            async with asyncio.timeout(deadline_seconds):
                await self.idle.wait()
        except TimeoutError:
            return False
        return True
