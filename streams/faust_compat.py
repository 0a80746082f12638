"""Every use of faust-streaming's private API, in one place, and the versions it was tested
with: an upgrade of faust-streaming is checked here first.

- ``current_event``: the event Faust routes a table write to (``faust.streams._current_event``).
- ``RevocationAwareApp``: a hook before partitions are revoked (``App._on_partitions_revoked``).
- ``Transport``: worker consumers' adaptive fetch wait (aiokafka driver internals,
  ``TRANSPORTS``).
- ``take_events_when_due``: ``Stream.take_events`` without its idle timer (the stream's
  processors, passive drain and acknowledgements).
- ``seek_to_committed_or_reset``: the rewind of source partitions after table recovery
  (``Consumer.seek_to_committed``, called by ``Consumer.perform_seek``; aiokafka's
  ``AIOKafkaConsumer.seek``, ``seek_to_beginning``, ``seek_to_end``).
- ``register_store`` and ``stored_value``: a table store class of our own (``STORES``) and a
  read of one partition's local database (``Store._db_for_partition``).

``check_faust_version`` runs at worker start and logs a warning, naming the tested
versions, when the installed faust-streaming is another one.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncGenerator, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.stores import STORES
from faust.streams import _current_event
from faust.transport import drivers
from faust.transport.drivers import aiokafka as faust_aiokafka
from mode.utils.futures import notify

from pricewatch.kafka import AdaptiveFetchWait
from pricewatch.settings import FetchWait

log = logging.getLogger(__name__)

# The faust-streaming versions the uses below were tested with (constraints.txt pins one).
TESTED_FAUST_VERSIONS: Final = ("0.15.3",)


def check_faust_version(installed: str | None = None) -> bool:
    """True when the installed faust-streaming (or ``installed``) is a tested version; a
    warning says which versions are when it is not. The worker starts either way."""
    if installed is None:
        try:
            installed = version("faust-streaming")
        except PackageNotFoundError:
            installed = "unknown"
    if installed in TESTED_FAUST_VERSIONS:
        return True
    log.warning(
        "faust-streaming %s is installed; Pricewatch's stream worker was tested with %s only "
        "and uses private parts of it (streams/faust_compat.py): check them before relying "
        "on this version",
        installed,
        ", ".join(TESTED_FAUST_VERSIONS),
    )
    return False


# --- the current event ----------------------------------------------------------------------


@contextmanager
def current_event(event: Any) -> Iterator[None]:
    """Make ``event`` the current event: Faust routes a table read or write to the
    changelog partition and local store partition of the event being processed."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


# --- partitions revoked -----------------------------------------------------------------------


class RevocationAwareApp(faust.App):
    """A Faust app that runs ``before_partitions_revoked`` before Faust gives partitions
    away (and closes or flushes their table stores)."""

    async def before_partitions_revoked(self, revoked: Any) -> None:
        """Override: what must finish while the partitions are still this worker's."""

    async def _on_partitions_revoked(self, revoked: Any) -> None:
        await self.before_partitions_revoked(revoked)
        await super()._on_partitions_revoked(revoked)


# --- the rewind after recovery: committed offset, else auto_offset_reset -------------------
#
# After table recovery (``Recovery.on_recovery_completed``), and whenever its consumer was
# handed records while its flow was stopped, Faust rewinds the source partitions
# (``Consumer.perform_seek``) with aiokafka's ``seek_to_committed``, which seeks only
# partitions committed at an offset above 0. While that rewind runs, Faust's fetcher is
# already handing source records to the agents' queues, and ``flow_control.resume()`` right
# after empties those queues. A partition the rewind skipped never saw those records again;
# on one it rewound, the rest of the batch in hand, delivered after the rewind, moved the
# read offset past them, so they were dropped as already read. A restarted worker lost
# observations and price events (tests/integration/streams/test_restart_offsets.py).
# Here the flow stops first, which ends the batch in hand, then every source partition is
# rewound; replays change nothing (see the README).


