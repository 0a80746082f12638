"""Keep the scraper from being pointed at ourselves: the hostile-URL guard.

Anyone who can subscribe to a URL makes the scraper fetch it, so a URL must not reach
loopback, private networks or a cloud metadata service. Checking the URL's host name is
not enough (DNS can answer differently a second later: "DNS rebinding"), so the address
check runs inside the HTTP client's resolver, on the very addresses it then connects to.
Literal IP hosts never reach a resolver, so the fetcher checks them with ``check_host``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from pricewatch.ids import ascii_host

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Never allowed, even for an allow-listed host name: they hold cloud credentials.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack, ...
        ipaddress.ip_address("fd00:ec2::254"),  # AWS over IPv6
        ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
    }
)

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")
# Spaces and control characters are never part of a URL, and a backslash is read as "/"
# by browsers but not by urlsplit: a URL with either could mean one host to us and
# another to the next parser.
_UNSAFE_CHARACTER = re.compile(r"[\x00-\x20\x7f\\]")
# One DNS label in its ASCII (IDNA) form; "_" occurs in real host names.
_HOST_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
MAX_HOST_CHARS = 253


class UrlRefused(ValueError):
    """The URL, or an address its host resolves to, may not be fetched."""


def check_url(url: str) -> None:
    """Refuse anything but an absolute http(s) URL with a host and no user:password part."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port validates it
    except ValueError as exc:
        raise UrlRefused(f"malformed URL: {exc}") from exc
    if parts.port == 0:
        # No server listens on port 0; writing it must not mean "the default port".
        raise UrlRefused("port 0 is not a port a page can be fetched from")
    if parts.scheme.lower() not in ("http", "https"):
        raise UrlRefused(f"scheme {parts.scheme or '(none)'!r} is not http or https")
    host = parts.hostname
    if not host:
        raise UrlRefused("URL has no host")
    if _UNSAFE_CHARACTER.search(url):
        raise UrlRefused("URL contains a space, a control character or a backslash")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise UrlRefused("URL carries user info")
    if _ip_literal(host) is not None:
        return
    if _is_numeric_host(host):
        # "2130706433" or "127.1": resolvers turn these into addresses behind our back.
        raise UrlRefused(f"non-canonical numeric host {host!r}")
    ascii_host_name(host)


def ascii_host_name(host: str) -> str:
    """``host`` in its ASCII (IDNA) form, lower-case, without a final dot; UrlRefused when
    it is no valid DNS name (an empty or over-long label, a character no name can hold)."""
    try:
        ascii_name = ascii_host(host)
    except UnicodeError:
        raise UrlRefused(f"invalid host name {host!r}") from None
    labels = ascii_name.split(".")
    if len(ascii_name) > MAX_HOST_CHARS or not all(_HOST_LABEL.match(x) for x in labels):
        raise UrlRefused(f"invalid host name {host!r}")
    return ascii_name


def _is_numeric_host(host: str) -> bool:
    labels = host.lower().rstrip(".").split(".")
    return all(_NUMERIC_LABEL.match(label) for label in labels)


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def refusal_reason(address: IPAddress) -> str | None:
    """Why connecting to ``address`` is refused, or None when it is a public address."""
    if isinstance(address, ipaddress.IPv6Address):
        # IPv6 forms that carry an IPv4 address reach that address: judge it instead.
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return refusal_reason(embedded)
    if address in METADATA_ADDRESSES:
        return "cloud metadata"
    checks = (
        (address.is_loopback, "loopback"),
        (address.is_unspecified, "unspecified"),
        (address.is_link_local, "link-local"),
        (address.is_multicast, "multicast"),
        (address.is_private, "private"),
        (address.is_reserved, "reserved"),
        # Catches the rest of the special-purpose ranges, e.g. 100.64.0.0/10 (carrier NAT).
        (not address.is_global, "non-global"),
    )
    return next((reason for refused, reason in checks if refused), None)


def _allow_keys(host: str, port: int) -> set[str]:
    name = host.lower().rstrip(".").strip("[]")
    keys = {name, f"{name}:{port}"}
    if ":" in name:  # IPv6 literal, written with brackets in a URL
        keys |= {f"[{name}]", f"[{name}]:{port}"}
    return keys


