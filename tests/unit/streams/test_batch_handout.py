"""A batch is handed out as soon as every event waiting in the stream's channel is in it, and
never later than its window (streams.faust_compat._until_caught_up)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from streams.faust_compat import _until_caught_up


@dataclass
class Channel:
    queue: asyncio.Queue[int] = field(default_factory=asyncio.Queue)

    def empty(self) -> bool:
        return self.queue.empty()


@dataclass
class StreamStandIn:
    """What _until_caught_up reads of a Faust stream: its channel and whether it stops."""

    channel: Channel = field(default_factory=Channel)
    should_stop: bool = False
    batch: list[int] = field(default_factory=list)

    async def move(self) -> None:
        """The stream's own task: takes events off the channel into the batch."""
        while True:
            self.batch.append(await self.channel.queue.get())


def test_waiting_events_join_the_batch_and_it_goes_at_once() -> None:
    async def scenario() -> tuple[list[int], float]:
        stream = StreamStandIn()
        for n in range(50):
            stream.channel.queue.put_nowait(n)
        mover = asyncio.create_task(stream.move())
        began = time.monotonic()
        await _until_caught_up(stream, asyncio.Event(), within=5.0)
        took = time.monotonic() - began
        mover.cancel()
        return stream.batch, took

    batch, took = asyncio.run(scenario())
    assert batch == list(range(50))
    assert took < 2.5  # far from the 5 s window: it returned once the channel was empty


def test_a_channel_that_keeps_filling_is_cut_at_the_window() -> None:
    async def scenario() -> float:
        stream = StreamStandIn()

        async def producer() -> None:
            n = 0
            while True:
                stream.channel.queue.put_nowait(n)
                stream.channel.queue.put_nowait(n + 1)
                n += 2
                await asyncio.sleep(0)

        feeding = asyncio.create_task(producer())
        mover = asyncio.create_task(stream.move())
        await asyncio.sleep(0)
        began = time.monotonic()
        await _until_caught_up(stream, asyncio.Event(), within=0.2)
        took = time.monotonic() - began
        feeding.cancel()
        mover.cancel()
        return took

    assert asyncio.run(scenario()) >= 0.2


def test_a_full_batch_goes_without_waiting_for_the_channel() -> None:
    async def scenario() -> float:
        stream = StreamStandIn()
        stream.channel.queue.put_nowait(1)  # nobody moves it: only "full" can end the wait
        full = asyncio.Event()
        full.set()
        began = time.monotonic()
        await _until_caught_up(stream, full, within=5.0)
        return time.monotonic() - began

    assert asyncio.run(scenario()) < 2.5
