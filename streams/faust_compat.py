"""Every use of faust-streaming's private API, in one place, and the versions it was tested
with: an upgrade of faust-streaming is checked here first.

- ``current_event``: the event Faust routes a table write to (``faust.streams._current_event``).
- ``RevocationAwareApp``: a hook before partitions are revoked (``App._on_partitions_revoked``).
- ``Transport``: worker consumers' fetch wait (aiokafka driver internals, ``TRANSPORTS``).
- ``register_store`` and ``stored_value``: a table store class of our own (``STORES``) and a
  read of one partition's local database (``Store._db_for_partition``).

``check_faust_version`` runs at worker start and logs a warning, naming the tested
versions, when the installed faust-streaming is another one.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final

import faust
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


# --- the transport: a configurable fetch wait -----------------------------------------------
#
# faust-streaming hard-codes ``fetch_max_wait_ms=1500`` for worker consumers. A real Kafka
# broker answers a waiting fetch as soon as data arrives, so there the wait costs no latency;
# the embedded tansu broker answers only when the wait runs out, which put ~0.4 s (up to
# 1.5 s) on every hop of an observation (bench/e2e.py measured it). The wait comes from
# ``Settings.fetch_max_wait_ms`` through the app's ``fetch_max_wait_ms``.

SCHEME = "pricewatch-kafka"


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        wait_ms = getattr(self.app, "fetch_max_wait_ms", None)
        if wait_ms is not None:
            # Read by AIOKafkaConsumer.start() when it builds its fetcher.
            consumer._fetch_max_wait_ms = wait_ms
        return consumer


class _Consumer(faust_aiokafka.Consumer):
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