def check_address(host: str, port: int, address: str, allowed: frozenset[str]) -> None:
    """Refuse connecting to ``address`` (resolved from ``host``) unless it is public.

    ``allowed`` holds lower-case ``host`` or ``host:port`` entries that may reach
    loopback/private addresses (the demo shop, tests). Metadata addresses stay refused.
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 scope id
    except ValueError as exc:
        raise UrlRefused(f"{host} resolved to unparseable address {address!r}") from exc
    reason = refusal_reason(ip)
    if reason is None:
        return
    if reason != "cloud metadata" and _allow_keys(host, port) & allowed:
        return
    raise UrlRefused(f"{host} resolves to {reason} address {ip}")


def check_host(url: str, allowed: frozenset[str]) -> None:
    """``check_url`` plus the address check for a literal IP host (no resolver sees those)."""
    check_url(url)
    parts = urlsplit(url)
    host = parts.hostname or ""
    literal = _ip_literal(host)
    if literal is not None:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
        check_address(host, port, str(literal), allowed)


AddressInfo = tuple[Any, ...]
GetAddrInfo = Callable[..., list[AddressInfo]]


class LookupTimedOut(UrlRefused):
    """The host name did not resolve in time (a slow or hanging DNS server)."""


class BoundedResolver:
    """Name lookups on a thread pool of their own, ``max_workers`` at most at once, each
    waited for ``timeout_seconds`` at most.

    ``getaddrinfo`` blocks a thread and cannot be interrupted. On asyncio's default executor
    (which ``loop.getaddrinfo`` and ``asyncio.to_thread`` share) a few hanging lookups
    occupy every thread and stall every database call behind them. Here a hanging DNS
    server can hold at most this pool's threads; a lookup still queued when its time is up
    is dropped from the queue, and the caller is answered at its deadline either way.
    """

    def __init__(
        self,
        max_workers: int = 4,
        timeout_seconds: float = 2.0,
        getaddrinfo: GetAddrInfo | None = None,
    ) -> None:
        self.timeout_seconds = timeout_seconds
        # None: socket.getaddrinfo as it is at each call (the channels sink wraps it).
        self._getaddrinfo = getaddrinfo
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix="dns-lookup")

    async def addresses(self, host: str, port: int) -> list[str]:
        loop = asyncio.get_running_loop()
        getaddrinfo = self._getaddrinfo or socket.getaddrinfo
        lookup = loop.run_in_executor(
            self._pool, partial(getaddrinfo, host, port, type=socket.SOCK_STREAM)
        )
        try:
            infos = await asyncio.wait_for(lookup, self.timeout_seconds)
        except TimeoutError:
            raise LookupTimedOut(
                f"{host} did not resolve within {self.timeout_seconds:g} s; try again later"
            ) from None
        return [str(info[4][0]) for info in infos]

    def close(self) -> None:
        # Threads stuck in a lookup are not waited for: they end when it returns.
        self._pool.shutdown(wait=False, cancel_futures=True)


async def check_resolved_host(
    url: str, allowed: frozenset[str], resolver: BoundedResolver | None = None
) -> None:
    """``check_host`` plus resolving the name now: refuses a URL whose host resolves to a
    forbidden address (``localhost``, an internal name), and one whose name does not
    resolve in time (``LookupTimedOut``: not checked is not passed). A name that does not
    exist is let through: the scraper records the failure, and its connect-time check is
    the real defence (a name may resolve differently later)."""
    check_host(url, allowed)
    parts = urlsplit(url)
    host = parts.hostname or ""
    if _ip_literal(host) is not None:
        return
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    try:
        addresses = await (resolver or _default_resolver()).addresses(host, port)
    except (OSError, UnicodeError):
        # UnicodeError: a name the IDNA codec refuses (check_url lets none through; kept
        # so that a codec stricter than ours is a failed lookup, not a crash).
        return
    for address in addresses:
        check_address(host, port, address, allowed)


_shared: BoundedResolver | None = None


def _default_resolver() -> BoundedResolver:
    """One bounded pool per process for callers that bring none."""
    global _shared
    if _shared is None:
        _shared = BoundedResolver()
    return _shared


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp's default resolver, then refuses forbidden addresses.

    A host is refused when any of its addresses is forbidden: connecting to the allowed
    remainder would let a DNS answer smuggle an internal address into the retry list.
    """

    def __init__(self, allowed: frozenset[str], resolver: AbstractResolver | None = None) -> None:
        self._allowed = frozenset(entry.lower() for entry in allowed)
        self._resolver = resolver or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._resolver.resolve(host, port, family)
        for result in results:
            check_address(host, port, result["host"], self._allowed)
        return results

    async def close(self) -> None:
        await self._resolver.close()
