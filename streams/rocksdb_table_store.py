"""The workers' table store: RocksDB, whose changelog recovery never replaces a newer value
with an older one.

Why: a worker writes its local store first and the changelog record after, and records the
changelog offset it has persisted only when the broker acknowledges the record. After a
SIGKILL the store can therefore hold values newer than its persisted offset says, and
recovery replays (persisted offset, end offset] over them. That is harmless when recovery
reads to the true end (the newest record of every key comes last). But it stops early when
the broker under-reports the end offset (the embedded tansu broker answers ListOffsets with
the last batch's base offset plus one, too low after multi-record batches), and then an
older value of a key lands on top of the newer one the worker had already written, and
nothing repairs it.

Every table value Pricewatch writes carries a version that only grows per key (product state:
the time of the newest observation applied; alert states: a write counter). Recovery applies
a changelog record only if its version is not older than what the store already holds, so
replays, partial replays and out-of-order replays are all harmless, on any broker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from faust.stores.rocksdb import Store as RocksDBStore

from streams import metrics
from streams.faust_compat import register_store, stored_value

log = logging.getLogger(__name__)

Version = Any  # comparable within one table: a datetime, an int
VersionOf = Callable[[bytes], Version | None]

STORE_SCHEME = "pricewatch-rocksdb"


def store_url(table_name: str) -> str:
    """The store URL of a table: ``<scheme>:<table name>``, the form Faust gives its own
    stores, so the files stay ``<tabledir>/<table>-<partition>.db`` (a bare ``scheme://``
    is an empty, falsy URL that Faust would silently replace by the app's default)."""
    return f"{STORE_SCHEME}:{table_name}"


def newest_records(
    records: Iterable[tuple[Hashable, bytes | None]],
    stored_version: Callable[[Hashable], Version | None],
    version_of: VersionOf,
) -> list[int]:
    """Indexes of the changelog ``records`` (key, value) to apply, in order.

    A record is dropped when its version is older than the version the store holds for
    its key, counting records already accepted from this batch. Deletions (value None) and
    values without a version are always applied: there is nothing to compare.
    """
    newest: dict[Hashable, Version | None] = {}
    keep: list[int] = []
    for index, (key, value) in enumerate(records):
        if value is None:
            newest[key] = None
            keep.append(index)
            continue
        incoming = version_of(value)
        current = newest[key] if key in newest else stored_version(key)
        if incoming is not None and current is not None and incoming < current:
            continue
        newest[key] = incoming
        keep.append(index)
    return keep


class VersionedRocksDBStore(RocksDBStore):
    """The RocksDB store with :func:`newest_records` applied to changelog recovery.

    The table says how to read a version: ``table.version_of`` (set in the topology).
    """

    def apply_changelog_batch(
        self,
        batch: Iterable[Any],
        to_key: Callable[[Any], Any],
        to_value: Callable[[Any], Any],
    ) -> None:
        version_of: VersionOf | None = getattr(self.table, "version_of", None)
        events = list(batch)
        if version_of is None or not events:
            super().apply_changelog_batch(events, to_key, to_value)
            return

        def stored_version(key: Hashable) -> Version | None:
            partition: int = key[0]  # type: ignore[index]
            raw_key: bytes = key[1]  # type: ignore[index]
            raw = stored_value(self, partition, raw_key)
            return None if raw is None else version_of(raw)

        keep = newest_records(
            (((e.message.partition, e.message.key), e.message.value) for e in events),
            stored_version,
            version_of,
        )
        skipped = len(events) - len(keep)
        if skipped:
            metrics.stale_changelog_records.labels(table=self.table_name).inc(skipped)
            log.info(
                "%s: kept %d newer local values over older changelog records",
                self.table_name,
                skipped,
            )
        super().apply_changelog_batch([events[i] for i in keep], to_key, to_value)
        # The persisted offset covers the skipped records too: they were read.
        last: dict[Any, int] = {}
        for event in events:
            tp, offset = event.message.tp, event.message.offset
            last[tp] = max(offset, last.get(tp, offset))
        for tp, offset in last.items():
            self.set_persisted_offset(tp, offset)


register_store(STORE_SCHEME, f"{__name__}:VersionedRocksDBStore")