async def seek_to_committed_or_reset(
    consumer: AIOKafkaConsumer, changelog_topics: Collection[str], auto_offset_reset: str
) -> dict[TopicPartition, int | None]:
    """Seek every partition assigned to ``consumer`` to its committed offset (0 included);
    one with no committed offset to its beginning (``auto_offset_reset`` "earliest") or end
    ("latest"). Partitions of ``changelog_topics`` stay where table recovery put them.

    Seeking drops what the fetcher had queued for a partition (aiokafka's ``seek`` and
    ``seek_to_*`` do), so nothing fetched before the rewind is handed out after it.
    Returns the committed offset of each partition it moved (None: none committed)."""
    if auto_offset_reset not in ("earliest", "latest"):
        raise ValueError(f"auto_offset_reset {auto_offset_reset!r}: earliest or latest")
    committed: dict[TopicPartition, int | None] = {}
    for tp in sorted(consumer.assignment()):
        if tp.topic not in changelog_topics:
            committed[tp] = await consumer.committed(tp)
    uncommitted = [tp for tp, offset in committed.items() if offset is None]
    for tp, offset in committed.items():
        if offset is not None:
            consumer.seek(tp, offset)
    if uncommitted and auto_offset_reset == "earliest":
        await consumer.seek_to_beginning(*uncommitted)
    elif uncommitted:
        await consumer.seek_to_end(*uncommitted)
    # (Both wait for the reset, at most the consumer's request timeout.)
    return committed


class _SeekToCommittedOrResetThread(faust_aiokafka.AIOKafkaConsumerThread):
    async def seek_to_committed_or_reset(
        self, changelog_topics: Collection[str], auto_offset_reset: str
    ) -> Mapping[TopicPartition, int | None]:
        # The aiokafka consumer lives in this thread's event loop.
        rewound: Mapping[TopicPartition, int | None] = await self.call_thread(
            seek_to_committed_or_reset,
            self._ensure_consumer(),
            frozenset(changelog_topics),
            auto_offset_reset,
        )
        return rewound


class _SeekToCommittedOrResetConsumer(faust_aiokafka.Consumer):
    async def seek_to_committed(self) -> Mapping[Any, int]:
        """Faust's ``perform_seek`` calls this and takes the result as the partitions'
        read offsets. The flow is stopped while the partitions move, so that no record
        fetched before the rewind is handed to an agent after it (Faust ends the batch in
        hand and drops what its consumer hands out meanwhile), then resumed if it was
        running (not when Faust's ``getmany`` calls this because it was stopped)."""
        thread = self._thread
        assert isinstance(thread, _SeekToCommittedOrResetThread)
        was_flowing = self.flow_active
        self.stop_flow()
        try:
            rewound = await thread.seek_to_committed_or_reset(
                self.app.tables.changelog_topics, self.app.conf.consumer_auto_offset_reset
            )
        finally:
            if was_flowing:
                self.resume_flow()
        log.info(
            "rewound source partitions: %s",
            ", ".join(
                f"{tp.topic}[{tp.partition}] to "
                + (f"committed {offset}" if offset is not None else "its reset position")
                for tp, offset in sorted(rewound.items())
            )
            or "none assigned",
        )
        # Faust's own type says int; it reads None as "no committed offset".
        return rewound  # type: ignore[return-value]


# --- the transport: an adaptive fetch wait ---------------------------------------------------
#
# faust-streaming hard-codes ``fetch_max_wait_ms=1500`` for worker consumers. A real Kafka
# broker answers a waiting fetch as soon as data arrives, so there the wait costs no latency;
# the embedded tansu broker answers only when the wait runs out, which put ~0.4 s (up to
# 1.5 s) on every hop of an observation (bench/e2e.py measured it), while a short fixed wait
# made an idle worker fetch 50 times a second. The worker's consumer therefore gets the same
# adaptive wait as every other consumer (``pricewatch.kafka.AdaptiveFetchWait``), from
# ``Settings.fetch_wait()`` through the app's ``fetch_wait``.

SCHEME = "pricewatch-kafka"


def adapt_worker_consumer(consumer: Any, wait: FetchWait) -> AdaptiveFetchWait:
    """Give a Faust worker's aiokafka consumer the adaptive fetch wait, installed on its
    fetcher once its ``start()`` has made one."""
    adaptive = AdaptiveFetchWait(wait)
    # Read by AIOKafkaConsumer.start() when it builds its fetcher.
    consumer._fetch_max_wait_ms = wait.min_ms
    start = consumer.start

    async def start_then_adapt() -> None:
        await start()
        adaptive.install(consumer)

    consumer.start = start_then_adapt
    consumer.fetch_wait = adaptive
    return adaptive


