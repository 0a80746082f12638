"""What a sink is: one method, ``write(batch)``, and what a sink kind declares (the topics it
reads, how their records parse, how the sink is made) so the consumer (``sinks.base``) can
feed it and the CLI can start it by name (``sinks.registry``).

At-least-once delivery redelivers batches after a crash or a rebalance, so every sink's
``write`` must be idempotent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from pricewatch.contract.topics import TopicSpec
from pricewatch.settings import Settings

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
R_contra = TypeVar("R_contra", contravariant=True)


@dataclass(frozen=True)
class Consumed(Generic[R_co]):
    """One record of a batch: where it was read and what it parsed to."""

    topic: str
    partition: int
    offset: int
    value: R_co


@dataclass(frozen=True)
class Batch(Generic[R_co]):
    """The records a sink writes at once, from one fetch of one or more partitions; the
    records of a partition are in offset order."""

    records: Sequence[Consumed[R_co]]

    @classmethod
    def of(
        cls, values: Iterable[R], *, topic: str = "", partition: int = 0, first_offset: int = 0
    ) -> Batch[R]:
        """``values`` as consecutive records of one partition."""
        return Batch(
            tuple(
                Consumed(topic, partition, first_offset + n, value)
                for n, value in enumerate(values)
            )
        )

    @property
    def values(self) -> list[R_co]:
        return [record.value for record in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[Consumed[R_co]]:
        return iter(self.records)


class Sink(Protocol[R_contra]):
    """Where a consumer writes: ``write`` stores every record of the batch or raises, and
    a raise means the same batch comes again. Idempotent: batches are redelivered."""

    async def write(self, batch: Batch[R_contra]) -> None: ...


@dataclass(frozen=True)
class Feed:
    """One topic a sink reads, in a consumer group of its own (``settings.group(role)``).

    A record with a null value (a tombstone on a compacted topic) becomes
    ``parse_tombstone(key)`` when that is given, else a dead letter; a record ``parse``
    refuses (ValueError) is a dead letter too.
    """

    role: str
    topic: TopicSpec
    parse: Callable[[bytes], Any]
    parse_tombstone: Callable[[bytes | None], Any] | None = None
    max_batch: int = 500
    # Nobody waits for these records to the second (price history, archive, account
    # emails): the consumer may wait longer between fetches when idle
    # (``Settings.fetch_wait``). Off: the alert path (notifications).
    bulk: bool = False


@dataclass(frozen=True)
class SinkKind:
    """A kind of sink: the feeds it reads, and how to make it (an async context manager:
    what it needs, such as a migrated database engine, lives as long as the sink)."""

    feeds: tuple[Feed, ...]
    open: Callable[[Settings], AbstractAsyncContextManager[Sink[Any]]]
