"""Every use of faust-streaming's private API, in one place, and the versions it was tested
with: an upgrade of faust-streaming is checked here first.

- ``current_event``: the event Faust routes a table write to (``faust.streams._current_event``).
- ``RevocationAwareApp``: a hook before partitions are revoked (``App._on_partitions_revoked``).
- ``Transport``: worker consumers' fetch wait (aiokafka driver internals, ``TRANSPORTS``).
- ``seek_to_committed_or_reset``: the rewind of source partitions after table recovery
  (``Consumer.seek_to_committed``, called by ``Consumer.perform_seek``; aiokafka's
  ``AIOKafkaConsumer.seek``, ``seek_to_beginning``, ``seek_to_end``).
- ``register_store`` and ``stored_value``: a table store class of our own (``STORES``) and a
  read of one partition's local database (``Store._db_for_partition``).

``check_faust_version`` runs at worker start and logs a warning, naming the tested
versions, when the installed faust-streaming is another one.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.stores import STORES
from faust.streams import _current_event
from faust.transport import drivers
from faust.transport.drivers import aiokafka as faust_aiokafka

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
# After table recovery, and whenever its consumer was handed records while its flow was
# stopped, Faust rewinds the source partitions with aiokafka's ``seek_to_committed``, which
# seeks only partitions committed at an offset above 0. A partition with no committed offset
# stayed where the fetcher had got to meanwhile, so records fetched and dropped in between
# were never processed: a restarted worker lost observations (2 restarts in 43 under load).
# Every source partition is rewound here; replays change nothing (see the README).


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
        fetched before the rewind is handed to an agent after it (Faust drops what its
        consumer hands out meanwhile), then resumed if it was running."""
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


# --- the transport: a configurable fetch wait -----------------------------------------------
#
# faust-streaming hard-codes ``fetch_max_wait_ms=1500`` for worker consumers. A real Kafka
# broker answers a waiting fetch as soon as data arrives, so there the wait costs no latency;
# the embedded tansu broker answers only when the wait runs out, which put ~0.4 s (up to
# 1.5 s) on every hop of an observation (bench/e2e.py measured it). The wait comes from
# ``Settings.fetch_max_wait_ms`` through the app's ``fetch_max_wait_ms``.

SCHEME = "pricewatch-kafka"


class _ConsumerThread(_SeekToCommittedOrResetThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        wait_ms = getattr(self.app, "fetch_max_wait_ms", None)
        if wait_ms is not None:
            # Read by AIOKafkaConsumer.start() when it builds its fetcher.
            consumer._fetch_max_wait_ms = wait_ms
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
