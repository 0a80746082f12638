"""The scraper commits a partition only up to its first unfinished request."""

from __future__ import annotations

from producers.scraper import _PartitionProgress


def test_committable_offset_stops_at_the_first_unfinished_request() -> None:
    progress = _PartitionProgress()
    entries = {offset: progress.add(offset) for offset in (10, 11, 12, 13)}

    entries[11].done = True
    entries[13].done = True
    assert progress.committable() is None  # 10 is still running
    assert progress.pending == 4

    entries[10].done = True
    assert progress.committable() == 12  # 10 and 11 done; 12 still running
    assert progress.pending == 2

    entries[12].done = True
    assert progress.committable() == 14
    assert progress.pending == 0
    assert progress.committable() is None  # nothing new since
