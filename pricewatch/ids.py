"""Deterministic identifiers and the Kafka partitioner we share with every other producer."""

from __future__ import annotations

import hashlib
from datetime import datetime
from urllib.parse import urlsplit, urlunsplit

from kafka.partitioner.default import murmur2


def canonical_url(url: str) -> str:
    """Lower-case scheme and host, drop the fragment and a default port; keep path and query."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port
    if port and not ((scheme == "http" and port == 80) or (scheme == "https" and port == 443)):
        host = f"{host}:{port}"
    return urlunsplit((scheme, host, parts.path or "/", parts.query, ""))


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def product_id_for(url: str) -> str:
    return _digest("product", canonical_url(url))


def subscription_id_for(email: str, product_id: str) -> str:
    # Re-subscribing the same address to the same product is the same subscription.
    return _digest("subscription", email.strip().lower(), product_id)


def observation_id_for(product_id: str, observed_at: datetime) -> str:
    return _digest("observation", product_id, observed_at.isoformat())


def event_id_for(product_id: str, event_type: str, observation_id: str) -> str:
    return _digest("event", product_id, event_type, observation_id)


def notification_key_for(subscription_id: str, event_id: str) -> str:
    return _digest("notification", subscription_id, event_id)


def partition_for(key: str, partitions: int) -> int:
    """The partition Kafka's default (murmur2) partitioner assigns to a key."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions
