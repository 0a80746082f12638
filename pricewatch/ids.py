"""Deterministic identifiers and the Kafka partitioner we share with every other producer."""

from __future__ import annotations

import contextlib
import hashlib
from datetime import datetime
from urllib.parse import quote, urlsplit, urlunsplit

from kafka.partitioner.default import murmur2

# Characters a path or query keeps as they are: RFC 3986's unreserved and sub-delims,
# ":" and "@", and "%" (an existing escape stays one, so canonicalizing twice changes
# nothing). Everything else (non-ASCII, quotes, "<>{}|^`") is percent-encoded as UTF-8,
# as a browser does before it sends the request.
_PATH_SAFE = "/:@!$&'()*+,;=-._~%"
_QUERY_SAFE = _PATH_SAFE + "?"


# Every id made here (_digest): 32 lower-case hex digits.
ID_PATTERN = r"^[0-9a-f]{32}$"


def ascii_host(host: str) -> str:
    """A host name as URLs and DNS carry it: lower-case, IDNA for a non-ASCII one, no
    final dot. Raises UnicodeError for a name IDNA refuses (an empty or long label)."""
    return host.lower().removesuffix(".").encode("idna").decode("ascii")


def canonical_url(url: str) -> str:
    """Lower-case scheme and host (IDNA for a non-ASCII one), drop the fragment, a default
    port and a host's final dot; percent-encode what a URL cannot hold in path and query.

    The same page written two ways gets one product id, and the result is plain ASCII."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower().removesuffix(".")
    # Not a valid name: the URL guard refuses it; here the id only has to be stable.
    with contextlib.suppress(UnicodeError):
        host = ascii_host(host)
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal keeps its brackets
    port = parts.port
    if port and not ((scheme == "http" and port == 80) or (scheme == "https" and port == 443)):
        host = f"{host}:{port}"
    path = quote(remove_dot_segments(parts.path or "/"), safe=_PATH_SAFE)
    query = quote(parts.query, safe=_QUERY_SAFE)
    return urlunsplit((scheme, host, path, query, ""))


# A segment a browser reads as "." or ".." (WHATWG URL: percent-encoded dots included).
_DOT = frozenset({".", "%2e"})
_DOT_DOT = frozenset({"..", ".%2e", "%2e.", "%2e%2e"})


def remove_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4: ``/a/./b/../c`` is ``/a/c``, as every browser and server reads it, so
    one page cannot become two products by spelling its path two ways."""
    segments = path.split("/")
    out: list[str] = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        lowered = segment.lower()
        if lowered in _DOT:
            if last:
                out.append("")  # "/a/." is the directory "/a/"
        elif lowered in _DOT_DOT:
            if len(out) > 1:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(segment)
    joined = "/".join(out)
    return joined if joined.startswith("/") else "/" + joined


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
