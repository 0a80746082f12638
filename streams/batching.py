"""Processing a Faust stream in batches, safely.

The agents detect in memory, publish what they found, wait until the broker has it, and
only then write the new state to their table. A crash in between replays the batch: the
state has not moved on, so the same (deterministically keyed) messages are produced again
and downstream deduplication absorbs them. Written the other way round, a crash after the
state write but before delivery loses them for good (the replay looks like a duplicate).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# Faust routes a table write to the changelog partition and local store partition of the
# event being processed. Inside a batch that is our choice, not Faust's, so we say it.
from faust.streams import _current_event

BATCH_MAX = 1000
BATCH_WITHIN_SECONDS = 0.01  # at most 10 ms added latency when the stream is quiet


@contextmanager
def processing(event: Any) -> Iterator[None]:
    """Make ``event`` the current event, so table writes land in its partition."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)
