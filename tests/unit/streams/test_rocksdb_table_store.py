"""Changelog recovery keeps the newest value of every key
(streams.rocksdb_table_store.newest_records)."""

from __future__ import annotations

from collections.abc import Hashable
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

from faust.types import TP
from hypothesis import given
from hypothesis import strategies as st

from pricewatch.settings import Settings
from streams.codec import encode_alert_states, encode_product_state, product_state_version
from streams.domain.detector import ProductState
from streams.rocksdb_table_store import VersionedRocksDBStore, newest_records
from streams.topology import build_topology
from tests.factories import at


def version_of(raw: bytes) -> int | None:
    return None if raw == b"unversioned" else int(raw)


def apply(
    store: dict[Hashable, bytes], records: list[tuple[Hashable, bytes | None]]
) -> dict[Hashable, bytes]:
    """What the store holds after recovery applies the records newest_records keeps."""
    result = dict(store)
    for index in newest_records(records, lambda k: _v(result, k), version_of):
        key, value = records[index]
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return result


def _v(store: dict[Hashable, bytes], key: Hashable) -> int | None:
    raw = store.get(key)
    return None if raw is None else version_of(raw)


def test_an_older_changelog_record_does_not_replace_a_newer_local_value() -> None:
    # The SIGKILL case: the store wrote 7, the changelog's readable tail ends at 5.
    assert apply({"k": b"7"}, [("k", b"4"), ("k", b"5")]) == {"k": b"7"}


def test_newer_records_and_new_keys_are_applied() -> None:
    store = apply({"k": b"3"}, [("k", b"4"), ("j", b"1"), ("k", b"6")])
    assert store == {"k": b"6", "j": b"1"}


def test_an_equal_version_is_applied() -> None:
    # A replayed write of the same state: idempotent.
    assert newest_records([("k", b"5")], lambda k: 5, version_of) == [0]


def test_order_within_a_batch_counts() -> None:
    # 6 then 5 for a key the store does not have: 5 is older than the accepted 6.
    assert newest_records([("k", b"6"), ("k", b"5")], lambda k: None, version_of) == [0]


def test_deletions_and_unversioned_values_always_apply() -> None:
    records: list[tuple[Hashable, bytes | None]] = [("k", None), ("k", b"2"), ("j", b"unversioned")]
    assert newest_records(records, lambda k: 9, version_of) == [0, 1, 2]


@given(
    local=st.integers(0, 20),
    tail=st.lists(st.integers(0, 20), max_size=12).map(sorted),
    cut=st.integers(0, 12),
)
def test_any_prefix_of_an_ordered_changelog_never_moves_a_key_backwards(
    local: int, tail: list[int], cut: int
) -> None:
    recovered = apply({"k": str(local).encode()}, [("k", str(v).encode()) for v in tail[:cut]])
    assert int(recovered["k"]) == max([local, *tail[:cut]])


def test_product_state_version_is_the_newest_applied_observation() -> None:
    def state(applied: float) -> bytes:
        return encode_product_state(
            ProductState(
                url="https://x.example/p",
                title=None,
                price=Decimal("10"),
                currency="EUR",
                availability=None,
                lowest_price=Decimal("10"),
                removed=False,
                gone_count=0,
                error_count=0,
                applied_at=at(applied),
            )
        )

    assert product_state_version(state(42)) == at(42)
    assert product_state_version(state(0.5)) < product_state_version(state(1))


def test_the_workers_table_store_keeps_a_newer_local_value_over_changelog_records(
    tmp_path: Path,
) -> None:
    """The real RocksDB store as the topology builds it: after a SIGKILL the local store
    holds version 7, the changelog tail that recovery reads ends at version 5."""
    topology = build_topology(
        Settings(kafka_bootstrap_servers="127.0.0.1:1", data_dir=tmp_path, topic_partitions=1)
    )
    table = topology.product_subscriptions_table
    store = table.data
    assert isinstance(store, VersionedRocksDBStore)
    newer = encode_alert_states({}, rev=7)
    store._db_for_partition(0).put(b"product", newer)
    changelog = TP("pricewatch-product_subscriptions-changelog", 0)

    def record(offset: int, key: bytes, value: bytes | None) -> SimpleNamespace:
        message = SimpleNamespace(tp=changelog, offset=offset, partition=0, key=key, value=value)
        return SimpleNamespace(message=message)

    table.apply_changelog_batch(
        [
            record(10, b"product", encode_alert_states({}, rev=4)),
            record(11, b"other", encode_alert_states({}, rev=1)),
            record(12, b"product", encode_alert_states({}, rev=5)),
        ]
    )
    db = store._db_for_partition(0)
    assert db.get(b"product") == newer
    assert db.get(b"other") == encode_alert_states({}, rev=1)
    assert store.persisted_offset(changelog) == 12  # the skipped records were read
    # The files stay where Faust keeps its own stores (and older worker data dirs).
    assert store.partition_path(0).name == "product_subscriptions-0.db"

    table.apply_changelog_batch([record(13, b"product", encode_alert_states({}, rev=8))])
    assert db.get(b"product") == encode_alert_states({}, rev=8)