class _ConsumerThread(_SeekToCommittedOrResetThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        wait = getattr(self.app, "fetch_wait", None)
        if wait is not None:
            adapt_worker_consumer(consumer, wait)
        return consumer


class _Consumer(_SeekToCommittedOrResetConsumer):
    def _new_consumer_thread(self) -> Any:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


def broker_urls(bootstrap_servers: str) -> list[str]:
    """Faust broker URLs for ``host:port[,host:port]`` that select this transport."""
    return [f"{SCHEME}://{server.strip()}" for server in bootstrap_servers.split(",")]


drivers.TRANSPORTS.data[SCHEME] = f"{__name__}:Transport"


# --- table stores -----------------------------------------------------------------------------


def register_store(scheme: str, store_class: str) -> None:
    """Make ``<scheme>:...`` store URLs create ``store_class`` ("module:Class")."""
    STORES.data[scheme] = store_class


def stored_value(store: Any, partition: int, key: bytes) -> bytes | None:
    """What a RocksDB table store holds for ``key`` in ``partition``, read from its local
    database (not through the table, which would route by the current event)."""
    raw: bytes | None = store._db_for_partition(partition).get(key)
    return raw


# --- batches without a timer ------------------------------------------------------------------
#
# Faust's ``Stream.take_events(max_, within)`` wakes every ``within`` seconds whether or not
# anything arrived: with the 10 ms window the agents use, each batching agent woke a
# hundred times a second at rest (several futures per wake). This is the same batching with
# one change: with an empty buffer it sleeps until the first event comes, and only then
# gives the batch ``within`` seconds to fill. A batch is handed out after at most
# ``within`` seconds, or at once when it holds ``max_`` events, as before.


def take_events_when_due(
    stream: Any, max_: int, within: float
) -> AsyncGenerator[Sequence[Any], None]:
    """Batches of up to ``max_`` events of ``stream``, each handed out as soon as no more
    events wait in the stream's channel, and at most ``within`` seconds after its first
    event arrived; no wake-ups while nothing arrives.

    Handing a batch out once the channel is drained, rather than after a fixed window, is
    batching that follows the load: a lone event goes at once, and the events that arrive
    while a batch is processed (its broker acknowledgement is most of that) make the next.

    Like ``take_events``, it acknowledges a batch's events when the agent comes back for
    the next batch (or leaves), so a crash mid-batch redelivers the whole batch.
    """
    agen = _take_events_when_due(stream, max_, within)
    stream._active_agens.add(agen)  # closed by Stream.on_stop, as Faust's own are
    return agen


async def _until_caught_up(stream: Any, buffer_full: asyncio.Event, within: float) -> None:
    """Return once the stream's channel holds no more events (every fetched event is in the
    batch), the batch is full, or ``within`` seconds have passed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    channel = stream.channel
    while not buffer_full.is_set() and not stream.should_stop:
        # One turn of the loop lets the stream move what its channel holds into the batch.
        await asyncio.sleep(0)
        if channel.empty() or loop.time() >= deadline:
            return


async def _take_events_when_due(
    stream: Any, max_: int, within: float
) -> AsyncGenerator[Sequence[Any], None]:
    events: list[Any] = []
    has_events = asyncio.Event()
    buffer_full = asyncio.Event()
    buffer_consumed = asyncio.Event()
    buffer_consuming: asyncio.Future[None] | None = None
    acks_were_enabled: bool = stream.enable_acks

    async def add_to_buffer(value: Any) -> Any:
        # A processor: Faust's stream calls it for every event (as take_events does).
        nonlocal buffer_consuming
        try:
            if buffer_consuming is not None:
                try:
                    await buffer_consuming  # the agent is reading the buffer
                finally:
                    buffer_consuming = None
            event = stream.current_event
            if event is None:
                raise RuntimeError("take buffer found current_event is None")
            events.append(event)
            has_events.set()
            if len(events) >= max_:
                buffer_full.set()
                buffer_consumed.clear()
                # Never more than max_ events in a batch: wait until it is handed out.
                await stream.wait(buffer_consumed)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            stream.log.exception("Error adding to take buffer: %r", exc)
            await stream.crash(exc)
        return value

    stream.enable_acks = False  # events are acknowledged below, once their batch is done
    stream.add_processor(add_to_buffer)
    stream._enable_passive(stream.channel)
    try:
        while not stream.should_stop:
            if not events:
                await stream.wait_for_stopped(has_events)  # no timeout: nothing is due
                if not events:
                    continue
            if not buffer_full.is_set():
                await _until_caught_up(stream, buffer_full, within)
            if not events:
                continue
            buffer_consuming = asyncio.get_running_loop().create_future()
            try:
                yield list(events)
            finally:
                batch = list(events)
                events.clear()
                has_events.clear()
                for event in batch:
                    await stream.ack(event)
                notify(buffer_consuming)
                buffer_full.clear()
                buffer_consumed.set()
    finally:
        stream.enable_acks = acks_were_enabled
        stream._processors.remove(add_to_buffer)
