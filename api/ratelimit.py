"""Token buckets per key (a client address, an email address), in this process's memory.

Each key's bucket holds up to ``capacity`` tokens and refills at ``capacity / period``
tokens per second; a call takes one. Pure apart from the clock passed in. With several API
processes each keeps its own buckets: the effective limit is per process (a shared store
such as Redis would make it global; not needed for one API process).

At most ``max_keys`` keys are kept; past that the least recently used is forgotten, which
only ever gives that key a full bucket again. So limits hold against up to ``max_keys``
distinct keys a period; someone rotating through more (client addresses, mailboxes)
within one period can make the oldest of them start afresh (README, "Security").
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated_at: float


class TokenBuckets:
    def __init__(self, capacity: float, period_seconds: float, max_keys: int = 100_000) -> None:
        if capacity <= 0 or period_seconds <= 0:
            raise ValueError("capacity and period must be positive")
        self.capacity = capacity
        self.rate = capacity / period_seconds  # tokens per second
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def wait(self, key: str, now: float) -> float:
        """Seconds until ``key`` has a token (0.0: it has one now); nothing is taken."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return 0.0
        tokens = min(self.capacity, bucket.tokens + max(0.0, now - bucket.updated_at) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def take(self, key: str, now: float) -> float:
        """0.0 when a token was taken; else the seconds until one is available (nothing taken)."""
        bucket = self._buckets.pop(key, None)
        if bucket is None:
            bucket = _Bucket(self.capacity, now)
        else:
            elapsed = max(0.0, now - bucket.updated_at)
            bucket.tokens = min(self.capacity, bucket.tokens + elapsed * self.rate)
            bucket.updated_at = now
        self._buckets[key] = bucket  # most recently used last
        while len(self._buckets) > self.max_keys:
            # Forgetting the least recently used key only ever gives it a full bucket.
            self._buckets.popitem(last=False)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate
